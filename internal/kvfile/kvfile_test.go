package kvfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

func val(i int) []byte { return []byte(fmt.Sprintf("value %d", i)) }

// fill writes n entries k0000… with a compaction, so they form the base.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	if err := os.WriteFile(path, Encode("t", keys, func(k string) []byte {
		var i int
		fmt.Sscanf(k, "k%05d", &i)
		return val(i)
	}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, f *File, key string, want []byte) {
	t.Helper()
	got, ok := f.Get(key)
	if want == nil {
		if ok {
			t.Fatalf("%s = %q, want absent", key, got)
		}
		return
	}
	if !ok || string(got) != string(want) {
		t.Fatalf("%s = %q (%t), want %q", key, got, ok, want)
	}
}

func TestAppendReadsAndWritesOnlyTouchedEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 5000)
	f := Open(path, "t")
	mustGet(t, f, "k00042", val(42))
	f.Put("k00042", []byte("new"))
	f.Put("zzz", []byte("added"))
	f.Delete("k00007")
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	if st.Lookups != 1 || st.Appended != 3 || st.Compacted {
		t.Fatalf("stats %+v: want 1 lookup, 3 appended, no compaction", st)
	}
	f.Close()

	g := Open(path, "t")
	defer g.Close()
	if st := g.Stats(); st.TailAtOpen != 3 {
		t.Fatalf("tail read at open: %d records, want 3", st.TailAtOpen)
	}
	mustGet(t, g, "k00042", []byte("new"))
	mustGet(t, g, "zzz", []byte("added"))
	mustGet(t, g, "k00007", nil)
	mustGet(t, g, "k04999", val(4999))
	mustGet(t, g, "k00000", val(0))
	mustGet(t, g, "k", nil)
	mustGet(t, g, "k05000", nil)
}

func TestCompactionKeepsEveryLiveEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 100)
	want := map[string][]byte{}
	for i := 0; i < 100; i++ {
		want[fmt.Sprintf("k%05d", i)] = val(i)
	}
	// Saves of a few entries each, until the tail is folded into the base.
	compacted := false
	for round := 0; !compacted; round++ {
		if round > 200 {
			t.Fatal("no compaction after 200 saves")
		}
		f := Open(path, "t")
		for j := 0; j < 10; j++ {
			k := fmt.Sprintf("r%03d-%d", round, j)
			f.Put(k, []byte(k))
			want[k] = []byte(k)
		}
		dk := fmt.Sprintf("k%05d", round%100)
		f.Delete(dk)
		delete(want, dk)
		if err := f.Save(); err != nil {
			t.Fatal(err)
		}
		compacted = f.Stats().Compacted
		f.Close()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := Decode(b, "t")
	if !ok {
		t.Fatal("compacted file does not decode cleanly")
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries after compaction, want %d", len(got), len(want))
	}
	for k, v := range want {
		if string(got[k]) != string(v) {
			t.Fatalf("%s = %q after compaction, want %q", k, got[k], v)
		}
	}
	f := Open(path, "t")
	defer f.Close()
	if st := f.Stats(); st.TailAtOpen != 0 || st.Entries != len(want) {
		t.Fatalf("after compaction: %+v", st)
	}
}

