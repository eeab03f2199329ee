package ziparchive

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// zipTreeFiles is the content of the trees the reproducibility test zips:
// path → (body, executable). It holds a big compressible file and a big
// incompressible one, to take the two-pass path with both methods.
func zipTreeFiles(t *testing.T) map[string]struct {
	body []byte
	exec bool
} {
	random := make([]byte, zipBig+1000)
	rand.Read(random)
	files := map[string]struct {
		body []byte
		exec bool
	}{
		"run.sh":                        {[]byte("#!/bin/sh\nexec python -m uvicorn app.main:app\n"), true},
		"app/__init__.py":               {nil, false},
		"app/main.py":                   {[]byte(strings.Repeat("print('hello')\n", 100)), false},
		"app.py":                        {[]byte("x = 1\n"), false}, // sorts before app/ in byte order
		"app-1.0.dist-info/METADATA":    {[]byte("Name: app\n"), false},
		"lib/_ext.so":                   {bytes.Repeat([]byte{0x7f, 'E', 'L', 'F', 1, 2, 3}, 1000), true},
		"lib/big.txt":                   {bytes.Repeat([]byte("all work and no play\n"), zipBig/10), false},
		"lib/random.bin":                {random, false},
		"lib/small-random.bin":          {random[:300], false},
		"données/é.txt":                 {[]byte("utf-8 name\n"), false},
		"deep/a/b/c/d/e/f/g/h/i/j/k.py": {[]byte("k\n"), false},
	}
	return files
}

// makeTree writes files under dir in the given order with the given modes
// and mtime, under the given umask.
func makeTree(t *testing.T, dir string, files map[string]struct {
	body []byte
	exec bool
}, reverse bool, mask int, mtime time.Time, execMode, plainMode fs.FileMode) {
	old := umask(mask)
	defer umask(old)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if reverse {
		slices.Reverse(names)
	}
	for _, n := range names {
		f := files[n]
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		mode := plainMode
		if f.exec {
			mode = execMode
		}
		if err := os.WriteFile(p, f.body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	// An empty directory: not represented in the zip.
	os.MkdirAll(filepath.Join(dir, "empty", "dir"), 0o755)
}

func TestWriteReproducible(t *testing.T) {
	files := zipTreeFiles(t)
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	makeTree(t, a, files, false, 0o022, time.Now(), 0o755, 0o644)
	makeTree(t, b, files, true, 0o077, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), 0o700, 0o600)

	var za, zb bytes.Buffer
	na, err := Write(&za, a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := Write(&zb, b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(za.Bytes(), zb.Bytes()) {
		t.Fatalf("zips differ: %d and %d bytes", za.Len(), zb.Len())
	}
	var total int64
	var names []string
	for n, f := range files {
		total += int64(len(f.body))
		names = append(names, n)
	}
	sort.Strings(names)
	if na != total || nb != total {
		t.Errorf("uncompressed %d, %d; want %d", na, nb, total)
	}
	// And again from the same tree: same bytes.
	var zc bytes.Buffer
	if _, err := Write(&zc, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(za.Bytes(), zc.Bytes()) {
		t.Fatal("two runs on one tree differ")
	}

	zr, err := zip.NewReader(bytes.NewReader(za.Bytes()), int64(za.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	methods := map[uint16]int{}
	for _, f := range zr.File {
		got = append(got, f.Name)
		want := files[f.Name]
		if len(f.Extra) != 0 {
			t.Errorf("%s: extra fields %x", f.Name, f.Extra)
		}
		if f.Flags&0x8 != 0 {
			t.Errorf("%s: data descriptor", f.Name)
		}
		if f.ModifiedDate != 0x21 || f.ModifiedTime != 0 || !f.Modified.Equal(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: time %v (%#x %#x)", f.Name, f.Modified, f.ModifiedDate, f.ModifiedTime)
		}
		wantMode := fs.FileMode(0o644)
		if want.exec {
			wantMode = 0o755
		}
		if f.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", f.Name, f.Mode(), wantMode)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if !bytes.Equal(body, want.body) {
			t.Errorf("%s: content differs", f.Name)
		}
		methods[f.Method]++
	}
	if !slices.Equal(got, names) {
		t.Errorf("entries\n%q\nwant (sorted, files only)\n%q", got, names)
	}
	if methods[zip.Store] == 0 || methods[zip.Deflate] == 0 {
		t.Errorf("methods %v: want incompressible files stored and the rest deflated", methods)
	}
	if f := zr.File[slices.Index(got, "lib/random.bin")]; f.Method != zip.Store {
		t.Errorf("random.bin: method %d", f.Method)
	}
	if f := zr.File[slices.Index(got, "lib/big.txt")]; f.Method != zip.Deflate || f.CompressedSize64*10 > f.UncompressedSize64 {
		t.Errorf("big.txt: method %d, %d → %d bytes", f.Method, f.UncompressedSize64, f.CompressedSize64)
	}

	// Python's zipfile reads the same entries, modes and dates.
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("SKIPPED: python3 not found; zipfile cross-check not run")
		return
	}
	zpath := filepath.Join(tmp, "a.zip")
	os.WriteFile(zpath, za.Bytes(), 0o644)
	out, err := exec.Command(py, "-c", `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
print(json.dumps({"bad": bad, "entries": [[i.filename, oct(i.external_attr >> 16), list(i.date_time), i.create_system] for i in z.infolist()]}))
`, zpath).CombinedOutput()
	if err != nil {
		t.Fatalf("python zipfile: %v\n%s", err, out)
	}
	var res struct {
		Bad     *string
		Entries [][]any
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Bad != nil {
		t.Errorf("python zipfile: bad entry %s", *res.Bad)
	}
	if len(res.Entries) != len(names) {
		t.Fatalf("python sees %d entries, want %d", len(res.Entries), len(names))
	}
	for i, e := range res.Entries {
		want := []any{names[i], "0o100644", []any{1980.0, 1.0, 1.0, 0.0, 0.0, 0.0}, 3.0}
		if files[names[i]].exec {
			want[1] = "0o100755"
		}
		if fmt.Sprint(e) != fmt.Sprint(want) {
			t.Errorf("python sees %v, want %v", e, want)
		}
	}
}

func TestWriteRefusesLinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "a.py"), nil, 0o644)
	if err := os.Symlink("a.py", filepath.Join(dir, "pkg", "link.py")); err != nil {
		t.Fatal(err)
	}
	_, err := Write(io.Discard, dir)
	if err == nil || !strings.Contains(err.Error(), "pkg/link.py is a symbolic link") {
		t.Errorf("got %v", err)
	}
	os.Remove(filepath.Join(dir, "pkg", "link.py"))
	os.WriteFile(filepath.Join(dir, `pkg\evil.py`), nil, 0o644)
	if _, err := Write(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("got %v", err)
	}
	if _, err := Write(io.Discard, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("got %v", err)
	}
}

// TestWriteThroughLink: the tree itself may be reached through a link.
func TestWriteThroughLink(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "real")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "a.py"), []byte("a"), 0o644)
	os.Symlink(dir, filepath.Join(tmp, "link"))
	var buf bytes.Buffer
	if n, err := Write(&buf, filepath.Join(tmp, "link")); err != nil || n != 1 {
		t.Fatalf("%d, %v", n, err)
	}
}

