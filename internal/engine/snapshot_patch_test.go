package engine

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

func clearCpaths(s *Snapshot) {
	for i := range s.Paths {
		s.Paths[i].cpath = nil
	}
	for i := range s.Actions {
		for j := range s.Actions[i].Paths {
			s.Actions[i].Paths[j].cpath = nil
		}
	}
}

// sameActions compares what a loaded snapshot holds with want, by their
// encoding (which does not tell an empty list from none).
func sameActions(t *testing.T, got *Snapshot, want *Snapshot) {
	t.Helper()
	enc := func(s *Snapshot) []byte {
		var b []byte
		for i := range s.Actions {
			b = appendAction(b, &s.Actions[i])
		}
		return appendPaths(b, s.Paths)
	}
	if !bytes.Equal(enc(got), enc(want)) {
		clearCpaths(got)
		clearCpaths(want)
		t.Fatalf("loaded actions %+v\nwant %+v", got.Actions, want.Actions)
	}
}

// sample is snapshotSample with as many graph inputs as a small workspace
// has, so that patches are small beside it.
func sample() *Snapshot {
	s := snapshotSample()
	for i := range 200 {
		s.Paths = append(s.Paths, SnapshotPath{Path: fmt.Sprintf("p%d/BUILD.star", i)})
	}
	return s
}

// part is a snapshot of a build of the first action of snapshotSample's
// graph, which ran again with key k.
func partOf(k byte) *Snapshot {
	a := sample().Actions[0]
	a.Key = [32]byte{k}
	a.Paths = []SnapshotPath{{Path: "a/in", Stat: FileStat{Size: int64(k)}}}
	return &Snapshot{Key: "k", Actions: []SnapshotAction{a}}
}

// A build of part of the graph appends its actions; the snapshot file is
// not written again, and loading gives the merged snapshot.
func TestSnapshotSavePartAppends(t *testing.T) {
	file := filepath.Join(t.TempDir(), "snapshot")
	base := sample()
	if err := base.Save(file); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	loaded, ok := LoadSnapshot(file, "k")
	if !ok {
		t.Fatal("no snapshot")
	}
	if err := loaded.Void(file); err != nil {
		t.Fatal(err)
	}
	if _, ok := LoadSnapshot(file, "k"); ok {
		t.Fatal("a withdrawn snapshot loaded")
	}
	if _, err := loaded.SavePart(file, partOf(9)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(file)
	if !bytes.Equal(before, after) {
		t.Fatal("saving a part rewrote the snapshot")
	}
	got, ok := LoadSnapshot(file, "k")
	if !ok {
		t.Fatal("the patched snapshot did not load")
	}
	want, _ := sample().Merge(partOf(9))
	sameActions(t, got, want)

	// An action the snapshot does not hold: no snapshot.
	other := partOf(1)
	other.Actions[0].Owner.Name = "elsewhere"
	var no *ErrNoSnapshot
	if _, err := got.SavePart(file, other); err == nil || !asNoSnapshot(err, &no) {
		t.Fatalf("SavePart of a foreign action: %v", err)
	}
}

func asNoSnapshot(err error, target **ErrNoSnapshot) bool {
	e, ok := err.(*ErrNoSnapshot)
	*target = e
	return ok
}

// A process killed while appending leaves part of a record: the snapshot
// is withdrawn (the long way), never answered with the old actions.
func TestSnapshotPatchCutWithdraws(t *testing.T) {
	file := filepath.Join(t.TempDir(), "snapshot")
	if err := sample().Save(file); err != nil {
		t.Fatal(err)
	}
	s, _ := LoadSnapshot(file, "k")
	if err := s.Void(file); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SavePart(file, partOf(3)); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(patchesFile(file))
	if err != nil {
		t.Fatal(err)
	}
	for cut := 1; cut < len(full); cut++ {
		if err := os.WriteFile(patchesFile(file), full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok := LoadSnapshot(file, "k"); ok {
			t.Fatalf("patches cut to %d of %d bytes: the snapshot loaded", cut, len(full))
		}
	}
	for i := range full {
		b := append([]byte(nil), full...)
		b[i] ^= 0x10
		os.WriteFile(patchesFile(file), b, 0o644)
		if got, ok := LoadSnapshot(file, "k"); ok {
			want, _ := sample().Merge(partOf(3))
			sameActions(t, got, want)
		}
	}
}

// Patches grow until a quarter of the snapshot; then the merged snapshot is
// written again and the patches start over. Patches of a replaced snapshot
// are ignored.
func TestSnapshotPatchesCompact(t *testing.T) {
	file := filepath.Join(t.TempDir(), "snapshot")
	if err := sample().Save(file); err != nil {
		t.Fatal(err)
	}
	var old []byte
	rewrote := false
	for k := byte(1); k < 50 && !rewrote; k++ {
		s, ok := LoadSnapshot(file, "k")
		if !ok {
			t.Fatalf("round %d: no snapshot", k)
		}
		old, _ = os.ReadFile(patchesFile(file))
		if err := s.Void(file); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SavePart(file, partOf(k)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(patchesFile(file)); os.IsNotExist(err) {
			rewrote = true
		}
		got, ok := LoadSnapshot(file, "k")
		if !ok {
			t.Fatalf("round %d: the snapshot did not load", k)
		}
		want, _ := sample().Merge(partOf(k))
		sameActions(t, got, want)
	}
	if !rewrote {
		t.Fatal("the patches never were folded into the snapshot")
	}
	// The patches of the snapshot before: ignored.
	if err := os.WriteFile(patchesFile(file), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := LoadSnapshot(file, "k"); !ok {
		t.Fatal("patches of a replaced snapshot withdrew the new one")
	}
}

// FuzzApplySnapshotPatches: patches of any content apply or withdraw the
// snapshot, never panic, and never change how many actions it has.
func FuzzApplySnapshotPatches(f *testing.F) {
	file := filepath.Join(f.TempDir(), "snapshot")
	if err := sample().Save(file); err != nil {
		f.Fatal(err)
	}
	s, _ := LoadSnapshot(file, "k")
	s.Void(file)
	s.SavePart(file, partOf(2))
	seed, err := os.ReadFile(patchesFile(file))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	id := s.id
	f.Fuzz(func(t *testing.T, b []byte) {
		s := sample()
		s.id = id
		// Records are checksummed: let the fuzzer's bytes through by
		// fixing each record's checksum where the length allows.
		b = append([]byte(nil), b...)
		s.applyPatches(fixChecksums(b))
		if len(s.Actions) != len(sample().Actions) {
			t.Fatalf("patches changed the number of actions to %d", len(s.Actions))
		}
	})
}

func fixChecksums(b []byte) []byte {
	for p := 0; p+8 <= len(b); {
		n := int(uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16 | uint32(b[p+3])<<24)
		if n < 0 || n > len(b)-p-8 {
			break
		}
		sum := crc32c(b[p+8 : p+8+n])
		b[p+4], b[p+5], b[p+6], b[p+7] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
		p += 8 + n
	}
	return b
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
