package python

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// Interpreter is a host Python that openapi_schema and :serve run.
type Interpreter struct {
	Path    string // absolute
	Version string // sys.version
	// Identity is part of every action key that runs the interpreter: its
	// path, version and installed distributions (names and versions).
	Identity string
}

// probeScript prints what identifies an interpreter for caching: its
// version, where it imports from, and every installed distribution.
const probeScript = `
import json, sys, importlib.metadata as md
dists = sorted({"%s==%s" % (d.metadata["Name"], d.version) for d in md.distributions() if d.metadata["Name"]})
print(json.dumps({"version": sys.version, "executable": sys.executable,
                  "path": [p for p in sys.path if p], "dists": dists}))
`

type probe struct {
	Version    string   `json:"version"`
	Executable string   `json:"executable"`
	Path       []string `json:"path"`
	Dists      []string `json:"dists"`
}

// interpCache is the on-disk record of a probe, valid while the
// interpreter and every directory on its sys.path keep their stat: any
// install or removal of a package changes its site-packages directory.
type interpCache struct {
	Probe    probe
	Stats    map[string]engine.FileStat
	Recorded int64
}

// FindInterpreter resolves the workspace's interpreter: workspace(python =
// …) (relative to the workspace root), else .venv/bin/python if it exists,
// else python3 on the action PATH.
func FindInterpreter(ws *engine.Workspace) (string, error) {
	want := ws.Settings.Python
	if want == "" {
		venv := filepath.Join(ws.Root, ".venv", "bin", "python")
		if _, err := os.Stat(venv); err == nil {
			return venv, nil
		}
		want = "python3"
	}
	if strings.Contains(want, "/") {
		p := want
		if !filepath.IsAbs(p) {
			p = filepath.Join(ws.Root, p)
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("python interpreter %s (workspace python = %q) does not exist: create the venv (uv sync) or fix WORKSPACE.star", p, want)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(ws.Settings.Path) {
		p := filepath.Join(dir, want)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s on the action PATH (%s): install Python, or set workspace(python = \".venv/bin/python\") in WORKSPACE.star", want, ws.Settings.Path)
}

// LoadInterpreter probes the interpreter at path, or reuses the probe
// recorded in the workspace's .pipe/ while nothing it depends on changed.
func LoadInterpreter(ctx context.Context, ws *engine.Workspace, path string) (*Interpreter, error) {
	cacheFile := filepath.Join(ws.StateDir(), "python", fmt.Sprintf("%x.json", sha256.Sum256([]byte(path))))
	if b, err := os.ReadFile(cacheFile); err == nil {
		var c interpCache
		if json.Unmarshal(b, &c) == nil && c.Stats != nil && statsHold(c.Stats, c.Recorded) {
			return newInterpreter(path, c.Probe), nil
		}
	}
	start := time.Now().UnixNano()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-I", "-c", probeScript)
	cmd.Env = []string{"PATH=" + ws.Settings.Path}
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("probe python %s: %s", path, msg)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("probe python %s: unexpected output %q", path, out)
	}
	c := interpCache{Probe: p, Stats: map[string]engine.FileStat{}, Recorded: start}
	for _, f := range append([]string{path}, p.Path...) {
		if fi, err := os.Stat(f); err == nil {
			c.Stats[f] = engine.StatOf(fi)
		}
	}
	if b, err := json.Marshal(c); err == nil {
		files.WriteAtomic(cacheFile, b, 0o644)
	}
	return newInterpreter(path, p), nil
}

func statsHold(stats map[string]engine.FileStat, recorded int64) bool {
	for f, st := range stats {
		fi, err := os.Stat(f)
		if err != nil || engine.StatOf(fi) != st || !st.Settled(recorded) {
			return false
		}
	}
	return true
}

func newInterpreter(path string, p probe) *Interpreter {
	dists := append([]string(nil), p.Dists...)
	sort.Strings(dists)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", path, p.Version, strings.Join(dists, "\n"))
	return &Interpreter{
		Path:     path,
		Version:  p.Version,
		Identity: fmt.Sprintf("python %s %s %x", path, strings.Fields(p.Version + " ?")[0], h.Sum(nil)[:12]),
	}
}
