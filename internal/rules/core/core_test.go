package core_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/core"
)

// analyze loads and analyses a workspace holding one package, //p.
func analyze(t *testing.T, build string, files ...string) (*engine.ActionGraph, error) {
	t.Helper()
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("WORKSPACE.star", "workspace(name = \"t\")\n")
	write("p/BUILD.star", build)
	for _, f := range files {
		write(f, f+"\n")
	}
	reg := engine.NewRegistry()
	core.Register(reg)
	ev := buildfile.NewEvaluator(root, reg)
	ws := &engine.Workspace{Root: root, Settings: engine.Settings{Path: engine.DefaultActionPath}}
	pat, _ := engine.ParsePattern("//...", "")
	tg, err := engine.LoadTargets(context.Background(), ws, ev, []engine.Pattern{pat})
	if err != nil {
		return nil, err
	}
	return engine.Analyze(context.Background(), tg)
}

func command(t *testing.T, ag *engine.ActionGraph, owner string) string {
	t.Helper()
	for _, a := range ag.Actions {
		if a.Owner.String() == owner {
			return a.Argv[len(a.Argv)-1]
		}
	}
	t.Fatalf("no action of %s", owner)
	return ""
}

func TestGenruleMakeVariables(t *testing.T) {
	ag, err := analyze(t, `
filegroup(name = "two", srcs = ["a.txt", "b c.txt"])
genrule(name = "one", srcs = ["a.txt"], outs = ["o.txt"], cmd = "cp $< $@")
genrule(
    name = "many",
    srcs = [":two", ":one"],
    outs = ["x.txt", "y.txt"],
    tools = ["tool.sh"],
    cmd = "$(location tool.sh) $(locations :two) $(location :one) > $(location x.txt); echo $$HOME $(RULEDIR) $(OUTS) $(SRCS)",
)
`, "p/a.txt", "p/b c.txt", "p/tool.sh")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := command(t, ag, "//p:one"), "cp p/a.txt dist/p/one/o.txt"; got != want {
		t.Errorf("//p:one cmd = %q, want %q", got, want)
	}
	want := "p/tool.sh p/a.txt 'p/b c.txt' dist/p/one/o.txt > dist/p/many/x.txt; echo $HOME dist/p/many dist/p/many/x.txt dist/p/many/y.txt p/a.txt 'p/b c.txt' dist/p/one/o.txt"
	if got := command(t, ag, "//p:many"); got != want {
		t.Errorf("//p:many cmd =\n  %q\nwant\n  %q", got, want)
	}
}

func TestGenruleCommandErrors(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"echo $(FOO)", "unknown make variable $(FOO)"},
		{"echo $HOME", "$HOME: pipe expands $(...), $@, $< and $$ only; write $$HOME for a shell variable"},
		{"cp a $@", "$@ needs exactly one output, and outs has 2"},
		{"cat $<", "$< needs exactly one source, and srcs has 0 files"},
		{"echo $(location)", "$(location) needs a label"},
		{"echo $(location //p:nope)", "//p:nope is not in srcs, tools or outs of this genrule"},
		{"echo $(unclosed", "unterminated $("},
		{"echo $", "trailing $"},
	} {
		_, err := analyze(t, `genrule(name = "g", outs = ["a", "b"], cmd = "`+tc.cmd+`")`+"\n")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cmd %q: error %v, want it to contain %q", tc.cmd, err, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "p/BUILD.star:1:1: //p:g: genrule: cmd: ") {
			t.Errorf("cmd %q: error %q does not name the file, position and target", tc.cmd, err)
		}
	}
}
