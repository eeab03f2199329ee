package rules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/cdk"
	"github.com/pipebuild/pipe/internal/rules/python"
)

type mapLoader map[string]*engine.Package

func (m mapLoader) LoadPackage(_ context.Context, pkg string) (*engine.Package, error) {
	return m[pkg], nil
}

// writeAssembly writes a cloud assembly of stacks (name → the stacks it
// depends on) with empty templates.
func writeAssembly(t *testing.T, dir string, stacks map[string][]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	artifacts := map[string]any{}
	for name, deps := range stacks {
		artifacts[name] = map[string]any{
			"type":         "aws:cloudformation:stack",
			"environment":  "aws://unknown-account/unknown-region",
			"properties":   map[string]any{"templateFile": name + ".template.json"},
			"dependencies": deps,
		}
		if err := os.WriteFile(filepath.Join(dir, name+".template.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(map[string]any{"version": "36.0.0", "artifacts": artifacts})
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// planOf analyses targets whose rules only set the providers given.
func planOf(t *testing.T, root string, assemblies map[string]cdk.AssemblyInfo, bundles map[string]python.BundleInfo) *engine.Plan {
	t.Helper()
	pkg := &engine.Package{Path: "p", File: "p/BUILD.star", Targets: map[string]*engine.Target{}}
	for name, info := range assemblies {
		r := &engine.Rule{Name: "fake_cdk", Analyze: func(c *engine.AnalysisContext) error {
			engine.SetInfo(c, cdk.AssemblyKey, info)
			return nil
		}}
		pkg.Targets[name] = &engine.Target{Label: engine.Label{Pkg: "p", Name: name}, Rule: r, Attrs: map[string]any{}}
		pkg.Order = append(pkg.Order, name)
	}
	for name, info := range bundles {
		r := &engine.Rule{Name: "fake_bundle", Analyze: func(c *engine.AnalysisContext) error {
			engine.SetInfo(c, python.BundleKey, info)
			return nil
		}}
		pkg.Targets[name] = &engine.Target{Label: engine.Label{Pkg: "p", Name: name}, Rule: r, Attrs: map[string]any{}}
		pkg.Order = append(pkg.Order, name)
	}
	if err := os.MkdirAll(filepath.Join(root, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "p", engine.BuildFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ws := &engine.Workspace{Root: root}
	tg, err := engine.LoadTargets(context.Background(), ws, mapLoader{"p": pkg}, []engine.Pattern{{Pkg: "p", All: true}})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := engine.Analyze(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	return &engine.Plan{Targets: tg, Actions: ag}
}

func names(stacks []*deploy.Stack) string {
	var out []string
	for _, s := range stacks {
		out = append(out, s.StackName)
	}
	return strings.Join(out, " ")
}

// Each cdk_stack target deploys the stacks its stacks attribute selects,
// with their dependencies; bundles give their zips.
func TestDeploymentOf(t *testing.T) {
	root := t.TempDir()
	writeAssembly(t, filepath.Join(root, "dist/p/api/cdk.out"), map[string][]string{"Base": nil, "Api": {"Base"}, "Other": nil})
	writeAssembly(t, filepath.Join(root, "dist/p/web/cdk.out"), map[string][]string{"Web": nil})
	plan := planOf(t, root, map[string]cdk.AssemblyInfo{
		"api": {Dir: "dist/p/api/cdk.out", Stacks: []string{"Ap*"}},
		"web": {Dir: "dist/p/web/cdk.out"},
	}, map[string]python.BundleInfo{
		"bundle": {Dir: "dist/p/bundle", Zip: "dist/p/bundle.zip"},
	})
	d, err := DeploymentOf(root, plan, plan.Targets.Roots)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Targets) != 2 || d.Targets[0].String() != "//p:api" || d.Targets[1].String() != "//p:web" {
		t.Errorf("targets %v", d.Targets)
	}
	if got := names(d.Stacks); got != "Base Api Web" {
		t.Errorf("stacks %q, want Base Api Web (Other is not selected)", got)
	}
	if len(d.Zips) != 1 || d.Zips[0] != (deploy.PrebuiltZip{Dir: filepath.Join(root, "dist/p/bundle"), Zip: filepath.Join(root, "dist/p/bundle.zip")}) {
		t.Errorf("zips %+v", d.Zips)
	}

	// Only the roots' assemblies count.
	d, err = DeploymentOf(root, plan, []engine.Label{{Pkg: "p", Name: "web"}})
	if err != nil || names(d.Stacks) != "Web" {
		t.Errorf("web alone: %q, %v", names(d.Stacks), err)
	}
	d, err = DeploymentOf(root, plan, []engine.Label{{Pkg: "p", Name: "bundle"}})
	if err != nil || len(d.Targets) != 0 || len(d.Stacks) != 0 {
		t.Errorf("no cdk_stack among the roots: %+v, %v", d, err)
	}

	bad := planOf(t, root, map[string]cdk.AssemblyInfo{"api": {Dir: "dist/p/api/cdk.out", Stacks: []string{"Nope"}}}, nil)
	if _, err := DeploymentOf(root, bad, bad.Targets.Roots); err == nil || !strings.Contains(err.Error(), `//p:api: stacks "Nope" matches no stack; the stacks are: `) {
		t.Errorf("a glob matching nothing: %v", err)
	}
}

// A cdk_stack that refuses hotswaps marks every stack of its assembly.
func TestDeploymentOfNoHotswap(t *testing.T) {
	root := t.TempDir()
	writeAssembly(t, filepath.Join(root, "dist/p/prod/cdk.out"), map[string][]string{"Base": nil, "Api": {"Base"}})
	writeAssembly(t, filepath.Join(root, "dist/p/dev/cdk.out"), map[string][]string{"DevApi": nil})
	plan := planOf(t, root, map[string]cdk.AssemblyInfo{
		"prod": {Dir: "dist/p/prod/cdk.out", Stacks: []string{"Api"}, NoHotswap: "//p:prod says hotswap = False"},
		"dev":  {Dir: "dist/p/dev/cdk.out"},
	}, nil)
	d, err := DeploymentOf(root, plan, plan.Targets.Roots)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Stacks {
		want := ""
		if s.StackName != "DevApi" {
			want = "//p:prod says hotswap = False"
		}
		if s.NoHotswap != want {
			t.Errorf("stack %s: NoHotswap %q, want %q", s.StackName, s.NoHotswap, want)
		}
	}
}
