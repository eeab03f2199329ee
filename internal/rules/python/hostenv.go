package python

// The locked host environment: the distributions of the same uv.lock (or
// requirements.txt) the bundle uses, resolved for this machine's
// interpreter instead of Lambda's, unpacked once into a read-only tree of
// the shared cache, and put on sys.path of every Python action (openapi,
// serve, tests) with nothing of the machine's own site-packages.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/python/wheel"
)

// envTrees is the kind of cache tree a host environment is unpacked into.
const envTrees = "pyenv"

// envLayout is the version of the environment tree's layout and of how it
// is made: bumping it makes every environment anew.
const envLayout = "2"

// hostEnv is a locked host environment as analysis decides it: which
// distributions, for which interpreter. Nothing is fetched or unpacked
// until an action needs it (ensure).
type hostEnv struct {
	Toolchain *Toolchain
	Platform  Platform
	// Dists are the distributions from wheels, sorted by name; Members
	// are the workspace members in the closure (copied as source from
	// deps, never installed).
	Dists   []Resolved
	Members map[string]string
	// Requirements, for a requirements.txt project: the wheel of each is
	// chosen on Index when the environment is made.
	Requirements []Requirement
	Index        string
	Groups       []string
	// Err is why there is no environment for this machine (no
	// interpreter, no wheel for it); the actions that need it fail with it.
	Err error
	// Key names the environment: the wheel set and the interpreter's ABI.
	Key string

	reqs []wheel.Request
}

// envOptions says what goes into an environment beyond the project's
// runtime closure.
type envOptions struct {
	groups *GroupSpec
}

// resolveHostEnv resolves the target's project for the toolchain's
// interpreter on this machine. Problems with the lock or the project are
// analysis errors; problems of this machine (no interpreter, a missing
// wheel for it) are recorded in Err for the actions to report.
func resolveHostEnv(ctx *engine.AnalysisContext, tc *Toolchain, opt envOptions) (*hostEnv, error) {
	env := &hostEnv{Toolchain: tc}
	if opt.groups != nil {
		env.Groups = opt.groups.Names
	}
	in := tc.Interp
	if in == nil {
		// Still read the lock, so a broken one is reported here and the
		// target re-analyses when it changes.
		plat := Platform{PythonVersion: tc.Want.MinorVersion(), Arch: hostArch(), Host: true}
		if _, _, err := resolveProject(ctx, plat, opt.groups); err != nil && !errors.As(err, new(*platformError)) {
			return nil, err
		}
		env.Err = tc.Err
		env.Key = "no-interpreter " + tc.Want.String()
		return env, nil
	}
	if in.Glibc == [2]int{} {
		env.Err = fmt.Errorf("%s does not run on glibc; pipe installs manylinux wheels, for glibc systems only", in.Describe())
		env.Key = "no-glibc"
		return env, nil
	}
	plat := Platform{PythonVersion: in.Version(), Arch: in.Machine, Glibc: in.Glibc, Host: true}
	env.Platform = plat
	plan, _, err := resolveProject(ctx, plat, opt.groups)
	var pe *platformError
	switch {
	case errors.As(err, &pe):
		env.Err = fmt.Errorf("the lock has no environment for %s:\n%w", in.Describe(), pe.err)
		env.Key = "unresolved " + in.Identity
		return env, nil
	case err != nil:
		return nil, err
	}
	env.Members = plan.Members
	env.Requirements = plan.Requirements
	index := pythonIndex(ctx)
	if len(plan.Requirements) > 0 && index == "" {
		index = DefaultIndex
	}
	env.Index = index
	ws := ctx.Workspace()
	for _, r := range plan.Resolved {
		if r.Wheel == nil {
			continue
		}
		env.Dists = append(env.Dists, r)
		u := r.Wheel.URL
		if u == "" && r.Wheel.Path != "" {
			u = "file://" + ws.Abs(path.Join(plan.LockDir, r.Wheel.Path))
		}
		env.reqs = append(env.reqs, wheel.Request{Name: r.Name, Version: r.Version, URL: u, SHA256: r.Wheel.SHA256, Size: r.Wheel.Size})
	}
	env.Key = env.key()
	return env, nil
}

