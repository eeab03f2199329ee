package engine

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
)

// pastRacyWindow waits until files written before the call are old enough
// for their digests to be trusted once hashed.
func pastRacyWindow() { time.Sleep(time.Duration(RacyWindow) + 50*time.Millisecond) }

func dgWrite(t *testing.T, p, content string) os.FileInfo {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func dgStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func dgSum(s string) cache.Digest { return sha256.Sum256([]byte(s)) }

func TestFileDigestsSaveReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	b := filepath.Join(dir, "b.txt")
	dgWrite(t, a, "hello")
	dgWrite(t, b, "world")
	pastRacyWindow()

	dbPath := filepath.Join(dir, "state", "digests")
	fd := LoadFileDigests(dbPath)
	if _, ok := fd.Lookup("a.txt", dgStat(t, a)); ok {
		t.Fatal("Lookup on an empty cache returned a digest")
	}
	for rel, content := range map[string]string{"a.txt": "hello", "b.txt": "world"} {
		d, fi, err := fd.Digest(rel, filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if d != dgSum(content) {
			t.Errorf("Digest(%s) = %s, want %s", rel, d, dgSum(content))
		}
		if fi == nil || fi.Size() != int64(len(content)) {
			t.Errorf("Digest(%s) FileInfo = %v", rel, fi)
		}
		if got, ok := fd.Lookup(rel, fi); !ok || got != d {
			t.Errorf("Lookup(%s) after Digest = %s, %v; want %s, true", rel, got, ok, d)
		}
	}
	if err := fd.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("Save did not write the file: %v", err)
	}

	re := LoadFileDigests(dbPath)
	if got, ok := re.Lookup("a.txt", dgStat(t, a)); !ok || got != dgSum("hello") {
		t.Errorf("reloaded Lookup(a.txt) = %s, %v; want %s, true", got, ok, dgSum("hello"))
	}
	if got, ok := re.Lookup("b.txt", dgStat(t, b)); !ok || got != dgSum("world") {
		t.Errorf("reloaded Lookup(b.txt) = %s, %v; want %s, true", got, ok, dgSum("world"))
	}
	if _, ok := re.Lookup("c.txt", dgStat(t, b)); ok {
		t.Error("reloaded Lookup of an unknown name returned a digest")
	}

	// An unchanged cache is not rewritten.
	if err := os.Remove(dbPath); err != nil {
		t.Fatal(err)
	}
	if err := re.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dbPath); !os.IsNotExist(err) {
		t.Errorf("Save of an unchanged cache wrote the file (stat err = %v)", err)
	}

	// Forget drops an entry and marks the cache dirty.
	re.Forget("a.txt")
	re.Forget("never-there")
	if _, ok := re.Lookup("a.txt", dgStat(t, a)); ok {
		t.Error("Lookup after Forget returned a digest")
	}
	if err := re.Save(); err != nil {
		t.Fatal(err)
	}
	re2 := LoadFileDigests(dbPath)
	if _, ok := re2.Lookup("a.txt", dgStat(t, a)); ok {
		t.Error("forgotten entry came back after Save and reload")
	}
	if _, ok := re2.Lookup("b.txt", dgStat(t, b)); !ok {
		t.Error("b.txt lost after Forget(a.txt), Save and reload")
	}
}

func TestFileDigestsChangedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	dgWrite(t, p, "one")
	pastRacyWindow()
	fd := LoadFileDigests(filepath.Join(dir, "digests"))
	if d, _, err := fd.Digest("f", p); err != nil || d != dgSum("one") {
		t.Fatalf("Digest = %s, %v", d, err)
	}
	old := dgStat(t, p)
	if _, ok := fd.Lookup("f", old); !ok {
		t.Fatal("fresh digest of an old file is not trusted")
	}

	// New content and size.
	fi := dgWrite(t, p, "a longer second version")
	if _, ok := fd.Lookup("f", fi); ok {
		t.Error("Lookup trusted the old digest of a file whose content and size changed")
	}
	if d, _, err := fd.Digest("f", p); err != nil || d != dgSum("a longer second version") {
		t.Errorf("Digest after change = %s, %v; want %s", d, err, dgSum("a longer second version"))
	}

	// Same size, different content, mtime put back: the ctime still moves.
	fi = dgWrite(t, p, "A longer second version")
	if err := os.Chtimes(p, old.ModTime(), old.ModTime()); err != nil {
		t.Fatal(err)
	}
	fi = dgStat(t, p)
	if _, ok := fd.Lookup("f", fi); ok {
		t.Error("Lookup trusted the old digest of a same-size rewrite with its mtime restored")
	}
	if d, _, err := fd.Digest("f", p); err != nil || d != dgSum("A longer second version") {
		t.Errorf("Digest after same-size rewrite = %s, %v; want %s", d, err, dgSum("A longer second version"))
	}
}

