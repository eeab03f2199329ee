package python

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/testenv"
)

func TestPinnedDownloadsParse(t *testing.T) {
	table := PinnedDownloads()
	for _, arch := range []string{"x86_64", "aarch64"} {
		for _, minor := range []string{"3.11", "3.12", "3.13"} {
			r, _ := ParsePythonRequest(minor)
			d, ok := table.Find(r, arch)
			if !ok {
				t.Errorf("no pinned build of %s for %s", minor, arch)
				continue
			}
			if !strings.Contains(d.File, arch+"-unknown-linux-gnu-install_only") || !strings.HasPrefix(d.File, "cpython-"+d.Version()+"+"+d.Release+"-") {
				t.Errorf("%s: file %s does not match its version, release and arch", d.Version(), d.File)
			}
		}
	}
	d, _ := table.Find(PythonRequest{Major: 3, Minor: 12}, "x86_64")
	want := "https://github.com/astral-sh/python-build-standalone/releases/download/20241008/cpython-3.12.7%2B20241008-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
	if got := d.URL(DefaultDownloadsBase); got != want {
		t.Errorf("URL:\n got %s\nwant %s", got, want)
	}
	if got := table.Versions("x86_64"); strings.Join(got, " ") != "3.13.0 3.12.7 3.11.10" {
		t.Errorf("Versions = %v", got)
	}
}

func TestParseDownloadTableErrors(t *testing.T) {
	sha := strings.Repeat("a", 64)
	for in, want := range map[string]string{
		"3.12.7 20241008 x86_64 " + sha:                                                   "t.txt:1: want 5 fields",
		"3.12 20241008 x86_64 " + sha + " f.tar.gz":                                       `t.txt:1: version "3.12": want a release`,
		"3.12.7 ../x x86_64 " + sha + " f.tar.gz":                                         `t.txt:1: release "../x"`,
		"3.12.7 20241008 riscv " + sha + " f.tar.gz":                                      `t.txt:1: arch "riscv"`,
		"3.12.7 20241008 x86_64 abc f.tar.gz":                                             `t.txt:1: sha256 "abc"`,
		"3.12.7 20241008 x86_64 " + sha + " ../f.tar.gz":                                  `t.txt:1: file "../f.tar.gz"`,
		"3.12.7 20241008 x86_64 " + sha + " f.zip":                                        `t.txt:1: file "f.zip"`,
		"# c\n3.12.7 1 x86_64 " + sha + " f.tar.gz\n3.12.7 2 x86_64 " + sha + " g.tar.gz": "t.txt:3: 3.12.7 for x86_64 is pinned twice (first at line 2)",
	} {
		if _, err := ParseDownloadTable([]byte(in), "t.txt"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// FuzzParseDownloadTable: any table either parses into entries that make
// sense or fails naming a line; it never panics.
func FuzzParseDownloadTable(f *testing.F) {
	f.Add(pinnedDownloads)
	f.Add([]byte("3.12.7 20241008 x86_64 " + strings.Repeat("0", 64) + " a.tar.gz\n"))
	f.Add([]byte("# only a comment\n\n"))
	f.Add([]byte("3.12.7\t1\taarch64\t" + strings.Repeat("F", 64) + "\tb.tar.gz # trailing\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		table, err := ParseDownloadTable(b, "t.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "t.txt:") {
				t.Fatalf("error names no line: %v", err)
			}
			return
		}
		for _, d := range table {
			if d.Major != 3 || len(d.SHA256) != 64 || !strings.HasSuffix(d.File, ".tar.gz") || strings.Contains(d.File, "/") {
				t.Fatalf("accepted %+v", d)
			}
			if _, ok := table.Find(PythonRequest{Major: d.Major, Minor: d.Minor, Patch: d.Patch, HasPatch: true}, d.Arch); !ok {
				t.Fatalf("cannot find %+v", d)
			}
		}
	})
}

// TestDownloaderInstallsFromFileBase installs an interpreter from a
// file:// base laid out as python-build-standalone's releases, with a
// table entry the test pins itself: the archive is packed from pyenv's
// interpreter.
func TestDownloaderInstallsFromFileBase(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	entry := PythonDownload{Major: 3, Minor: 12, Patch: 1, Release: "20991231", Arch: hostArch(),
		File: "cpython-3.12.1+20991231-" + hostArch() + "-unknown-linux-gnu-install_only.tar.gz"}
	if err := os.MkdirAll(filepath.Join(base, entry.Release), 0o755); err != nil {
		t.Fatal(err)
	}
	arch := testenv.PyenvArchive(t, "3.12.1", filepath.Join(base, entry.Release, entry.File))
	entry.SHA256 = arch.SHA256

	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var progress []string
	d := &Downloader{Base: "file://" + base, Cache: c, Progress: func(m string) { progress = append(progress, m) }}
	python, err := d.Install(context.Background(), entry)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.TreePath(interpreterTrees, entry.TreeName()); !strings.HasPrefix(python, want+"/python/bin/python3.12") {
		t.Errorf("installed at %s, want under %s", python, want)
	}
	out, err := exec.Command(python, "-I", "-S", "-c", "import sys, json; print(sys.version_info[:3], sys.prefix)").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "(3, 12, 1) "+filepath.Dir(filepath.Dir(python))) {
		t.Errorf("the installed interpreter: %v\n%s", err, out)
	}
	if len(progress) == 0 {
		t.Errorf("no progress reported")
	}
	found := downloadedInterpreters(c.Dir(), nil)
	if len(found) != 1 || found[0] != entry {
		t.Errorf("downloadedInterpreters = %+v, want the entry", found)
	}

	// Installed once: a second Install neither reads the base nor
	// unpacks again.
	os.RemoveAll(base)
	again, err := d.Install(context.Background(), entry)
	if err != nil || again != python {
		t.Errorf("second Install: %s, %v", again, err)
	}

	// An archive that is not the pinned one is refused before a byte of
	// it is unpacked.
	c2, _ := cache.Open(t.TempDir())
	other := entry
	other.SHA256 = strings.Repeat("0", 64)
	base2 := t.TempDir()
	os.MkdirAll(filepath.Join(base2, entry.Release), 0o755)
	testenv.PyenvArchive(t, "3.12.1", filepath.Join(base2, entry.Release, entry.File))
	_, err = (&Downloader{Base: "file://" + base2, Cache: c2}).Install(context.Background(), other)
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") || !strings.Contains(err.Error(), "pinned by its sha256") {
		t.Errorf("a different archive: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(c2.Dir(), "trees")); len(ents) != 0 {
		t.Errorf("a refused archive left trees: %v", ents)
	}
}

