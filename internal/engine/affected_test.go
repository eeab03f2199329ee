package engine_test

// Tests of AffectedTargets on workspaces evaluated the way cmd/pipe does
// (buildfile.NewEvaluator with a registry), with hand-written change lists:
// no git here, cmd/pipe's tests cover the whole path from a repository.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules"
	"github.com/pipebuild/pipe/internal/rules/core"
)

// affectedFiles is a workspace of three packages: //lib's filegroup globs
// data/, //app and //site call a macro from macros/defs.star, and the
// dependency chain runs //lib:joined -> //app:loud -> //site:page.
var affectedFiles = map[string]string{
	"WORKSPACE.star": "workspace(name = \"affected\")\n",
	"macros/defs.star": `def upper(name, src):
    genrule(
        name = name,
        srcs = [src],
        outs = [name + ".txt"],
        cmd = "tr a-z A-Z < $(SRCS) > $@",
    )
`,
	"lib/BUILD.star": `filegroup(
    name = "data",
    srcs = glob(["data/*.txt"]),
)

genrule(
    name = "joined",
    srcs = [":data"],
    outs = ["joined.txt"],
    cmd = "cat $(SRCS) > $@",
)

genrule(
    name = "solo",
    srcs = ["solo.txt"],
    outs = ["solo.out"],
    cmd = "cp $< $@",
)
`,
	"lib/data/a.txt": "a\n",
	"lib/data/b.txt": "b\n",
	"lib/solo.txt":   "solo\n",
	"lib/README.md":  "read me\n",
	"app/BUILD.star": `load("//macros:defs.star", "upper")

upper(name = "loud", src = "//lib:joined")

genrule(
    name = "other",
    srcs = ["other.txt"],
    outs = ["other.out"],
    cmd = "cp $< $@",
)
`,
	"app/other.txt": "other\n",
	"site/BUILD.star": `load("//macros:defs.star", "upper")

upper(name = "shout", src = "site.txt")

genrule(
    name = "page",
    srcs = ["//app:loud", "//lib:solo"],
    outs = ["page.html"],
    cmd = "cat $(SRCS) > $@",
)
`,
	"site/site.txt": "site\n",
	"docs/notes.md": "not in any package\n",
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// analyse loads //... of the workspace at root and analyses it.
func analyse(t *testing.T, root string, reg *engine.Registry) (*engine.TargetGraph, *engine.ActionGraph) {
	t.Helper()
	ev := buildfile.NewEvaluator(root, reg)
	settings, err := ev.EvalWorkspace()
	if err != nil {
		t.Fatal(err)
	}
	ws := &engine.Workspace{Root: root, Settings: settings}
	all, _ := engine.ParsePattern("//...", "")
	tg, err := engine.LoadTargets(context.Background(), ws, ev, []engine.Pattern{all})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := engine.Analyze(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	return tg, ag
}

// affectedTargets is engine.AffectedTargets, failing the test on an error.
func affectedTargets(t *testing.T, tg *engine.TargetGraph, ag *engine.ActionGraph, changes []engine.FileChange, opts engine.AffectedOptions) []engine.AffectedTarget {
	t.Helper()
	res, err := engine.AffectedTargets(context.Background(), tg, ag, changes, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// affectedLabels is engine.Affected, failing the test on an error.
func affectedLabels(t *testing.T, tg *engine.TargetGraph, ag *engine.ActionGraph, changed []string, opts engine.AffectedOptions) []engine.Label {
	t.Helper()
	res, err := engine.Affected(context.Background(), tg, ag, changed, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func labelStrings(ts []engine.AffectedTarget) []string {
	out := []string{}
	for _, a := range ts {
		out = append(out, a.Label.String())
	}
	return out
}

func sorted(s ...string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func mod(p string) engine.FileChange { return engine.FileChange{Path: p, Kind: engine.ChangeModified} }
func add(p string) engine.FileChange { return engine.FileChange{Path: p, Kind: engine.ChangeAdded} }
func del(p string) engine.FileChange { return engine.FileChange{Path: p, Kind: engine.ChangeDeleted} }
func ren(from, to string) engine.FileChange {
	return engine.FileChange{Path: to, OldPath: from, Kind: engine.ChangeRenamed}
}

func TestAffectedTargets(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, affectedFiles)
	// The tree as it is after each change: a rename's new path exists, a
	// deleted file does not, a new package has its BUILD.star.
	writeFiles(t, root, map[string]string{
		"lib/data/c.txt":      "renamed b\n",
		"lib/data/d.txt":      "new\n",
		"sub/BUILD.star":      "filegroup(name = \"s\", srcs = glob([\"*.txt\"]))\n",
		"sub/s.txt":           "s\n",
		"lib/deep/BUILD.star": "filegroup(name = \"deep\", srcs = [\"x.txt\"])\n",
		"lib/deep/x.txt":      "x\n",
	})
	os.Remove(filepath.Join(root, "lib", "data", "b.txt"))
	tg, ag := analyse(t, root, rules.Registry())

	chain := []string{"//app:loud", "//site:page"} // rdeps of //lib:joined
	libAll := []string{"//lib:data", "//lib:joined", "//lib:solo"}
	every := []string{"//app:loud", "//app:other", "//lib/deep:deep", "//lib:data", "//lib:joined", "//lib:solo", "//site:page", "//site:shout", "//sub:s"}
	cases := []struct {
		name    string
		changes []engine.FileChange
		want    []string
	}{
		{"globbed source", []engine.FileChange{mod("lib/data/a.txt")}, append([]string{"//lib:data", "//lib:joined"}, chain...)},
		{"named source", []engine.FileChange{mod("lib/solo.txt")}, []string{"//lib:solo", "//site:page"}},
		{"leaf source", []engine.FileChange{mod("app/other.txt")}, []string{"//app:other"}},
		{"file no target uses", []engine.FileChange{mod("lib/README.md"), mod("docs/notes.md"), add("docs/new.md")}, nil},
		{"file outside every package deleted", []engine.FileChange{del("docs/notes.md")}, nil},
		{"new file a glob matches", []engine.FileChange{add("lib/data/d.txt")}, append([]string{"//lib:data", "//lib:joined"}, chain...)},
		// A deleted file is in no input any more; a glob of its package
		// may have matched it, so the whole package counts.
		{"deleted file", []engine.FileChange{del("lib/data/gone.txt")}, append(libAll, chain...)},
		{"renamed file", []engine.FileChange{ren("lib/data/b.txt", "lib/data/c.txt")}, append(libAll, chain...)},
		{"BUILD.star", []engine.FileChange{mod("app/BUILD.star")}, []string{"//app:loud", "//app:other", "//site:page"}},
		{"macro loaded by two packages", []engine.FileChange{mod("macros/defs.star")}, []string{"//app:loud", "//app:other", "//site:page", "//site:shout"}},
		{"unloaded .star", []engine.FileChange{add("macros/unused.star")}, nil},
		{"WORKSPACE.star", []engine.FileChange{mod("WORKSPACE.star")}, every},
		// A new package takes its directory's files from the package above.
		{"new sub-package", []engine.FileChange{add("lib/deep/BUILD.star"), add("lib/deep/x.txt")}, append([]string{"//lib/deep:deep"}, append(libAll, chain...)...)},
		{"edited sub-package", []engine.FileChange{mod("lib/deep/BUILD.star")}, []string{"//lib/deep:deep"}},
		{"new top-level package", []engine.FileChange{add("sub/BUILD.star"), add("sub/s.txt")}, []string{"//sub:s"}},
		{"root .gitignore", []engine.FileChange{mod(".gitignore")}, every},
		{"package .gitignore", []engine.FileChange{add("lib/.gitignore")}, append([]string{"//lib/deep:deep"}, append(libAll, chain...)...)},
		{"pipe's own files", []engine.FileChange{mod("dist/lib/joined/joined.txt"), mod(".pipe/digests")}, nil},
	}
	for _, c := range cases {
		got := sorted(labelStrings(affectedTargets(t, tg, ag, c.changes, engine.AffectedOptions{}))...)
		if want := sorted(c.want...); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q\nwant %q", c.name, got, want)
		}
	}

	// The reasons say which file and why.
	res := affectedTargets(t, tg, ag, []engine.FileChange{mod("lib/data/a.txt"), mod("macros/defs.star")}, engine.AffectedOptions{})
	reasons := map[string]string{}
	for _, a := range res {
		reasons[a.Label.String()] = strings.Join(a.Reasons, "; ")
	}
	for label, want := range map[string][]string{
		"//lib:data":   {"provides lib/data/a.txt (modified)"},
		"//lib:joined": {"depends on //lib:data"},
		"//app:loud":   {"loads macros/defs.star (modified)", "depends on //lib:joined"},
		"//site:page":  {"loads macros/defs.star", "depends on //app:loud"},
	} {
		for _, w := range want {
			if !strings.Contains(reasons[label], w) {
				t.Errorf("reasons of %s: %q lacks %q", label, reasons[label], w)
			}
		}
	}

	// Affected takes plain paths and asks the disk what became of them.
	got := affectedLabels(t, tg, ag, []string{"lib/solo.txt"}, engine.AffectedOptions{})
	if len(got) != 2 || got[0].String() != "//lib:solo" || got[1].String() != "//site:page" {
		t.Errorf("Affected(lib/solo.txt) = %v", got)
	}
	if got := affectedLabels(t, tg, ag, []string{"lib/data/b.txt"}, engine.AffectedOptions{}); len(got) != len(libAll)+len(chain) {
		t.Errorf("Affected(lib/data/b.txt), a path the disk no longer has: %v, want the package and its rdeps", got)
	}
}

// cfgRule reads a section of a lock-like file at analysis time, the way
// python_bundle reads uv.lock: the file is no action's input, only what
// the rule made of it (the action's Identity) is.
var cfgRule = &engine.Rule{
	Name:    "cfg",
	Version: "1",
	Attrs: []engine.Attr{
		{Name: "lock", Type: engine.AttrLabel},
		{Name: "file", Type: engine.AttrString},
		{Name: "section", Type: engine.AttrString},
	},
	Analyze: func(ctx *engine.AnalysisContext) error {
		file := ctx.String("file")
		if fs := ctx.Files("lock"); len(fs) == 1 {
			file = fs[0].Path
		}
		b, err := ctx.ReadFile(file)
		if err != nil {
			return ctx.Errorf("%v", err)
		}
		var val string
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == ctx.String("section") {
				val = strings.TrimSpace(v)
			}
		}
		if val == "" {
			return ctx.Errorf("%s has no section %q", file, ctx.String("section"))
		}
		out := ctx.Declare("cfg.txt")
		ctx.AddAction(&engine.Action{
			Mnemonic: "Cfg",
			Outputs:  []*engine.File{out},
			Identity: "cfg " + val,
			Run:      func(context.Context, *engine.ExecContext) error { return nil },
		})
		ctx.Provide(out)
		return nil
	},
}

func cfgRegistry() *engine.Registry {
	reg := engine.NewRegistry()
	core.Register(reg)
	reg.Register(cfgRule)
	return reg
}

var cfgFiles = map[string]string{
	"WORKSPACE.star": "workspace(name = \"cfg\")\n",
	"deps.lock":      "a = 1.0\nb = 2.0\n",
	"svc/BUILD.star": `cfg(name = "a", file = "deps.lock", section = "a")
cfg(name = "b", file = "deps.lock", section = "b")
cfg(name = "named", lock = "//:deps.lock", section = "a")
genrule(name = "uses_b", srcs = [":b"], outs = ["u.txt"], cmd = "cp $< $@")
`,
	"BUILD.star": "",
}

// baseFiles is an AffectedOptions.BaseFile serving the base revision's
// content from m; a nil entry is a file the base did not have.
func baseFiles(m map[string][]byte) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if b := m[p]; b != nil {
			return b, nil
		}
		return nil, &fs.PathError{Op: "read at base", Path: p, Err: fs.ErrNotExist}
	}
}

func TestAffectedReanalyze(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, cfgFiles)
	reg := cfgRegistry()
	// The base: the same targets, the lock as it was.
	tg, _ := analyse(t, root, reg)
	base := baseFiles(map[string][]byte{"deps.lock": []byte(cfgFiles["deps.lock"])})
	writeFiles(t, root, map[string]string{"deps.lock": "a = 1.0\nb = 2.1\n"})
	_, headAG := analyse(t, root, reg)

	changes := []engine.FileChange{mod("deps.lock")}
	// Without the base's files, only naming the file counts.
	got := labelStrings(affectedTargets(t, tg, headAG, changes, engine.AffectedOptions{}))
	if want := []string{"//svc:named"}; !reflect.DeepEqual(got, want) {
		t.Errorf("without BaseFile: got %q, want %q", got, want)
	}
	// With them, exactly the targets whose actions changed, and their rdeps.
	opts := engine.AffectedOptions{BaseFile: base}
	res := affectedTargets(t, tg, headAG, changes, opts)
	if got, want := labelStrings(res), []string{"//svc:b", "//svc:uses_b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("with BaseFile: got %q, want %q", got, want)
	}
	if len(res) > 0 && !strings.Contains(strings.Join(res[0].Reasons, ";"), "its Cfg action differs") {
		t.Errorf("reasons of //svc:b: %q", res[0].Reasons)
	}

	// A target whose analysis fails at the base (its section is new)
	// counts; the others are still compared.
	writeFiles(t, root, map[string]string{
		"deps.lock":      "a = 1.0\nb = 2.1\nc = 3.0\n",
		"svc/BUILD.star": cfgFiles["svc/BUILD.star"] + "cfg(name = \"c\", file = \"deps.lock\", section = \"c\")\n",
	})
	tg2, headAG2 := analyse(t, root, reg)
	opts = engine.AffectedOptions{BaseFile: baseFiles(map[string][]byte{"deps.lock": []byte("a = 1.0\nb = 2.1\n")})}
	res = affectedTargets(t, tg2, headAG2, []engine.FileChange{mod("deps.lock"), mod("svc/other.txt")}, opts)
	if got, want := labelStrings(res), []string{"//svc:c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("base analysis failing for one target: got %q, want %q", got, want)
	}
	for _, a := range res {
		if !strings.Contains(strings.Join(a.Reasons, ";"), "its analysis fails with the base revision's files") {
			t.Errorf("reasons of %s: %q, want its analysis failing at the base", a.Label, a.Reasons)
		}
	}

	// Failing to read the base revision counts every target.
	opts = engine.AffectedOptions{BaseFile: func(string) ([]byte, error) { return nil, fmt.Errorf("boom") }}
	if got := affectedTargets(t, tg2, headAG2, changes, opts); len(got) != len(tg2.Targets) {
		t.Errorf("base analysis failing outright: %d targets affected, want all %d", len(got), len(tg2.Targets))
	}
}

// TestAffectedOverlay runs the base analysis the way pipe affected does:
// BaseFile gives the base revision's content of the changed files.
func TestAffectedOverlay(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, cfgFiles)
	writeFiles(t, root, map[string]string{
		"deps.lock":      "a = 1.0\nb = 2.1\nc = 3.0\n",
		"svc/BUILD.star": cfgFiles["svc/BUILD.star"] + "cfg(name = \"c\", file = \"c.lock\", section = \"c\")\n",
		"c.lock":         "c = 1\n",
	})
	tg, headAG := analyse(t, root, cfgRegistry())
	opts := engine.AffectedOptions{BaseFile: baseFiles(map[string][]byte{
		"deps.lock": []byte("a = 1.0\nb = 2.0\n"),
		"c.lock":    nil, // added by the change
	})}
	res := affectedTargets(t, tg, headAG, []engine.FileChange{mod("deps.lock"), add("c.lock")}, opts)
	if got, want := labelStrings(res), []string{"//svc:b", "//svc:c", "//svc:uses_b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, a := range res {
		if a.Label.Name == "c" && !strings.Contains(strings.Join(a.Reasons, ";"), "its analysis fails with the base revision's files") {
			t.Errorf("reasons of //svc:c: %q", a.Reasons)
		}
	}
	// The head's workspace is untouched: analysing it again, in the same
	// command, still reads the head lock.
	again, err := engine.Analyze(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, act := range again.Actions {
		if act.Owner.String() == "//svc:b" && act.Identity != "cfg 2.1" {
			t.Errorf("head workspace analyses //svc:b as %q after the base analysis, want cfg 2.1", act.Identity)
		}
	}
}
