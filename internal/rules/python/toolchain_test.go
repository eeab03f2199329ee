package python

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/testenv"
)

// TestDiscoveryOrder: the workspace's interpreters come first, then uv's,
// pyenv's, python3.X on the action PATH and those pipe downloaded; the
// first whose version matches is chosen, and only candidates whose names
// allow the version are run.
func TestDiscoveryOrder(t *testing.T) {
	t.Parallel()
	py312, prefix := testenv.PyenvPython(t, "3.12.1")
	root := t.TempDir()
	// uv's layout, holding a link to pyenv's 3.12.1.
	uv := filepath.Join(t.TempDir(), "uv")
	uvBin := filepath.Join(uv, "cpython-3.12.1-linux-"+hostArch()+"-gnu", "bin")
	os.MkdirAll(uvBin, 0o755)
	if err := os.Symlink(py312, filepath.Join(uvBin, "python3.12")); err != nil {
		t.Fatal(err)
	}
	// A uv build for another machine, and a pyenv name that is no CPython.
	os.MkdirAll(filepath.Join(uv, "cpython-3.12.9-linux-riscv64-gnu", "bin"), 0o755)
	broken := filepath.Join(root, "broken-python")
	os.WriteFile(broken, []byte("#!/bin/sh\necho nope >&2\nexit 3\n"), 0o755)
	ws := &engine.Workspace{Root: root, Settings: engine.Settings{
		Path:               "/usr/local/bin:/usr/bin:/bin",
		PythonInterpreters: map[string]string{"3.12": "broken-python", "3.11": py312},
	}}
	env := map[string]string{
		"HOME":                  t.TempDir(),
		"UV_PYTHON_INSTALL_DIR": uv,
		"PYENV_ROOT":            filepath.Dir(filepath.Dir(prefix)),
		"PIPE_CACHE_DIR":        t.TempDir(),
	}
	d := newDiscovery(ws, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	cands := d.candidates(nil)
	var sources []string
	for _, c := range cands {
		if len(sources) == 0 || sources[len(sources)-1] != c.Source {
			sources = append(sources, c.Source)
		}
	}
	if got := strings.Join(sources, " "); !strings.HasPrefix(got, `python_interpreters["3.11"] python_interpreters["3.12"] uv pyenv`) {
		t.Errorf("sources in order: %s", got)
	}
	for _, c := range cands {
		if strings.Contains(c.Path, "riscv64") {
			t.Errorf("a build for another machine is a candidate: %v", c)
		}
	}

	want, _ := ParsePythonRequest("3.12")
	in, found := d.find(context.Background(), want, nil)
	if in == nil || in.Source != "uv" || in.Path != filepath.Join(uvBin, "python3.12") || in.Version() != "3.12.1" {
		t.Fatalf("3.12: %+v\n%v", in, found)
	}
	for _, f := range found {
		switch f.Source {
		case `python_interpreters["3.12"]`:
			if f.Err == nil || !strings.Contains(f.Err.Error(), "does not run: nope") {
				t.Errorf("the broken interpreter: %v", f.Err)
			}
		case "pyenv":
			if f.Interp != nil {
				t.Errorf("pyenv's %s was run though uv's came first", f.Path)
			}
		}
	}
	// python_interpreters names 3.11 but it is 3.12.1.
	want, _ = ParsePythonRequest("3.11")
	_, found = d.find(context.Background(), want, nil)
	if f := found[0]; f.Err == nil || !strings.Contains(f.Err.Error(), "it is Python 3.12.1, not 3.11: fix python_interpreters in WORKSPACE.star") {
		t.Errorf("a mislabelled interpreter: %v", f)
	}
	// The identity names path, version, ABI and build.
	if !strings.HasPrefix(in.Identity, "python "+in.Path+" 3.12.1 cpython-312-") || !strings.Contains(in.Identity, "3.12.1 (main") {
		t.Errorf("identity %q", in.Identity)
	}
	if in.ABITag != "cp312" || in.CacheTag != "cpython-312" || in.Glibc[0] != 2 {
		t.Errorf("probe: %+v", in)
	}
	// The probe is kept: a second discovery runs nothing (the record is
	// there and the binary's stat held).
	if _, err := os.Stat(filepath.Join(root, ".pipe", "python")); err != nil {
		t.Errorf("no probe record: %v", err)
	}
}
