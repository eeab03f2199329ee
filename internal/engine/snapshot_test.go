package engine

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// statOfSys must read a raw stat exactly as StatOf reads os.Stat's, or
// every snapshot check would fail (or, worse, a mode change pass).
func TestStatOfSysMatchesStatOf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink("f", link); err != nil {
		t.Fatal(err)
	}
	sticky := filepath.Join(dir, "s")
	if err := os.Mkdir(sticky, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o700|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link, dir, sticky, "/dev/null"} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		got, errno := statAt(atFDCWD, p, append([]byte(p), 0), unix.AT_SYMLINK_NOFOLLOW)
		if errno != 0 {
			t.Fatal(errno)
		}
		if want := StatOf(fi); got != want {
			t.Errorf("%s: statAt %+v, StatOf %+v", p, got, want)
		}
	}
}

// Check compares each path as recorded: present or missing, stat or lstat,
// relative to the root or absolute.
func TestSnapshotCheck(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	stat := func(p string, lstat bool) SnapshotPath {
		abs := p
		if !filepath.IsAbs(p) {
			abs = filepath.Join(root, p)
		}
		f := os.Stat
		if lstat {
			f = os.Lstat
		}
		fi, err := f(abs)
		if err != nil {
			return SnapshotPath{Path: p, Lstat: lstat, Missing: true}
		}
		return SnapshotPath{Path: p, Lstat: lstat, Stat: StatOf(fi)}
	}
	s := &Snapshot{Paths: []SnapshotPath{stat("a", false), stat("l", true), stat("l", false), stat("gone", false), stat(filepath.Join(root, "a"), false)}}
	if ok, why := s.Check(context.Background(), root); !ok {
		t.Fatalf("unchanged workspace: %s", why)
	}
	for name, change := range map[string]func(){
		"write":  func() { os.WriteFile(filepath.Join(root, "a"), []byte("b"), 0o644) },
		"create": func() { os.WriteFile(filepath.Join(root, "gone"), nil, 0o644) },
		"relink": func() { os.Remove(filepath.Join(root, "l")); os.Symlink("gone", filepath.Join(root, "l")) },
	} {
		snap := *s
		snap.Paths = append([]SnapshotPath(nil), s.Paths...)
		change()
		if ok, _ := snap.Check(context.Background(), root); ok {
			t.Errorf("%s: the check passed", name)
		}
		for i, p := range s.Paths {
			s.Paths[i] = stat(p.Path, p.Lstat)
		}
	}
	t.Setenv("PIPE_SNAPSHOT_TEST_VAR", "1")
	s.Env = []SnapshotEnv{{Name: "PIPE_SNAPSHOT_TEST_VAR", Value: "1", Set: true}}
	if ok, why := s.Check(context.Background(), root); !ok {
		t.Fatalf("unchanged environment: %s", why)
	}
	os.Unsetenv("PIPE_SNAPSHOT_TEST_VAR")
	if ok, _ := s.Check(context.Background(), root); ok {
		t.Error("an unset variable passed the check")
	}
}

func snapshotSample() *Snapshot {
	return &Snapshot{
		Key: "k",
		Actions: []SnapshotAction{
			{Owner: Label{Pkg: "a", Name: "b"}, Mnemonic: "Genrule", Key: [32]byte{1}, Outputs: []string{"dist/a/b/x"}, RanForMs: 12},
			{Owner: Label{Pkg: "", Name: "root"}, Mnemonic: "Copy"},
		},
		Env:   []SnapshotEnv{{Name: "HOME", Value: "/root", Set: true}, {Name: "UNSET"}},
		Paths: []SnapshotPath{{Path: "a/BUILD.star", Stat: FileStat{Size: 3, Mtime: 4, Ctime: 5, Ino: 6, Dev: 7, Mode: 8}}, {Path: "", Lstat: true, Missing: true}},
	}
}

func TestSnapshotSaveLoad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "snapshot")
	want := snapshotSample()
	if err := want.Save(file); err != nil {
		t.Fatal(err)
	}
	got, ok := LoadSnapshot(file, "k")
	if !ok {
		t.Fatal("the saved snapshot did not load")
	}
	for i := range got.Paths {
		got.Paths[i].cpath = nil
	}
	got.id, got.size, got.patched = want.id, want.size, want.patched
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %+v\nsaved %+v", got, want)
	}
	if _, ok := LoadSnapshot(file, "other"); ok {
		t.Error("a snapshot loaded under another key")
	}
}

// FuzzDecodeSnapshot: a snapshot of any content decodes or is refused,
// never panics; what decodes saves and decodes to the same. The fuzzer
// feeds the body (what the checksum covers): random bytes would never get
// past the checksum.
func FuzzDecodeSnapshot(f *testing.F) {
	file := filepath.Join(f.TempDir(), "seed")
	if err := snapshotSample().Save(file); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed[len(snapshotMagic) : len(seed)-32])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSnapshotBody(b)
		if err != nil {
			return
		}
		out := filepath.Join(t.TempDir(), "s")
		if err := s.Save(out); err != nil {
			t.Fatal(err)
		}
		b2, _ := os.ReadFile(out)
		s2, err := decodeSnapshot(b2)
		if err != nil {
			t.Fatalf("a saved snapshot does not decode: %v", err)
		}
		for i := range s.Paths {
			s.Paths[i].cpath, s2.Paths[i].cpath = nil, nil
		}
		s.id, s.size, s.patched = s2.id, s2.size, s2.patched
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed the snapshot")
		}
	})
}
