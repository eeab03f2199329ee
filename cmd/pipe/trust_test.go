package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
)

// poison rewrites the cached result of the action whose event has label,
// with edit.
func poison(t *testing.T, ws *workspace, b build, label string, edit func(c *cache.Cache, r *cache.ActionResult)) {
	t.Helper()
	ev := b.event(t, label)
	var key cache.ActionKey
	if err := key.UnmarshalText([]byte(ev.Key)); err != nil {
		t.Fatalf("key of %s: %v", label, err)
	}
	c, err := cache.Open(ws.Cache)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.GetAC(key)
	if err != nil {
		t.Fatal(err)
	}
	edit(c, r)
	if err := c.PutAC(key, r); err != nil {
		if _, replaced := err.(*cache.ReplacedError); !replaced {
			t.Fatal(err)
		}
	}
}

// A cached result naming outputs its action does not declare (a hook in
// .git, the action's own source) is ignored, never written.
func TestPoisonedResultIgnored(t *testing.T) {
	ws := newWorkspace(t, map[string]string{
		"src.txt":    "source\n",
		"BUILD.star": "genrule(name = \"g\", srcs = [\"src.txt\"], outs = [\"out.txt\"], cmd = \"cat $(SRCS) > $@\")\n",
	})
	b := ws.buildOK(t)
	poison(t, ws, b, "//:g", func(c *cache.Cache, r *cache.ActionResult) {
		hook, err := c.PutBytes([]byte("#!/bin/sh\necho owned\n"))
		if err != nil {
			t.Fatal(err)
		}
		r.Outputs = append(r.Outputs,
			cache.OutputFile{Path: ".git/hooks/pre-commit", Digest: hook, Size: 21, Executable: true},
			cache.OutputFile{Path: "src.txt", Digest: hook, Size: 21})
	})
	os.RemoveAll(ws.path("dist"))
	b = ws.buildOK(t)
	if ws.exists(".git/hooks/pre-commit") {
		t.Error("a poisoned cache entry wrote .git/hooks/pre-commit")
	}
	if got := ws.read(t, "src.txt"); got != "source\n" {
		t.Errorf("a poisoned cache entry overwrote the source: %q", got)
	}
	if got := b.labels("executed"); !equalStrings(got, []string{"//:g"}) {
		t.Errorf("executed %q, want the action to run again", got)
	}
	if !strings.Contains(b.stderr, "does not declare") {
		t.Errorf("no warning names the undeclared output:\n%s", b.stderr)
	}
	if got := ws.read(t, "dist/g/out.txt"); got != "source\n" {
		t.Errorf("output %q", got)
	}
}

// pipe never writes through a symbolic link on the way to an output:
// dist/<pkg> pointing outside the workspace stops the build instead.
func TestNoWriteThroughSymlinkedOutputDir(t *testing.T) {
	ws := newWorkspace(t, map[string]string{
		"pkg/BUILD.star": "genrule(name = \"g\", outs = [\"out.txt\"], cmd = \"echo hi > $@\")\n",
	})
	outside := t.TempDir()
	if err := os.MkdirAll(ws.path("dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, ws.path("dist/pkg")); err != nil {
		t.Fatal(err)
	}
	b := ws.build(t)
	if b.code != 1 || !strings.Contains(b.stderr, "symbolic link") {
		t.Errorf("exit %d, want 1 naming the symbolic link\n%s", b.code, b.stderr)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("pipe wrote outside the workspace through dist/pkg: %v", ents)
	}

	// The same for a source-tree output whose directory is a link.
	ws2 := newWorkspace(t, map[string]string{
		"api/openapi.json": `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}`,
		"api/BUILD.star":   "api_metadata(name = \"meta\", spec = \"openapi.json\", out = \"gen/metadata.gen.ts\")\n",
	})
	if err := os.Symlink(outside, ws2.path("api/gen")); err != nil {
		t.Fatal(err)
	}
	b = ws2.build(t)
	if b.code == 0 {
		t.Errorf("api_metadata wrote through a symlinked directory\n%s", b.stderr)
	}
	if _, err := os.Stat(filepath.Join(outside, "metadata.gen.ts")); err == nil {
		t.Error("metadata.gen.ts landed outside the workspace")
	}
}

// A source that is a symbolic link to a file outside the workspace is
// refused, not read into an output.
func TestSymlinkedSourceOutsideRefused(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := newWorkspace(t, map[string]string{
		"BUILD.star": "genrule(name = \"g\", srcs = [\"link.txt\"], outs = [\"out.txt\"], cmd = \"cat $(SRCS) > $@\")\n",
	})
	if err := os.Symlink(secret, ws.path("link.txt")); err != nil {
		t.Fatal(err)
	}
	b := ws.build(t)
	if b.code != 1 || !strings.Contains(b.stderr, "outside the workspace") {
		t.Errorf("exit %d, want 1 saying link.txt resolves outside the workspace\n%s", b.code, b.stderr)
	}
	if ws.exists("dist/g/out.txt") {
		t.Error("the outside file was copied into an output")
	}
	// A link inside the workspace is fine.
	ws.write(t, "real.txt", "inside\n")
	os.Remove(ws.path("link.txt"))
	if err := os.Symlink("real.txt", ws.path("link.txt")); err != nil {
		t.Fatal(err)
	}
	ws.buildOK(t)
	if got := ws.read(t, "dist/g/out.txt"); got != "inside\n" {
		t.Errorf("output %q", got)
	}
}
