// Package files holds pipe's few file-writing primitives: an atomic write,
// a copy with a chosen mode, and a hard link that falls back to a copy.
// Every package that lays files out (the sandbox, the rules, the CLI)
// uses these, so a file's mode and the rules for replacing it are decided
// in one place.
//
// None of them fsyncs. What pipe writes this way is either rebuilt from
// the CAS or recomputed when it is missing or stale (digest records,
// caches, outputs), so what the rename buys is that a reader, or the next
// run after a crash, sees the old file or the new one and never half of
// one; surviving a power cut is not worth a sync per file on a build's
// critical path.
package files

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteAtomic writes b to path with permission bits perm: the bytes go to
// a temp file in path's directory, which is then renamed over path, so a
// concurrent reader sees the old content or the new, never part of it.
// The directory is created if missing. Errors are the os package's, which
// name the file; callers add what the file is for.
func WriteAtomic(path string, b []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The temp file is in the same directory, so the rename stays on one
	// file system and is atomic.
	f, err := os.CreateTemp(dir, ".pipe-tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// CreateTemp makes 0600 whatever the umask; set what was asked.
		err = os.Chmod(f.Name(), perm)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// NormalPerm is the permission bits pipe gives a file it copies: 0755 if
// mode has any execute bit, else 0644. Only the execute bit carries
// meaning in a build; the rest of a source's bits (group write, a 0600
// left by an editor) would make the copy depend on who checked it out.
func NormalPerm(mode fs.FileMode) fs.FileMode {
	if mode&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// CopyOptions say how Copy makes its copy.
type CopyOptions struct {
	// Perm is the copy's permission bits (before the umask, as for
	// os.OpenFile); 0 means NormalPerm of the source's mode.
	Perm fs.FileMode
	// ReadOnly clears the write bits, so nothing writes through the copy
	// by accident (the sandbox's inputs).
	ReadOnly bool
	// Exclusive refuses a dst that exists, with an error wrapping
	// fs.ErrExist: a caller laying out a tree learns that two files land
	// on one path instead of one silently replacing the other. Without
	// it an existing dst is truncated and overwritten.
	Exclusive bool
}

// Copy copies the regular file src to dst. dst's directory must exist:
// the callers walk trees and make each directory once, and a MkdirAll per
// file would cost a stat per file on the sandbox's critical path.
func Copy(src, dst string, opt CopyOptions) error {
	perm := func(mode fs.FileMode) fs.FileMode {
		p := opt.Perm
		if p == 0 {
			p = NormalPerm(mode)
		}
		if opt.ReadOnly {
			p &^= 0o222
		}
		return p
	}
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if opt.Exclusive {
		flag = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	return copyFile(src, dst, flag, perm)
}

// LinkOrCopy hard-links src at dst, or, where linking fails (another file
// system, a file system without links), copies it with src's own
// permission bits, as the link would have had. dst must not exist and its
// directory must. A link costs no bytes and no time, which matters for
// trees of thousands of files; it suits only files nothing will write
// through, such as outputs pipe restores from the CAS when changed.
func LinkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode.Perm)
}

// copyFile copies src to dst, opened with flag and created with the
// permission bits perm computes from src's mode.
func copyFile(src, dst string, flag int, perm func(fs.FileMode) fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	mode := perm(fi.Mode())
	if mode&0o111 != 0 {
		// No fork may happen while an executable is open for writing: a
		// child forked meanwhile holds the descriptor until it execs, and
		// running the file then fails with "Text file busy" (ETXTBSY).
		// os/exec forks holding syscall.ForkLock for writing.
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
	}
	out, err := os.OpenFile(dst, flag, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
