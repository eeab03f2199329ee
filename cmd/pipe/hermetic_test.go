package main

// Hermetic Python end to end: interpreters chosen by version from pyenv's
// and Debian's, the locked host environment made of wheels of Debian's
// packages (served by a local mirror), openapi and tests run on it and not
// on the machine's site-packages, pipe test with its caching, exit codes,
// JUnit reports and --affected, and pipe python.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// pyenvRoot is where this kind of machine keeps pyenv's interpreters.
func pyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".pyenv")
}

// requirePyenv stops the test (testenv.Need) unless pyenv has an
// interpreter of each minor version, and returns their paths.
func requirePyenv(t *testing.T, minors ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(pyenvRoot(), "versions"))
	for _, m := range minors {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), m+".") {
				p := filepath.Join(pyenvRoot(), "versions", e.Name(), "bin", "python"+m)
				if _, err := os.Stat(p); err == nil {
					out[m] = p
				}
			}
		}
		if out[m] == "" {
			testenv.Need(t, "pyenv's Python "+m, "pyenv install "+m+" (this machine image has 3.9 to 3.13 in "+pyenvRoot()+")")
		}
	}
	return out
}

// debianDevDists are the test tools wheeled from Debian's packages:
// pytest and FastAPI's TestClient (httpx), with their runtime edges for
// Python 3.11 and later.
var debianDevDists = []debianDist{
	{"attrs", nil},
	{"certifi", nil},
	{"httpcore", []string{"anyio", "certifi", "h11", "sniffio"}},
	{"httpx", []string{"certifi", "httpcore", "rfc3986", "sniffio"}},
	{"iniconfig", nil},
	{"packaging", nil},
	{"pluggy", nil},
	{"pytest", []string{"attrs", "iniconfig", "packaging", "pluggy"}},
	{"rfc3986", []string{"idna"}},
}

var (
	devWheelsOnce sync.Once
	devWheels     []testWheel
	devWheelsErr  error
)

// debianDevWheels returns wheels of the Debian-installed test tools, made
// once per test binary.
func debianDevWheels(t *testing.T) []testWheel {
	t.Helper()
	requirePython(t)
	genRequirePytest(t)
	devWheelsOnce.Do(func() { devWheels, devWheelsErr = wheelDebianDists(debianDevDists) })
	if devWheelsErr != nil {
		t.Fatalf("wheel the Debian test tools: %v", devWheelsErr)
	}
	return devWheels
}

// newTypingExtensions is typing-extensions 4.15 from pyenv's Python 3.11
// (Debian's 4.4 does not import on Python 3.12): a wheel of its one file.
func newTypingExtensions(t *testing.T) testWheel {
	t.Helper()
	p := filepath.Join(pyenvRoot(), "versions", "3.11.7", "lib", "python3.11", "site-packages", "typing_extensions.py")
	b, err := os.ReadFile(p)
	if err != nil {
		testenv.Need(t, "typing_extensions 4.15 in pyenv's Python 3.11.7", err.Error())
	}
	return makeWheel(t, "typing-extensions", "4.15.0", "py3-none-any", nil, map[string][]byte{"typing_extensions.py": b})
}

// testMainPy are the app's tests, with FastAPI's TestClient.
const testMainPy = `from fastapi.testclient import TestClient

from my_api.main import app

client = TestClient(app)


def test_get_item():
    r = client.get("/items/3")
    assert r.status_code == 200
    assert r.json() == {"item_id": 3, "name": "item 3"}


def test_create_item():
    r = client.post("/items", json={"name": "pen", "price": 1.5})
    assert r.json() == {"name": "pen", "price": 1.5}
`

// hermeticApp is a workspace with my-api (FastAPI, uvicorn; pytest and
// httpx in its dev group, tests in tests/), wheels of Debian's packages
// on a mirror, and no interpreter named: python_version decides.
type hermeticApp struct {
	ws     *workspace
	mirror *wheelMirror
	env    []string
	wheels []testWheel
}

// hermeticOptions changes the app.
type hermeticOptions struct {
	pythonVersion string // BUILD.star python_version ("" leaves it out)
	// replace swaps wheels by name (typing-extensions for Python 3.12).
	replace []testWheel
	// noDev leaves pytest and httpx out of the lock.
	noDev bool
	extra []testWheel // more registry packages (runtime deps of my-api)
}

