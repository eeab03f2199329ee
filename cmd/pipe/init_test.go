package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInit makes an existing repository (Nx, uv and npm workspaces) a pipe
// workspace, says what it found, and changes nothing on a second run.
func TestInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"package.json":   `{"name": "@acme/source", "type": "module", "workspaces": ["packages/*"]}`,
		"pyproject.toml": "[tool.uv.workspace]\nmembers = [\"packages/my_api\"]\n",
		"uv.lock":        "version = 1\n",
		"nx.json":        "{}\n",
		".gitignore":     "node_modules\n/dist\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(pipeBin, args...)
		cmd.Dir = dir
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), exitCode(t, err)
	}
	stdout, stderr, code := run("init")
	if code != 0 {
		t.Fatalf("pipe init: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"Initialized pipe workspace \"" + filepath.Base(dir) + "\" in " + dir,
		"created  WORKSPACE.star", "updated  .gitignore",
		"an Nx workspace (nx.json): pipe migrate nx",
		"a uv workspace (pyproject.toml) with members packages/my_api",
		"an npm workspace (package.json) with workspaces packages/*",
		`"type": "module" makes cdk_stack bundle CDK apps below it as ES modules`,
		"pipe migrate nx --dry-run",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("pipe init's output lacks %q:\n%s", want, stdout)
		}
	}
	gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if string(gi) != "node_modules\n/dist\n/.pipe/\n" {
		t.Errorf(".gitignore:\n%s", gi)
	}
	// The workspace loads: WORKSPACE.star is valid and names the directory.
	if _, stderr, code := run("query", "//..."); code != 0 {
		t.Errorf("pipe query //... in the new workspace: exit %d\n%s", code, stderr)
	}
	ws, _ := os.ReadFile(filepath.Join(dir, "WORKSPACE.star"))
	if !strings.Contains(string(ws), "name = \""+filepath.Base(dir)+"\"") {
		t.Errorf("WORKSPACE.star:\n%s", ws)
	}

	// Again: nothing changes.
	stdout, _, code = run("init")
	if code != 0 || !strings.Contains(stdout, "is already a pipe workspace") || !strings.Contains(stdout, "unchanged  WORKSPACE.star") {
		t.Errorf("second pipe init: exit %d\n%s", code, stdout)
	}
	if gi2, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); string(gi2) != string(gi) {
		t.Errorf("second pipe init changed .gitignore:\n%s", gi2)
	}
	if ws2, _ := os.ReadFile(filepath.Join(dir, "WORKSPACE.star")); string(ws2) != string(ws) {
		t.Errorf("second pipe init changed WORKSPACE.star")
	}

	// pipe init DIR creates DIR; inside a workspace, it says the new one
	// is separate.
	stdout, _, code = run("init", "services/api")
	if code != 0 || !strings.Contains(stdout, "it is now a workspace of its own") {
		t.Errorf("pipe init services/api: exit %d\n%s", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "services", "api", "WORKSPACE.star")); err != nil {
		t.Error(err)
	}
}

// TestNoWorkspaceSaysInit: outside a workspace, every command that needs
// one exits 2 and names pipe init; pipe new says to run it first.
func TestNoWorkspaceSaysInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"build"}, {"query", "//..."}, {"graph"}, {"clean"}, {"run", "//a:serve"},
		{"affected", "--base", "HEAD"}, {"deploy"}, {"diff"},
	} {
		cmd := exec.Command(pipeBin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		code := exitCode(t, err)
		if code != 2 || !strings.Contains(string(out), "no WORKSPACE.star in "+dir) || !strings.Contains(string(out), "pipe init") {
			t.Errorf("pipe %s outside a workspace: exit %d, want 2 and a message naming pipe init:\n%s", strings.Join(args, " "), code, out)
		}
	}
	cmd := exec.Command(pipeBin, "new", "fastapi", "my-api")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if code := exitCode(t, err); code != 2 || !strings.Contains(string(out), "run pipe init first") {
		t.Errorf("pipe new fastapi outside a workspace: exit %d\n%s", code, out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written outside a workspace: %v", ents)
	}
}