// key is the environment's name: what is in it (each wheel by file and
// hash, or each requirement by its allowed hashes) and the interpreter ABI
// it is for. Not the interpreter's path: two 3.12 interpreters share it.
func (env *hostEnv) key() string {
	h := sha256.New()
	in := env.Toolchain.Interp
	fmt.Fprintf(h, "pipe python environment %s\n%s %s %s\n", envLayout, in.CacheTag, in.ABITag, in.Machine)
	for _, r := range env.Dists {
		fmt.Fprintf(h, "%s %s %s %s\n", NormalizeName(r.Name), r.Version, r.Wheel.Filename, r.Wheel.SHA256)
	}
	for _, r := range env.Requirements {
		hashes := append([]string(nil), r.Hashes...)
		sort.Strings(hashes)
		fmt.Fprintf(h, "requirement %s %s %s\n", NormalizeName(r.Name), r.Version, strings.Join(hashes, ","))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Has reports whether the environment holds distribution name.
func (env *hostEnv) Has(name string) bool {
	n := NormalizeName(name)
	for _, r := range env.Dists {
		if NormalizeName(r.Name) == n {
			return true
		}
	}
	for _, r := range env.Requirements {
		if NormalizeName(r.Name) == n {
			return true
		}
	}
	return false
}

// Describe says in one line what the environment is.
func (env *hostEnv) Describe(c *cache.Cache) string {
	n := len(env.Dists) + len(env.Requirements)
	where := ""
	if c != nil && env.Err == nil {
		where = " in " + c.TreePath(envTrees, env.Key)
	}
	groups := ""
	switch len(env.Groups) {
	case 0:
	case 1:
		groups = " and the " + env.Groups[0] + " group"
	default:
		groups = " and the groups " + strings.Join(env.Groups, ", ")
	}
	return fmt.Sprintf("the locked environment (%d distributions: runtime dependencies%s)%s", n, groups, where)
}

// Identity is what action keys record of the environment.
func (env *hostEnv) Identity() string { return "pyenv " + env.Key }

// envRecord is env.json in an environment tree: what it holds.
type envRecord struct {
	Layout   string   `json:"layout"`
	ABI      string   `json:"abi"`
	CacheTag string   `json:"cache_tag"`
	Wheels   []string `json:"wheels"`
}

// ensure returns the environment's tree, making it first if this machine
// does not have it: wheels fetched into the CAS (each once per machine,
// checked against the lock's sha256), unpacked as pip --target lays them
// out (importable files in site/, scripts in bin/), made read-only, and
// renamed into place in one step.
//
// It is not compiled to bytecode, as uv leaves it by default: compiling
// was most of the cost of making an environment (see benchmarks.md) and
// saves little per run, since a program imports a fraction of what it
// installs and actions run with -B.
func (env *hostEnv) ensure(ctx context.Context, c *cache.Cache, progress func(string)) (string, error) {
	if env.Err != nil {
		return "", env.Err
	}
	if dir, ok := c.Tree(envTrees, env.Key); ok {
		return dir, nil
	}
	unlock := c.LockBlob(cache.Sum([]byte("environment " + env.Key)))
	defer unlock()
	if dir, ok := c.Tree(envTrees, env.Key); ok {
		return dir, nil
	}
	reqs := env.reqs
	mirror := env.Index
	if len(env.Requirements) > 0 {
		found, err := requirementWheels(ctx, &BundlePlan{Platform: env.Platform, Requirements: env.Requirements, Index: env.Index})
		if err != nil {
			return "", err
		}
		reqs, mirror = append(append([]wheel.Request(nil), reqs...), found...), ""
	}
	f := &wheel.Fetcher{
		Cache:    c,
		Client:   &http.Client{Timeout: 5 * time.Minute},
		Index:    mirror,
		Parallel: 8,
		Progress: func(done, total int, name string) {
			if progress != nil {
				progress(fmt.Sprintf("environment: %d/%d wheels (%s)", done, total, name))
			}
		},
	}
	digests, err := f.FetchAll(ctx, reqs)
	if err != nil {
		if mirror == "" && len(env.Requirements) == 0 {
			return "", fmt.Errorf("%w\nto build without PyPI, mirror the wheels and set PIPE_PYTHON_INDEX (or workspace(python_index = …)) to the mirror's URL or to file:///dir/of/wheels", err)
		}
		return "", err
	}
	tmp, err := c.TempDir()
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		cache.RemoveTree(tmp)
		return "", err
	}
	if progress != nil {
		progress(fmt.Sprintf("environment: unpacking %d wheels", len(reqs)))
	}
	rec := envRecord{Layout: envLayout, ABI: env.Toolchain.Interp.ABITag, CacheTag: env.Toolchain.Interp.CacheTag}
	for i, dg := range digests {
		name := path.Base(reqs[i].URL)
		if _, err := wheel.Extract(c.BlobPath(dg), tmp, wheel.ExtractOptions{Name: name, LibDir: "site", ScriptsDir: "bin", MaxTotal: 1 << 40}); err != nil {
			return fail(fmt.Errorf("%s %s: %w", reqs[i].Name, reqs[i].Version, err))
		}
		rec.Wheels = append(rec.Wheels, name)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "site"), 0o755); err != nil {
		return fail(err)
	}
	sort.Strings(rec.Wheels)
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "env.json"), append(b, '\n'), 0o644); err != nil {
		return fail(err)
	}
	if err := readOnly(tmp); err != nil {
		return fail(err)
	}
	return c.CommitTree(tmp, envTrees, env.Key)
}