func newHermeticApp(t *testing.T, o hermeticOptions) *hermeticApp {
	t.Helper()
	wheels := slices.Clone(debianWheels(t))
	dev := debianDevWheels(t)
	for _, r := range o.replace {
		for i, w := range wheels {
			if w.Name == r.Name {
				wheels[i] = r
			}
		}
	}
	m := newWheelMirror(t)
	app := pyApp{Deps: []string{"fastapi", "uvicorn"}, MainPy: fastAPIMain}
	if !o.noDev {
		app.Dev = []string{"pytest", "httpx"}
		wheels = append(wheels, dev...)
	}
	for _, w := range o.extra {
		app.Deps = append(app.Deps, w.Name)
		wheels = append(wheels, w)
	}
	for _, w := range wheels {
		m.serve(w, w.Data)
		app.Packages = append(app.Packages, lockEntryOf(w))
	}
	ws := newPyWorkspace(t, app)
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\")\n")
	version := ""
	if o.pythonVersion != "" {
		version = fmt.Sprintf("    python_version = %q,\n", o.pythonVersion)
	}
	ws.write(t, "packages/my-api/BUILD.star", "fastapi_project(\n    name = \"my-api\",\n"+version+"    lint = False,\n)\n")
	ws.write(t, "packages/my-api/tests/__init__.py", "")
	ws.write(t, "packages/my-api/tests/test_main.py", testMainPy)
	return &hermeticApp{ws: ws, mirror: m, env: []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, wheels: wheels}
}

// testRun is one pipe test.
type testRun struct {
	code           int
	stdout, stderr string
	events         []event
}

