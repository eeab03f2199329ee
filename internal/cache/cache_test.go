package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func openTemp(t *testing.T) *Cache {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tmpEntries lists what is left in the cache's tmp directory.
func tmpEntries(t *testing.T, c *Cache) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.Dir(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// corrupt overwrites the file at p (read-only blobs included).
func corrupt(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDigest(t *testing.T) {
	d := Sum([]byte("abc"))
	if want := sha256.Sum256([]byte("abc")); d != Digest(want) {
		t.Fatalf("Sum = %s", d)
	}
	if got := d.String(); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("String() = %s", got)
	}
	p, err := ParseDigest(d.String())
	if err != nil || p != d {
		t.Errorf("ParseDigest(String()) = %s, %v", p, err)
	}
	if d.IsZero() || !(Digest{}).IsZero() {
		t.Error("IsZero is wrong")
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64), d.String()[:63], d.String() + "0"} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) succeeded", bad)
		}
	}
	text, err := d.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var back Digest
	if err := back.UnmarshalText(text); err != nil || back != d {
		t.Errorf("UnmarshalText(MarshalText()) = %s, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText of garbage succeeded")
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("PIPE_CACHE_DIR", "rel/dir")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	d, err := DefaultDir()
	if err != nil || !filepath.IsAbs(d) || !strings.HasSuffix(d, filepath.Join("rel", "dir")) {
		t.Errorf("DefaultDir with PIPE_CACHE_DIR = %q, %v; want it made absolute", d, err)
	}
	t.Setenv("PIPE_CACHE_DIR", "")
	if d, err := DefaultDir(); err != nil || d != filepath.Join("/xdg", "pipe") {
		t.Errorf("DefaultDir with XDG_CACHE_HOME = %q, %v", d, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/someone")
	if d, err := DefaultDir(); err != nil || d != filepath.Join("/home/someone", ".cache", "pipe") {
		t.Errorf("DefaultDir with HOME = %q, %v", d, err)
	}
}

func TestPutBytesReadBlob(t *testing.T) {
	c := openTemp(t)
	for _, content := range [][]byte{[]byte("hello, cache"), {}, bytes.Repeat([]byte{0, 1, 2, 255}, 100000)} {
		d, err := c.PutBytes(content)
		if err != nil {
			t.Fatal(err)
		}
		if d != Sum(content) {
			t.Errorf("PutBytes digest = %s, want %s", d, Sum(content))
		}
		if !c.Has(d) {
			t.Errorf("Has(%s) = false after PutBytes", d)
		}
		if c.BlobPath(d) != filepath.Join(c.Dir(), "cas", d.String()[:2], d.String()) {
			t.Errorf("BlobPath = %s", c.BlobPath(d))
		}
		got, err := c.ReadBlob(d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("ReadBlob returned %d bytes, want %d", len(got), len(content))
		}
		// Storing it again is a no-op that still succeeds.
		if d2, err := c.PutBytes(content); err != nil || d2 != d {
			t.Errorf("second PutBytes = %s, %v", d2, err)
		}
		if fi, err := os.Stat(c.BlobPath(d)); err != nil || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("blob should be read-only: %v, %v", fi.Mode(), err)
		}
	}
	if left := tmpEntries(t, c); len(left) != 0 {
		t.Errorf("tmp/ holds %v after puts", left)
	}

	missing := Sum([]byte("never stored"))
	if c.Has(missing) {
		t.Error("Has of a missing blob")
	}
	if _, err := c.ReadBlob(missing); !errors.Is(err, ErrMiss) {
		t.Errorf("ReadBlob of a missing blob: err = %v, want ErrMiss", err)
	}
}

func TestPutFileAndReader(t *testing.T) {
	c := openTemp(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("file body"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, n, err := c.PutFile(src)
	if err != nil || d != Sum([]byte("file body")) || n != 9 {
		t.Fatalf("PutFile = %s, %d, %v", d, n, err)
	}
	if _, _, err := c.PutFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("PutFile of a missing file succeeded")
	}
	d, n, err = c.PutReader(strings.NewReader("reader body"))
	if err != nil || d != Sum([]byte("reader body")) || n != 11 {
		t.Fatalf("PutReader = %s, %d, %v", d, n, err)
	}
}

func TestReadBlobCorrupt(t *testing.T) {
	c := openTemp(t)
	d, err := c.PutBytes([]byte("precious"))
	if err != nil {
		t.Fatal(err)
	}
	corrupt(t, c.BlobPath(d), []byte("precioUs"))
	if _, err := c.ReadBlob(d); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadBlob of a corrupt blob: err = %v, want ErrCorrupt", err)
	}
	if c.Has(d) {
		t.Error("corrupt blob was not deleted by ReadBlob")
	}
}

func TestCopyOut(t *testing.T) {
	c := openTemp(t)
	out := t.TempDir()
	d, err := c.PutBytes([]byte("#!/bin/sh\necho hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		exec bool
		mode os.FileMode
	}{{"plain/sub/file", false, 0o644}, {"bin/tool", true, 0o755}} {
		dst := filepath.Join(out, tt.name)
		if err := c.CopyOut(d, dst, tt.exec); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || string(b) != "#!/bin/sh\necho hi\n" {
			t.Errorf("CopyOut wrote %q, %v", b, err)
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != tt.mode {
			t.Errorf("CopyOut(%s, executable=%v) mode = %v, want %v", tt.name, tt.exec, fi.Mode().Perm(), tt.mode)
		}
	}
	// Overwrites an existing file atomically.
	dst := filepath.Join(out, "plain/sub/file")
	d2, _ := c.PutBytes([]byte("v2"))
	if err := c.CopyOut(d2, dst, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "v2" {
		t.Errorf("overwritten file holds %q", b)
	}

	if err := c.CopyOut(Sum([]byte("absent")), filepath.Join(out, "absent"), false); !errors.Is(err, ErrMiss) {
		t.Errorf("CopyOut of a missing blob: err = %v, want ErrMiss", err)
	}
	if _, err := os.Stat(filepath.Join(out, "absent")); !os.IsNotExist(err) {
		t.Error("CopyOut of a missing blob created the destination")
	}
}

func TestCopyOutCorrupt(t *testing.T) {
	c := openTemp(t)
	out := t.TempDir()
	content := []byte("the real content")
	for name, bad := range map[string][]byte{
		"edited":    []byte("the real cOntent"),
		"truncated": content[:5],
		"empty":     {},
		"extended":  append(append([]byte(nil), content...), '\n'),
	} {
		d, err := c.PutBytes(content)
		if err != nil {
			t.Fatal(err)
		}
		corrupt(t, c.BlobPath(d), bad)
		dst := filepath.Join(out, name)
		err = c.CopyOut(d, dst, false)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: CopyOut err = %v, want ErrCorrupt", name, err)
		}
		if c.Has(d) {
			t.Errorf("%s: corrupt blob still in the cache", name)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("%s: CopyOut of a corrupt blob created the destination", name)
		}
		// After the miss, the blob can be stored again.
		if _, err := c.PutBytes(content); err != nil || !c.Has(d) {
			t.Errorf("%s: re-put after corruption: %v", name, err)
		}
		if err := c.CopyOut(d, dst, false); err != nil {
			t.Errorf("%s: CopyOut after re-put: %v", name, err)
		}
		if err := os.Remove(dst); err != nil {
			t.Fatal(err)
		}
	}
	// No temp files are left beside the destinations.
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		t.Errorf("left in the output directory: %s", e.Name())
	}
}

func sampleResult() *ActionResult {
	return &ActionResult{
		Outputs: []OutputFile{
			{Path: "dist/a/out.txt", Digest: Sum([]byte("out")), Size: 3},
			{Path: "dist/a/tool", Digest: Sum([]byte("tool")), Size: 4, Executable: true},
			{Path: "dist/a/dir/x", Digest: Sum([]byte("x")), Size: 1},
		},
		Dirs:       []string{"dist/a/dir"},
		Symlinks:   map[string]string{"dist/a/dir/link": "x"},
		DurationMs: 1234,
	}
}

func TestActionCacheRoundTrip(t *testing.T) {
	c := openTemp(t)
	key := ActionKey(Sum([]byte("action key")))
	if _, err := c.GetAC(key); !errors.Is(err, ErrMiss) {
		t.Fatalf("GetAC before PutAC: err = %v, want ErrMiss", err)
	}
	want := sampleResult()
	if err := c.PutAC(key, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetAC(key)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetAC = %+v, want %+v", got, want)
	}
	// The same outputs again (another duration) replace it quietly.
	same := *want
	same.DurationMs++
	if err := c.PutAC(key, &same); err != nil {
		t.Fatalf("PutAC of an equal result: %v", err)
	}
	// Other outputs replace it too, but say so: the action is not
	// deterministic.
	want2 := &ActionResult{Outputs: []OutputFile{{Path: "p", Digest: Sum(nil)}}, DurationMs: 1}
	err = c.PutAC(key, want2)
	var rep *ReplacedError
	if !errors.As(err, &rep) || rep.Key != key || rep.Diff == nil {
		t.Fatalf("PutAC of a different result: err = %v, want a *ReplacedError", err)
	}
	if got, err := c.GetAC(key); err != nil || !reflect.DeepEqual(got, want2) {
		t.Errorf("GetAC after replacing = %+v, %v; want %+v", got, err, want2)
	}
	if _, err := c.GetAC(ActionKey(Sum([]byte("other key")))); !errors.Is(err, ErrMiss) {
		t.Errorf("GetAC of another key: err = %v, want ErrMiss", err)
	}
	if left := tmpEntries(t, c); len(left) != 0 {
		t.Errorf("tmp/ holds %v after PutAC", left)
	}
}

func TestActionCacheCorrupt(t *testing.T) {
	c := openTemp(t)
	key := ActionKey(Sum([]byte("k")))
	if err := c.PutAC(key, sampleResult()); err != nil {
		t.Fatal(err)
	}
	acPath := filepath.Join(c.Dir(), "ac", key.String()[:2], key.String())
	good, err := os.ReadFile(acPath)
	if err != nil {
		t.Fatalf("AC entry not where expected: %v", err)
	}
	head, body, _ := bytes.Cut(good, []byte("\n"))
	rehead := func(b []byte) []byte {
		return append([]byte(acMagic+Sum(b).String()+"\n"), b...)
	}
	cases := map[string][]byte{
		"empty":              {},
		"truncated":          good[:len(good)-1],
		"half":               good[:len(good)/2],
		"header only":        append(append([]byte(nil), head...), '\n'),
		"no newline":         head,
		"body edited":        bytes.Replace(good, []byte("1234"), []byte("1235"), 1),
		"body appended":      append(append([]byte(nil), good...), ' '),
		"digest edited":      append([]byte(acMagic+strings.Repeat("0", 64)+"\n"), body...),
		"bad digest":         append([]byte(acMagic+"xyz\n"), body...),
		"wrong magic":        append([]byte("pipe-ac-0 "+Sum(body).String()+"\n"), body...),
		"valid sum, no json": rehead([]byte("not json")),
		"valid sum, wrong":   rehead([]byte(`{"outputs": "nope"}`)),
	}
	for i := range good {
		b := append([]byte(nil), good...)
		b[i] ^= 0x01
		cases[fmt.Sprintf("flip byte %d", i)] = b
	}
	for name, b := range cases {
		corrupt(t, acPath, b)
		r, err := c.GetAC(key)
		if !errors.Is(err, ErrMiss) {
			t.Errorf("%s: GetAC = %+v, %v; want ErrMiss", name, r, err)
			continue
		}
		if _, err := os.Stat(acPath); !os.IsNotExist(err) {
			t.Errorf("%s: corrupt AC entry was not removed", name)
		}
	}
	// A later PutAC heals the entry.
	if err := c.PutAC(key, sampleResult()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAC(key); err != nil {
		t.Errorf("GetAC after re-put: %v", err)
	}
}

func TestConcurrentPutBytes(t *testing.T) {
	c := openTemp(t)
	content := bytes.Repeat([]byte("same content "), 50000)
	const n = 8
	var wg sync.WaitGroup
	digests := make([]Digest, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			digests[i], errs[i] = c.PutBytes(content)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("goroutine %d: PutBytes: %v", i, errs[i])
		}
		if digests[i] != Sum(content) {
			t.Errorf("goroutine %d: digest %s, want %s", i, digests[i], Sum(content))
		}
	}
	b, err := c.ReadBlob(Sum(content))
	if err != nil || !bytes.Equal(b, content) {
		t.Errorf("ReadBlob after concurrent puts: %d bytes, %v", len(b), err)
	}
	if left := tmpEntries(t, c); len(left) != 0 {
		t.Errorf("tmp/ holds %v after concurrent puts", left)
	}
}

func TestConcurrentPutAC(t *testing.T) {
	c := openTemp(t)
	key := ActionKey(Sum([]byte("shared action")))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.PutAC(key, sampleResult()); err != nil {
				t.Error(err)
			}
			if _, err := c.GetAC(key); err != nil {
				t.Errorf("GetAC while others write: %v", err)
			}
		}()
	}
	wg.Wait()
}

