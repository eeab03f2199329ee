package engine_test

// Tests of analysis as a phase: cancellation, and the reads a target's
// analysis records.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/core"
)

// load loads //... of the workspace at root without analysing it.
func load(t *testing.T, root string, reg *engine.Registry) *engine.TargetGraph {
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
	return tg
}

// markRule records the label of every target it analyses in *seen.
func markRule(name string, seen *[]string, also func(*engine.AnalysisContext) error) *engine.Rule {
	return &engine.Rule{
		Name:    name,
		Version: "1",
		Attrs:   []engine.Attr{{Name: "deps", Type: engine.AttrLabelList}},
		Analyze: func(c *engine.AnalysisContext) error {
			*seen = append(*seen, c.Label().String())
			if also != nil {
				return also(c)
			}
			return nil
		},
	}
}

// TestAnalyzeCancelled: a cancelled context stops analysis before the next
// target, and Analyze returns the context's error.
func TestAnalyzeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []string
	reg := engine.NewRegistry()
	reg.Register(markRule("stop", &seen, func(c *engine.AnalysisContext) error {
		cancel() // as Ctrl-C would, while this target is analysed
		if c.Context().Err() == nil {
			t.Error("the rule's Context() is not the context Analyze was given")
		}
		return nil
	}))
	reg.Register(markRule("mark", &seen, nil))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star": "workspace(name = \"cancel\")\n",
		"pkg/BUILD.star": `stop(name = "a")
mark(name = "b", deps = [":a"])
mark(name = "c", deps = [":b"])
`,
	})
	tg := load(t, root, reg)
	ag, err := engine.Analyze(ctx, tg)
	if !errors.Is(err, context.Canceled) || ag != nil {
		t.Fatalf("Analyze after a cancel: %v, %v; want context.Canceled and no graph", ag, err)
	}
	if want := []string{"//pkg:a"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("analysed %q after the cancel; want only %q", seen, want)
	}
}

// TestAnalyzeCancelledProbe: a host probe runs under the analysis context,
// so an interrupt ends a probe that would block.
func TestAnalyzeCancelledProbe(t *testing.T) {
	var seen []string
	reg := engine.NewRegistry()
	started := make(chan struct{})
	reg.Register(markRule("probe", &seen, func(c *engine.AnalysisContext) error {
		_, err := c.Probe("blocks", func(ctx context.Context) (any, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		return err
	}))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star": "workspace(name = \"probe\")\n",
		"BUILD.star":     "probe(name = \"p\")\n",
	})
	tg := load(t, root, reg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := engine.Analyze(ctx, tg)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Analyze with an interrupted probe: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Analyze did not return after the cancel: the probe does not see the analysis context")
	}
}

// TestLoadTargetsCancelled: loading stops a BUILD.star that runs long.
func TestLoadTargetsCancelled(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star": "workspace(name = \"slow\")\n",
		"BUILD.star":     "for i in range(1000000000):\n    pass\n",
	})
	reg := engine.NewRegistry()
	ev := buildfile.NewEvaluator(root, reg)
	ws := &engine.Workspace{Root: root}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	all, _ := engine.ParsePattern("//...", "")
	_, err := engine.LoadTargets(ctx, ws, ev, []engine.Pattern{all})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LoadTargets past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("LoadTargets took %s to notice the deadline", d)
	}
}

type ctxKey struct{}

