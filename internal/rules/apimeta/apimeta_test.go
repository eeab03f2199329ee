package apimeta_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/apimeta"
	"github.com/pipebuild/pipe/internal/rules/core"
)

const spec = `{"openapi": "3.1.0", "paths": {"/items/{item_id}": {"get": {"operationId": "read_item"}}}}`

type workspace struct {
	ws  *engine.Workspace
	reg *engine.Registry
}

// newWorkspace writes a workspace whose files map workspace paths to
// contents.
func newWorkspace(t *testing.T, files map[string]string) *workspace {
	t.Helper()
	root := t.TempDir()
	files["WORKSPACE.star"] = "workspace(name = \"t\")\n"
	for rel, content := range files {
		write(t, filepath.Join(root, rel), content)
	}
	reg := engine.NewRegistry()
	core.Register(reg)
	apimeta.Register(reg)
	return &workspace{
		ws:  &engine.Workspace{Root: root, Settings: engine.Settings{Path: engine.DefaultActionPath}},
		reg: reg,
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (w *workspace) plan() (*engine.Plan, error) {
	pat, _ := engine.ParsePattern("//...", "")
	return engine.PlanBuild(context.Background(), w.ws, buildfile.NewEvaluator(w.ws.Root, w.reg), []engine.Pattern{pat})
}

func action(t *testing.T, ag *engine.ActionGraph, owner string) *engine.Action {
	t.Helper()
	for _, a := range ag.Actions {
		if a.Owner.String() == owner {
			return a
		}
	}
	t.Fatalf("no action of %s", owner)
	return nil
}

func paths(files []*engine.File) []string {
	var ps []string
	for _, f := range files {
		ps = append(ps, f.Path)
	}
	return ps
}

func TestRuleOutputs(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"packages/my-api/BUILD.star": `genrule(name = "openapi", outs = ["openapi.json"], cmd = "echo '{}' > $@")` + "\n",
		"packages/common/constructs/BUILD.star": `api_metadata(
    name = "my-api-metadata",
    spec = "//packages/my-api:openapi",
    out = "src/generated/my-api/metadata.gen.ts",
)
`,
	})
	p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	a := action(t, p.Actions, "//packages/common/constructs:my-api-metadata")
	if a.Mnemonic != "ApiMetadata" || a.Run == nil || a.Argv != nil || a.Sandbox {
		t.Errorf("action: mnemonic %q, run %v, argv %q, sandbox %v; want an unsandboxed in-process ApiMetadata step", a.Mnemonic, a.Run != nil, a.Argv, a.Sandbox)
	}
	if !strings.Contains(a.Identity, apimeta.GeneratorVersion) {
		t.Errorf("identity %q does not name the generator version", a.Identity)
	}
	if got, want := strings.Join(paths(a.Inputs), " "), "dist/packages/my-api/openapi/openapi.json"; got != want {
		t.Errorf("inputs %q, want %q", got, want)
	}
	want := "packages/common/constructs/src/generated/my-api/metadata.gen.ts dist/packages/common/constructs/my-api-metadata/metadata.gen.ts"
	if got := strings.Join(paths(a.Outputs), " "); got != want {
		t.Errorf("outputs %q, want %q", got, want)
	}
	l, _ := engine.ParseLabel("//packages/common/constructs:my-api-metadata", "")
	if got := strings.Join(paths(p.Actions.TargetFiles(l)), " "); got != want {
		t.Errorf("provided %q, want %q (source-tree file first)", got, want)
	}
	if len(p.Needed) != 2 {
		t.Errorf("%d actions needed, want the genrule and api_metadata", len(p.Needed))
	}
}

func TestRuleSpecErrors(t *testing.T) {
	for _, tc := range []struct{ name, build, want string }{
		{"two json", `filegroup(name = "s", srcs = ["a.json", "b.json", "c.txt"])
api_metadata(name = "m", spec = ":s", out = "m.ts")`,
			`p/BUILD.star:2:1: //p:m: api_metadata: spec //p:s provides 2 .json files (p/a.json, p/b.json); point spec at a file or a target that provides exactly one`},
		{"no json", `filegroup(name = "s", srcs = ["c.txt"])
api_metadata(name = "m", spec = ":s", out = "m.ts")`,
			`p/BUILD.star:2:1: //p:m: api_metadata: spec //p:s provides no .json file (it provides p/c.txt)`},
		{"no files", `filegroup(name = "s")
api_metadata(name = "m", spec = ":s", out = "m.ts")`,
			`p/BUILD.star:2:1: //p:m: api_metadata: spec //p:s provides no files`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkspace(t, map[string]string{
				"p/BUILD.star": tc.build + "\n",
				"p/a.json":     spec, "p/b.json": spec, "p/c.txt": "c",
			})
			_, err := w.plan()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant it to start with\n  %s", err, tc.want)
			}
		})
	}
}

