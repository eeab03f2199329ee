package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Regression: a renamed target's outputs stayed in dist/ (a clean build has
// none of them).
func TestRenamedTargetOutputsRemoved(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	if !ws.exists("dist/shout/louder/louder.txt") {
		t.Fatal("first build wrote no dist/shout/louder/louder.txt")
	}
	for _, f := range []string{"shout/BUILD.star", "site/BUILD.star"} {
		ws.write(t, f, strings.ReplaceAll(ws.read(t, f), "louder", "loudest"))
	}
	b := ws.buildOK(t)
	if ws.exists("dist/shout/louder/louder.txt") || ws.exists("dist/shout/louder") {
		t.Errorf("the renamed target's outputs are still in dist/: %q", listFiles(t, ws.path("dist/shout")))
	}
	if !ws.exists("dist/shout/loudest/loudest.txt") {
		t.Error("the new target's output is missing")
	}
	if !strings.Contains(b.stderr, "removed 1 output no target declares any more: dist/shout/louder/louder.txt") {
		t.Errorf("the removal is not reported:\n%s", b.stderr)
	}

	// A deleted package's outputs go too, even when the build does not
	// load it.
	ws.write(t, "site/BUILD.star", "")
	os.Remove(ws.path("site/BUILD.star"))
	ws.buildOK(t, "//greeting")
	if ws.exists("dist/site/site/index.html") {
		t.Error("a deleted package's outputs are still in dist/")
	}
	// A narrower build leaves existing targets' outputs alone.
	if !ws.exists("dist/shout/loudest/loudest.txt") {
		t.Error("a build of //greeting removed //shout:loudest's outputs")
	}
}

// A file a user drops into a target's output directory is gone after the
// next build, even when every action is a cache hit.
func TestStrayFileInOutputDirRemoved(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	ws.buildOK(t) // directories now trusted by stat
	ws.write(t, "dist/greeting/greeting/notes.txt", "mine\n")
	b := ws.buildOK(t)
	if len(b.labels("executed")) != 0 {
		t.Errorf("executed %q, want nothing", b.labels("executed"))
	}
	if ws.exists("dist/greeting/greeting/notes.txt") {
		t.Error("the stray file survived a build")
	}
}

// Regression: moving api_metadata's out left the old metadata.gen.ts in the
// source tree. pipe removes what it wrote, and never a file it did not.
func TestMovedSourceTreeOutputRemoved(t *testing.T) {
	ws := newWorkspace(t, map[string]string{
		"api/openapi.json": `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/items": {"get": {"operationId": "listItems", "responses": {}}}}}`,
		"api/BUILD.star":   "api_metadata(\n    name = \"meta\",\n    spec = \"openapi.json\",\n    out = \"gen/a/metadata.gen.ts\",\n)\n",
	})
	ws.buildOK(t)
	if !ws.exists("api/gen/a/metadata.gen.ts") {
		t.Fatal("no api/gen/a/metadata.gen.ts after the first build")
	}
	ws.write(t, "api/BUILD.star", strings.Replace(ws.read(t, "api/BUILD.star"), "gen/a/", "gen/b/", 1))
	ws.buildOK(t)
	if ws.exists("api/gen/a/metadata.gen.ts") {
		t.Error("the old metadata.gen.ts is still in the source tree")
	}
	if !ws.exists("api/gen/b/metadata.gen.ts") {
		t.Error("the new metadata.gen.ts is missing")
	}

	// The user takes the file over: pipe no longer owns its bytes, so moving
	// out again leaves it where it is.
	ws.write(t, "api/gen/b/metadata.gen.ts", "// mine now\n")
	ws.write(t, "api/BUILD.star", strings.Replace(ws.read(t, "api/BUILD.star"), "gen/b/", "gen/c/", 1))
	ws.buildOK(t)
	if got := ws.read(t, "api/gen/b/metadata.gen.ts"); got != "// mine now\n" {
		t.Errorf("pipe removed or changed a file the user wrote: %q", got)
	}
}

