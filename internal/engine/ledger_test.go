package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
)

func TestLedgerRoundTripAndNoRewrite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "outputs")
	l := LoadLedger(file)
	a := &Action{Owner: Label{Pkg: "api", Name: "meta"}, Outputs: []*File{
		{Path: "api/gen/metadata.gen.ts"},
		{Path: "dist/api/meta/x.txt"},
	}}
	d := cache.Sum([]byte("generated"))
	l.Record(a, &cache.ActionResult{Outputs: []cache.OutputFile{{Path: "api/gen/metadata.gen.ts", Digest: d}, {Path: "dist/api/meta/x.txt", Digest: cache.Sum(nil)}}})
	root := &Action{Owner: Label{Pkg: "", Name: "top"}, Outputs: []*File{{Path: "dist/top/out", Dir: true}}}
	l.Record(root, &cache.ActionResult{Dirs: []string{"dist/top/out"}})
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(file, old, old); err != nil {
		t.Fatal(err)
	}

	again := LoadLedger(file)
	want := map[Label]map[string]cache.Digest{
		{Pkg: "api", Name: "meta"}: {"api/gen/metadata.gen.ts": d, "dist/api/meta/x.txt": {}},
		{Pkg: "", Name: "top"}:     {"dist/top/out": {}},
	}
	if len(again.m) != len(want) {
		t.Fatalf("loaded %v, want %v", again.m, want)
	}
	for o, outs := range want {
		for p, dg := range outs {
			if got, ok := again.m[o][p]; !ok || got != dg {
				t.Errorf("%s %s: loaded %v (present %t), want %v", o, p, got, ok, dg)
			}
		}
	}
	// The same outputs again change nothing, and nothing is rewritten: a
	// no-op build must not write .pipe/outputs.
	again.Record(a, &cache.ActionResult{Outputs: []cache.OutputFile{{Path: "api/gen/metadata.gen.ts", Digest: d}}})
	if err := again.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(fi.ModTime()) < 30*time.Minute {
		t.Error("an unchanged ledger was written again")
	}
}

// FuzzLoadLedger: any file loads without panicking, and what loads survives
// a save and a second load unchanged.
func FuzzLoadLedger(f *testing.F) {
	f.Add([]byte(ledgerMagic + "api\tmeta\tapi/gen/m.ts\t" + cache.Sum(nil).String() + "\n\ttop\tdist/top/out\t-\n"))
	f.Add([]byte(ledgerMagic + "a\tb\tc\n\t\t\t-\nx\ty\tz\tnot-a-digest\n"))
	f.Add([]byte("pipe-outputs-1\n//a:b\tdist/a/b/x\t-\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "outputs")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		l := LoadLedger(file)
		l.dirty = true
		l.path = filepath.Join(dir, "again")
		if err := l.Save(); err != nil {
			t.Fatal(err)
		}
		again := LoadLedger(l.path)
		if len(again.m) != len(l.m) {
			t.Fatalf("%d owners after a round trip, want %d", len(again.m), len(l.m))
		}
		for o, outs := range l.m {
			for p, d := range outs {
				if got, ok := again.m[o][p]; !ok || got != d {
					t.Fatalf("%v %q lost in a round trip", o, p)
				}
			}
		}
	})
}
