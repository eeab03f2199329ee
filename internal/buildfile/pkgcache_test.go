package buildfile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
)

// settle waits until files written before the call are outside the racy
// window, so cache entries recorded after it are trusted.
func settle() { time.Sleep(time.Duration(engine.RacyWindow) + 50*time.Millisecond) }

// cacheWorkspace has n packages whose targets use every attribute type.
func cacheWorkspace(t *testing.T, n int) string {
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("p%d/BUILD.star", i)] = fmt.Sprintf(`
fake_rule(name = "a%d", files = glob(["*.txt"]), srcs = [":b"], dep = ":b", cmd = "echo %d",
          mode = "fast", count = %d, enabled = True, outs = ["o.txt"], tags = ["t"])
fake_rule(name = "b")
`, i, i, i)
		files[fmt.Sprintf("p%d/x.txt", i)] = "x"
	}
	return workspace(t, files)
}

func loadAll(t *testing.T, pc *PackageCache, pkgs ...string) map[string]*engine.Package {
	t.Helper()
	out := map[string]*engine.Package{}
	for _, p := range pkgs {
		pkg, err := pc.LoadPackage(context.Background(), p)
		if err != nil {
			t.Fatalf("LoadPackage(%s): %v", p, err)
		}
		out[p] = pkg
	}
	return out
}

func names(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("p%d", i))
	}
	return out
}

// A package served from the cache is the package evaluation gives.
func TestPackageCacheServesWhatEvaluationGives(t *testing.T) {
	root := cacheWorkspace(t, 5)
	settle()
	reg := testRegistry()
	path := filepath.Join(root, ".pipe", "packages")
	first := NewPackageCache(NewEvaluator(root, reg), path, "v1")
	want := loadAll(t, first, names(5)...)
	if err := first.Save(); err != nil {
		t.Fatal(err)
	}
	second := NewPackageCache(NewEvaluator(root, reg), path, "v1")
	got := loadAll(t, second, names(5)...)
	if st := second.Stats(); st.Lookups != 5 || st.Appended != 0 {
		t.Fatalf("stats %+v: want 5 entries read, none written", st)
	}
	for p := range want {
		if !reflect.DeepEqual(got[p], want[p]) {
			t.Errorf("%s from the cache:\n%+v\nevaluated:\n%+v", p, got[p], want[p])
		}
	}
	if err := second.Save(); err != nil {
		t.Fatal(err)
	}
	// Another pipe version reads nothing.
	other := NewPackageCache(NewEvaluator(root, reg), path, "v2")
	loadAll(t, other, "p0")
	if st := other.Stats(); st.Entries != 0 {
		t.Fatalf("another version read %d entries", st.Entries)
	}
}

// One edited BUILD.star among many: a build that loads three packages reads
// three entries, writes the one it evaluated, and serves the edit.
func TestPackageCacheOneEditTouchesOneEntry(t *testing.T) {
	root := cacheWorkspace(t, 60)
	settle()
	reg := testRegistry()
	path := filepath.Join(root, ".pipe", "packages")
	pc := NewPackageCache(NewEvaluator(root, reg), path, "v1")
	loadAll(t, pc, names(60)...)
	if err := pc.Save(); err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(root, "p7", "BUILD.star")
	if err := os.WriteFile(build, []byte(`fake_rule(name = "edited")`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	settle()
	pc = NewPackageCache(NewEvaluator(root, reg), path, "v1")
	got := loadAll(t, pc, "p3", "p7", "p9")
	if err := pc.Save(); err != nil {
		t.Fatal(err)
	}
	if st := pc.Stats(); st.Lookups != 3 || st.Appended != 1 || st.Compacted {
		t.Fatalf("stats %+v: want 3 entries read and 1 appended", st)
	}
	if o := got["p7"].Order; !reflect.DeepEqual(o, []string{"edited"}) {
		t.Fatalf("edited package has targets %v", o)
	}
	again := loadAll(t, NewPackageCache(NewEvaluator(root, reg), path, "v1"), "p7")
	if o := again["p7"].Order; !reflect.DeepEqual(o, []string{"edited"}) {
		t.Fatalf("edited package from the cache has targets %v", o)
	}
}

// A damaged or half-written cache file costs evaluations, never a wrong
// package.
func TestPackageCacheDamagedFile(t *testing.T) {
	root := cacheWorkspace(t, 3)
	settle()
	reg := testRegistry()
	path := filepath.Join(root, ".pipe", "packages")
	pc := NewPackageCache(NewEvaluator(root, reg), path, "v1")
	want := loadAll(t, pc, names(3)...)
	if err := pc.Save(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		got := loadAll(t, NewPackageCache(NewEvaluator(root, reg), path, "v1"), names(3)...)
		for p := range want {
			if !reflect.DeepEqual(got[p], want[p]) {
				t.Fatalf("%s: %s is\n%+v\nwant\n%+v", what, p, got[p], want[p])
			}
		}
	}
	for i := 0; i < len(good); i += 7 {
		b := append([]byte(nil), good...)
		b[i] ^= 0x20
		check(fmt.Sprintf("byte %d flipped", i), b)
	}
	for _, n := range []int{0, 1, len(good) / 2, len(good) - 1} {
		check(fmt.Sprintf("cut to %d bytes", n), good[:n])
	}
}