func (a *hermeticApp) pipe(t *testing.T, args ...string) testRun {
	t.Helper()
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	full := append([]string{args[0], "--events", evFile}, args[1:]...)
	cmd := pipeCmdEnv(a.ws, a.env, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := testRun{code: exitCode(t, cmd.Run()), stdout: out.String(), stderr: errb.String()}
	if _, err := os.Stat(evFile); err == nil {
		r.events = readEvents(t, evFile)
	}
	return r
}

// line returns the report line of label (PASSED, CACHED, FAILED …).
func (r testRun) line(label string) string {
	re := regexp.MustCompile(`(?m)^(PASSED|FAILED|CACHED|SKIPPED|NO STATUS) +` + regexp.QuoteMeta(label) + `(\s.*)?$`)
	return re.FindString(r.stderr)
}

func (r testRun) status(label string) string {
	f := strings.Fields(r.line(label))
	if len(f) == 0 {
		return ""
	}
	if f[0] == "NO" {
		return "NO STATUS"
	}
	return f[0]
}

func (r testRun) executed(mnemonic string) int {
	n := 0
	for _, ev := range r.events {
		if ev.Mnemonic == mnemonic && ev.Status == "executed" {
			n++
		}
	}
	return n
}

// TestPipeTestPassesCachesAndFails: pipe test runs the app's tests on the
// locked environment; a second run is CACHED without running pytest; an
// edit runs them again; a failing test exits 3 with its output shown, its
// log and JUnit report in dist/, and is never cached; --cache-test-results
// =no runs a passing test again.
func TestPipeTestPassesCachesAndFails(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	const label = "//packages/my-api:test"

	r := a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "PASSED" {
		t.Fatalf("first pipe test: exit %d, status %q\nstderr:\n%s", r.code, r.status(label), r.stderr)
	}
	if !strings.Contains(r.line(label), ", 2 tests") || !strings.Contains(r.stderr, "1 test: 1 passed, 0 failed, 0 cached\n") {
		t.Errorf("first run's report:\n%s", r.stderr)
	}
	if r.executed("PyTest") != 1 || r.executed("PyDeps") != 0 || r.executed("OpenAPI") != 0 {
		t.Errorf("pipe test ran more than the test: %+v", r.events)
	}
	var report struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(a.ws.read(t, "dist/packages/my-api/test/test.xml")), &report); err != nil {
		t.Fatalf("test.xml: %v", err)
	}
	if len(report.Suites) != 1 || report.Suites[0].Name != label || report.Suites[0].Tests != 2 {
		t.Errorf("test.xml: %+v", report)
	}

	r = a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "CACHED" || r.executed("PyTest") != 0 {
		t.Fatalf("second pipe test: exit %d, status %q, %d executed\n%s", r.code, r.status(label), r.executed("PyTest"), r.stderr)
	}
	if !strings.Contains(r.stderr, "1 test: 0 passed, 0 failed, 1 cached\n") {
		t.Errorf("second run's summary:\n%s", r.stderr)
	}

	r = a.pipe(t, "test", "--cache-test-results=no")
	if r.code != 0 || r.status(label) != "PASSED" || r.executed("PyTest") != 1 {
		t.Errorf("--cache-test-results=no: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}

	// An edit of the app (a dep of the test) runs the test again.
	a.ws.write(t, "packages/my-api/my_api/main.py", fastAPIMain+"\n# edited\n")
	r = a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "PASSED" {
		t.Errorf("after an edit: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}

	// A failing test: exit 3, pytest's output under the target, FAILED
	// with the reason, the log and report in dist/, and run again next time.
	a.ws.write(t, "packages/my-api/tests/test_fail.py", "def test_broken():\n    assert 1 + 1 == 3, 'arithmetic is broken'\n")
	for i := range 2 {
		r = a.pipe(t, "test")
		if r.code != 3 {
			t.Fatalf("run %d with a failing test: exit %d, want 3\n%s", i, r.code, r.stderr)
		}
		if r.status(label) != "FAILED" || !strings.Contains(r.line(label), "1 of 3 tests failed") {
			t.Errorf("run %d: line %q", i, r.line(label))
		}
		if !strings.Contains(r.stderr, "AssertionError: arithmetic is broken") || !strings.Contains(r.stderr, "FAIL "+label+" (PyTest)") {
			t.Errorf("run %d: the failure's output is not shown:\n%s", i, r.stderr)
		}
		if r.executed("PyTest") != 0 || len(r.events) == 0 {
			// A failed action is reported as failed, not executed.
		}
		if !strings.Contains(r.stderr, "1 test: 0 passed, 1 failed, 0 cached\n") {
			t.Errorf("run %d: summary:\n%s", i, r.stderr)
		}
		if log := a.ws.read(t, "dist/packages/my-api/test/test.log"); !strings.Contains(log, "arithmetic is broken") {
			t.Errorf("run %d: test.log lacks the failure:\n%s", i, log)
		}
		if s := a.ws.read(t, "dist/packages/my-api/test/test.xml"); !strings.Contains(s, `failures="1"`) {
			t.Errorf("run %d: test.xml records no failure:\n%s", i, s)
		}
	}

	// Fixed: passes again (a new key, so it runs).
	os.Remove(a.ws.path("packages/my-api/tests/test_fail.py"))
	r = a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "CACHED" {
		t.Errorf("after the fix, the earlier passing result is the answer: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}
}

// TestPipeTestBuildFailureExits1: a test whose environment cannot be made
// (the mirror lacks a wheel) is a build failure, not a failed test.
func TestPipeTestBuildFailureExits1(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	a.mirror.mu.Lock()
	for k := range a.mirror.files {
		if strings.Contains(k, "pluggy") {
			delete(a.mirror.files, k)
		}
	}
	a.mirror.mu.Unlock()
	r := a.pipe(t, "test")
	if r.code != 1 || !strings.Contains(r.stderr, "fetch pluggy") {
		t.Errorf("exit %d, want 1 and the fetch error\n%s", r.code, r.stderr)
	}
}

// ruffScript is a TEST DOUBLE of ruff's binary, made by pipe's tests (the
// real one cannot be installed here): ruff check reports a line that says
// RUFF-DOUBLE-LINT-ERROR, ruff format --check a file that says
// RUFF-DOUBLE-UNFORMATTED, each with ruff's exit status 1.
const ruffScript = `#!/bin/sh
# TEST DOUBLE of ruff, made by pipe's tests.
cmd=$1; shift
status=0
for a in "$@"; do
  case "$a" in
    *.py)
      if [ "$cmd" = check ] && grep -n RUFF-DOUBLE-LINT-ERROR "$a" >/dev/null; then
        grep -n RUFF-DOUBLE-LINT-ERROR "$a" | sed "s|^\([0-9]*\):.*|$a:\1:1: E999 the double's lint error|"
        status=1
      fi
      if [ "$cmd" = format ] && grep RUFF-DOUBLE-UNFORMATTED "$a" >/dev/null; then
        echo "Would reformat: $a"
        status=1
      fi
      ;;
  esac
done
[ $status = 0 ] && echo "All checks passed!"
exit $status
`

// ruffTestDouble is a wheel of ruff as PyPI ships it (the binary in
// ruff-<v>.data/scripts/), holding ruffScript.
func ruffTestDouble(t *testing.T) testWheel {
	t.Helper()
	w := makeWheel(t, "ruff", "0.0.0", "py3-none-manylinux_2_17_x86_64", nil, map[string][]byte{
		"ruff/__init__.py":              []byte(""),
		"ruff-0.0.0.data/scripts/ruff": []byte(ruffScript),
	})
	return w
}

var _ = exec.Command
