package main

// Hermetic Python end to end: interpreters chosen by version from pyenv's
// and Debian's, the locked host environment made of wheels of Debian's
// packages (served by a local mirror), openapi and tests run on it and not
// on the machine's site-packages, pipe test with its caching, exit codes,
// JUnit reports and --affected, and pipe python.

import (
	"bytes"
	"context"
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

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/rules/python"
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
	// lint declares :lint; ruff puts the ruff double in the dev group.
	lint, ruff bool
	// build is appended to packages/my-api/BUILD.star.
	build string
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
	if o.ruff {
		app.Dev = append(app.Dev, "ruff")
		wheels = append(wheels, ruffTestDouble(t))
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
	ws.write(t, "packages/my-api/BUILD.star", "fastapi_project(\n    name = \"my-api\",\n"+version+fmt.Sprintf("    lint = %s,\n)\n", map[bool]string{true: "True", false: "False"}[o.lint])+o.build)
	ws.write(t, ".gitignore", "/dist/\n/.pipe/\n")
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
	re := regexp.MustCompile(`(?m)^(PASSED|FAILED|CACHED|SKIPPED|NO STATUS|FAILED TO BUILD) +` + regexp.QuoteMeta(label) + `(\s.*)?$`)
	return re.FindString(r.stderr)
}

func (r testRun) status(label string) string {
	f := strings.Fields(r.line(label))
	if len(f) == 0 {
		return ""
	}
	switch {
	case f[0] == "NO":
		return "NO STATUS"
	case f[0] == "FAILED" && f[1] == "TO":
		return "FAILED TO BUILD"
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

	r = a.pipe(t, "test", "--cache-test-results=no", "--verbose")
	if r.code != 0 || r.status(label) != "PASSED" || r.executed("PyTest") != 1 {
		t.Errorf("--cache-test-results=no: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}
	// --verbose: the interpreter, where its version came from, and the
	// environment with its distributions.
	for _, want := range []string{
		"python: Python 3.11.7 (" + pyenvRoot() + "/versions/3.11.7/bin/python3.11, pyenv), for 3.11 (from python_version)",
		"environment: the locked environment (20 distributions: runtime dependencies and the dev group) in " + a.ws.Cache + "/trees/pyenv/",
		"distributions: anyio 3.6.2, ", "pytest 7.2.1",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("pipe test --verbose lacks %q:\n%s", want, r.stderr)
		}
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
		"ruff/__init__.py":             []byte(""),
		"ruff-0.0.0.data/scripts/ruff": []byte(ruffScript),
	})
	return w
}

// key is the action key of the run's event of mnemonic.
func (r testRun) key(mnemonic string) string {
	for _, ev := range r.events {
		if ev.Mnemonic == mnemonic {
			return ev.Key
		}
	}
	return ""
}

// TestInterpreterChosenByVersion: the python_version attribute picks
// pyenv's 3.12 or 3.11 and the action key follows; without the attribute,
// .python-version decides, then requires-python; pipe python says which
// target runs which interpreter and why.
func TestInterpreterChosenByVersion(t *testing.T) {
	t.Parallel()
	py := requirePyenv(t, "3.11", "3.12")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.12", replace: []testWheel{newTypingExtensions(t)}})
	const label = "//packages/my-api:test"
	const log = "dist/packages/my-api/test/test.log"
	runOn := func(what, version string) testRun {
		t.Helper()
		r := a.pipe(t, "test")
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", what, r.code, r.stderr)
		}
		if !strings.Contains(a.ws.read(t, log), "platform linux -- Python "+version+",") {
			t.Errorf("%s: the tests did not run on Python %s:\n%s", what, version, a.ws.read(t, log))
		}
		return r
	}
	pythonSays := func(what, want string) {
		t.Helper()
		out, stderr, code := runPipe(t, a.ws, "python", "//packages/my-api:test")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("%s: pipe python (exit %d) lacks %q:\n%s%s", what, code, want, out, stderr)
		}
	}

	r312 := runOn("python_version 3.12", "3.12.1")
	pythonSays("python_version 3.12", label+"\n    wants Python 3.12 (python_version)\n    runs Python 3.12.1 ("+py["3.12"]+", pyenv)\n")

	a.ws.write(t, "packages/my-api/BUILD.star", strings.Replace(a.ws.read(t, "packages/my-api/BUILD.star"), `"3.12"`, `"3.11"`, 1))
	r311 := runOn("python_version 3.11", "3.11.7")
	if r311.status(label) != "PASSED" || r311.key("PyTest") == r312.key("PyTest") || r311.key("PyTest") == "" {
		t.Errorf("3.11 after 3.12: status %s, keys %s and %s: the interpreter must be in the key", r311.status(label), r311.key("PyTest"), r312.key("PyTest"))
	}
	pythonSays("python_version 3.11", "runs Python 3.11.7 ("+py["3.11"]+", pyenv)")

	// No attribute: .python-version, as uv python pin writes it.
	a.ws.write(t, "packages/my-api/BUILD.star", "fastapi_project(name = \"my-api\", lint = False)\n")
	a.ws.write(t, "packages/my-api/.python-version", "3.12\n")
	r := runOn(".python-version", "3.12.1")
	if r.status(label) != "CACHED" {
		t.Errorf(".python-version 3.12 gives the 3.12 run's key: status %s", r.status(label))
	}
	pythonSays(".python-version", "wants Python 3.12 (packages/my-api/.python-version)")
	// Neither: the lowest version requires-python admits.
	os.Remove(a.ws.path("packages/my-api/.python-version"))
	r = runOn("requires-python", "3.11.7")
	if r.status(label) != "CACHED" {
		t.Errorf("requires-python >=3.11 gives the 3.11 run's key: status %s", r.status(label))
	}
	pythonSays("requires-python", "wants Python 3.11 (requires-python >=3.11 in packages/my-api/pyproject.toml)")
}

