package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
)

// testAction is a test action whose Run writes a log and fails while
// *fail is set, counting its runs.
func testAction(fail *atomic.Bool, runs *atomic.Int32) (*ActionGraph, *Action) {
	owner := Label{Pkg: "pkg", Name: "test"}
	log := &File{Path: "dist/pkg/test/test.log", Owner: owner}
	a := &Action{
		Owner: owner, Mnemonic: "Test", Outputs: []*File{log}, Identity: "test", Test: true,
		Run: func(ctx context.Context, ec *ExecContext) error {
			runs.Add(1)
			if fail.Load() {
				os.WriteFile(ec.Output(log), []byte("1 failed\n"), 0o644)
				ec.Logf("assert 1 == 2")
				return &TestFailedError{Reason: "1 of 1 tests failed"}
			}
			return os.WriteFile(ec.Output(log), []byte("1 passed\n"), 0o644)
		},
	}
	log.Generator = a
	ag := newActionGraph(nil)
	ag.Actions = []*Action{a}
	if err := ag.link(); err != nil {
		panic(err)
	}
	return ag, a
}

// TestTestActionFailureIsPlacedNotCached: a failing test's outputs are in
// dist/ and the failure is a TestFailedError, but nothing is cached, so
// the next run runs it again; a passing result is cached, and RerunTests
// runs it anyway.
func TestTestActionFailureIsPlacedNotCached(t *testing.T) {
	ws := &Workspace{Root: t.TempDir(), Settings: Settings{Path: DefaultActionPath}}
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	var runs atomic.Int32
	ag, a := testAction(&fail, &runs)
	run := func(rerun bool) (Summary, error) {
		ex := &Executor{WS: ws, Cache: c, Digests: LoadFileDigests(filepath.Join(ws.StateDir(), "digests")), Jobs: 1, Graph: ag, RerunTests: rerun, PipeVersion: "test"}
		return ex.Execute(context.Background(), []*Action{a})
	}
	fail.Store(true)
	for i := range 2 {
		sum, err := run(false)
		var bf *BuildFailedError
		if !errors.As(err, &bf) || len(bf.Failed) != 1 || !IsTestFailure(bf.Failed[0].Err) {
			t.Fatalf("run %d: %v, want one test failure", i, err)
		}
		if !strings.Contains(bf.Failed[0].Output, "assert 1 == 2") || bf.Failed[0].RanFor <= 0 {
			t.Errorf("run %d: the failure's output %q, ran for %v", i, bf.Failed[0].Output, bf.Failed[0].RanFor)
		}
		if sum.Failed != 1 {
			t.Errorf("run %d: summary %+v", i, sum)
		}
		if b, err := os.ReadFile(ws.Abs("dist/pkg/test/test.log")); err != nil || string(b) != "1 failed\n" {
			t.Errorf("run %d: the failed test's log in dist/: %q, %v", i, b, err)
		}
	}
	if runs.Load() != 2 {
		t.Errorf("a failed test ran %d times in two runs: failures must not be cached", runs.Load())
	}
	fail.Store(false)
	if _, err := run(false); err != nil {
		t.Fatal(err)
	}
	sum, err := run(false)
	if err != nil || sum.Cached != 1 || runs.Load() != 3 {
		t.Errorf("a passing test is cached: %+v, %v, %d runs", sum, err, runs.Load())
	}
	if b, _ := os.ReadFile(ws.Abs("dist/pkg/test/test.log")); string(b) != "1 passed\n" {
		t.Errorf("log after passing: %q", b)
	}
	sum, err = run(true)
	if err != nil || sum.Executed != 1 || runs.Load() != 4 {
		t.Errorf("RerunTests: %+v, %v, %d runs", sum, err, runs.Load())
	}
}

// TestTestFailureOfNonTestActionIsABuildFailure: only actions marked Test
// may fail as tests; for any other a TestFailedError is an ordinary
// failure whose outputs are not placed.
func TestTestFailureOfNonTestActionIsABuildFailure(t *testing.T) {
	ws := &Workspace{Root: t.TempDir(), Settings: Settings{Path: DefaultActionPath}}
	c, _ := cache.Open(t.TempDir())
	var fail atomic.Bool
	var runs atomic.Int32
	fail.Store(true)
	ag, a := testAction(&fail, &runs)
	a.Test = false
	ex := &Executor{WS: ws, Cache: c, Digests: LoadFileDigests(filepath.Join(ws.StateDir(), "digests")), Jobs: 1, Graph: ag, PipeVersion: "test"}
	_, err := ex.Execute(context.Background(), []*Action{a})
	if err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(ws.Abs("dist/pkg/test/test.log")); err == nil {
		t.Errorf("a failed non-test action's output was put in place")
	}
}

// TestExecContextRunReportsExitCodes: a program's exit status and signal
// come back typed.
func TestExecContextRunReportsExitCodes(t *testing.T) {
	ec := &ExecContext{Dir: t.TempDir(), Stdout: newLimitedBuffer(), Stderr: newLimitedBuffer()}
	err := ec.Run(context.Background(), Command{Argv: []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 5"}})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 5 || err.Error() != "command exited with status 5" {
		t.Errorf("exit 5: %v", err)
	}
	if ec.Stdout.String() != "out\n" || ec.Stderr.String() != "err\n" {
		t.Errorf("output: %q %q", ec.Stdout.String(), ec.Stderr.String())
	}
	err = ec.Run(context.Background(), Command{Argv: []string{"/bin/sh", "-c", "kill -TERM $$"}})
	if !errors.As(err, &ce) || ce.ExitCode != -1 || !strings.Contains(err.Error(), "killed by signal") {
		t.Errorf("killed: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ec.Run(ctx, Command{Argv: []string{"/bin/sleep", "5"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := ec.Run(context.Background(), Command{Argv: []string{"/bin/sh", "-c", "test \"$X\" = y"}, Env: map[string]string{"X": "y"}}); err != nil {
		t.Errorf("env: %v", err)
	}
}