func TestFileDigestsRacy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	fd := LoadFileDigests(filepath.Join(dir, "digests"))

	// Written and hashed at once: the digest is right but not trusted yet.
	dgWrite(t, p, "fresh")
	d, fi, err := fd.Digest("f", p)
	if err != nil || d != dgSum("fresh") {
		t.Fatalf("Digest = %s, %v", d, err)
	}
	if _, ok := fd.Lookup("f", fi); ok {
		t.Fatal("Lookup trusted a digest taken within the racy window of the write")
	}

	// A wrong digest recorded for the racy stat is never served: the next
	// Digest hashes the file again.
	bogus := dgSum("bogus")
	fd.Record("f", fi, bogus)
	if got, ok := fd.Lookup("f", fi); ok {
		t.Fatalf("Lookup returned %s for a racy entry", got)
	}
	if d, _, err := fd.Digest("f", p); err != nil || d != dgSum("fresh") {
		t.Fatalf("Digest of a racy entry = %s, %v; want it re-hashed to %s", d, err, dgSum("fresh"))
	}

	// Once the file is older than the window, a digest recorded now is
	// trusted as is (which is what proves Digest above re-hashed).
	pastRacyWindow()
	fd.Record("f", fi, bogus)
	if got, ok := fd.Lookup("f", fi); !ok || got != bogus {
		t.Fatalf("Lookup of a settled entry = %s, %v; want the recorded digest", got, ok)
	}
	if d, _, err := fd.Digest("f", p); err != nil || d != bogus {
		t.Fatalf("Digest of a settled entry = %s, %v; want the cached digest without hashing", d, err)
	}
	// Re-hashing after the window makes the real digest trusted.
	fd.Forget("f")
	if d, _, err := fd.Digest("f", p); err != nil || d != dgSum("fresh") {
		t.Fatalf("Digest = %s, %v", d, err)
	}
	if got, ok := fd.Lookup("f", dgStat(t, p)); !ok || got != dgSum("fresh") {
		t.Errorf("Lookup after hashing a settled file = %s, %v", got, ok)
	}

	// A racy entry stays untrusted across Save and reload.
	q := filepath.Join(dir, "g")
	dgWrite(t, q, "racy")
	if _, _, err := fd.Digest("g", q); err != nil {
		t.Fatal(err)
	}
	if err := fd.Save(); err != nil {
		t.Fatal(err)
	}
	re := LoadFileDigests(filepath.Join(dir, "digests"))
	if _, ok := re.Lookup("g", dgStat(t, q)); ok {
		t.Error("reloaded racy entry is trusted")
	}
	if _, ok := re.Lookup("f", dgStat(t, p)); !ok {
		t.Error("reloaded settled entry is not trusted")
	}
}

func TestFileDigestsCorruptFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var files []string
	for _, n := range []string{"a", "b", "c"} {
		dgWrite(t, filepath.Join(dir, n), "content of "+n)
		files = append(files, n)
	}
	pastRacyWindow()
	dbPath := filepath.Join(dir, "digests")
	fd := LoadFileDigests(dbPath)
	for _, n := range files {
		if _, _, err := fd.Digest(n, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fd.Save(); err != nil {
		t.Fatal(err)
	}
	fd.Close()
	good, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	found := func(re *FileDigests) int {
		t.Helper()
		n := 0
		for _, f := range files {
			d, ok := re.Lookup(f, dgStat(t, filepath.Join(dir, f)))
			if ok && d != dgSum("content of "+f) {
				t.Fatalf("%s: a damaged file gave digest %s", f, d)
			}
			if ok {
				n++
			}
		}
		return n
	}
	if re := LoadFileDigests(dbPath); found(re) != len(files) {
		t.Fatalf("reloaded %d entries, want %d", found(re), len(files))
	}

	load := func(b []byte) *FileDigests {
		t.Helper()
		if err := os.WriteFile(dbPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return LoadFileDigests(dbPath)
	}
	// Every single flipped byte (header, index or entries) loses entries,
	// never gives a wrong digest (found checks).
	for i := range good {
		b := append([]byte(nil), good...)
		b[i] ^= 0x01
		re := load(b)
		found(re)
		re.Close()
	}
	for name, b := range map[string][]byte{
		"empty":       {},
		"truncated":   good[:len(good)-1],
		"half":        good[:len(good)/2],
		"wrong magic": append([]byte("pipe-digests-2\n"), good[len("pipe-digests-2\n"):]...),
		"garbage":     []byte("this is not a digests file at all, but it is long enough to be read"),
		"zeroed":      make([]byte, len(good)),
	} {
		re := load(b)
		n := found(re)
		if n != 0 {
			t.Errorf("%s: found %d entries, want none", name, n)
		}
		re.Close()
	}

	// A cache loaded from a corrupt file still works and rewrites it.
	re := load([]byte("junk"))
	if d, _, err := re.Digest("a", filepath.Join(dir, "a")); err != nil || d != dgSum("content of a") {
		t.Fatalf("Digest = %s, %v", d, err)
	}
	if err := re.Save(); err != nil {
		t.Fatal(err)
	}
	if !re.Stats().Compacted {
		t.Error("a corrupt file was appended to, not rewritten")
	}
	if re2 := LoadFileDigests(dbPath); found(re2) != 1 || re2.Stats().Entries != 1 {
		t.Errorf("after rewriting a corrupt file: %d entries, want 1", found(re2))
	}

	// A missing file is an empty cache too.
	if fd := LoadFileDigests(filepath.Join(dir, "missing", "digests")); fd.Stats().Entries != 0 {
		t.Errorf("missing file loaded %d entries", fd.Stats().Entries)
	}
}

// A build that stats many files and hashes one reads the entries it looks
// up and appends only the one it hashed: the rest of the file is neither
// decoded nor written.
func TestFileDigestsTouchOnlyWhatIsUsed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 0; i < 200; i++ {
		dgWrite(t, filepath.Join(dir, fmt.Sprint(i)), fmt.Sprint("content ", i))
	}
	pastRacyWindow()
	dbPath := filepath.Join(dir, "digests")
	fd := LoadFileDigests(dbPath)
	for i := 0; i < 200; i++ {
		if _, _, err := fd.Digest(fmt.Sprint(i), filepath.Join(dir, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := fd.Save(); err != nil {
		t.Fatal(err)
	}
	fd.Close()
	dgWrite(t, filepath.Join(dir, "7"), "edited")
	pastRacyWindow()
	re := LoadFileDigests(dbPath)
	for _, i := range []int{3, 7, 9} {
		if _, _, err := re.Digest(fmt.Sprint(i), filepath.Join(dir, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := re.Save(); err != nil {
		t.Fatal(err)
	}
	if st := re.Stats(); st.Lookups != 3 || st.Appended != 1 || st.Compacted {
		t.Fatalf("stats %+v: want 3 lookups and 1 entry appended", st)
	}
	if d, ok := LoadFileDigests(dbPath).Lookup("7", dgStat(t, filepath.Join(dir, "7"))); !ok || d != dgSum("edited") {
		t.Fatalf("edited file after reload: %s, %t", d, ok)
	}
}

func TestFileDigestsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fd := LoadFileDigests(filepath.Join(dir, "digests"))
	if _, _, err := fd.Digest("nope", filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Errorf("Digest of a missing file: err = %v, want not-exist", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fd.Digest("d", filepath.Join(dir, "d")); err == nil {
		t.Error("Digest of a directory succeeded")
	}
	if err := fd.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "digests")); !os.IsNotExist(err) {
		t.Error("Save after only failed lookups wrote a file")
	}
}

// Hashing a file allocates no buffer of its own: a build restoring 10,000
// actions hashes 100,000 files, and a 64 KB buffer each (plus io.Copy's
// 32 KB) was most of its peak memory. Not parallel: it reads the process's
// allocation counter.
func TestFileDigestsHashWithoutBufferPerFile(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	for i := range n {
		dgWrite(t, filepath.Join(dir, fmt.Sprint(i)), fmt.Sprint("content ", i))
	}
	fd := LoadFileDigests(filepath.Join(dir, "digests"))
	defer fd.Close()
	// One file first, so the pool holds a buffer.
	if _, _, err := fd.Digest("0", filepath.Join(dir, "0")); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i < n; i++ {
		if _, _, err := fd.Digest(fmt.Sprint(i), filepath.Join(dir, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / (n - 1); per > 16<<10 {
		t.Fatalf("hashing a small file allocated %d bytes, want under 16 KB", per)
	}
}
