package python

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/pipebuild/pipe/internal/engine"
)

// PyTest runs pytest from the lock's dev group on the locked environment.
var PyTest = &engine.Rule{
	Name:    "py_test",
	Version: "1",
	Doc:     "Runs pytest on the locked environment (pipe test): dist/<pkg>/<name>/test.log and test.xml (JUnit).",
	Attrs: withEnvAttrs(
		engine.Attr{Name: "srcs", Type: engine.AttrLabelList, Doc: "the tests, conftest.py files and helpers; test_*.py and *_test.py are the ones run"},
		engine.Attr{Name: "deps", Type: engine.AttrLabelList, Doc: "sources the tests import: the app's, workspace members'"},
		engine.Attr{Name: "data", Type: engine.AttrLabelList, Doc: "files the tests read"},
		engine.Attr{Name: "args", Type: engine.AttrStringList, Doc: "more pytest arguments"},
		engine.Attr{Name: "env", Type: engine.AttrStringDict, Doc: "environment variables the tests see"},
		engine.Attr{Name: "size", Type: engine.AttrString, Default: "medium", Values: []string{"small", "medium", "large", "enormous"}, Doc: "sets the default timeout: 60s, 300s, 900s, 3600s"},
		engine.Attr{Name: "timeout", Type: engine.AttrString, Doc: `"short", "moderate", "long", "eternal" (60s, 300s, 900s, 3600s) or a duration such as "90s"`},
		engine.Attr{Name: "groups", Type: engine.AttrStringList, Default: []string{"dev"}, Doc: "dependency groups of the project to install besides its runtime dependencies"},
		engine.Attr{Name: "python_path", Type: engine.AttrStringList, Doc: "package-relative import roots of the app (default: the package directory)"},
	),
	Analyze: analyzePyTest,
}

// Timeouts by size and by name, as Bazel has them.
var (
	sizeTimeouts = map[string]time.Duration{"small": time.Minute, "medium": 5 * time.Minute, "large": 15 * time.Minute, "enormous": time.Hour}
	namedTimeout = map[string]time.Duration{"short": time.Minute, "moderate": 5 * time.Minute, "long": 15 * time.Minute, "eternal": time.Hour}
)