// readOnly takes the write bits off every file and directory below root
// (root itself stays writable, so the tree can be renamed into place and
// trimmed as a whole).
func readOnly(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, fi.Mode().Perm()&^0o222)
	})
	if err != nil {
		return err
	}
	// Deepest first, so no directory is locked before its children.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

// bootstrap runs in the interpreter (with -I -S -B) before the program:
// sources first on sys.path, then the standard library, then the
// environment (through site.addsitedir, so its .pth files apply), and
// nothing else. Arguments after its own are the program's too (pipe run
// passes what follows --).
const bootstrap = `
import json, runpy, site, sys
c = json.loads(sys.argv[1])
sys.path[0:0] = c["path"]
site.addsitedir(c["site"])
sys.argv = c["argv"] + sys.argv[2:]
if c.get("module"):
    runpy.run_module(c["module"], run_name="__main__", alter_sys=True)
else:
    exec(compile(c["script"], c["argv"][0], "exec"), {"__name__": "__main__"})
`

// pyProgram is what runs on an environment: a module (as python -m) or a
// script, with its arguments.
type pyProgram struct {
	Module string
	Script string
	Args   []string
}

// pythonArgv is the command line that runs prog with python on the
// environment tree envDir, with roots (absolute) ahead of it on sys.path.
// -I ignores PYTHON* variables, the user's site-packages and the current
// directory; -S leaves out the interpreter's own site-packages; -B keeps
// bytecode out of the read-only environment and the sources.
func pythonArgv(python, envDir string, roots []string, prog pyProgram) []string {
	argv0 := prog.Module
	if argv0 == "" {
		argv0 = "<pipe>"
	}
	cfg := map[string]any{
		"path":   roots,
		"site":   filepath.Join(envDir, "site"),
		"argv":   append([]string{argv0}, prog.Args...),
		"module": prog.Module,
		"script": prog.Script,
	}
	b, _ := json.Marshal(cfg)
	return []string{python, "-I", "-S", "-B", "-c", bootstrap, string(b)}
}

// pythonEnv is the environment of a Python action: only what makes runs
// repeatable, plus the action PATH. PYTHONPATH and PYTHONNOUSERSITE are for
// Python processes the program starts itself without -I.
func pythonEnv(ws *engine.Workspace, envDir string, roots []string) map[string]string {
	return map[string]string{
		"PATH":                    ws.Settings.Path,
		"PYTHONPATH":              strings.Join(append(append([]string(nil), roots...), filepath.Join(envDir, "site")), string(os.PathListSeparator)),
		"PYTHONNOUSERSITE":        "1",
		"PYTHONHASHSEED":          "0",
		"PYTHONDONTWRITEBYTECODE": "1",
		"PYTHONUTF8":              "1",
		"LANG":                    "C.UTF-8",
	}
}
