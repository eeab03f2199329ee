package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// An extraMount is one of Spec.Reads or Spec.Writes, opened while the
// host's file system is still visible, to be bound at its own path once
// the workspace and /tmp are replaced.
type extraMount struct {
	path  string
	fd    int
	dir   bool
	write bool
}

// hiddenBy reports whether isolate replaces the place of p: it lies in
// the hidden workspace (outside the scratch directory) or in /tmp or
// /dev/shm, which become private.
func hiddenBy(spec Spec, p string) bool {
	if within(p, spec.Scratch) {
		return false
	}
	return within(p, spec.Hide) || within(p, "/tmp") || within(p, "/dev/shm")
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// openExtra opens the paths of spec.Reads that the sandbox would hide and
// every path of spec.Writes. A read elsewhere needs nothing: the
// read-only root shows it.
func openExtra(spec Spec) ([]extraMount, error) {
	return selectExtra(spec, func(p string) (int, error) {
		return unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	})
}

// cloneExtra is openExtra for a reused supervisor (serve_linux.go): each
// path is a detached copy of its mount tree (open_tree), already read-only
// or writable as it will be shown, to be moved into place by moveExtra and
// detached again after the command.
func cloneExtra(spec Spec) ([]extraMount, error) {
	ms, err := selectExtra(spec, func(p string) (int, error) {
		return unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	})
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		attr, flags := m.access()
		if err := unix.MountSetattr(m.fd, "", flags|unix.AT_EMPTY_PATH, attr); err != nil {
			closeExtra(ms)
			return nil, fmt.Errorf("set the access of %s: %w", m.path, err)
		}
	}
	return ms, nil
}

// moveExtra puts cloneExtra's copies at their own places, in order (see
// placeExtra), and reports each place mounted, for the undo.
func moveExtra(ms []extraMount, mounted func(string)) error {
	return placeExtra(ms, func(m extraMount) error {
		if err := unix.MoveMount(m.fd, "", unix.AT_FDCWD, m.path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return err
		}
		mounted(m.path)
		return nil
	})
}

// access is how m is shown: a read read-only, with everything mounted
// under it; a write writable, only the directory itself, so mounts inside
// it keep their own state.
func (m extraMount) access() (*unix.MountAttr, uint) {
	if m.write {
		return &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}, 0
	}
	return &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}, unix.AT_RECURSIVE
}

// placeExtra makes the mount point of each path and binds it there with
// bind, in selectExtra's order: reads first, then writes, so a writable
// directory inside a read-only one is writable.
func placeExtra(ms []extraMount, bind func(extraMount) error) error {
	for _, m := range ms {
		if err := extraPoint(m); err != nil {
			return fmt.Errorf("make the place of %s: %w", m.path, err)
		}
		if err := bind(m); err != nil {
			return fmt.Errorf("bind %s: %w", m.path, err)
		}
	}
	return nil
}

// selectExtra opens, with open, the paths of spec.Reads the sandbox
// would hide and every path of spec.Writes, in that order (placeExtra
// relies on it).
func selectExtra(spec Spec, open func(string) (int, error)) ([]extraMount, error) {
	var ms []extraMount
	add := func(p string, write bool) error {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%q is not an absolute path", p)
		}
		p = filepath.Clean(p)
		if within(spec.Scratch, p) {
			return fmt.Errorf("%s holds the scratch directory: show the files the command needs, not their parent", p)
		}
		fd, err := open(p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return err
		}
		ms = append(ms, extraMount{path: p, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR, write: write})
		return nil
	}
	for _, p := range spec.Reads {
		if !hiddenBy(spec, filepath.Clean(p)) {
			continue
		}
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue // nothing to show; the program finds it missing as it would outside
		}
		if err := add(p, false); err != nil {
			closeExtra(ms)
			return nil, fmt.Errorf("show %s read-only: %w", p, err)
		}
	}
	for _, p := range spec.Writes {
		if err := add(p, true); err != nil {
			closeExtra(ms)
			return nil, fmt.Errorf("show %s writable: %w", p, err)
		}
	}
	return ms, nil
}

func closeExtra(ms []extraMount) {
	for _, m := range ms {
		unix.Close(m.fd)
	}
}

// mountExtra binds the opened paths at their own places (placeExtra),
// with their access. It runs while the replacements of the workspace and
// /tmp are still writable tmpfs, where the mount points are made.
func mountExtra(ms []extraMount) error {
	return placeExtra(ms, func(m extraMount) error {
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", m.fd), m.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		attr, flags := m.access()
		return unix.MountSetattr(-1, m.path, flags, attr)
	})
}

// extraPoint makes the mount point of m unless it exists (a path on the
// read-only root, shown again to make it writable).
func extraPoint(m extraMount) error {
	if _, err := os.Lstat(m.path); err == nil {
		return nil
	}
	return mountPoint(m.path, m.dir)
}