func testTimeout(ctx *engine.AnalysisContext) (time.Duration, error) {
	t := ctx.String("timeout")
	if t == "" {
		return sizeTimeouts[ctx.String("size")], nil
	}
	if d, ok := namedTimeout[t]; ok {
		return d, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d <= 0 {
		return 0, ctx.Errorf("timeout %q: want short, moderate, long, eternal or a duration such as \"90s\"", t)
	}
	return d, nil
}

// pytestConfigs are the files pytest reads its settings from, in the
// order it looks in each directory.
var pytestConfigs = []string{"pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"}

// isPytestConfig reports whether a candidate file holds pytest settings,
// as pytest decides it.
func isPytestConfig(name string, b []byte) bool {
	switch name {
	case "pytest.ini", ".pytest.ini":
		return true
	case "pyproject.toml":
		var doc struct {
			Tool struct {
				Pytest map[string]any `toml:"pytest"`
			} `toml:"tool"`
		}
		return toml.Unmarshal(b, &doc) == nil && doc.Tool.Pytest["ini_options"] != nil
	case "tox.ini":
		return bytes.Contains(b, []byte("[pytest]"))
	case "setup.cfg":
		return bytes.Contains(b, []byte("[tool:pytest]"))
	}
	return false
}

func analyzePyTest(ctx *engine.AnalysisContext) error {
	groups := ctx.Strings("groups")
	pt, err := analyzePython(ctx, envOptions{groups: &GroupSpec{Names: groups, Optional: slices.Equal(groups, []string{"dev"})}})
	if err != nil {
		return err
	}
	timeout, err := testTimeout(ctx)
	if err != nil {
		return err
	}
	ws := ctx.Workspace()
	pkg := ctx.Label().Pkg
	label := ctx.Label()
	srcs := ctx.Files("srcs")
	inputs := append(append(append([]*engine.File(nil), srcs...), ctx.Files("deps")...), ctx.Files("data")...)
	config := nearestConfig(ctx, pytestConfigs, isPytestConfig)
	if config != "" {
		inputs = append(inputs, ctx.SourceFile(config))
	}
	var tests []string
	for _, f := range srcs {
		base := path.Base(f.Path)
		if strings.HasSuffix(base, ".py") && (strings.HasPrefix(base, "test_") || strings.HasSuffix(base, "_test.py")) {
			rel := strings.TrimPrefix(f.Path, pkg+"/")
			if pkg == "" {
				rel = f.Path
			}
			tests = append(tests, rel)
		}
	}
	sort.Strings(tests)
	roots := importRoots(pkg, ctx.Strings("python_path"), ctx.Labels("deps"))
	args := ctx.Strings("args")
	userEnv := ctx.Dict("env")
	logOut := ctx.Declare("test.log")
	xmlOut := ctx.Declare("test.xml")
	ctx.AddAction(&engine.Action{
		Mnemonic:    "PyTest",
		Description: "Testing " + label.String(),
		Inputs:      inputs,
		Outputs:     []*engine.File{logOut, xmlOut},
		Identity: fmt.Sprintf("pytest tests=%q args=%q env=%q roots=%q config=%q timeout=%s %s",
			tests, args, sortedPairs(userEnv), roots, config, timeout, pt.env.Identity()),
		Tools:   []string{pt.tool()},
		Sandbox: true,
		Test:    true,
		Run: func(c context.Context, ec *engine.ExecContext) error {
			if err := pt.needs(label, "pytest", strings.Join(groups, ", ")); err != nil {
				return err
			}
			python, envDir, err := pt.ready(c, ec.Cache(), ec.Progress)
			if err != nil {
				return err
			}
			abs := under(ec.Dir, roots)
			cwd := filepath.Join(ec.Dir, filepath.FromSlash(pkg))
			tmp := filepath.Join(ec.Dir, ".tmp")
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return err
			}
			pargs := []string{"-p", "no:cacheprovider", "--junitxml=" + ec.Output(xmlOut), "-o", "junit_suite_name=" + label.String()}
			if config != "" {
				pargs = append(pargs, "-c", filepath.Join(ec.Dir, filepath.FromSlash(config)), "--rootdir", filepath.Join(ec.Dir, filepath.FromSlash(path.Dir(config))))
			} else {
				// No settings of the workspace's: none of the directories
				// above the scratch copy may supply them either.
				empty := filepath.Join(tmp, "pytest.ini")
				if err := os.WriteFile(empty, []byte("[pytest]\n"), 0o644); err != nil {
					return err
				}
				pargs = append(pargs, "-c", empty, "--rootdir", cwd)
			}
			pargs = append(append(pargs, args...), tests...)
			env := pythonEnv(ws, envDir, abs)
			env["HOME"], env["TMPDIR"] = tmp, tmp
			for k, v := range userEnv {
				env[k] = v
			}
			return runTest(c, ec, timeout, engine.Command{
				Argv: pythonArgv(python, envDir, abs, pyProgram{Module: "pytest", Args: pargs}),
				Env:  env, Dir: cwd,
				Confinement: confinement(python, envDir),
			}, ec.Output(logOut), ec.Output(xmlOut), label.String(), func(code int) string {
				switch code {
				case 5:
					return "pytest collected no tests"
				case 2:
					return "pytest was interrupted (a collection error?)"
				case 3:
					return "pytest hit an internal error"
				case 4:
					return "pytest was given bad arguments"
				}
				return ""
			})
		},
	})
	ctx.Provide(logOut, xmlOut)
	return nil
}

