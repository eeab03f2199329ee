package files

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// withUmask runs the test under umask 022, so modes are what the calls ask
// for whatever the developer's umask is.
func withUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

func write(t *testing.T, p, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, p, content string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", p, b, content)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), perm)
	}
}

func TestWriteAtomic(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "f.json")
	// The directory is made, and the mode is the one asked for, not
	// CreateTemp's 0600.
	if err := WriteAtomic(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	check(t, p, "one", 0o644)
	// Replacing keeps no temp file behind and takes the new mode.
	if err := WriteAtomic(p, []byte("two"), 0o755); err != nil {
		t.Fatal(err)
	}
	check(t, p, "two", 0o755)
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only f.json: %v", len(entries), entries)
	}
}

// TestWriteAtomicFailureCleansUp: when the rename cannot happen, what was
// at the path is left as it was and the temp file is gone.
func TestWriteAtomicFailureCleansUp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "target")
	// A non-empty directory at the path: rename(2) refuses to replace it.
	if err := os.MkdirAll(filepath.Join(p, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(p, []byte("x"), 0o644); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "target" {
		t.Errorf("left behind: %v", entries)
	}
}

func TestNormalPerm(t *testing.T) {
	for mode, want := range map[fs.FileMode]fs.FileMode{
		0o600: 0o644, 0o664: 0o644, 0o444: 0o644,
		0o700: 0o755, 0o744: 0o755, 0o100: 0o755, 0o775: 0o755,
	} {
		if got := NormalPerm(mode); got != want {
			t.Errorf("NormalPerm(%v) = %v, want %v", mode, got, want)
		}
	}
}

func TestCopy(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	plain, exe := filepath.Join(dir, "plain"), filepath.Join(dir, "exe")
	write(t, plain, "plain", 0o600)
	write(t, exe, "exe", 0o700)

	cases := []struct {
		name, src string
		opt       CopyOptions
		perm      fs.FileMode
	}{
		{"normal", plain, CopyOptions{}, 0o644},
		{"normal executable", exe, CopyOptions{}, 0o755},
		{"read-only", plain, CopyOptions{ReadOnly: true}, 0o444},
		{"read-only executable", exe, CopyOptions{ReadOnly: true}, 0o555},
		{"given mode", plain, CopyOptions{Perm: 0o755}, 0o755},
		{"given mode read-only", exe, CopyOptions{Perm: 0o640, ReadOnly: true}, 0o440},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			if err := Copy(c.src, dst, c.opt); err != nil {
				t.Fatal(err)
			}
			check(t, dst, filepath.Base(c.src), c.perm)
		})
	}
}

func TestCopyReplaceOrRefuse(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	write(t, src, "new", 0o644)
	write(t, dst, "old content, longer", 0o644)

	err := Copy(src, dst, CopyOptions{Exclusive: true})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("exclusive copy over an existing file: %v, want fs.ErrExist", err)
	}
	check(t, dst, "old content, longer", 0o644)

	// Without Exclusive the file is truncated and rewritten; its mode is
	// the one it had (open(2) applies a mode only when it creates).
	if err := Copy(src, dst, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	check(t, dst, "new", 0o644)
}

func TestCopyErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Copy(filepath.Join(dir, "missing"), filepath.Join(dir, "dst"), CopyOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing source: %v", err)
	}
	src := filepath.Join(dir, "src")
	write(t, src, "x", 0o644)
	// No MkdirAll: the caller makes directories.
	if err := Copy(src, filepath.Join(dir, "no", "such", "dir"), CopyOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing destination directory: %v", err)
	}
}

func TestLinkOrCopy(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	write(t, src, "body", 0o640)
	dst := filepath.Join(dir, "dst")
	if err := LinkOrCopy(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(src)
	b, _ := os.Stat(dst)
	if !os.SameFile(a, b) {
		t.Error("on one file system the file is linked, not copied")
	}
	if err := LinkOrCopy(src, dst); !errors.Is(err, fs.ErrExist) {
		t.Errorf("over an existing file: %v, want fs.ErrExist", err)
	}
}

// TestLinkOrCopyFallback: where the link fails, the copy has the source's
// own mode, as the link would have.
func TestLinkOrCopyFallback(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	write(t, src, "body", 0o640)
	// /dev/shm is another file system on Linux; fall back there when it
	// exists and is writable.
	other, err := os.MkdirTemp("/dev/shm", "pipe-files-")
	if err != nil {
		t.Skipf("no second file system to test the copy fallback: %v", err)
	}
	defer os.RemoveAll(other)
	dst := filepath.Join(other, "dst")
	if err := LinkOrCopy(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(src)
	b, _ := os.Stat(dst)
	if os.SameFile(a, b) {
		t.Skip("/dev/shm is on the same file system as the temp dir")
	}
	check(t, dst, "body", 0o640)
}