// TestNoInterpreterForVersion: a version no interpreter has fails the
// targets that run Python, saying what was wanted, what was found and the
// three ways to fix it; the bundle, pipe query and pipe python still work.
func TestNoInterpreterForVersion(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.14"})
	r := a.pipe(t, "test")
	if r.code != 1 || r.status("//packages/my-api:test") != "FAILED TO BUILD" {
		t.Fatalf("exit %d, want 1 and FAILED TO BUILD\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"FAIL //packages/my-api:test (PyTest): no Python 3.14 interpreter on this machine (3.14 comes from python_version)",
		"\nfound:\n",
		"(pyenv, " + pyenvRoot() + "/versions/3.11.7/bin/python3.11)",
		"downloads: pipe pins no python-build-standalone build of 3.14",
		"to fix it, one of:",
		"1. install Python 3.14: uv python install 3.14, or pyenv install 3.14",
		`2. name one in WORKSPACE.star: workspace(python_interpreters = {"3.14": "/path/to/python3.14"})`,
		"3. ask for a version pipe downloads (3.13.0, 3.12.7, 3.11.10)",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if b := a.pipe(t, "build", "//packages/my-api:bundle"); b.code != 0 {
		t.Errorf("the bundle needs no interpreter: exit %d\n%s", b.code, b.stderr)
	}
	if out, stderr, code := runPipe(t, a.ws, "query", "//..."); code != 0 || !strings.Contains(out, "//packages/my-api:openapi") {
		t.Errorf("pipe query: exit %d\n%s%s", code, out, stderr)
	}
	if out, _, code := runPipe(t, a.ws, "python"); code != 0 || !strings.Contains(out, "runs nothing: no Python 3.14 interpreter") {
		t.Errorf("pipe python: exit %d\n%s", code, out)
	}
	// Downloads off: the third fix says so.
	a.env = append(a.env, "PIPE_PYTHON_DOWNLOADS=never")
	a.ws.write(t, "packages/my-api/BUILD.star", strings.Replace(a.ws.read(t, "packages/my-api/BUILD.star"), `"3.14"`, `"3.12.7"`, 1))
	r = a.pipe(t, "test")
	if r.code != 1 || !strings.Contains(r.stderr, "downloads: off (PIPE_PYTHON_DOWNLOADS = never)") || !strings.Contains(r.stderr, "3. let pipe download it: PIPE_PYTHON_DOWNLOADS=auto") {
		t.Errorf("3.12.7 with downloads off: exit %d\n%s", r.code, r.stderr)
	}
}

// TestLockedEnvironmentWinsOverHostSitePackages: pyenv's Python 3.11 has
// pydantic 2, click 8.4 and more in its site-packages; Debian's has its
// own dist-packages. The lock pins pydantic 1.10.4 and click 8.1.3, and
// that is what the tests import, from the environment tree, with no
// site-packages of either interpreter on sys.path.
func TestLockedEnvironmentWinsOverHostSitePackages(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	host, err := exec.Command(filepath.Join(pyenvRoot(), "versions", "3.11.7", "bin", "python3.11"), "-c", "import pydantic; print(pydantic.VERSION)").Output()
	if err != nil || !strings.HasPrefix(string(host), "2.") {
		testenv.Need(t, "pydantic 2 in pyenv's Python 3.11.7 (this machine image has it for moto)", fmt.Sprint(err, string(host)))
	}
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	a.ws.write(t, "packages/my-api/tests/test_versions.py", `import sys

import click
import pydantic


def test_the_locked_versions_win():
    assert pydantic.VERSION == "1.10.4", (pydantic.VERSION, pydantic.__file__)
    assert click.__version__ == "8.1.3", (click.__version__, click.__file__)
    for module in (pydantic, click):
        assert "/trees/pyenv/" in module.__file__, module.__file__


def test_no_site_packages():
    leaks = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    assert not leaks, sys.path
`)
	const label = "//packages/my-api:test"
	r := a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "PASSED" || !strings.Contains(r.line(label), "4 tests") {
		t.Fatalf("on pyenv's 3.11.7: exit %d\n%s\n%s", r.code, r.stderr, a.ws.read(t, "dist/packages/my-api/test/test.log"))
	}
	// Debian's interpreter of the same version: its dist-packages stay out.
	a.ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_interpreters = {\"3.11\": \"/usr/bin/python3.11\"})\n")
	r = a.pipe(t, "test")
	if r.code != 0 || r.status(label) != "PASSED" {
		t.Fatalf("on Debian's 3.11: exit %d\n%s", r.code, r.stderr)
	}
	if log := a.ws.read(t, "dist/packages/my-api/test/test.log"); !strings.Contains(log, "Python 3.11.2") {
		t.Errorf("not run on Debian's 3.11.2:\n%s", log)
	}
}

// TestOpenAPISameOnTwoInterpreters: pyenv's 3.11.7 and Debian's 3.11.2
// are two interpreters (two keys) that write the same openapi.json from
// the same locked environment, which they share.
func TestOpenAPISameOnTwoInterpreters(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	const spec = "dist/packages/my-api/openapi/openapi.json"
	r := a.pipe(t, "build", "//packages/my-api:openapi")
	if r.code != 0 || r.executed("OpenAPI") != 1 {
		t.Fatalf("pyenv: exit %d\n%s", r.code, r.stderr)
	}
	first := a.ws.read(t, spec)
	if !strings.Contains(first, `"openapi": "3.0.2"`) {
		t.Errorf("not FastAPI 0.92's schema (the lock's):\n%s", first)
	}
	a.ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_interpreters = {\"3.11\": \"/usr/bin/python3.11\"})\n")
	r2 := a.pipe(t, "build", "//packages/my-api:openapi")
	if r2.code != 0 || r2.executed("OpenAPI") != 1 || r2.key("OpenAPI") == r.key("OpenAPI") {
		t.Fatalf("Debian: exit %d, %d executed, keys %s %s\n%s", r2.code, r2.executed("OpenAPI"), r.key("OpenAPI"), r2.key("OpenAPI"), r2.stderr)
	}
	if second := a.ws.read(t, spec); second != first {
		t.Errorf("openapi.json differs between two Python 3.11 interpreters:\n%s\n---\n%s", first, second)
	}
	envs, _ := os.ReadDir(filepath.Join(a.ws.Cache, "trees", "pyenv"))
	if len(envs) != 1 {
		t.Errorf("%d environments for one wheel set and ABI, want 1 shared", len(envs))
	}
	out, _, _ := runPipe(t, a.ws, "python", "//packages/my-api:openapi")
	if !strings.Contains(out, `runs Python 3.11.2 (/usr/bin/python3.11, python_interpreters["3.11"])`) {
		t.Errorf("pipe python:\n%s", out)
	}
}

// TestPipeTestAffected: --affected --base runs only the tests a change
// since the base affects.
func TestPipeTestAffected(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", build: `
py_test(
    name = "other",
    srcs = ["other_tests/test_other.py"],
    python_version = "3.11",
)
`})
	a.ws.write(t, "packages/my-api/other_tests/test_other.py", "def test_other():\n    assert True\n")
	g := initGit(t, a.ws.Root)
	g.commit("initial")

	r := a.pipe(t, "test", "--affected", "--base", "HEAD")
	if r.code != 0 || !strings.Contains(r.stderr, "0 tests: nothing the change affects is a test") {
		t.Errorf("no change: exit %d\n%s", r.code, r.stderr)
	}
	a.ws.write(t, "packages/my-api/other_tests/test_other.py", "def test_other():\n    assert 2 > 1\n")
	r = a.pipe(t, "test", "--affected", "--base", "HEAD")
	if r.code != 0 || r.status("//packages/my-api:other") != "PASSED" || r.status("//packages/my-api:test") != "" || !strings.Contains(r.stderr, "1 test: 1 passed") {
		t.Errorf("after editing other_tests: exit %d\n%s", r.code, r.stderr)
	}
	// An app edit affects :test (its deps) and not :other.
	g.commit("other")
	a.ws.write(t, "packages/my-api/my_api/main.py", fastAPIMain+"\n# edited\n")
	r = a.pipe(t, "test", "--affected", "--base", "HEAD")
	if r.code != 0 || r.status("//packages/my-api:test") != "PASSED" || r.status("//packages/my-api:other") != "" {
		t.Errorf("after editing the app: exit %d\n%s", r.code, r.stderr)
	}
}

// TestPipeTestJUnitReport: every test target's report in dist/ and the
// --junit-xml aggregate are JUnit XML CI systems read: suites named by
// label, counts, the failure with its message.
func TestPipeTestJUnitReport(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", build: `
py_test(
    name = "broken",
    srcs = ["broken_tests/test_broken.py"],
    python_version = "3.11",
)
`})
	a.ws.write(t, "packages/my-api/broken_tests/test_broken.py", "def test_ok():\n    pass\n\ndef test_broken():\n    assert 'a' == 'b', 'letters differ'\n")
	report := filepath.Join(t.TempDir(), "reports", "junit.xml")
	r := a.pipe(t, "test", "--junit-xml", report)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "2 tests: 1 passed, 1 failed, 0 cached") {
		t.Errorf("summary:\n%s", r.stderr)
	}
	type testcase struct {
		Name    string `xml:"name,attr"`
		Failure *struct {
			Message string `xml:"message,attr"`
		} `xml:"failure"`
	}
	type suite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	var doc struct {
		XMLName xml.Name
		Suites  []suite `xml:"testsuite"`
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &doc); err != nil || doc.XMLName.Local != "testsuites" {
		t.Fatalf("--junit-xml is not JUnit XML (%v):\n%s", err, b)
	}
	got := map[string]suite{}
	for _, s := range doc.Suites {
		got[s.Name] = s
	}
	if s := got["//packages/my-api:test"]; s.Tests != 2 || s.Failures != 0 {
		t.Errorf(":test suite %+v", s)
	}
	s := got["//packages/my-api:broken"]
	if s.Tests != 2 || s.Failures != 1 {
		t.Errorf(":broken suite %+v", s)
	}
	failed := false
	for _, c := range s.Cases {
		if c.Name == "test_broken" && c.Failure != nil && strings.Contains(c.Failure.Message, "letters differ") {
			failed = true
		}
	}
	if !failed {
		t.Errorf("no failing test_broken case with its message:\n%s", b)
	}
	if own := a.ws.read(t, "dist/packages/my-api/broken/test.xml"); !strings.Contains(own, `name="//packages/my-api:broken"`) {
		t.Errorf("the target's own report:\n%s", own)
	}
}

// TestPipeTestMissingPytest: a lock without pytest fails the test target
// with what to add, as a build failure (exit 1).
func TestPipeTestMissingPytest(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", noDev: true})
	r := a.pipe(t, "test")
	want := "FAIL //packages/my-api:test (PyTest): pytest is not in the locked environment of //packages/my-api:test: add it to the dev dependency group (uv add --group dev pytest) and run `uv lock`"
	if r.code != 1 || !strings.Contains(r.stderr, want) || r.status("//packages/my-api:test") != "FAILED TO BUILD" {
		t.Errorf("exit %d, want 1, %q and FAILED TO BUILD\n%s", r.code, want, r.stderr)
	}
}

// TestHostMissingWheel: a package the lock pins only as musllinux and
// arm64 wheels cannot be installed on this (glibc, x86_64) machine; the
// test target says which wheels the lock has and why none fits.
func TestHostMissingWheel(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	musl := makeWheel(t, "muslonly", "1.0", "py3-none-musllinux_1_1_x86_64", nil, map[string][]byte{"muslonly.py": []byte("")})
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", extra: []testWheel{musl}})
	r := a.pipe(t, "test", "//packages/my-api:test")
	for _, want := range []string{
		"FAIL //packages/my-api:test (PyTest): the lock has no environment for Python 3.11.7",
		"muslonly 1.0: no wheel for python3.11 on this machine (linux x86_64, glibc ",
		"muslonly-1.0-py3-none-musllinux_1_1_x86_64.whl (musllinux: this machine's Python uses glibc)",
	} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d; stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
}

// TestPyLint: :lint runs ruff from the lock (a double here) on the app
// and its tests: it passes, fails with ruff's findings (exit 3), and says
// so when the lock has no ruff.
func TestPyLint(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", lint: true, ruff: true})
	const lint = "//packages/my-api:lint"
	r := a.pipe(t, "test")
	if r.code != 0 || r.status(lint) != "PASSED" || !strings.Contains(r.stderr, "2 tests: 2 passed") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if log := a.ws.read(t, "dist/packages/my-api/lint/lint.log"); !strings.Contains(log, "$ ruff check") || !strings.Contains(log, "$ ruff format") {
		t.Errorf("lint.log:\n%s", log)
	}
	a.ws.write(t, "packages/my-api/tests/test_main.py", testMainPy+"# RUFF-DOUBLE-LINT-ERROR\n")
	r = a.pipe(t, "test")
	if r.code != 3 || r.status(lint) != "FAILED" || !strings.Contains(r.line(lint), "ruff check found problems") ||
		!strings.Contains(r.stderr, "packages/my-api/tests/test_main.py:17:1: E999 the double's lint error") {
		t.Errorf("with a lint error: exit %d\n%s", r.code, r.stderr)
	}

	b := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", lint: true})
	r = b.pipe(t, "test", lint)
	if r.code != 0 || r.status(lint) != "SKIPPED" || !strings.Contains(r.line(lint), "ruff is not in the lock") || !strings.Contains(r.line(lint), "uv add --dev ruff") {
		t.Errorf("without ruff: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "1 test: 0 passed, 0 failed, 0 cached, 1 skipped") {
		t.Errorf("summary without ruff:\n%s", r.stderr)
	}
}

// TestPipeTestRemoteCache: a passing test's result travels through the
// remote cache: a second clone with an empty local cache reports it
// CACHED without running pytest.
func TestPipeTestRemoteCache(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	srv := testenv.StartNginx(t, "")
	url := srv.URL + "/pipe"
	first := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	r := first.pipe(t, "test", "--remote-cache", url, "--remote-upload")
	if r.code != 0 || r.status("//packages/my-api:test") != "PASSED" {
		t.Fatalf("first clone: exit %d\n%s", r.code, r.stderr)
	}
	second := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	r = second.pipe(t, "test", "--remote-cache", url)
	if r.code != 0 || r.status("//packages/my-api:test") != "CACHED" || r.executed("PyTest") != 0 {
		t.Errorf("second clone: exit %d\n%s", r.code, r.stderr)
	}
	if second.ws.read(t, "dist/packages/my-api/test/test.xml") != first.ws.read(t, "dist/packages/my-api/test/test.xml") {
		t.Errorf("the second clone's report is not the first's")
	}
}

// TestDownloadedInterpreter: with no interpreter of the version installed
// (pyenv and uv hidden), one pipe downloaded is found in the cache and
// runs the tests, named in keys by its archive; a download that is not
// the pinned archive is refused.
func TestDownloadedInterpreter(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.12")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.12.1", replace: []testWheel{newTypingExtensions(t)}})
	home := t.TempDir()
	a.env = append(a.env, "HOME="+home, "PYENV_ROOT="+filepath.Join(home, "no-pyenv"))

	// What pipe would download, installed the way it installs it, from an
	// archive packed from pyenv's 3.12.1 and pinned by this test.
	base := t.TempDir()
	entry := python.PythonDownload{Major: 3, Minor: 12, Patch: 1, Release: "20991231", Arch: "x86_64",
		File: "cpython-3.12.1+20991231-x86_64-unknown-linux-gnu-install_only.tar.gz"}
	os.MkdirAll(filepath.Join(base, entry.Release), 0o755)
	entry.SHA256 = testenv.PyenvArchive(t, "3.12.1", filepath.Join(base, entry.Release, entry.File)).SHA256
	c, err := cache.Open(a.ws.Cache)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&python.Downloader{Base: "file://" + base, Cache: c}).Install(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	r := a.pipe(t, "test")
	if r.code != 0 || !strings.Contains(a.ws.read(t, "dist/packages/my-api/test/test.log"), "Python 3.12.1") {
		t.Fatalf("on the downloaded interpreter: exit %d\n%s", r.code, r.stderr)
	}
	var out bytes.Buffer
	cmd := pipeCmdEnv(a.ws, a.env, "python")
	cmd.Stdout = &out
	cmd.Run()
	if !strings.Contains(out.String(), "runs Python 3.12.1 ("+c.TreePath("python", strings.TrimSuffix(entry.File, ".tar.gz"))+"/python/bin/python3.12, download)") {
		t.Errorf("pipe python:\n%s", out.String())
	}

	// 3.12.7 is pinned in pipe's table; the mirror serves another file
	// under its name, which is refused by its hash.
	mirror := t.TempDir()
	pinned := "cpython-3.12.7+20241008-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
	os.MkdirAll(filepath.Join(mirror, "20241008"), 0o755)
	testenv.PyenvArchive(t, "3.12.1", filepath.Join(mirror, "20241008", pinned))
	a.env = append(a.env, "PIPE_PYTHON_DOWNLOADS=file://"+mirror)
	a.ws.write(t, "packages/my-api/BUILD.star", strings.Replace(a.ws.read(t, "packages/my-api/BUILD.star"), `"3.12.1"`, `"3.12.7"`, 1))
	r = a.pipe(t, "test")
	for _, want := range []string{"fetch Python 3.12.7 from file://" + mirror + "/20241008/" + strings.Replace(pinned, "+", "%2B", 1), "sha256 mismatch", "the archive is pinned by its sha256 in pipe", "FAILED TO BUILD //packages/my-api:test  fetch Python 3.12.7"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("a download that is not the pinned archive: exit %d, stderr lacks %q\n%s", r.code, want, r.stderr)
		}
	}
}

// TestPipeTestTimeoutAndOthersRun: a test over its timeout fails as a
// test (exit 3) with a report written for it, and a failing test does not
// stop the others, even one at a time (--jobs 1).
func TestPipeTestTimeoutAndOthersRun(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", build: `
py_test(
    name = "a_slow",
    srcs = ["slow_tests/test_slow.py"],
    python_version = "3.11",
    timeout = "2s",
)
`})
	a.ws.write(t, "packages/my-api/slow_tests/test_slow.py", "import time\n\ndef test_slow():\n    time.sleep(30)\n")
	r := a.pipe(t, "test", "--jobs", "1")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3\n%s", r.code, r.stderr)
	}
	if r.status("//packages/my-api:a_slow") != "FAILED" || !strings.Contains(r.line("//packages/my-api:a_slow"), "timed out after 2s") {
		t.Errorf("the slow test:\n%s", r.stderr)
	}
	if r.status("//packages/my-api:test") != "PASSED" {
		t.Errorf("the other test did not run after the failure:\n%s", r.stderr)
	}
	if s := a.ws.read(t, "dist/packages/my-api/a_slow/test.xml"); !strings.Contains(s, `message="timed out after 2s"`) {
		t.Errorf("the timed-out test's report:\n%s", s)
	}
}