// runTest runs a test command with its output in logPath, and turns how
// it ended into the action's result: nil when it passed; a
// *engine.TestFailedError (its log shown as the action's output) when it
// failed or timed out; any other error when it could not run. A JUnit
// report the command did not write is written for it, so every test
// target has one.
func runTest(ctx context.Context, ec *engine.ExecContext, timeout time.Duration, cmd engine.Command, logPath, xmlPath, suite string, exitReason func(int) string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = ec.Run(tctx, cmd)
	elapsed := time.Since(start)
	if cerr := logf.Close(); cerr != nil && err == nil {
		return cerr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var reason string
	var ce *engine.CommandError
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		reason = fmt.Sprintf("timed out after %s", timeout)
	case errors.As(err, &ce):
		reason = exitReason(ce.ExitCode)
		if reason == "" {
			reason = "tests failed"
			if s, err := ReadJUnit(xmlPath); err == nil && s.Tests > 0 {
				reason = fmt.Sprintf("%d of %d tests failed", s.Failures+s.Errors, s.Tests)
			}
		}
	default:
		return err
	}
	if _, serr := os.Stat(xmlPath); serr != nil {
		how, msg := outcomePassed, "passed"
		if reason != "" {
			how, msg = outcomeFailed, reason
		}
		if werr := writeJUnit(xmlPath, suite, elapsed, how, msg, tail(logPath, 64<<10)); werr != nil {
			return werr
		}
	}
	if reason == "" {
		return nil
	}
	// The log is the failure's explanation: it becomes the action's
	// output, which pipe prints under the target.
	if f, err := os.Open(logPath); err == nil {
		io.Copy(ec.Stderr, f)
		f.Close()
	}
	return &engine.TestFailedError{Reason: reason}
}

// tail is the last n bytes of a file.
func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// JUnitSummary counts a JUnit XML report's test cases.
type JUnitSummary struct {
	Tests, Failures, Errors, Skipped int
	// SkipReason is the message of the first skipped case.
	SkipReason string
}

type junitSuite struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Cases    []struct {
		Skipped *struct {
			Message string `xml:"message,attr"`
		} `xml:"skipped"`
	} `xml:"testcase"`
}

// ReadJUnit sums the suites of a JUnit XML report (a <testsuites> root or
// a single <testsuite>).
func ReadJUnit(file string) (JUnitSummary, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return JUnitSummary{}, err
	}
	var doc struct {
		XMLName xml.Name
		junitSuite
		Suites []junitSuite `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return JUnitSummary{}, fmt.Errorf("%s: %w", file, err)
	}
	suites := doc.Suites
	if doc.XMLName.Local == "testsuite" {
		suites = []junitSuite{doc.junitSuite}
	}
	var s JUnitSummary
	for _, su := range suites {
		s.Tests += su.Tests
		s.Failures += su.Failures
		s.Errors += su.Errors
		s.Skipped += su.Skipped
		for _, c := range su.Cases {
			if c.Skipped != nil && s.SkipReason == "" {
				s.SkipReason = c.Skipped.Message
			}
		}
	}
	return s, nil
}

// outcome is how a target's one test case ended, for writeJUnit.
type outcome int

const (
	outcomePassed outcome = iota
	outcomeFailed
	outcomeSkipped
)

// writeJUnit writes a report of one test case, the whole target: passed
// (with its output), failed (with the reason and output), or skipped
// (with the reason).
func writeJUnit(file, suite string, elapsed time.Duration, how outcome, message, output string) error {
	type body struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type testcase struct {
		Name      string  `xml:"name,attr"`
		Classname string  `xml:"classname,attr"`
		Time      string  `xml:"time,attr"`
		Failure   *body   `xml:"failure"`
		Skipped   *body   `xml:"skipped"`
		SystemOut *string `xml:"system-out"`
	}
	type testsuite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Errors   int        `xml:"errors,attr"`
		Skipped  int        `xml:"skipped,attr"`
		Time     string     `xml:"time,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	type testsuites struct {
		XMLName xml.Name    `xml:"testsuites"`
		Suites  []testsuite `xml:"testsuite"`
	}
	secs := strconv.FormatFloat(elapsed.Seconds(), 'f', 3, 64)
	tc := testcase{Name: suite, Classname: suite, Time: secs}
	ts := testsuite{Name: suite, Tests: 1, Time: secs}
	switch how {
	case outcomeFailed:
		tc.Failure = &body{Message: message, Text: output}
		ts.Failures = 1
	case outcomeSkipped:
		tc.Skipped = &body{Message: message}
		ts.Skipped = 1
	default:
		if output != "" {
			tc.SystemOut = &output
		}
	}
	ts.Cases = []testcase{tc}
	b, err := xml.MarshalIndent(testsuites{Suites: []testsuite{ts}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}

func sortedPairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