func TestClean(t *testing.T) {
	c := openTemp(t)
	d, err := c.PutBytes([]byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	key := ActionKey(Sum([]byte("key")))
	if err := c.PutAC(key, sampleResult()); err != nil {
		t.Fatal(err)
	}

	// A file pipe did not write: refuse, and touch nothing.
	foreign := filepath.Join(c.Dir(), "notes.txt")
	if err := os.WriteFile(foreign, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.Clean()
	if err == nil || !strings.Contains(err.Error(), "notes.txt") || !strings.Contains(err.Error(), "did not write") {
		t.Fatalf("Clean with a foreign file: err = %v", err)
	}
	if !c.Has(d) {
		t.Error("Clean deleted blobs although it refused")
	}
	if _, err := c.GetAC(key); err != nil {
		t.Errorf("Clean deleted AC entries although it refused: %v", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Error("Clean deleted the foreign file")
	}

	// A foreign directory is refused too.
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(c.Dir(), "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(); err == nil {
		t.Error("Clean of a directory holding src/ succeeded")
	}
	if err := os.Remove(filepath.Join(c.Dir(), "src")); err != nil {
		t.Fatal(err)
	}

	// Dot files (e.g. a lock or CACHEDIR marker) are tolerated.
	if err := os.WriteFile(filepath.Join(c.Dir(), ".lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	for _, sub := range []string{"cas", "ac", "tmp"} {
		if _, err := os.Stat(filepath.Join(c.Dir(), sub)); !os.IsNotExist(err) {
			t.Errorf("%s/ survived Clean", sub)
		}
	}
	if c.Has(d) {
		t.Error("blob survived Clean")
	}
	// The cache keeps working after Clean.
	if d2, err := c.PutBytes([]byte("after clean")); err != nil || !c.Has(d2) {
		t.Errorf("PutBytes after Clean: %v", err)
	}
	if err := c.PutAC(key, sampleResult()); err != nil {
		t.Errorf("PutAC after Clean: %v", err)
	}

	// A directory that does not exist cannot be cleaned.
	missing := &Cache{dir: filepath.Join(t.TempDir(), "nope")}
	if err := missing.Clean(); err == nil {
		t.Error("Clean of a missing directory succeeded")
	}
}

// TestCopyOutReusesItsBuffer: restoring a file allocates no copy buffer
// per file (a restore of a large workspace copies hundreds of thousands).
func TestCopyOutReusesItsBuffer(t *testing.T) {
	c := openTemp(t)
	d := mustPut(t, c, strings.Repeat("restored\n", 1000))
	dir := t.TempDir()
	dst := filepath.Join(dir, "out.txt")
	if err := c.CopyOut(d, dst, false); err != nil { // the pool's first buffer
		t.Fatal(err)
	}
	const n = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if err := c.CopyOut(d, dst, false); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Errorf("CopyOut allocates %d bytes per file: a copy buffer each time", per)
	}
}
