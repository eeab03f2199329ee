package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// pythonSnapshotMain is an app whose schema says which interpreter made
// it: the output changes with the interpreter pipe chooses.
const pythonSnapshotMain = `import sys


class App:
    def openapi(self):
        return {
            "openapi": "3.1.0",
            "info": {"title": "my-api", "version": "%d.%d.%d" % sys.version_info[:3]},
            "x-python": sys.executable,
        }


app = App()
`

// fakePyenv makes a pyenv root whose versions are symbolic links to the
// machine's pyenv interpreters: version name → real interpreter.
func fakePyenv(t *testing.T, versions map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, real := range versions {
		linkInterpreter(t, root, name, real)
	}
	return root
}

// linkInterpreter puts versions/<name>/bin/python3.X in the pyenv root,
// a symbolic link to real.
func linkInterpreter(t *testing.T, root, name, real string) {
	t.Helper()
	minor := strings.Join(strings.Split(name, ".")[:2], ".")
	bin := filepath.Join(root, "versions", name, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(bin, "python"+minor)
	os.Remove(link)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotPythonWorkspace: a workspace whose analysis chooses a Python
// interpreter (openapi_schema) is answered by the build snapshot, and every
// change to what decides the choice voids it: the requested version (the
// target's python_version, .python-version), the interpreter behind a
// pyenv version (swapped), a new pyenv version, and PYENV_ROOT. After each,
// the build equals a clean build of the same state, byte for byte and key
// for key.
func TestSnapshotPythonWorkspace(t *testing.T) {
	t.Parallel()
	py312, _ := testenv.PyenvPython(t, "3.12.1")
	py313, _ := testenv.PyenvPython(t, "3.13.0")
	tiny := tinyWheel(t)
	root := fakePyenv(t, map[string]string{"3.12.1": py312, "3.13.0": py313})
	// A python3.12 on the action PATH, found after pyenv's.
	pathDir := t.TempDir()
	if err := os.Symlink(py312, filepath.Join(pathDir, "python3.12")); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := []string{"PYENV_ROOT=" + root, "HOME=" + home, "UV_PYTHON_INSTALL_DIR=", "XDG_DATA_HOME=",
		"PIPE_PYTHON_DOWNLOADS=never"}

	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}, MainPy: pythonSnapshotMain})
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_index = \"file://wheels\", action_path = \""+pathDir+":/usr/bin:/bin\")\n")
	ws.write(t, "wheels/"+tiny.Filename, string(tiny.Data))
	ws.write(t, ".python-version", "3.12\n")
	buildFile := `python_bundle(
    name = "bundle",
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
)

openapi_schema(
    name = "openapi",
    srcs = glob(["my_api/**/*.py"]),
    app = "my_api.main:app",%s
)
`
	ws.write(t, "packages/my-api/BUILD.star", strings.Replace(buildFile, "%s", "", 1))
	schema := "dist/packages/my-api/openapi/openapi.json"

	first := ws.buildEnvOK(t, env)
	wantLabels(t, "executed", first.mnemonics("executed"), "OpenAPI", "PyApp", "PyBundle", "PyDeps")
	if got := ws.read(t, schema); !strings.Contains(got, `"3.12.1"`) || !strings.Contains(got, filepath.Join(root, "versions", "3.12.1")) {
		t.Fatalf("the schema was not made by pyenv's 3.12.1 of %s:\n%s", root, got)
	}

	// step primes the snapshot, makes the change and checks that the
	// snapshot did not answer, that the schema says want, and that the
	// result is a clean build's.
	step := func(what string, edit func(), want ...string) {
		t.Helper()
		primeSnapshot(t, ws, env)
		edit()
		b := ws.buildEnvOK(t, env, "-v")
		got := ws.read(t, schema)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: the schema lacks %q:\n%s", what, w, got)
			}
		}
		againstClean(t, what, ws, env, b, nil)
	}

	step("python_version on the target", func() {
		ws.write(t, "packages/my-api/BUILD.star", strings.Replace(buildFile, "%s", "\n    python_version = \"3.13\",", 1))
	}, `"3.13.0"`)
	ws.write(t, "packages/my-api/BUILD.star", strings.Replace(buildFile, "%s", "", 1))

	step(".python-version", func() {
		ws.write(t, ".python-version", "3.13\n")
	}, `"3.13.0"`, filepath.Join(root, "versions", "3.13.0"))
	ws.write(t, ".python-version", "3.12\n")

	// pyenv's "3.12.1" becomes a 3.13: its probe no longer matches, and
	// the python3.12 on the action PATH is chosen.
	step("the interpreter behind a pyenv version swapped", func() {
		linkInterpreter(t, root, "3.12.1", py313)
	}, `"3.12.1"`, filepath.Join(pathDir, "python3.12"))

	// A newer 3.12 in pyenv's versions/ comes first.
	step("a new pyenv version", func() {
		linkInterpreter(t, root, "3.12.9", py312)
	}, filepath.Join(root, "versions", "3.12.9"))

	other := fakePyenv(t, map[string]string{"3.12.1": py312})
	step("PYENV_ROOT", func() {
		for i, kv := range env {
			if strings.HasPrefix(kv, "PYENV_ROOT=") {
				env[i] = "PYENV_ROOT=" + other
			}
		}
	}, filepath.Join(other, "versions", "3.12.1"))

	// An interpreter WORKSPACE.star names, then replaced by another
	// version under the same name: pipe says so and falls back to pyenv's.
	named := filepath.Join(t.TempDir(), "python3.12")
	if err := os.Symlink(py312, named); err != nil {
		t.Fatal(err)
	}
	step("python_interpreters", func() {
		ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_index = \"file://wheels\", action_path = \""+pathDir+":/usr/bin:/bin\", python_interpreters = {\"3.12\": \""+named+"\"})\n")
	}, named)
	step("the interpreter python_interpreters names replaced", func() {
		if err := os.Remove(named); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(py313, named); err != nil {
			t.Fatal(err)
		}
	}, filepath.Join(other, "versions", "3.12.1"))
	primeSnapshot(t, ws, env)
}

// againstClean checks that b, the build of ws after a change, was not
// answered by the build snapshot and equals a clean build of the same
// state: dist/ byte for byte, and the action keys. prepare, when set,
// readies the clean copy (with what copyWorkspace leaves out, such as
// symbolic links).
func againstClean(t *testing.T, what string, ws *workspace, env []string, b build, prepare func(root string)) {
	t.Helper()
	if strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("%s: the build snapshot answered:\n%s", what, b.stderr)
	}
	clean := copyWorkspace(t, ws.Root)
	if prepare != nil {
		prepare(clean.Root)
	}
	cb := clean.buildEnvOK(t, env)
	if d := diffSnapshots(snapshot(t, filepath.Join(ws.Root, "dist")), snapshot(t, filepath.Join(clean.Root, "dist"))); d != "" {
		t.Errorf("%s: dist/ differs from a clean build's:\n%s", what, d)
	}
	if g, w := eventKeys(b), eventKeys(cb); !equalStrings(g, w) {
		t.Errorf("%s: action keys %q, a clean build's %q", what, g, w)
	}
}

// eventKeys lists a build's actions as "label mnemonic key", sorted.
func eventKeys(b build) []string {
	var out []string
	for _, ev := range b.events {
		out = append(out, ev.Label+" "+ev.Mnemonic+" "+ev.Key)
	}
	sort.Strings(out)
	return out
}