func TestDamagedFileLosesEntriesNeverChangesThem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 50)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Every single-byte change: each key reads as its value or as absent.
	for i := range good {
		d := append([]byte(nil), good...)
		d[i] ^= 0x41
		if err := os.WriteFile(path, d, 0o644); err != nil {
			t.Fatal(err)
		}
		f := Open(path, "t")
		for j := 0; j < 50; j++ {
			k := fmt.Sprintf("k%05d", j)
			if v, ok := f.Get(k); ok && string(v) != string(val(j)) {
				t.Fatalf("byte %d damaged: %s = %q, want %q or absent", i, k, v, val(j))
			}
		}
		f.Close()
	}
	// A damaged header: the file is empty, and the next Save rewrites it.
	d := append([]byte(nil), good...)
	d[len(magic)+6] ^= 1
	os.WriteFile(path, d, 0o644)
	f := Open(path, "t")
	mustGet(t, f, "k00001", nil)
	f.Put("a", []byte("b"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if !f.Stats().Compacted {
		t.Fatal("a damaged file was appended to, not rewritten")
	}
	f.Close()
	g := Open(path, "t")
	defer g.Close()
	mustGet(t, g, "a", []byte("b"))
	if st := g.Stats(); st.Entries != 1 {
		t.Fatalf("rewritten file: %+v", st)
	}
}

// A process killed while appending leaves part of its last record: every
// earlier record reads as written, the partial one is absent, and the next
// Save does not append after it (where no reader would find it).
func TestCrashMidAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 20)
	f := Open(path, "t")
	f.Put("k00003", []byte("first"))
	f.Put("k00004", []byte("second"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	full, _ := os.ReadFile(path)
	last := recordHeader + len("k00004") + len("second")
	for cut := 1; cut < last; cut++ {
		if err := os.WriteFile(path, full[:len(full)-cut], 0o644); err != nil {
			t.Fatal(err)
		}
		g := Open(path, "t")
		mustGet(t, g, "k00003", []byte("first"))
		mustGet(t, g, "k00005", val(5))
		if v, ok := g.Get("k00004"); ok && string(v) != string(val(4)) {
			t.Fatalf("cut %d: k00004 = %q", cut, v)
		}
		g.Put("after", []byte("crash"))
		if err := g.Save(); err != nil {
			t.Fatal(err)
		}
		g.Close()
		h := Open(path, "t")
		mustGet(t, h, "after", []byte("crash"))
		mustGet(t, h, "k00003", []byte("first"))
		h.Close()
	}
}

func TestConcurrentSaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 2000)
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := Open(path, "t")
			defer f.Close()
			for i := range each {
				f.Put(fmt.Sprintf("w%d-%d", w, i), val(i))
			}
			errs <- f.Save()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f := Open(path, "t")
	defer f.Close()
	for w := range writers {
		for i := range each {
			mustGet(t, f, fmt.Sprintf("w%d-%d", w, i), val(i))
		}
	}
	mustGet(t, f, "k01999", val(1999))
}

func TestOtherTagIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 3)
	f := Open(path, "other")
	defer f.Close()
	mustGet(t, f, "k00001", nil)
}

func TestRemovedFileIsWrittenAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 3)
	f := Open(path, "t")
	defer f.Close()
	os.Remove(path)
	f.Put("x", []byte("y"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	g := Open(path, "t")
	defer g.Close()
	mustGet(t, g, "x", []byte("y"))
	mustGet(t, g, "k00001", val(1))
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode("t", []string{"a", "b"}, func(k string) []byte { return []byte(k + k) }))
	base := Encode("t", []string{"x"}, func(string) []byte { return []byte("1") })
	f.Add(appendRecord(appendRecord(base, "y", &[]byte{2}), "x", nil))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, d []byte) {
		m, _ := Decode(d, "t")
		// What decodes, encoded again, decodes to the same entries.
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		again, ok := Decode(Encode("t", keys, func(k string) []byte { return m[k] }), "t")
		if !ok || len(again) != len(m) {
			t.Fatalf("re-encoded %d entries, decoded %d (%t)", len(m), len(again), ok)
		}
		for k, v := range m {
			if string(again[k]) != string(v) {
				t.Fatalf("%q: %q then %q", k, v, again[k])
			}
		}
	})
}

// A process that saves twice appends twice, and both are read back.
func TestSaveTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	fill(t, path, 100)
	f := Open(path, "t")
	defer f.Close()
	f.Put("a", []byte("1"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	f.Put("b", []byte("2"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Appended != 2 || st.Compacted {
		t.Fatalf("stats %+v: want 2 appended", st)
	}
	mustGet(t, f, "a", []byte("1"))
	g := Open(path, "t")
	defer g.Close()
	mustGet(t, g, "a", []byte("1"))
	mustGet(t, g, "b", []byte("2"))
	mustGet(t, g, "k00050", val(50))
}

// TestViewAgreesWithGet: View hands the same value as Get wherever the
// entry lives (put and unsaved, in the appended tail, in the compacted
// base) and finds no deleted or missing key.
func TestViewAgreesWithGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv")
	f := Open(path, "t")
	f.Put("base", []byte("b1"))
	f.Put("gone", []byte("g1"))
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g := Open(path, "t")
	g.Put("tail", []byte("t1"))
	g.Delete("gone")
	if err := g.Save(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	h := Open(path, "t")
	defer h.Close()
	h.Put("pending", []byte("p1"))
	for key, want := range map[string]string{"base": "b1", "tail": "t1", "pending": "p1", "gone": "", "missing": ""} {
		var viewed string
		found := h.View(key, func(v []byte) { viewed = string(v) })
		got, ok := h.Get(key)
		if found != ok || viewed != string(got) || viewed != want || found != (want != "") {
			t.Errorf("%s: View %q %v, Get %q %v, want %q", key, viewed, found, got, ok, want)
		}
	}
}
