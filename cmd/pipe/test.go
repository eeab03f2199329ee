package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/rules/python"
)

func testCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var aff affectedFlags
	var cacheResults, junitXML string
	c := &cobra.Command{
		Use:   "test [PATTERN...]",
		Short: "build what the test targets among the patterns (default //...) need and run them",
		Long: `Run the test targets (py_test, py_lint; fastapi_project's :test and :lint)
that the patterns select, after building what they need. Tests run in
parallel, up to --jobs.

A test that passed is not run again until one of its inputs changes: its
result is cached by its action key, locally and in the remote cache, like
any action's. --cache-test-results=no runs every test. A failed test is
never cached.

Each test target leaves its log and a JUnit XML report in
dist/<pkg>/<target>/; --junit-xml FILE writes one report of them all.

Exit status: 0 when every test passed, 3 when a test failed, 1 when the
build of what the tests need failed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rerun := false
			switch cacheResults {
			case "yes", "auto":
			case "no":
				rerun = true
			default:
				return engine.Usagef("--cache-test-results=%q: want yes or no", cacheResults)
			}
			return runTests(ctx, g, &aff, args, cmd, rerun, junitXML)
		},
	}
	c.Flags().StringVar(&cacheResults, "cache-test-results", "yes", "reuse cached results of passing tests: yes, or no to run every test")
	c.Flags().StringVar(&junitXML, "junit-xml", "", "also write one JUnit XML report of every test target to `FILE`")
	c.Flags().BoolVar(&aff.on, "affected", false, "run only the tests affected by changes since --base")
	c.Flags().StringVar(&aff.base, "base", "", "with --affected: the revision to compare with (e.g. origin/main)")
	c.Flags().StringVar(&aff.head, "head", "", "with --affected: the revision to compare (default: the working tree)")
	return c
}

func runTests(ctx context.Context, g *globalFlags, aff *affectedFlags, args []string, cmd *cobra.Command, rerun bool, junitXML string) error {
	s, err := openWorkspace(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	pats, err := s.selectedPatterns(ctx, aff, args)
	if err != nil {
		return err
	}
	if aff.on && len(pats) == 0 {
		fmt.Fprintln(s.stderr, "0 tests: nothing the change affects is a test")
		return nil
	}
	rep := &testReport{}
	opts := buildOptions{
		rerunTests: rerun,
		needed: func(plan *engine.Plan) []*engine.Action {
			rep.targets = testTargets(plan)
			return plan.Actions.Closure(rep.targets)
		},
		reporter: func(u *ui) engine.Reporter {
			rep.next = u
			return rep
		},
		done: func(plan *engine.Plan, buildErr error) error {
			rep.print(s, plan)
			if junitXML != "" {
				if err := writeAggregateJUnit(s.ws, junitXML, plan, rep); err != nil {
					return err
				}
			}
			if buildErr == nil || errors.Is(buildErr, context.Canceled) {
				return nil
			}
			var bf *engine.BuildFailedError
			if errors.As(buildErr, &bf) {
				for _, ev := range bf.Failed {
					if !ev.Action.Test || !engine.IsTestFailure(ev.Err) {
						return &exitError{code: 1}
					}
				}
				return &exitError{code: 3}
			}
			return nil
		},
	}
	_, err = s.buildWith(ctx, pats, opts)
	return err
}

// testTargets are the selected targets that own a test action, sorted.
func testTargets(plan *engine.Plan) []engine.Label {
	roots := map[engine.Label]bool{}
	for _, l := range plan.Targets.Roots {
		roots[l] = true
	}
	seen := map[engine.Label]bool{}
	var out []engine.Label
	for _, a := range plan.Actions.Actions {
		if a.Test && roots[a.Owner] && !seen[a.Owner] {
			seen[a.Owner] = true
			out = append(out, a.Owner)
		}
	}
	engine.SortLabels(out)
	return out
}

// testReport passes progress on to the display and keeps the events of
// test actions for the per-test lines and the summary.
type testReport struct {
	next    engine.Reporter
	targets []engine.Label
	mu      sync.Mutex
	events  map[engine.Label]*engine.ActionEvent
}

func (r *testReport) ActionStarted(a *engine.Action, worker int) { r.next.ActionStarted(a, worker) }

func (r *testReport) ActionProgress(a *engine.Action, msg string) {
	if p, ok := r.next.(engine.ProgressReporter); ok {
		p.ActionProgress(a, msg)
	}
}

func (r *testReport) ActionFinished(ev *engine.ActionEvent) {
	if ev.Action.Test {
		r.mu.Lock()
		if r.events == nil {
			r.events = map[engine.Label]*engine.ActionEvent{}
		}
		r.events[ev.Action.Owner] = ev
		r.mu.Unlock()
	}
	r.next.ActionFinished(ev)
}

// testStatus is how one test target ended.
type testStatus string

const (
	testPassed  testStatus = "PASSED"
	testFailed  testStatus = "FAILED"
	testCached  testStatus = "CACHED"
	testSkipped testStatus = "SKIPPED"
	testNotRun  testStatus = "NO STATUS"
	// testBuildFailed: what the test needs did not build (its
	// environment, say), so it did not run.
	testBuildFailed testStatus = "FAILED TO BUILD"
)

// testResult is one test target's line.
type testResult struct {
	label  engine.Label
	status testStatus
	ev     *engine.ActionEvent
	report string // the JUnit XML in dist/, if the target has one
	junit  *python.JUnitSummary
	note   string
}

func (r *testReport) results(ws *engine.Workspace, plan *engine.Plan) []testResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []testResult
	for _, l := range r.targets {
		res := testResult{label: l, status: testNotRun, ev: r.events[l]}
		for _, f := range plan.Actions.TargetFiles(l) {
			if strings.HasSuffix(f.Path, ".xml") {
				res.report = f.Path
			}
		}
		if res.report != "" {
			if s, err := python.ReadJUnit(ws.Abs(res.report)); err == nil {
				res.junit = &s
			}
		}
		if ev := res.ev; ev != nil {
			switch ev.Status {
			case engine.StatusExecuted:
				res.status = testPassed
			case engine.StatusCached:
				res.status = testCached
			case engine.StatusFailed:
				res.status = testFailed
				res.note = fmt.Sprint(ev.Err)
				if !engine.IsTestFailure(ev.Err) {
					res.status = testBuildFailed
					res.note = firstLine(res.note)
				}
			case engine.StatusSkipped:
				res.note = "not run: a dependency failed or the run stopped"
			}
		} else {
			res.note = "not run: a dependency failed or the run stopped"
		}
		if (res.status == testPassed || res.status == testCached) && res.junit != nil && res.junit.Tests > 0 && res.junit.Skipped == res.junit.Tests {
			res.status = testSkipped
			res.note = res.junit.SkipReason
		}
		out = append(out, res)
	}
	return out
}

// print writes one line per test target and the summary line.
func (r *testReport) print(s *session, plan *engine.Plan) {
	w := s.stderr
	results := r.results(s.ws, plan)
	if len(results) == 0 {
		fmt.Fprintln(w, "0 tests: the patterns select no test targets (py_test, py_lint, fastapi_project's :test and :lint)")
		return
	}
	width := 0
	for _, res := range results {
		width = max(width, len(res.label.String()))
	}
	var passed, failed, cached, skipped, notRun int
	for _, res := range results {
		line := fmt.Sprintf("%-9s %-*s", res.status, width, res.label)
		if res.status == testBuildFailed {
			line = fmt.Sprintf("%s %s", res.status, res.label)
		}
		counts := ""
		if res.junit != nil && res.junit.Tests > 0 && res.status != testSkipped {
			counts = fmt.Sprintf(", %d test%s", res.junit.Tests, plural(res.junit.Tests))
		}
		switch res.status {
		case testPassed:
			passed++
			line += fmt.Sprintf("  in %s%s", formatDuration(res.ev.RanFor), counts)
		case testCached:
			cached++
			line += fmt.Sprintf("  passed in %s%s", formatDuration(res.ev.RanFor), counts)
		case testFailed:
			failed++
			line += fmt.Sprintf("  in %s: %s", formatDuration(res.ev.RanFor), res.note)
			if res.report != "" {
				line += "; see " + filepath.Join(filepath.Dir(res.report), logName(res.report))
			}
		case testBuildFailed:
			failed++
			line += "  " + res.note
		case testSkipped:
			skipped++
			line += "  " + res.note
		case testNotRun:
			notRun++
			line += "  " + res.note
		}
		fmt.Fprintln(w, line)
		if s.g.verbose {
			printTestPython(w, s, plan, res.label)
		}
	}
	sum := fmt.Sprintf("%d test%s: %d passed, %d failed, %d cached", len(results), plural(len(results)), passed, failed, cached)
	if skipped > 0 {
		sum += fmt.Sprintf(", %d skipped", skipped)
	}
	if notRun > 0 {
		sum += fmt.Sprintf(", %d not run", notRun)
	}
	fmt.Fprintln(w, sum)
}

// logName is the log beside a report: test.xml → test.log.
func logName(report string) string {
	return strings.TrimSuffix(filepath.Base(report), ".xml") + ".log"
}

// printTestPython says what a test target runs on (--verbose).
func printTestPython(w io.Writer, s *session, plan *engine.Plan, l engine.Label) {
	tp, ok := python.PythonOf(plan.Actions, l)
	if !ok {
		return
	}
	c, _ := openCache()
	if in := tp.Toolchain.Interp; in != nil {
		fmt.Fprintf(w, "          python: %s, for %s (from %s)\n", in.Describe(), tp.Toolchain.Want, tp.Toolchain.WantFrom)
	} else {
		fmt.Fprintf(w, "          python: none for %s (from %s)\n", tp.Toolchain.Want, tp.Toolchain.WantFrom)
	}
	fmt.Fprintf(w, "          environment: %s\n", tp.Environment(c))
	if d := tp.Distributions(); len(d) > 0 {
		fmt.Fprintf(w, "          distributions: %s\n", strings.Join(d, ", "))
	}
}

// writeAggregateJUnit writes one JUnit XML report of every test target:
// the suites of each target's own report, and an error case for a target
// that has none (it did not run).
func writeAggregateJUnit(ws *engine.Workspace, file string, plan *engine.Plan, r *testReport) error {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n")
	for _, res := range r.results(ws, plan) {
		var suites []string
		if res.report != "" && res.status != testNotRun {
			if data, err := os.ReadFile(ws.Abs(res.report)); err == nil {
				suites, _ = junitSuites(data)
			}
		}
		if len(suites) == 0 {
			suites = []string{fmt.Sprintf("<testsuite name=%q tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\"><testcase name=%q classname=%q time=\"0\"><error message=%q></error></testcase></testsuite>",
				xmlEscape(res.label.String()), xmlEscape(res.label.String()), xmlEscape(res.label.String()), xmlEscape(res.note))}
		}
		for _, su := range suites {
			b.WriteString(su)
			b.WriteString("\n")
		}
	}
	b.WriteString("</testsuites>\n")
	if dir := filepath.Dir(file); dir != "" {
		os.MkdirAll(dir, 0o755)
	}
	if err := files.WriteAtomic(file, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--junit-xml %s: %w", file, err)
	}
	return nil
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
