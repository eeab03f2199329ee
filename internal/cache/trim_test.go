package cache

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// age sets the modification time of the entry at path to now-d.
func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// putResult stores an action whose one output is content.
func putResult(t *testing.T, c *Cache, name, content string) (ActionKey, Digest) {
	t.Helper()
	d, err := c.PutBytes([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	key := ActionKey(Sum([]byte(name)))
	r := &ActionResult{Outputs: []OutputFile{{Path: "dist/" + name, Digest: d, Size: int64(len(content))}}}
	if err := c.PutAC(key, r); err != nil {
		t.Fatal(err)
	}
	return key, d
}

func TestTrimByAge(t *testing.T) {
	c := openTemp(t)
	oldKey, oldBlob := putResult(t, c, "old", "old output")
	usedKey, usedBlob := putResult(t, c, "used", "used output")
	newKey, newBlob := putResult(t, c, "new", "new output")
	for _, p := range []string{c.acPath(oldKey), c.casPath(oldBlob), c.acPath(usedKey), c.casPath(usedBlob)} {
		age(t, p, 10*24*time.Hour)
	}
	// A hit on "used" marks it and its blob as used now, although the
	// outputs it names are not read.
	if _, err := c.GetAC(usedKey); err != nil {
		t.Fatal(err)
	}
	if time.Since(mtime(t, c.casPath(usedBlob))) > time.Minute {
		t.Fatal("a hit did not mark the entry's blob as used")
	}
	st, err := c.Trim(context.Background(), TrimOptions{MaxAge: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st.RemovedEntries != 2 {
		t.Errorf("removed %d entries, want 2 (the old action and its blob)", st.RemovedEntries)
	}
	if _, err := c.GetAC(oldKey); !errors.Is(err, ErrMiss) {
		t.Errorf("the old entry survived: %v", err)
	}
	if c.Has(oldBlob) {
		t.Error("the old blob survived")
	}
	for _, k := range []ActionKey{usedKey, newKey} {
		if _, err := c.GetAC(k); err != nil {
			t.Errorf("entry %s was trimmed: %v", k, err)
		}
	}
	for _, d := range []Digest{usedBlob, newBlob} {
		if _, err := c.ReadBlob(d); err != nil {
			t.Errorf("blob %s was trimmed: %v", d, err)
		}
	}
	if st.ActionCount != 2 || st.BlobCount != 2 {
		t.Errorf("remaining %d actions, %d blobs; want 2 and 2", st.ActionCount, st.BlobCount)
	}
	info, err := c.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.LastTrim.IsZero() || info.Bytes != st.Bytes {
		t.Errorf("info %+v after trim %+v", info, st)
	}
}

// A use refreshes an entry's time at most once an hour, so a hit is not a
// write every time.
func TestUseMarkedOncePerHour(t *testing.T) {
	c := openTemp(t)
	key, _ := putResult(t, c, "a", "x")
	age(t, c.acPath(key), 30*time.Minute)
	before := mtime(t, c.acPath(key))
	if _, err := c.GetAC(key); err != nil {
		t.Fatal(err)
	}
	if !mtime(t, c.acPath(key)).Equal(before) {
		t.Error("a hit within the hour rewrote the entry's time")
	}
	age(t, c.acPath(key), 2*time.Hour)
	if _, err := c.GetAC(key); err != nil {
		t.Fatal(err)
	}
	if time.Since(mtime(t, c.acPath(key))) > time.Minute {
		t.Error("a hit two hours later did not mark the entry as used")
	}
}

func TestTrimBySize(t *testing.T) {
	c := openTemp(t)
	var keys []ActionKey
	for i, name := range []string{"a", "b", "c"} {
		k, d := putResult(t, c, name, name+" output, some bytes")
		keys = append(keys, k)
		// a is the least recently used, c the most.
		for _, p := range []string{c.acPath(k), c.casPath(d)} {
			age(t, p, time.Duration(3-i)*time.Hour)
		}
	}
	info, err := c.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Trim(context.Background(), TrimOptions{MaxSize: info.Bytes * 2 / 3})
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes > info.Bytes*2/3 {
		t.Errorf("%d bytes remain, over the limit %d", st.Bytes, info.Bytes*2/3)
	}
	if _, err := c.GetAC(keys[0]); !errors.Is(err, ErrMiss) {
		t.Error("the least recently used entry survived")
	}
	if _, err := c.GetAC(keys[2]); err != nil {
		t.Errorf("the most recently used entry was trimmed: %v", err)
	}
}

func TestAutoTrim(t *testing.T) {
	c := openTemp(t)
	key, blob := putResult(t, c, "a", "x")
	age(t, c.acPath(key), 30*24*time.Hour)
	age(t, c.casPath(blob), 30*24*time.Hour)
	now := time.Now()
	// A cache never trimmed only records the time.
	if trimmed, _, err := c.AutoTrim(context.Background(), 7*24*time.Hour, now); err != nil || trimmed {
		t.Fatalf("first AutoTrim: trimmed=%t err=%v; want only the time recorded", trimmed, err)
	}
	if trimmed, _, err := c.AutoTrim(context.Background(), 7*24*time.Hour, now.Add(time.Hour)); err != nil || trimmed {
		t.Fatalf("AutoTrim an hour later: trimmed=%t err=%v; want nothing", trimmed, err)
	}
	if _, err := os.Stat(c.acPath(key)); err != nil {
		t.Fatal("entry removed before a day had passed")
	}
	trimmed, st, err := c.AutoTrim(context.Background(), 7*24*time.Hour, now.Add(25*time.Hour))
	if err != nil || !trimmed || st.RemovedEntries != 2 {
		t.Fatalf("AutoTrim a day later: trimmed=%t removed=%d err=%v; want the 30-day-old entry and blob removed", trimmed, st.RemovedEntries, err)
	}
}

// Clean keeps working with the trim record present, and removes it.
func TestCleanAfterTrim(t *testing.T) {
	c := openTemp(t)
	putResult(t, c, "a", "x")
	if _, err := c.Trim(context.Background(), TrimOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(); err != nil {
		t.Fatalf("Clean after a trim: %v", err)
	}
	if !c.lastTrim().IsZero() {
		t.Error("Clean left the trim record")
	}
}
