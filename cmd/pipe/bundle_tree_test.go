package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBundleTreeDamage: a bundle whose dependencies are one wheel of a few
// thousand files, so its directory outputs are checked the way large ones
// are (in parallel, directories by stat). Each kind of damage to the
// output trees — a file edited right after the build that wrote it and
// long after, a stray file, a stray directory, a deleted file, a chmod +x —
// is undone by the next build, with the snapshot and the long way, and the
// tree is again byte for byte and mode for mode what the first build made.
func TestBundleTreeDamage(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{}
	for i := range 2000 {
		files[fmt.Sprintf("many/p%02d/m%04d.py", i/100, i)] = []byte(fmt.Sprintf("X = %d\n", i))
	}
	many := makeWheel(t, "many", "1.0", "py3-none-any", nil, files)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"many"}, Packages: []lockEntry{lockEntryOf(many)}})
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_index = \"file://wheels\")\n")
	ws.write(t, "wheels/"+many.Filename, string(many.Data))
	ws.write(t, "packages/my-api/BUILD.star", `python_bundle(
    name = "bundle",
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
)
`)
	first := ws.buildEnvOK(t, nil)
	wantLabels(t, "executed", first.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")
	dist := filepath.Join(ws.Root, "dist")
	want := snapshot(t, dist)
	if len(want) < 4000 {
		t.Fatalf("dist/ holds %d files, want the wheel's 2000 twice", len(want))
	}
	site := bundleDir + "/many/p07"
	layer := "dist/packages/my-api/bundle.layers/deps/many/p13"

	damages := []struct {
		what   string
		settle bool // let the build's outputs age past the racy window first
		damage func()
	}{
		{"a file edited right after the build", false, func() {
			ws.write(t, site+"/m0701.py", "X = 9\n") // same size
		}},
		{"a file edited", true, func() {
			ws.write(t, layer+"/m1302.py", "X = 7\n")
		}},
		{"a stray file", true, func() {
			ws.write(t, site+"/stray.py", "stray\n")
			ws.write(t, layer+"/stray.py", "stray\n")
		}},
		{"a stray directory", true, func() {
			ws.write(t, site+"/extra/deep.py", "stray\n")
			ws.write(t, bundleDir+"/newpkg/__init__.py", "")
		}},
		{"a deleted file", true, func() {
			if err := os.Remove(ws.path(site + "/m0703.py")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(ws.path(layer + "/m1304.py")); err != nil {
				t.Fatal(err)
			}
		}},
		{"chmod +x", true, func() {
			if err := os.Chmod(ws.path(site+"/m0705.py"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"a directory replaced by a file", true, func() {
			if err := os.RemoveAll(ws.path(site)); err != nil {
				t.Fatal(err)
			}
			ws.write(t, site, "not a directory\n")
		}},
	}
	for _, mode := range []string{"snapshot", "PIPE_SNAPSHOT=0"} {
		var env []string
		if mode != "snapshot" {
			env = []string{mode}
		}
		for _, d := range damages {
			if d.settle {
				settle()
			}
			if b := ws.buildEnvOK(t, env); len(b.labels("executed")) > 0 {
				t.Fatalf("%s, %s: a no-op build executed %q", mode, d.what, b.labels("executed"))
			}
			d.damage()
			b := ws.buildEnvOK(t, env, "-v")
			if diff := diffSnapshots(snapshot(t, dist), want); diff != "" {
				t.Errorf("%s, %s: dist/ differs from the first build's:\n%s\n%s", mode, d.what, diff, b.stderr)
			}
			if ran := b.labels("executed"); len(ran) > 0 {
				t.Errorf("%s, %s: the cache holds every result, yet %q executed", mode, d.what, ran)
			}
			if !strings.Contains(b.stderr, "cached") || strings.Contains(b.stderr, snapshotUsed) {
				t.Errorf("%s, %s: the build did not go the long way for the damaged action:\n%s", mode, d.what, b.stderr)
			}
		}
	}
}
