package buildfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pipebuild/pipe/internal/engine"
)

// fakeRule is a test double, not a real pipe rule: it declares one
// attribute of each shape the tests need and has no Analyze, since these
// tests only evaluate BUILD files.
func fakeRule() *engine.Rule {
	return &engine.Rule{
		Name: "fake_rule",
		Attrs: []engine.Attr{
			{Name: "files", Type: engine.AttrStringList},
			{Name: "srcs", Type: engine.AttrLabelList},
			{Name: "dep", Type: engine.AttrLabel},
			{Name: "cmd", Type: engine.AttrString},
			{Name: "mode", Type: engine.AttrString, Values: []string{"fast", "slow"}},
			{Name: "count", Type: engine.AttrInt},
			{Name: "enabled", Type: engine.AttrBool},
			{Name: "outs", Type: engine.AttrOutputList},
		},
	}
}

func testRegistry() *engine.Registry {
	r := engine.NewRegistry()
	r.Register(fakeRule())
	return r
}

// workspace writes files (workspace-relative path → content) under a new
// temporary workspace root, with a WORKSPACE.star unless one is given.
func workspace(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if _, ok := files[engine.WorkspaceFile]; !ok {
		files[engine.WorkspaceFile] = `workspace(name = "test")` + "\n"
	}
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func loadPkg(t *testing.T, root, pkg string) *engine.Package {
	t.Helper()
	p, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), pkg)
	if err != nil {
		t.Fatalf("LoadPackage(%q): %v", pkg, err)
	}
	return p
}

// loadErr evaluates pkg and returns its error as a BuildFileError.
func loadErr(t *testing.T, root, pkg string) *engine.BuildFileError {
	t.Helper()
	p, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), pkg)
	if err == nil {
		t.Fatalf("LoadPackage(%q) succeeded with targets %v; want an error", pkg, p.Order)
	}
	var be *engine.BuildFileError
	if !errors.As(err, &be) {
		t.Fatalf("LoadPackage(%q) error %T (%v) is not a BuildFileError", pkg, err, err)
	}
	return be
}

func filesAttr(t *testing.T, p *engine.Package, target string) []string {
	t.Helper()
	tg, ok := p.Targets[target]
	if !ok {
		t.Fatalf("package //%s has no target %q (has %v)", p.Path, target, p.Order)
	}
	files, _ := tg.Attrs["files"].([]string)
	return files
}