// Regression: the exec bit was not part of the key, so after chmod -x of a
// tool the build succeeded from cache where a clean build fails.
func TestExecBitInKey(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	if err := os.Chmod(ws.path("tools/frame.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := ws.build(t)
	if b.code != 1 || !strings.Contains(b.stderr, "Permission denied") {
		t.Fatalf("after chmod -x of the tool: exit %d, want 1 with Permission denied (as a clean build)\n%s", b.code, b.stderr)
	}
	// A fresh checkout on the warm cache agrees.
	fresh := copyWorkspace(t, ws.Root)
	fresh.Cache = ws.Cache
	os.Chmod(fresh.path("tools/frame.sh"), 0o644)
	if b := fresh.build(t); b.code != 1 {
		t.Errorf("fresh checkout on the warm cache: exit %d, want 1\n%s", b.code, b.stderr)
	}
	if err := os.Chmod(ws.path("tools/frame.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	// With the mode back, the key is the first build's again: a hit.
	b = ws.buildOK(t)
	if got := b.labels("executed"); len(got) != 0 {
		t.Errorf("after chmod +x executed %q, want the earlier result from cache", got)
	}
}

// A build killed while restoring leaves temp files beside the outputs; the
// next build removes them.
func TestLeftoverTempFilesRemoved(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	ws.buildOK(t)
	ws.write(t, "dist/greeting/greeting/.pipe-tmp-123456", "half a file")
	ws.write(t, "dist/greeting/greeting/greeting.txt.pipe-old/x", "set aside")
	ws.buildOK(t)
	for _, p := range []string{"dist/greeting/greeting/.pipe-tmp-123456", "dist/greeting/greeting/greeting.txt.pipe-old"} {
		if ws.exists(p) {
			t.Errorf("%s survived a build", p)
		}
	}
}

// Regression: chmod +x of an app source was a cache hit that kept 0644 in
// the bundle (and bundle.zip) where a clean build ships 0755.
func TestBundleFollowsExecBit(t *testing.T) {
	w := tinyWheel(t)
	m := newWheelMirror(t)
	m.serve(w, w.Data)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(w)}})
	env := []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	if err := os.Chmod(ws.path("packages/my-api/my_api/main.py"), 0o755); err != nil {
		t.Fatal(err)
	}
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	fi, err := os.Stat(ws.path("dist/packages/my-api/bundle/my_api/main.py"))
	if err != nil {
		t.Fatal(err)
	}
	clean := copyWorkspace(t, ws.Root)
	clean.buildEnvOK(t, env, "//packages/my-api:bundle")
	want, err := os.Stat(clean.path("dist/packages/my-api/bundle/my_api/main.py"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want.Mode().Perm() {
		t.Errorf("after chmod +x the bundle ships main.py as %v; a clean build ships %v", fi.Mode().Perm(), want.Mode().Perm())
	}
	if got, want := fileSHA256(t, ws.path("dist/packages/my-api/bundle.zip")), fileSHA256(t, clean.path("dist/packages/my-api/bundle.zip")); got != want {
		t.Error("bundle.zip differs from a clean build's")
	}
}

// Regression: Lambda's 250 MB limit was checked per wheel, so several
// large wheels were written in full before the bundle was refused. The
// wheels now share the budget: the one that would cross it is refused
// before it is written.
func TestBundleBudgetSharedByWheels(t *testing.T) {
	big := strings.Repeat("0", 90<<20)
	var wheels []testWheel
	var entries []lockEntry
	var names []string
	for _, n := range []string{"biga", "bigb", "bigc"} {
		w := makeWheel(t, n, "1.0", "py3-none-any", nil, map[string][]byte{n + "/blob.bin": []byte(big)})
		wheels = append(wheels, w)
		entries = append(entries, lockEntryOf(w))
		names = append(names, n)
	}
	m := newWheelMirror(t)
	for _, w := range wheels {
		m.serve(w, w.Data)
	}
	ws := newPyWorkspace(t, pyApp{Deps: names, Packages: entries})
	b := ws.buildEnv(t, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, "//packages/my-api:bundle")
	if b.code != 1 || !strings.Contains(b.stderr, "250 MB") {
		t.Fatalf("three 90 MB wheels: exit %d, want 1 naming Lambda's 250 MB limit\n%s", b.code, b.stderr)
	}
	if !strings.Contains(b.stderr, "bigc") {
		t.Errorf("the error does not name the wheel that crossed the limit:\n%s", b.stderr)
	}
}
