package testenv

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PyenvPython returns pyenv's interpreter of version ("3.12.1") and its
// installation directory, or stops the test as Need says.
func PyenvPython(t testing.TB, version string) (bin, prefix string) {
	t.Helper()
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	prefix = filepath.Join(root, "versions", version)
	minor := version
	if parts := strings.Split(version, "."); len(parts) == 3 {
		minor = parts[0] + "." + parts[1]
	}
	bin = filepath.Join(prefix, "bin", "python"+minor)
	if _, err := os.Stat(bin); err != nil {
		Need(t, "pyenv's Python "+version, "pyenv install "+version+" (this machine image has it in "+root+")")
	}
	return bin, prefix
}

// PythonArchive is a .tar.gz in the layout of python-build-standalone's
// install_only archives (python/bin/python3.X, python/lib/python3.X/…).
type PythonArchive struct {
	Path   string
	SHA256 string // hex
}

// skipInArchive are the parts of an installation no test runs and that
// would make the archive ten times bigger: the standard library's own
// tests, the static library, installed packages, bytecode, the GUI.
var skipInArchive = []string{"test", "site-packages", "__pycache__", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pkgconfig"}

// PyenvArchive packs pyenv's interpreter of version into file, as
// python-build-standalone lays out its install_only archives. The
// interpreter finds its standard library next to itself, so it runs from
// wherever the archive is unpacked (its shared library, if any, it still
// loads from pyenv's directory).
func PyenvArchive(t testing.TB, version, file string) PythonArchive {
	t.Helper()
	bin, prefix := PyenvPython(t, version)
	minor := filepath.Base(bin)[len("python"):]
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	zw, _ := gzip.NewWriterLevel(io.MultiWriter(out, h), gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	add := func(src, name string, fi fs.FileInfo) {
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			t.Fatal(err)
		}
		hdr.Name = name
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				t.Fatal(err)
			}
			hdr.Linkname = target
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, dir := range []string{"python", "python/bin", "python/lib"} {
		fi, _ := os.Stat(prefix)
		add(prefix, dir+"/", fi)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	add(bin, "python/bin/python"+minor, fi)
	if err := tw.WriteHeader(&tar.Header{Name: "python/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python" + minor, Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(prefix, "lib")
	err = filepath.WalkDir(lib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(lib, p)
		if rel == "." {
			return nil
		}
		base := d.Name()
		for _, s := range skipInArchive {
			if base == s && d.IsDir() {
				return filepath.SkipDir
			}
		}
		if d.IsDir() && strings.HasPrefix(base, "config-") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(base, ".a") || strings.HasSuffix(base, ".pyc") {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		name := "python/lib/" + filepath.ToSlash(rel)
		if d.IsDir() {
			name += "/"
		}
		add(p, name, fi)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return PythonArchive{Path: file, SHA256: hex.EncodeToString(h.Sum(nil))}
}