func TestGlobRecursiveExcludeSorted(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star": `
fake_rule(name = "go", files = glob(["**/*.go"], exclude = ["**/*_test.go"]))
fake_rule(name = "top", files = glob(["*.go"]))
fake_rule(name = "all", files = glob(["**"], exclude = ["BUILD.star", "sub/**"]))
fake_rule(name = "dup", files = glob(["z.go", "*.go", "z.*"]))
fake_rule(name = "none", files = glob(["*.rs"]))
`,
		"pkg/z.go":               "",
		"pkg/a.go":               "",
		"pkg/a_test.go":          "",
		"pkg/b.txt":              "",
		"pkg/sub/c.go":           "",
		"pkg/sub/deep/d.go":      "",
		"pkg/sub/deep/d_test.go": "",
		"pkg/sub/deep/e.txt":     "",
		"other/x.go":             "",
	})
	p := loadPkg(t, root, "pkg")
	for target, want := range map[string][]string{
		"go":   {"a.go", "sub/c.go", "sub/deep/d.go", "z.go"},
		"top":  {"a.go", "a_test.go", "z.go"},
		"all":  {"a.go", "a_test.go", "b.txt", "z.go"},
		"dup":  {"a.go", "a_test.go", "z.go"},
		"none": nil,
	} {
		if got := filesAttr(t, p, target); !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: glob = %q, want %q", target, got, want)
		}
	}
	if !reflect.DeepEqual(p.Order, []string{"go", "top", "all", "dup", "none"}) {
		t.Errorf("Order = %v", p.Order)
	}
}

func TestGlobAllowEmpty(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star": "fake_rule(name = \"x\",\n    files = glob([\"*.rs\"], allow_empty = False))\n",
	})
	be := loadErr(t, root, "pkg")
	if !strings.Contains(be.Msg, "matched no files") || be.Pos.File != "pkg/BUILD.star" || be.Pos.Line != 2 {
		t.Errorf("error = %v (pos %+v)", be, be.Pos)
	}
}

func TestGlobGitignore(t *testing.T) {
	root := workspace(t, map[string]string{
		".gitignore":               "*.log\nbuild/\n",
		"a/.gitignore":             "*.tmp\n",
		"a/pkg/BUILD.star":         `fake_rule(name = "x", files = glob(["**"], exclude = ["BUILD.star", "**/.gitignore"]))`,
		"a/pkg/.gitignore":         "generated/\n!keep.log\nsecret.txt\n",
		"a/pkg/main.c":             "",
		"a/pkg/debug.log":          "", // root .gitignore
		"a/pkg/keep.log":           "", // re-included by the package's .gitignore
		"a/pkg/scratch.tmp":        "", // a/.gitignore, above the package
		"a/pkg/build/out.o":        "", // root .gitignore, directory pattern
		"a/pkg/generated/gen.c":    "", // package .gitignore
		"a/pkg/secret.txt":         "",
		"a/pkg/sub/secret.txt":     "", // unanchored pattern applies below too
		"a/pkg/sub/.gitignore":     "*.c\n",
		"a/pkg/sub/x.c":            "", // sub-directory's own .gitignore
		"a/pkg/sub/y.h":            "",
		"a/pkg/sub/deep/debug.log": "",
		"a/pkg/sub/deep/z.h":       "",
	})
	p := loadPkg(t, root, "a/pkg")
	want := []string{"keep.log", "main.c", "sub/deep/z.h", "sub/y.h"}
	if got := filesAttr(t, p, "x"); !reflect.DeepEqual(got, want) {
		t.Errorf("glob = %q, want %q", got, want)
	}
}

func TestGlobRootPackageSkipsDistAndGit(t *testing.T) {
	root := workspace(t, map[string]string{
		"BUILD.star":            `fake_rule(name = "x", files = glob(["**"], exclude = ["*.star"]))`,
		"README":                "",
		"dist/out":              "",
		".pipe/state":           "",
		".git/HEAD":             "",
		"lib/dist/kept":         "", // only the top-level dist/ is pipe's
		"nested/WORKSPACE.star": "",
		"nested/file":           "",
	})
	p := loadPkg(t, root, "")
	want := []string{"README", "lib/dist/kept"}
	if got := filesAttr(t, p, "x"); !reflect.DeepEqual(got, want) {
		t.Errorf("glob = %q, want %q", got, want)
	}
}

func TestGlobStopsAtSubPackage(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star":          `fake_rule(name = "x", files = glob(["**/*.txt"]))`,
		"pkg/a.txt":               "",
		"pkg/dir/b.txt":           "",
		"pkg/sub/BUILD.star":      `fake_rule(name = "y", files = glob(["**/*.txt"]))`,
		"pkg/sub/c.txt":           "",
		"pkg/sub/deeper/d.txt":    "",
		"pkg/dir/sub2/BUILD.star": "",
		"pkg/dir/sub2/e.txt":      "",
	})
	if got, want := filesAttr(t, loadPkg(t, root, "pkg"), "x"), []string{"a.txt", "dir/b.txt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("//pkg glob = %q, want %q", got, want)
	}
	if got, want := filesAttr(t, loadPkg(t, root, "pkg/sub"), "y"), []string{"c.txt", "deeper/d.txt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("//pkg/sub glob = %q, want %q", got, want)
	}
}

func TestGlobBadPatterns(t *testing.T) {
	for _, tt := range []struct {
		call, errHas string
	}{
		{`glob(["../x"])`, "leaves the package"},
		{`glob(["a/../../x"])`, "leaves the package"},
		{`glob(["*.c"], exclude = ["../*.h"])`, "exclude"},
		{`glob(["/etc/passwd"])`, "drop the leading /"},
		{`glob([""])`, "empty pattern"},
		{`glob(["[a-"])`, "not a valid glob"},
		{`glob([1])`, "want a string"},
		{`glob("*.c")`, "glob"},
	} {
		root := workspace(t, map[string]string{
			"pkg/BUILD.star": "# comment\nfake_rule(name = \"x\", files = " + tt.call + ")\n",
		})
		be := loadErr(t, root, "pkg")
		if !strings.Contains(be.Msg, tt.errHas) {
			t.Errorf("%s: error %q does not contain %q", tt.call, be.Msg, tt.errHas)
		}
		if be.Pos.File != "pkg/BUILD.star" || be.Pos.Line != 2 || be.Pos.Col == 0 {
			t.Errorf("%s: error position = %+v, want pkg/BUILD.star:2:<col>", tt.call, be.Pos)
		}
	}
}

func TestLoadMacroEvaluatedOnce(t *testing.T) {
	root := workspace(t, map[string]string{
		"tools/defs.star": `
print("defs.star evaluated")
load(":more.star", "SUFFIX")

def pair(name, files = []):
    fake_rule(name = name, files = files)
    fake_rule(name = name + SUFFIX, files = files, cmd = package_name())
`,
		"tools/more.star": "SUFFIX = \"_copy\"\n",
		"a/BUILD.star": `
load("//tools:defs.star", "pair")
pair(name = "one", files = ["x"])
`,
		"b/BUILD.star": `
load("//tools:defs.star", my_pair = "pair")
my_pair(name = "two")
`,
	})
	var mu sync.Mutex
	var prints []string
	var printPos []engine.Pos
	ev := NewEvaluator(root, testRegistry())
	ev.Print = func(pos engine.Pos, msg string) {
		mu.Lock()
		defer mu.Unlock()
		prints = append(prints, msg)
		printPos = append(printPos, pos)
	}
	pa, err := ev.LoadPackage(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := ev.LoadPackage(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pa.Order, []string{"one", "one_copy"}) || !reflect.DeepEqual(pb.Order, []string{"two", "two_copy"}) {
		t.Errorf("targets: //a %v, //b %v", pa.Order, pb.Order)
	}
	if got := pa.Targets["one_copy"].Attrs["cmd"]; got != "a" {
		t.Errorf("package_name() in a macro = %v, want the calling package", got)
	}
	if got := filesAttr(t, pa, "one_copy"); !reflect.DeepEqual(got, []string{"x"}) {
		t.Errorf("macro passed files = %q", got)
	}
	// The target's position is the macro call in the BUILD file.
	if pos := pa.Targets["one"].Pos; pos.File != "a/BUILD.star" || pos.Line != 3 {
		t.Errorf("target declared in a macro has Pos %v, want a/BUILD.star:3", pos)
	}
	if len(prints) != 1 || prints[0] != "defs.star evaluated" {
		t.Errorf("print() calls = %q, want the module evaluated exactly once", prints)
	} else if printPos[0].File != "tools/defs.star" || printPos[0].Line != 2 {
		t.Errorf("print position = %v, want tools/defs.star:2", printPos[0])
	}
	// Loads is transitive, also when the module came from the cache.
	wantLoads := []string{"tools/defs.star", "tools/more.star"}
	if !reflect.DeepEqual(pa.Loads, wantLoads) || !reflect.DeepEqual(pb.Loads, wantLoads) {
		t.Errorf("Loads: //a %v, //b %v; want %v", pa.Loads, pb.Loads, wantLoads)
	}
}

func TestLoadConcurrentPackagesEvaluateModuleOnce(t *testing.T) {
	files := map[string]string{
		"tools/defs.star": "print(\"evaluated\")\ndef mk(name):\n    fake_rule(name = name)\n",
	}
	const n = 8
	for i := range n {
		files["p"+string(rune('0'+i))+"/BUILD.star"] = "load(\"//tools:defs.star\", \"mk\")\nmk(name = \"t\")\n"
	}
	root := workspace(t, files)
	var mu sync.Mutex
	count := 0
	ev := NewEvaluator(root, testRegistry())
	ev.Print = func(engine.Pos, string) { mu.Lock(); count++; mu.Unlock() }
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ev.LoadPackage(context.Background(), "p"+string(rune('0'+i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if count != 1 {
		t.Errorf("module evaluated %d times across %d concurrent packages, want 1", count, n)
	}
}

func TestLoadCycle(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star":  "load(\":a.star\", \"A\")\n",
		"pkg/a.star":      "load(\":b.star\", \"B\")\nA = 1\n",
		"pkg/b.star":      "load(\"//pkg:a.star\", \"A\")\nB = 2\n",
		"self/BUILD.star": "load(\":s.star\", \"S\")\n",
		"self/s.star":     "load(\":s.star\", \"T\")\nS = 1\n",
	})
	_, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "pkg")
	if err == nil || !strings.Contains(err.Error(), "load cycle") {
		t.Fatalf("a.star -> b.star -> a.star: err = %v, want a load cycle", err)
	}
	if !strings.Contains(err.Error(), "pkg/a.star -> pkg/b.star -> pkg/a.star") {
		t.Errorf("load cycle error does not spell out the cycle: %v", err)
	}
	if !engine.IsUserError(err) {
		t.Errorf("load cycle error %T is not a user error", err)
	}
	_, err = NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "self")
	if err == nil || !strings.Contains(err.Error(), "load cycle") {
		t.Errorf("s.star loading itself: err = %v, want a load cycle", err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range []struct {
		load, errHas string
	}{
		{`load("//tools:missing.star", "x")`, "no such file"},
		{`load("//tools:defs.bzl", "x")`, "only load .star"},
		{`load("@repo//tools:defs.star", "x")`, "external repositories"},
		{`load("//tools:defs.star", "nope")`, "nope"},
	} {
		root := workspace(t, map[string]string{
			"tools/defs.star": "X = 1\n",
			"pkg/BUILD.star":  tt.load + "\n",
		})
		_, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "pkg")
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.load, err, tt.errHas)
		} else if !strings.Contains(err.Error(), "pkg/BUILD.star:1") {
			t.Errorf("%s: error %q has no position in pkg/BUILD.star", tt.load, err)
		}
	}
}

func TestUnknownAttribute(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star": "fake_rule(\n    name = \"x\",\n    fils = [\"a\"],\n)\n",
		"far/BUILD.star": "fake_rule(name = \"x\", zzzzzzzzzz = 1)\n",
	})
	be := loadErr(t, root, "pkg")
	if !strings.Contains(be.Msg, `unknown attribute "fils"`) || !strings.Contains(be.Msg, `did you mean "files"?`) {
		t.Errorf("error = %q, want a did you mean suggestion", be.Msg)
	}
	if be.Pos.File != "pkg/BUILD.star" || be.Pos.Line != 3 {
		t.Errorf("error position = %v, want the attribute at pkg/BUILD.star:3", be.Pos)
	}
	be = loadErr(t, root, "far")
	if !strings.Contains(be.Msg, "fake_rule takes name, files") {
		t.Errorf("no close match: error = %q, want the list of attributes", be.Msg)
	}
}

func TestAttributeTypeErrors(t *testing.T) {
	for _, tt := range []struct {
		attr, value, errHas string
	}{
		{"files", `"a.txt"`, "want a list of strings, got string"},
		{"files", `["a", 1]`, "element 1: want a string, got int"},
		{"srcs", `"a.txt"`, "want a list of strings, got string"},
		{"srcs", `["a:b"]`, "must start with //"},
		{"srcs", `["a", ":a"]`, "listed twice"},
		{"dep", `["//x"]`, "want a label string, got list"},
		{"cmd", `["echo"]`, "want a string, got list"},
		{"mode", `"fsat"`, `did you mean "fast"?`},
		{"count", `"3"`, "want an int, got string"},
		{"enabled", `"yes"`, "want True or False, got string"},
		{"outs", `["../escape"]`, "clean relative path"},
		{"outs", `["a", "a"]`, "listed twice"},
		{"tags", `"manual"`, "want a list of strings, got string"},
	} {
		root := workspace(t, map[string]string{
			"pkg/BUILD.star": "fake_rule(\n    name = \"x\",\n    " + tt.attr + " = " + tt.value + ",\n)\n",
		})
		be := loadErr(t, root, "pkg")
		if !strings.Contains(be.Msg, "attribute "+tt.attr+":") || !strings.Contains(be.Msg, tt.errHas) {
			t.Errorf("%s = %s: error %q, want it to name the attribute and contain %q", tt.attr, tt.value, be.Msg, tt.errHas)
		}
		if be.Pos.File != "pkg/BUILD.star" || be.Pos.Line != 3 {
			t.Errorf("%s = %s: error position %v, want pkg/BUILD.star:3", tt.attr, tt.value, be.Pos)
		}
	}
}

func TestRuleCallErrors(t *testing.T) {
	for _, tt := range []struct {
		build, errHas string
	}{
		{`fake_rule(files = [])`, `missing required attribute "name"`},
		{`fake_rule("x")`, "keyword arguments only"},
		{"fake_rule(name = \"x\")\nfake_rule(name = \"x\")", `duplicate target name "x"`},
		{`fake_rule(name = "a/../b")`, "invalid target name"},
		{`fake_rule(name = "")`, "invalid target name"},
	} {
		root := workspace(t, map[string]string{"pkg/BUILD.star": tt.build + "\n"})
		be := loadErr(t, root, "pkg")
		if !strings.Contains(be.Msg, tt.errHas) || be.Pos.File != "pkg/BUILD.star" {
			t.Errorf("%s: error %v, want it in pkg/BUILD.star and to contain %q", tt.build, be, tt.errHas)
		}
	}
}

func TestRuleAttributeValues(t *testing.T) {
	root := workspace(t, map[string]string{
		"pkg/BUILD.star": `
fake_rule(
    name = "x",
    srcs = ["a.txt", ":gen", "//other:lib", "//third"],
    dep = "sub/file.c",
    mode = "slow",
    count = 3,
    enabled = True,
    outs = ["out/x.txt"],
    tags = ["manual"],
)
fake_rule(name = "defaults")
`,
	})
	p := loadPkg(t, root, "pkg")
	x := p.Targets["x"]
	if x.Label != (engine.Label{Pkg: "pkg", Name: "x"}) {
		t.Errorf("Label = %v", x.Label)
	}
	wantSrcs := []engine.Label{{Pkg: "pkg", Name: "a.txt"}, {Pkg: "pkg", Name: "gen"}, {Pkg: "other", Name: "lib"}, {Pkg: "third", Name: "third"}}
	if got := x.Attrs["srcs"]; !reflect.DeepEqual(got, wantSrcs) {
		t.Errorf("srcs = %v, want %v", got, wantSrcs)
	}
	if got := x.Attrs["dep"]; got != (engine.Label{Pkg: "pkg", Name: "sub/file.c"}) {
		t.Errorf("dep = %v", got)
	}
	if x.Attrs["mode"] != "slow" || x.Attrs["count"] != int64(3) || x.Attrs["enabled"] != true {
		t.Errorf("attrs = %v", x.Attrs)
	}
	if !reflect.DeepEqual(x.Tags, []string{"manual"}) {
		t.Errorf("Tags = %v", x.Tags)
	}
	d := p.Targets["defaults"]
	for attr, want := range map[string]any{
		"files": []string(nil), "srcs": []engine.Label(nil), "dep": engine.Label{},
		"cmd": "", "count": int64(0), "enabled": false,
	} {
		if got := d.Attrs[attr]; !reflect.DeepEqual(got, want) {
			t.Errorf("default %s = %#v, want %#v", attr, got, want)
		}
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	root := workspace(t, map[string]string{"pkg/BUILD.star": "fake_rule(name = \"x\"\n\n"})
	be := loadErr(t, root, "pkg")
	if be.Pos.File != "pkg/BUILD.star" || !strings.Contains(be.Msg, "syntax error") {
		t.Errorf("error = %v", be)
	}
	root = workspace(t, map[string]string{"pkg/BUILD.star": "x = undefined_name\n"})
	be = loadErr(t, root, "pkg")
	if be.Pos.File != "pkg/BUILD.star" || be.Pos.Line != 1 || !strings.Contains(be.Msg, "undefined_name") {
		t.Errorf("error = %v", be)
	}
}

func TestEvalWorkspace(t *testing.T) {
	root := workspace(t, map[string]string{
		engine.WorkspaceFile: `
workspace(
    name = "demo",
    action_env = ["HOME", "LANG"],
    python = "python3.12",
    action_path = "/opt/bin:/usr/bin",
    remote_cache = "http://cache",
)
`,
	})
	s, err := NewEvaluator(root, testRegistry()).EvalWorkspace()
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "demo" || !reflect.DeepEqual(s.ActionEnv, []string{"HOME", "LANG"}) || s.Python != "python3.12" || s.Path != "/opt/bin:/usr/bin" {
		t.Errorf("Settings = %+v", s)
	}
	if s.NodeModules != "node_modules" {
		t.Errorf("NodeModules default = %q", s.NodeModules)
	}
	if s.Extra["remote_cache"] != "http://cache" {
		t.Errorf("Extra = %v", s.Extra)
	}

	// Defaults: name from the directory, the fixed action PATH.
	root = workspace(t, map[string]string{engine.WorkspaceFile: "workspace()\n"})
	s, err = NewEvaluator(root, testRegistry()).EvalWorkspace()
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != filepath.Base(root) || s.Path != engine.DefaultActionPath || s.ActionEnv != nil {
		t.Errorf("default Settings = %+v", s)
	}
}

func TestEvalWorkspaceErrors(t *testing.T) {
	for _, tt := range []struct {
		src, errHas string
		line        int
	}{
		{"workspace(\n    name = \"x\",\n    actoin_env = [\"HOME\"],\n)\n", `unknown attribute "actoin_env" (did you mean "action_env"?)`, 3},
		{"workspace(name = \"x\", action_env = \"HOME\")\n", "attribute action_env: want a list of strings", 1},
		{"workspace(name = 1)\n", "attribute name: want a string", 1},
		{"workspace(\"x\")\n", "keyword arguments only", 1},
		{"workspace(name = \"a\")\nworkspace(name = \"b\")\n", "called twice", 2},
		{"fake_rule(name = \"x\")\n", "fake_rule", 1},
	} {
		root := workspace(t, map[string]string{engine.WorkspaceFile: tt.src})
		_, err := NewEvaluator(root, testRegistry()).EvalWorkspace()
		var be *engine.BuildFileError
		if !errors.As(err, &be) {
			t.Errorf("%q: err = %v (%T), want a BuildFileError", tt.src, err, err)
			continue
		}
		if !strings.Contains(be.Msg, tt.errHas) {
			t.Errorf("%q: error %q, want it to contain %q", tt.src, be.Msg, tt.errHas)
		}
		if be.Pos.File != engine.WorkspaceFile || be.Pos.Line != tt.line {
			t.Errorf("%q: error position %v, want %s:%d", tt.src, be.Pos, engine.WorkspaceFile, tt.line)
		}
	}
	if _, err := NewEvaluator(t.TempDir(), testRegistry()).EvalWorkspace(); err == nil {
		t.Error("EvalWorkspace without a WORKSPACE.star succeeded")
	}
}
