package python

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

// envAttrs are the attributes of every rule that runs Python on the
// locked host environment: which interpreter, and which project of which
// lock.
var envAttrs = []engine.Attr{
	{Name: "python_version", Type: engine.AttrString, Doc: "the Python to run, \"3.12\" or \"3.12.1\" (default: .python-version, else requires-python's lowest, else " + DefaultPythonVersion + ")"},
	{Name: "lock", Type: engine.AttrLabel, Doc: "uv.lock (default: the nearest one from the package up to the workspace root)"},
	{Name: "requirements", Type: engine.AttrLabel, Doc: "a hash-pinned requirements.txt instead of uv.lock"},
	{Name: "project", Type: engine.AttrString, Doc: "the project's name in the lock (default: [project] name of pyproject)"},
	{Name: "pyproject", Type: engine.AttrLabel, Doc: "pyproject.toml (default: the package's)"},
	{Name: "extras", Type: engine.AttrStringList, Doc: "extras of the project to install"},
}

func withEnvAttrs(attrs ...engine.Attr) []engine.Attr {
	return append(attrs, envAttrs...)
}

// pythonKey names the TargetPython a Python target provides. It stays
// inside this package; readers use PythonOf.
var pythonKey = engine.NewInfoKey[*TargetPython]("python.target")

// TargetPython is what a target runs Python on: for pipe python and
// --verbose.
type TargetPython struct {
	Toolchain *Toolchain
	env       *hostEnv
}

// Environment describes the locked environment, and where it lives in
// the cache c (nil: leave that out).
func (tp *TargetPython) Environment(c *cache.Cache) string {
	if tp.env.Err != nil {
		return "none: " + firstLine(tp.env.Err.Error())
	}
	return tp.env.Describe(c)
}

// Distributions lists "name version" of every distribution in the
// environment.
func (tp *TargetPython) Distributions() []string {
	var out []string
	for _, r := range tp.env.Dists {
		out = append(out, r.Name+" "+r.Version)
	}
	for _, r := range tp.env.Requirements {
		out = append(out, r.Name+" "+r.Version)
	}
	return out
}

// PythonOf returns what target l of an analysed graph runs Python on.
func PythonOf(ag *engine.ActionGraph, l engine.Label) (*TargetPython, bool) {
	return engine.TargetInfo(ag, l, pythonKey)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// pyTarget is the analysis a Python-running target shares: its
// interpreter and its locked environment.
type pyTarget struct {
	tc  *Toolchain
	env *hostEnv
}

// analyzePython resolves the target's interpreter and environment, checks
// that every workspace member it needs has sources in deps, and records
// both for pipe python.
func analyzePython(ctx *engine.AnalysisContext, opt envOptions) (*pyTarget, error) {
	tc, err := resolveToolchain(ctx)
	if err != nil {
		return nil, err
	}
	env, err := resolveHostEnv(ctx, tc, opt)
	if err != nil {
		return nil, err
	}
	if len(env.Members) > 0 {
		have := map[string]bool{}
		for _, l := range ctx.Labels("deps") {
			have[l.Pkg] = true
		}
		var missing []string
		for name, dir := range env.Members {
			if !have[dir] && dir != ctx.Label().Pkg {
				missing = append(missing, fmt.Sprintf("%s (%s)", name, dir))
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			first := env.Members[strings.SplitN(missing[0], " ", 2)[0]]
			return nil, ctx.Errorf("workspace members %s are dependencies: add a filegroup of their sources to deps, e.g. deps = [\"//%s:srcs\"]", strings.Join(missing, ", "), first)
		}
	}
	engine.SetInfo(ctx, pythonKey, &TargetPython{Toolchain: tc, env: env})
	return &pyTarget{tc: tc, env: env}, nil
}

// tool is the interpreter's identity for action keys.
func (t *pyTarget) tool() string {
	if t.tc.Interp == nil {
		return "python " + t.tc.Want.String() + " (none found)"
	}
	return t.tc.Interp.Identity
}

// ready makes the interpreter and the environment present and returns
// their paths.
func (t *pyTarget) ready(ctx context.Context, c *cache.Cache, progress func(string)) (python, envDir string, err error) {
	python, err = t.tc.ensure(ctx, c, progress)
	if err != nil {
		return "", "", err
	}
	envDir, err = t.env.ensure(ctx, c, progress)
	if err != nil {
		return "", "", err
	}
	return python, envDir, nil
}

// runsOn says, for messages, what an action ran on.
func (t *pyTarget) runsOn(python string, c *cache.Cache) string {
	in := t.tc.Interp
	return fmt.Sprintf("Python %s (%s, %s) with %s", in.Version(), python, in.Source, t.env.Describe(c))
}

// needs fails unless the environment holds dist, naming what to add.
func (t *pyTarget) needs(label engine.Label, dist, group string) error {
	if t.env.Err != nil || t.env.Has(dist) {
		return nil
	}
	if group == "" {
		return fmt.Errorf("%s is not in the locked environment of %s: add it to the project's dependencies (uv add %s) and run `uv lock`", dist, label, dist)
	}
	return fmt.Errorf("%s is not in the locked environment of %s: add it to the %s dependency group (uv add --group %s %s) and run `uv lock`", dist, label, group, group, dist)
}

// importRoots are the import roots of a target, workspace-relative: its
// package (or the python_path directories in it) and the package of every
// dep, as pythonPath joins them.
func importRoots(pkg string, dirs []string, deps []engine.Label) []string {
	return strings.Split(pythonPath(pkg, dirs, deps), ":")
}

// under joins workspace-relative roots onto dir.
func under(dir string, rels []string) []string {
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = filepath.Join(dir, filepath.FromSlash(r))
	}
	return out
}

// nearestConfig finds, from the package up to the workspace root, the
// first file of names for which accept holds, reading each candidate
// through ctx so the choice is recorded. "" when there is none.
func nearestConfig(ctx *engine.AnalysisContext, names []string, accept func(name string, b []byte) bool) string {
	for dir := ctx.Label().Pkg; ; dir = path.Dir(dir) {
		if dir == "." {
			dir = ""
		}
		for _, n := range names {
			f := path.Join(dir, n)
			if !ctx.FileExists(f) {
				continue
			}
			b, err := ctx.ReadFile(f)
			if err == nil && accept(n, b) {
				return f
			}
		}
		if dir == "" {
			return ""
		}
	}
}
