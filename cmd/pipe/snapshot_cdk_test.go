package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// TestSnapshotCDKWorkspace: a workspace with a cdk_stack, whose analysis
// probes node and node_modules, is answered by the build snapshot, and
// every change to what the probe read voids it: the package manager's
// lock file in node_modules, a node put earlier on the action PATH, a
// package of node_modules replaced. After each, the build equals a clean
// build of the same state, byte for byte and key for key.
func TestSnapshotCDKWorkspace(t *testing.T) {
	t.Parallel()
	fixture := testenv.CDKNodeModules(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	node, _ = filepath.EvalSymlinks(node)
	ws := newWorkspace(t, nil)
	// The workspace's node_modules: links to the fixture's packages, and
	// a lock file of its own, which the test edits.
	nm := ws.path("node_modules")
	if err := os.MkdirAll(nm, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".package-lock.json" {
			continue
		}
		if err := os.Symlink(filepath.Join(fixture, e.Name()), filepath.Join(nm, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// copyWorkspace copies regular files only: a clean copy gets the
	// same links.
	relink := func(root string) {
		t.Helper()
		links, err := os.ReadDir(nm)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range links {
			if e.Type()&os.ModeSymlink == 0 {
				continue
			}
			target, err := os.Readlink(filepath.Join(nm, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(root, "node_modules", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	lock, err := os.ReadFile(filepath.Join(fixture, ".package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	ws.write(t, "node_modules/.package-lock.json", string(lock))
	pathDir := t.TempDir()
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", node_modules = \"node_modules\", action_path = \""+pathDir+":"+filepath.Dir(node)+":/usr/bin:/bin\")\n")
	ws.write(t, "infra/cdk.json", "{\"context\": {}}\n")
	ws.write(t, "infra/src/main.ts", `import { App, Stack } from 'aws-cdk-lib';

const app = new App();
new Stack(app, 'SnapshotStack');
app.synth();
`)
	ws.write(t, "infra/BUILD.star", `cdk_stack(name = "infra", app = "src/main.ts", srcs = ["src/main.ts"])`+"\n")
	env := []string{}
	ws.buildEnvOK(t, env)

	step := func(what string, edit func()) {
		t.Helper()
		primeSnapshot(t, ws, env)
		edit()
		againstClean(t, what, ws, env, ws.buildEnvOK(t, env, "-v"), relink)
	}
	step("the lock file in node_modules", func() {
		ws.write(t, "node_modules/.package-lock.json", strings.Replace(string(lock), "{", "{\n  \"edited\": true,", 1))
	})
	step("a node earlier on the action PATH", func() {
		if err := os.Symlink(node, filepath.Join(pathDir, "node")); err != nil {
			t.Fatal(err)
		}
	})
	step("a package of node_modules replaced", func() {
		link := filepath.Join(nm, "typescript")
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(fixture, "typescript"), link); err != nil {
			t.Fatal(err)
		}
	})
	primeSnapshot(t, ws, env)
}