// TestAnalysisInputs: what a rule reads through the AnalysisContext is
// recorded on its target, once per path, variable or probe.
func TestAnalysisInputs(t *testing.T) {
	t.Setenv("PIPE_TEST_ANALYSIS_VAR", "blue")
	t.Setenv("PIPE_TEST_ACTION_ENV", "green")
	var seen []string
	var probes int
	var mu sync.Mutex
	reg := engine.NewRegistry()
	core.Register(reg)
	reg.Register(markRule("reader", &seen, func(c *engine.AnalysisContext) error {
		if b, err := c.ReadFile("conf/settings.txt"); err != nil || string(b) != "x = 1\n" {
			t.Errorf("ReadFile(conf/settings.txt) = %q, %v", b, err)
		}
		// Read twice, recorded once.
		v, err := c.ParseFile("conf/settings.txt", "settings", func(b []byte) (any, error) { return strings.TrimSpace(string(b)), nil })
		if err != nil || v != "x = 1" {
			t.Errorf("ParseFile(conf/settings.txt) = %v, %v", v, err)
		}
		if _, err := c.ReadFile("conf/missing.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(conf/missing.txt): %v, want fs.ErrNotExist", err)
		}
		if _, err := c.ReadFile("../outside"); err == nil {
			t.Errorf("ReadFile(../outside) succeeded")
		}
		if c.FileExists("conf") {
			t.Errorf("FileExists(conf), a directory, is true")
		}
		if v := c.Getenv("PIPE_TEST_ANALYSIS_VAR"); v != "blue" {
			t.Errorf("Getenv = %q", v)
		}
		if _, ok := c.LookupEnv("PIPE_TEST_UNSET_VAR"); ok {
			t.Errorf("LookupEnv of an unset variable reports it set")
		}
		_, err = c.Probe("host fact", func(ctx context.Context) (any, error) {
			mu.Lock()
			probes++
			mu.Unlock()
			if ctx.Value(ctxKey{}) != "analysis" {
				t.Errorf("the probe does not run with the analysis context")
			}
			return "fact", nil
		})
		return err
	}))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star":    "workspace(name = \"reads\", action_env = [\"PIPE_TEST_ACTION_ENV\"])\n",
		"conf/settings.txt": "x = 1\n",
		"BUILD.star": `reader(name = "r1")
reader(name = "r2")
genrule(name = "g", outs = ["g.txt"], cmd = "echo > $@")
filegroup(name = "none", srcs = [])
`,
	})
	tg := load(t, root, reg)
	ctx := context.WithValue(context.Background(), ctxKey{}, "analysis")
	ag, err := engine.Analyze(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if probes != 1 {
		t.Errorf("the probe ran %d times for two targets, want once", probes)
	}
	want := []string{
		"file conf/settings.txt (sha256:" + sha256Hex("x = 1\n") + ")",
		"file conf/missing.txt (missing)",
		"stat conf (dir)",
		`env PIPE_TEST_ANALYSIS_VAR="blue"`,
		"env PIPE_TEST_UNSET_VAR (unset)",
		"probe host fact",
	}
	for _, l := range []string{"//:r1", "//:r2"} {
		if got := inputStrings(ag.AnalysisInputs(engine.MustParseLabel(l))); !reflect.DeepEqual(got, want) {
			t.Errorf("analysis inputs of %s:\n got %q\nwant %q", l, got, want)
		}
	}
	// genrule reads the action_env variables and identifies its shell.
	wantG := []string{`env PIPE_TEST_ACTION_ENV="green"`, "probe tool /bin/bash"}
	if got := inputStrings(ag.AnalysisInputs(engine.MustParseLabel("//:g"))); !reflect.DeepEqual(got, wantG) {
		t.Errorf("analysis inputs of //:g:\n got %q\nwant %q", got, wantG)
	}
	if got := ag.AnalysisInputs(engine.MustParseLabel("//:none")); len(got) != 0 {
		t.Errorf("a filegroup reads nothing at analysis, but recorded %q", inputStrings(got))
	}
}

func inputStrings(ins []engine.AnalysisInput) []string {
	out := []string{}
	for _, in := range ins {
		out = append(out, in.String())
	}
	return out
}

// TestAffectedReanalyzesReaders: pipe affected analyses again only the
// targets whose analysis read a changed file, and the targets depending
// on them, and asks the base revision only for changed files that
// analysis reads.
func TestAffectedReanalyzesReaders(t *testing.T) {
	var seen []string
	reg := engine.NewRegistry()
	core.Register(reg)
	reg.Register(&engine.Rule{
		Name:    "cfg",
		Version: "1",
		Attrs:   cfgRule.Attrs,
		Analyze: func(c *engine.AnalysisContext) error {
			seen = append(seen, c.Label().String())
			return cfgRule.Analyze(c)
		},
	})
	reg.Register(markRule("mark", &seen, nil))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star": "workspace(name = \"cfg\")\n",
		"BUILD.star":     "",
		"deps.lock":      "a = 1.0\nb = 2.1\n",
		"x.lock":         "x = 1\n",
		"svc/other.txt":  "other\n",
		"svc/BUILD.star": `cfg(name = "a", file = "deps.lock", section = "a")
cfg(name = "b", file = "deps.lock", section = "b")
cfg(name = "x", file = "x.lock", section = "x")
mark(name = "after_b", deps = [":b"])
mark(name = "lone", deps = [":x"])
genrule(name = "copy", srcs = ["other.txt"], outs = ["o.txt"], cmd = "cp $< $@")
`,
	})
	tg := load(t, root, reg)
	ag, err := engine.Analyze(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	seen = nil
	var asked []string
	opts := engine.AffectedOptions{BaseFile: func(p string) ([]byte, error) {
		asked = append(asked, p)
		return []byte("a = 1.0\nb = 2.0\n"), nil
	}}
	res := affectedTargets(t, tg, ag, []engine.FileChange{mod("deps.lock"), mod("svc/other.txt")}, opts)
	if got, want := labelStrings(res), []string{"//svc:after_b", "//svc:b", "//svc:copy"}; !reflect.DeepEqual(got, want) {
		t.Errorf("affected: got %q, want %q", got, want)
	}
	if want := []string{"//svc:a", "//svc:b", "//svc:after_b"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("analysed again: %q, want %q (the readers of deps.lock, then what depends on them)", seen, want)
	}
	if want := []string{"deps.lock"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("asked the base revision for %q, want %q", asked, want)
	}

	// A change no analysis read analyses nothing again.
	seen, asked = nil, nil
	res = affectedTargets(t, tg, ag, []engine.FileChange{mod("svc/other.txt")}, opts)
	if got, want := labelStrings(res), []string{"//svc:copy"}; !reflect.DeepEqual(got, want) {
		t.Errorf("affected by other.txt: got %q, want %q", got, want)
	}
	if len(seen) != 0 || len(asked) != 0 {
		t.Errorf("a change no analysis read analysed %q again and asked the base for %q", seen, asked)
	}

	// An interrupt during the base analysis is the result, not a guess.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := engine.AffectedTargets(ctx, tg, ag, []engine.FileChange{mod("deps.lock")}, opts); !errors.Is(err, context.Canceled) {
		t.Errorf("AffectedTargets with a cancelled context: %v, want context.Canceled", err)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