func TestRuleOutErrors(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{"", "is empty"},
		{"/abs/m.ts", "is absolute"},
		{"../m.ts", "leaves the package"},
		{"..", "leaves the package"},
		{"src/../m.ts", `is not a clean path (did you mean "m.ts"?)`},
		{"./m.ts", `is not a clean path`},
		{`src\m.ts`, "holds a backslash"},
		{"m.js", "must name a .ts file"},
		{"src/.ts", "must name a .ts file"},
		{"sub/deeper/m.ts", "is inside package //p/sub"},
	} {
		w := newWorkspace(t, map[string]string{
			"p/BUILD.star":     `api_metadata(name = "m", spec = "a.json", out = "` + strings.ReplaceAll(tc.out, `\`, `\\`) + `")` + "\n",
			"p/a.json":         spec,
			"p/sub/BUILD.star": "",
		})
		_, err := w.plan()
		want := `p/BUILD.star:1:1: //p:m: api_metadata: out "` + strings.ReplaceAll(tc.out, `\`, `\\`) + `" ` + tc.want
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("out %q: error\n  %v\nwant it to start with\n  %s", tc.out, err, want)
		}
	}
}

func TestRuleOutInsideDist(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"BUILD.star": `api_metadata(name = "m", spec = "a.json", out = "dist/m.ts")` + "\n",
		"a.json":     spec,
	})
	_, err := w.plan()
	if err == nil || !strings.Contains(err.Error(), `out "dist/m.ts" is inside dist/, which pipe manages`) {
		t.Errorf("error %v, want one about dist/", err)
	}
}

// TestRuleBuild runs the action: the module lands in the source tree and in
// dist/, a second build is a cache hit, and a deleted source-tree copy is
// restored.
func TestRuleBuild(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"p/BUILD.star": `filegroup(name = "spec", srcs = ["openapi.json"])
api_metadata(name = "meta", spec = ":spec", out = "src/generated/metadata.gen.ts")
`,
		"p/openapi.json": spec,
	})
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	build := func() engine.Summary {
		t.Helper()
		p, err := w.plan()
		if err != nil {
			t.Fatal(err)
		}
		ex := &engine.Executor{WS: w.ws, Cache: c, Digests: engine.LoadFileDigests(filepath.Join(w.ws.StateDir(), "digests")), Jobs: 2, Graph: p.Actions}
		sum, err := ex.Execute(context.Background(), p.Needed)
		var bf *engine.BuildFailedError
		if errors.As(err, &bf) {
			t.Fatalf("build failed: %v: %v", bf, bf.Failed[0].Output)
		}
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	want, err := apimeta.Generate([]byte(spec), "p/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, rel := range []string{"p/src/generated/metadata.gen.ts", "dist/p/meta/metadata.gen.ts"} {
			got, err := os.ReadFile(w.ws.Abs(rel))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s:\n%s\nwant\n%s", rel, got, want)
			}
		}
	}
	if sum := build(); sum.Executed != 1 {
		t.Errorf("first build: %+v, want 1 executed", sum)
	}
	check()
	if !strings.Contains(string(want), "readItem: {\n    path: '/items/{item_id}',\n    method: 'GET',\n  },") {
		t.Errorf("unexpected module:\n%s", want)
	}
	if sum := build(); sum.Cached != 1 || sum.Executed != 0 {
		t.Errorf("second build: %+v, want 1 cached", sum)
	}
	if err := os.Remove(w.ws.Abs("p/src/generated/metadata.gen.ts")); err != nil {
		t.Fatal(err)
	}
	if sum := build(); sum.Cached != 1 {
		t.Errorf("build after deleting the source-tree copy: %+v, want 1 cached", sum)
	}
	check()
}

func TestRuleBuildInvalidSpec(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"p/BUILD.star":   `api_metadata(name = "meta", spec = "openapi.json", out = "m.ts")` + "\n",
		"p/openapi.json": "{\n  \"paths\": {}\n  \"x\": 1\n}\n",
	})
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	ex := &engine.Executor{WS: w.ws, Cache: c, Digests: engine.LoadFileDigests(filepath.Join(w.ws.StateDir(), "digests")), Jobs: 1}
	_, err = ex.Execute(context.Background(), p.Needed)
	want := "//p:meta failed: p/openapi.json:3:3: not valid JSON: invalid character '\"' after object key:value pair"
	if err == nil || err.Error() != want {
		t.Errorf("error\n  %v\nwant\n  %s", err, want)
	}
}