// TestUntarRefusesEscapes: entries that would land outside the tree.
func TestUntarRefusesEscapes(t *testing.T) {
	t.Parallel()
	for name, hdr := range map[string]tar.Header{
		"absolute":       {Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		"dotdot":         {Name: "python/../../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		"symlink out":    {Name: "python/link", Typeflag: tar.TypeSymlink, Linkname: "../../etc"},
		"absolute link":  {Name: "python/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		"hard link out":  {Name: "python/hard", Typeflag: tar.TypeLink, Linkname: "../outside"},
		"device":         {Name: "python/dev", Typeflag: tar.TypeChar, Mode: 0o644},
		"backslash path": {Name: `python\..\evil`, Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		h := hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Close()
		zw.Close()
		file := filepath.Join(t.TempDir(), "a.tar.gz")
		os.WriteFile(file, buf.Bytes(), 0o644)
		dir := t.TempDir()
		err := untarGz(file, dir, "a.tar.gz")
		if err == nil || !strings.Contains(err.Error(), "a.tar.gz: entry") {
			t.Errorf("%s: %v, want a refusal naming the entry", name, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
			t.Errorf("%s: wrote outside the tree", name)
		}
	}
	// A relative link inside the tree is fine (python3 -> python3.12).
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "python/bin/python3.12", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2})
	tw.Write([]byte("hi"))
	tw.WriteHeader(&tar.Header{Name: "python/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python3.12"})
	tw.Close()
	zw.Close()
	file := filepath.Join(t.TempDir(), "ok.tar.gz")
	os.WriteFile(file, buf.Bytes(), 0o644)
	dir := t.TempDir()
	if err := untarGz(file, dir, "ok.tar.gz"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "python/bin/python3")); err != nil || string(b) != "hi" {
		t.Errorf("through the link: %q, %v", b, err)
	}
}
