package main

// Tests of the repository itself: that its own commands keep working as
// the README says, whatever the examples and fixtures install.

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules"
)

// repoRoot is the checkout: cmd/pipe's tests run in cmd/pipe.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// npmPackages lists the directories of the repository (relative, slash
// paths) that hold a package.json outside node_modules: where `npm ci`
// puts a node_modules.
func npmPackages(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "dist" || d.Name() == ".pipe") {
			return fs.SkipDir
		}
		if !d.IsDir() && d.Name() == "package.json" {
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestNodeModulesStayOutOfGo: `npm ci` in any npm package of the
// repository (examples/fastapi/packages/infra, the cdk tests' fixture)
// installs aws-cdk, whose init templates include files named
// %name%.template.go. go vet ./... and go test ./... must not read them,
// and gofmt -l $(git ls-files '*.go') must not list them.
//
// The go tool runs on a copy of the repository's module layout (every
// go.mod, at its path) with one small package and a fake node_modules
// holding such a template in each npm package: the real go vet ./..., in
// about a second.
func TestNodeModulesStayOutOfGo(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go: %v", err)
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(tmp, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The module boundaries: every go.mod of the checkout.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "testdata") {
			return fs.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			write(filepath.ToSlash(rel), string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	write("tool/tool.go", "// Package tool stands for the repository's packages.\npackage tool\n")
	// What aws-cdk ships: not Go, whatever its name says.
	const template = "package main\n\nfunc %name%() {}\n"
	pkgs := npmPackages(t, root)
	if len(pkgs) < 2 {
		t.Fatalf("found npm packages %v; want at least the example's and the cdk fixture's", pkgs)
	}
	var installed []string
	for _, dir := range pkgs {
		f := dir + "/node_modules/aws-cdk/lib/init-templates/app/go/%name%.template.go"
		write(f, template)
		installed = append(installed, f)
	}

	cmd := exec.Command(goBin, "vet", "./...")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go vet ./... with %s installed: %v\n%s", strings.Join(installed, ", "), err, out)
	}

	// gofmt reads the files git tracks: node_modules must be ignored.
	gi, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []gitignore.Pattern
	for _, l := range strings.Split(string(gi), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, gitignore.ParsePattern(l, nil))
		}
	}
	m := gitignore.NewMatcher(patterns)
	for _, f := range installed {
		if !m.Match(strings.Split(f, "/"), false) {
			t.Errorf("%s is not ignored by .gitignore: gofmt -l $(git ls-files '*.go') would read it once added", f)
		}
	}
}

// TestDogfoodSourcesComplete: `pipe build //:pipe` at the repository root
// runs go build on //:go_sources alone, in a sandbox. Every file go build
// reads from the checkout for ./cmd/pipe (each package's .go files and the
// files its //go:embed patterns match, go.mod, go.sum) must be in that
// filegroup, or the dogfood build fails ("pattern all:templates: no
// matching files found"). Checked with go list and pipe's own evaluation of
// the root BUILD.star, without building.
func TestDogfoodSourcesComplete(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,GoFiles,CgoFiles,EmbedFiles,Module", "./cmd/pipe")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var need []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath, Dir               string
			GoFiles, CgoFiles, EmbedFiles []string
			Module                        *struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/pipebuild/pipe" {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(append(p.GoFiles, p.CgoFiles...), p.EmbedFiles...) {
			need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	need = append(need, "go.mod", "go.sum")
	embedded := 0
	for _, f := range need {
		if strings.Contains(f, "templates/") {
			embedded++
		}
	}
	if embedded == 0 {
		t.Fatalf("go list found no embedded files; the check would prove nothing:\n%s", need)
	}

	pkg, err := buildfile.NewEvaluator(root, rules.Registry()).LoadPackage(context.Background(), "")
	if err != nil {
		t.Fatalf("the root BUILD.star: %v", err)
	}
	tg, ok := pkg.Targets["go_sources"]
	if !ok {
		t.Fatal("the root BUILD.star has no go_sources")
	}
	have := map[string]bool{}
	srcs, _ := tg.Attrs["srcs"].([]engine.Label)
	for _, l := range srcs {
		have[l.Name] = true
	}
	for _, f := range need {
		if !have[f] {
			t.Errorf("go build ./cmd/pipe reads %s, which //:go_sources does not hold: the dogfood build would not see it", f)
		}
	}
}