// TestWriteLayers: a zip of a prebuilt dependency zip plus an app
// directory is byte-identical to the zip of the merged tree.
func TestWriteLayers(t *testing.T) {
	tmp := t.TempDir()
	deps, app, merged := filepath.Join(tmp, "deps"), filepath.Join(tmp, "app"), filepath.Join(tmp, "merged")
	files := zipTreeFiles(t)
	appFiles := map[string]struct {
		body []byte
		exec bool
	}{}
	depFiles := map[string]struct {
		body []byte
		exec bool
	}{}
	for n, f := range files {
		// Interleave the layers' paths in sort order.
		if strings.HasPrefix(n, "app") || n == "run.sh" || strings.HasPrefix(n, "deep") {
			appFiles[n] = f
		} else {
			depFiles[n] = f
		}
	}
	makeTree(t, deps, depFiles, false, 0o022, time.Now(), 0o755, 0o644)
	makeTree(t, app, appFiles, true, 0o022, time.Now(), 0o755, 0o644)
	makeTree(t, merged, files, false, 0o022, time.Now(), 0o755, 0o644)

	depZip := filepath.Join(tmp, "deps.zip")
	var buf bytes.Buffer
	if _, err := Write(&buf, deps); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(depZip, buf.Bytes(), 0o644)

	var whole, layered bytes.Buffer
	nw, err := Write(&whole, merged)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := WriteLayers(&layered, Layer{Dir: app}, Layer{Zip: depZip})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole.Bytes(), layered.Bytes()) || nw != nl {
		t.Fatalf("layered zip differs: %d/%d bytes, %d/%d uncompressed", layered.Len(), whole.Len(), nl, nw)
	}
	// A zip of zips works too.
	appZip := filepath.Join(tmp, "app.zip")
	buf.Reset()
	Write(&buf, app)
	os.WriteFile(appZip, buf.Bytes(), 0o644)
	layered.Reset()
	if _, err := WriteLayers(&layered, Layer{Zip: appZip}, Layer{Zip: depZip}); err != nil || !bytes.Equal(whole.Bytes(), layered.Bytes()) {
		t.Errorf("zip of zips differs (%v)", err)
	}

	// The same path in two layers.
	_, err = WriteLayers(io.Discard, Layer{Dir: merged}, Layer{Zip: depZip})
	if err == nil || !strings.Contains(err.Error(), "zip: données/é.txt is in two layers, "+merged+" and "+depZip) {
		t.Errorf("got %v", err)
	}
	// A zip Write did not write: refused.
	foreign := filepath.Join(tmp, "foreign.zip")
	buf.Reset()
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "x.py", Method: zip.Deflate, Modified: time.Now()})
	w.Write([]byte("x"))
	zw.Close()
	os.WriteFile(foreign, buf.Bytes(), 0o644)
	if _, err := WriteLayers(io.Discard, Layer{Zip: foreign}); err == nil || !strings.Contains(err.Error(), `zip layer `+foreign+`: entry "x.py" was not written by pipe's zip writer`) {
		t.Errorf("got %v", err)
	}
	if _, err := WriteLayers(io.Discard, Layer{Zip: foreign, Dir: app}); err == nil {
		t.Error("a layer with both fields accepted")
	}
}

func umask(m int) int { return syscall.Umask(m) }
