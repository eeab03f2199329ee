package python

import (
	"context"
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

	"github.com/bmatcuk/doublestar/v4"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/rules/python/wheel"
	"github.com/pipebuild/pipe/internal/webadapter"
	"github.com/pipebuild/pipe/internal/ziparchive"
)

// Lambda's limits on function code.
const (
	maxUnzipped   = 250 << 20 // hard limit: the deployment fails above it
	maxDirectZip  = 50 << 20  // above it, the zip must go through S3
	bundleVersion = "1"
)

// Bundle builds a Lambda bundle: the locked runtime dependencies for the
// target platform, the app's sources, and run.sh, as a directory and a
// byte-reproducible zip.
var Bundle = &engine.Rule{
	Name:    "python_bundle",
	Version: bundleVersion,
	Doc:     "Lambda bundle from uv.lock (or a hash-pinned requirements.txt): dist/<pkg>/<name>/ and dist/<pkg>/<name>.zip.",
	Attrs: []engine.Attr{
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's sources, copied relative to the package (or python_path roots)"},
		{Name: "module", Type: engine.AttrString, Required: true, Doc: "the app's top-level module; run.sh serves <module>.main:app"},
		{Name: "app", Type: engine.AttrString, Doc: `the ASGI app for run.sh (default "<module>.main:app")`},
		{Name: "project", Type: engine.AttrString, Doc: "the project's name in the lock (default: [project] name of pyproject)"},
		{Name: "pyproject", Type: engine.AttrLabel, Doc: "pyproject.toml (default: the package's)"},
		{Name: "lock", Type: engine.AttrLabel, Doc: "uv.lock (default: the nearest one from the package up to the workspace root)"},
		{Name: "requirements", Type: engine.AttrLabel, Doc: "a hash-pinned requirements.txt (uv export) instead of uv.lock; wheels are found on python_index"},
		{Name: "extras", Type: engine.AttrStringList, Doc: "extras of the project to include"},
		{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace members the app depends on, copied as plain source"},
		{Name: "python_version", Type: engine.AttrString, Doc: "Lambda runtime's Python (default: .python-version, else requires-python's lowest, else " + DefaultPythonVersion + ")"},
		{Name: "architecture", Type: engine.AttrString, Default: "x86_64", Values: []string{"x86_64", "arm64"}, Aliases: ArchitectureAliases},
		{Name: "glibc", Type: engine.AttrString, Doc: `newest manylinux glibc accepted, "2.34" (default: the Lambda runtime's)`},
		{Name: "python_path", Type: engine.AttrStringList, Doc: "package-relative source roots (default: the package directory; src/ layouts: [\"src\"])"},
		{Name: "run_sh", Type: engine.AttrLabel, Doc: "a run.sh to use instead of the generated one"},
		{Name: "exclude", Type: engine.AttrStringList, Default: []string{"**/__pycache__/**", "**/*.pyc"}, Doc: "globs of files never copied"},
		{Name: "port", Type: engine.AttrInt, Default: int64(8000), Doc: "default port in run.sh (the Web Adapter sets PORT)"},
	},
	Analyze: analyzeBundle,
}

// BundleInfo is what a python_bundle target provides: its two outputs and
// the wheel plan analysis resolved (pipe query --output wheels prints it).
type BundleInfo struct {
	// Dir is the bundle directory and Zip the byte-reproducible zip of
	// exactly that directory; both workspace-relative, slash-separated.
	// pipe deploy publishes Zip for a staged copy of Dir instead of zipping
	// the copy again.
	Dir, Zip string
	Plan     *BundlePlan
}

// BundleKey is the key of a python_bundle target's BundleInfo.
var BundleKey = engine.NewInfoKey[BundleInfo]("python.bundle")

// BundlePlan is what analysis resolves from the lock: the resolved set is
// part of the dependency layer's key, so the layer is keyed by exactly the
// wheels it extracts and the platform.
type BundlePlan struct {
	Platform Platform
	Resolved []Resolved
	Members  map[string]string // member name → workspace-relative directory
	LockDir  string            // workspace-relative directory of the lock
	// Requirements, for a bundle made from a requirements.txt: its wheels
	// are found on Index when the dependency layer runs.
	Requirements []Requirement
	Index        string
}

func analyzeBundle(ctx *engine.AnalysisContext) error {
	ws := ctx.Workspace()
	pkg := ctx.Label().Pkg
	want, _, err := wantedPython(ctx)
	if err != nil {
		return err
	}
	plat := Platform{PythonVersion: want.String(), Arch: ctx.String("architecture")}
	plat.Glibc = DefaultGlibc(plat.PythonVersion)
	if g := ctx.String("glibc"); g != "" {
		var major, minor int
		if _, err := fmt.Sscanf(g, "%d.%d", &major, &minor); err != nil || major != 2 {
			return ctx.Errorf("glibc %q: want a version such as \"2.28\"", g)
		}
		plat.Glibc = [2]int{major, minor}
	}
	plan, _, err := resolveBundle(ctx, plat)
	if err != nil {
		return err
	}
	if len(plan.Requirements) > 0 {
		plan.Index = pythonIndex(ctx)
		if plan.Index == "" {
			plan.Index = DefaultIndex
		}
	}
	// Layer 1: dependencies, keyed by the wheel set and the platform.
	layers := path.Join("dist", pkg, ctx.Label().Name+".layers")
	depsDir := ctx.DeclareAt(path.Join(layers, "deps"))
	depsDir.Dir = true
	depsZip := ctx.DeclareAt(path.Join(layers, "deps.zip"))
	var ident strings.Builder
	fmt.Fprintf(&ident, "pydeps %s %s glibc=%d.%d\n", plat.PythonVersion, plat.Arch, plat.Glibc[0], plat.Glibc[1])
	var reqs []wheel.Request
	for _, r := range plan.Resolved {
		if r.Wheel == nil {
			continue
		}
		fmt.Fprintf(&ident, "%s %s %s %s\n", r.Name, r.Version, r.Wheel.Filename, r.Wheel.SHA256)
		url := r.Wheel.URL
		if url == "" && r.Wheel.Path != "" {
			// A wheel from a path source or a local index: relative to the lock.
			url = "file://" + ws.Abs(path.Join(plan.LockDir, r.Wheel.Path))
		}
		reqs = append(reqs, wheel.Request{Name: r.Name, Version: r.Version, URL: url, SHA256: r.Wheel.SHA256, Size: r.Wheel.Size})
	}
	index := pythonIndex(ctx)
	if len(plan.Requirements) > 0 {
		// The files are chosen on the index when the layer runs; the
		// hashes pin which files can be chosen, so they are the key.
		fmt.Fprintf(&ident, "requirements\n")
		for _, r := range plan.Requirements {
			hashes := append([]string(nil), r.Hashes...)
			sort.Strings(hashes)
			fmt.Fprintf(&ident, "%s %s %s\n", NormalizeName(r.Name), r.Version, strings.Join(hashes, ","))
		}
	}
	count := len(reqs) + len(plan.Requirements)
	ctx.AddAction(&engine.Action{
		Mnemonic:    "PyDeps",
		Description: fmt.Sprintf("Installing %d wheels for %s", count, ctx.Label()),
		Outputs:     []*engine.File{depsDir, depsZip},
		Identity:    ident.String(),
		Run: func(c context.Context, ec *engine.ExecContext) error {
			reqs := reqs
			mirror := index
			if len(plan.Requirements) > 0 {
				found, err := requirementWheels(c, plan)
				if err != nil {
					return err
				}
				reqs, mirror = append(reqs, found...), ""
			}
			return installDeps(c, ec, reqs, mirror, ec.Output(depsDir), ec.Output(depsZip))
		},
	})

	// Layer 2: the app's sources, workspace members and run.sh.
	appDir := ctx.DeclareAt(path.Join(layers, "app"))
	appDir.Dir = true
	srcs := ctx.Files("srcs")
	deps := ctx.Files("deps")
	runSh := ctx.Files("run_sh")
	if len(runSh) > 1 {
		return ctx.Errorf("run_sh provides %d files; name one", len(runSh))
	}
	roots := sourceRoots(pkg, ctx.Strings("python_path"))
	depRoots := map[string][]string{}
	for _, l := range ctx.Labels("deps") {
		depRoots[l.Pkg] = sourceRoots(l.Pkg, nil)
	}
	if err := checkMembers(ctx, plan, depRoots); err != nil {
		return err
	}
	app := ctx.String("app")
	if app == "" {
		app = ctx.String("module") + ".main:app"
	}
	exclude := ctx.Strings("exclude")
	port := ctx.Int("port")
	appInputs := append(append(append([]*engine.File(nil), srcs...), deps...), runSh...)
	ctx.AddAction(&engine.Action{
		Mnemonic:    "PyApp",
		Description: "Copying app sources of " + ctx.Label().String(),
		Inputs:      appInputs,
		Outputs:     []*engine.File{appDir},
		Identity:    fmt.Sprintf("pyapp app=%s port=%d roots=%q exclude=%q", app, port, roots, exclude),
		Run: func(c context.Context, ec *engine.ExecContext) error {
			out := ec.Output(appDir)
			for _, f := range srcs {
				if err := copySource(ec, f, roots, exclude, out); err != nil {
					return err
				}
			}
			for _, f := range deps {
				if err := copySource(ec, f, depRoots[f.Owner.Pkg], exclude, out); err != nil {
					return err
				}
			}
			if len(runSh) == 1 {
				return files.Copy(ec.Input(runSh[0]), filepath.Join(out, "run.sh"), files.CopyOptions{Perm: 0o755, Exclusive: true})
			}
			return os.WriteFile(filepath.Join(out, "run.sh"), []byte(webadapter.RunScript(app, port)), 0o755)
		},
	})

	// Layer 3: assembly into the bundle directory and the zip.
	bundleDir := ctx.DeclareDir("")
	bundleZip := ctx.DeclareAt(ctx.OutDir() + ".zip")
	label := ctx.Label().String()
	ctx.AddAction(&engine.Action{
		Mnemonic:    "PyBundle",
		Description: "Assembling " + label,
		Inputs:      []*engine.File{depsDir, depsZip, appDir},
		Outputs:     []*engine.File{bundleDir, bundleZip},
		Identity:    "pybundle",
		Run: func(c context.Context, ec *engine.ExecContext) error {
			return assemble(ec, ec.Input(depsDir), ec.Input(depsZip), ec.Input(appDir), ec.Output(bundleDir), ec.Output(bundleZip))
		},
	})
	ctx.Provide(bundleDir, bundleZip)
	engine.SetInfo(ctx, BundleKey, BundleInfo{Dir: bundleDir.Path, Zip: bundleZip.Path, Plan: plan})
	return nil
}

// Describe prints the plan for `pipe query --output wheels`: every
// distribution the bundle holds and the exact wheel file it uses.
func (p *BundlePlan) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  platform: CPython %s, %s, manylinux glibc <= %d.%d\n", p.Platform.PythonVersion, p.Platform.Arch, p.Platform.Glibc[0], p.Platform.Glibc[1])
	width := 0
	for _, r := range p.Resolved {
		width = max(width, len(r.Name)+len(r.Version)+1)
	}
	for _, r := range p.Requirements {
		width = max(width, len(r.Name)+len(r.Version)+1)
	}
	for _, r := range p.Resolved {
		what := "(workspace member: copied as source)"
		if r.Wheel != nil {
			what = r.Wheel.Filename
		}
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r.Name+" "+r.Version, what)
	}
	for _, r := range p.Requirements {
		fmt.Fprintf(&b, "  %-*s  (requirements.txt: the wheel whose hash matches is chosen from %s when the layer builds)\n", width, r.Name+" "+r.Version, p.Index)
	}
	return b.String()
}

// pythonIndex is the mirror from PIPE_PYTHON_INDEX or workspace(python_index
// = …); a relative file:// directory is relative to the workspace.
func pythonIndex(ctx *engine.AnalysisContext) string {
	ws := ctx.Workspace()
	index := ws.Settings.PythonIndex
	if v := ctx.Getenv("PIPE_PYTHON_INDEX"); v != "" {
		index = v
	}
	if rest, ok := strings.CutPrefix(index, "file://"); ok && rest != "" && !strings.HasPrefix(rest, "/") {
		index = "file://" + ws.Abs(rest)
	}
	return index
}

// requirementWheels finds, for each requirement, the wheels on the index
// whose hashes it allows and picks one by tag priority.
func requirementWheels(ctx context.Context, plan *BundlePlan) ([]wheel.Request, error) {
	client := &http.Client{Timeout: 2 * time.Minute}
	var out []wheel.Request
	var errs []error
	for _, r := range plan.Requirements {
		wheels, err := indexWheels(ctx, client, plan.Index, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(wheels) == 0 {
			errs = append(errs, fmt.Errorf("%s %s: no wheel on %s matches the hashes requirements.txt allows; check the index, or re-export the requirements (uv export)", r.Name, r.Version, plan.Index))
			continue
		}
		w, err := SelectWheel(r.Name, r.Version, wheels, plan.Platform)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, wheel.Request{Name: r.Name, Version: r.Version, URL: w.URL, SHA256: w.SHA256, Size: w.Size})
	}
	return out, errors.Join(errs...)
}

func sourceRoots(pkg string, dirs []string) []string {
	if len(dirs) == 0 {
		return []string{pkg}
	}
	var roots []string
	for _, d := range dirs {
		roots = append(roots, path.Join(pkg, d))
	}
	return roots
}

// copySource copies one source file into the app layer at its path below
// the first root that holds it.
func copySource(ec *engine.ExecContext, f *engine.File, roots, exclude []string, out string) error {
	rel := ""
	for _, r := range roots {
		if r == "" || r == "." {
			rel = f.Path
			break
		}
		if p, ok := strings.CutPrefix(f.Path, r+"/"); ok {
			rel = p
			break
		}
	}
	if rel == "" {
		return fmt.Errorf("source %s is not under the source roots %v", f.Path, roots)
	}
	for _, ex := range exclude {
		if ok, _ := doublestar.Match(ex, rel); ok {
			return nil
		}
	}
	dst := filepath.Join(out, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	err := files.Copy(ec.Input(f), dst, files.CopyOptions{Exclusive: true})
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("two sources land at %s in the bundle", dst)
	}
	return err
}

// installDeps fetches the wheels into the CAS and extracts them into dir;
// it also writes their zip, so assembly copies compressed entries instead
// of compressing the dependencies again for every app edit.
func installDeps(ctx context.Context, ec *engine.ExecContext, reqs []wheel.Request, index, dir, zipPath string) error {
	f := &wheel.Fetcher{
		Cache:    ec.Cache(),
		Client:   &http.Client{Timeout: 5 * time.Minute},
		Index:    index,
		Parallel: 8,
		Progress: func(done, total int, name string) {
			ec.Progress(fmt.Sprintf("%d/%d wheels (%s)", done, total, name))
		},
	}
	digests, err := f.FetchAll(ctx, reqs)
	if err != nil {
		if index == "" {
			return fmt.Errorf("%w\nto build without PyPI, mirror the wheels and set PIPE_PYTHON_INDEX (or workspace(python_index = …)) to the mirror's URL or to file:///dir/of/wheels", err)
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The bundle's budget is Lambda's unzipped limit, shared by all its
	// wheels: each extraction gets what the ones before left, so a set of
	// large wheels is refused before it writes gigabytes, not after.
	budget := int64(maxUnzipped)
	for i, d := range digests {
		if budget <= 0 {
			return fmt.Errorf("the dependencies unpack to more than Lambda's 250 MB unzipped limit before %s %s: move dev-only packages to a dependency group, drop dependencies, or deploy a container image", reqs[i].Name, reqs[i].Version)
		}
		var dropped []string
		opt := wheel.ExtractOptions{Name: path.Base(reqs[i].URL), MaxTotal: budget, Dropped: func(e string) { dropped = append(dropped, e) }}
		files, err := wheel.Extract(ec.Cache().BlobPath(d), dir, opt)
		if len(dropped) > 0 {
			ec.Logf("%s %s: left out %d file(s) of its .data directory that a Lambda function does not use (headers, data, scripts), e.g. %s", reqs[i].Name, reqs[i].Version, len(dropped), dropped[0])
		}
		if err != nil {
			if budget < wheel.DefaultMaxTotal {
				return fmt.Errorf("%s %s: %w (the bundle's dependencies share Lambda's 250 MB unzipped limit, and %.1f MB of it were left)", reqs[i].Name, reqs[i].Version, err, float64(budget)/(1<<20))
			}
			return fmt.Errorf("%s %s: %w", reqs[i].Name, reqs[i].Version, err)
		}
		for _, f := range files {
			if fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f))); err == nil {
				budget -= fi.Size()
			}
		}
	}
	zf, err := os.Create(zipPath)
	if err != nil {
		return err
	}
	_, err = ziparchive.Write(zf, dir)
	if cerr := zf.Close(); err == nil {
		err = cerr
	}
	return err
}

// assemble merges the dependency and app layers into the bundle directory
// and writes bundle.zip. The dependencies' zip entries are copied still
// compressed, so an app-only edit compresses only the app.
func assemble(ec *engine.ExecContext, depsDir, depsZip, appDir, outDir, outZip string) error {
	var total int64
	// Files are hard-linked from the layers rather than copied: both are
	// outputs pipe owns and checks by digest, a user's edit to either is
	// restored from the CAS (which breaks the link), and linking 30 MB of
	// dependencies is what keeps an app-only edit fast.
	copyTree := func(src string) error {
		return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			dst := outDir + p[len(src):]
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
			if _, err := os.Lstat(dst); err == nil {
				return fmt.Errorf("two layers hold %s", dst[len(outDir)+1:])
			}
			return files.LinkOrCopy(p, dst)
		})
	}
	if err := copyTree(depsDir); err != nil {
		return fmt.Errorf("%w (an app source shadows a file of a dependency: rename the module or drop the dependency)", err)
	}
	if err := copyTree(appDir); err != nil {
		return fmt.Errorf("%w (an app source shadows a file of a dependency: rename the module or drop the dependency)", err)
	}
	if total > maxUnzipped {
		return fmt.Errorf("the bundle is %.1f MB unzipped, over Lambda's 250 MB limit: move dev-only packages to a dependency group, drop dependencies, or deploy a container image", float64(total)/(1<<20))
	}
	f, err := os.Create(outZip)
	if err != nil {
		return err
	}
	_, err = ziparchive.WriteLayers(f, ziparchive.Layer{Zip: depsZip}, ziparchive.Layer{Dir: appDir})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write bundle zip: %w", err)
	}
	if fi, err := os.Stat(outZip); err == nil && fi.Size() > maxDirectZip {
		ec.Logf("warning: the bundle zip is %.1f MB, over Lambda's 50 MB limit for direct upload; deploy it through S3 (pipe deploy and the CDK do)", float64(fi.Size())/(1<<20))
	}
	return nil
}

// resolveBundle reads the lock (and pyproject) and resolves the runtime
// closure for the platform. Reading them here, at analysis, is sound: the
// result is in the dependency layer's identity, so the key follows them,
// and the reads are recorded, so pipe affected analyses the bundle again
// when one of them changes.
func resolveBundle(ctx *engine.AnalysisContext, plat Platform) (*BundlePlan, string, error) {
	plan, lockPath, err := resolveProject(ctx, plat, nil)
	var pe *platformError
	if errors.As(err, &pe) {
		return nil, "", ctx.Errorf("%v", pe.err)
	}
	return plan, lockPath, err
}

// platformError is a resolution that failed for the platform resolved
// for (no wheel for it, a Python the lock excludes), as opposed to a lock
// or project pipe cannot read, which is an analysis error everywhere.
type platformError struct{ err error }

func (e *platformError) Error() string { return e.err.Error() }

// resolveProject resolves the target's project in its lock (or
// requirements.txt) for plat, with the root's dependency groups when
// groups is set. Resolution failures are *platformError; everything else
// is an analysis error of the target.
func resolveProject(ctx *engine.AnalysisContext, plat Platform, groups *GroupSpec) (*BundlePlan, string, error) {
	pkg := ctx.Label().Pkg
	if files := ctx.Files("requirements"); len(files) > 0 {
		if len(ctx.Labels("lock")) > 0 {
			return nil, "", ctx.Errorf("set lock or requirements, not both")
		}
		if len(files) != 1 {
			return nil, "", ctx.Errorf("requirements provides %d files; name one requirements.txt", len(files))
		}
		return resolveRequirements(ctx, plat, files[0].Path)
	}
	lockPath := ""
	if files := ctx.Files("lock"); len(files) == 1 {
		lockPath = files[0].Path
	} else if len(files) > 1 {
		return nil, "", ctx.Errorf("lock provides %d files; name one uv.lock", len(files))
	} else {
		for dir := pkg; ; dir = path.Dir(dir) {
			if dir == "." {
				dir = ""
			}
			cand := path.Join(dir, "uv.lock")
			if ctx.FileExists(cand) {
				lockPath = cand
				break
			}
			if dir == "" {
				break
			}
		}
	}
	if lockPath == "" {
		return nil, "", ctx.Errorf("no uv.lock in %s or any parent up to the workspace root: run `uv lock`, or set lock = \"//:uv.lock\"", pkg)
	}
	lock, err := loadLock(ctx, lockPath)
	if err != nil {
		return nil, "", ctx.Errorf("%v", err)
	}
	pyprojectPath := path.Join(pkg, "pyproject.toml")
	if files := ctx.Files("pyproject"); len(files) == 1 {
		pyprojectPath = files[0].Path
	}
	proj, err := readPyproject(ctx, pyprojectPath)
	if err != nil && ctx.String("project") == "" {
		return nil, "", ctx.Errorf("%v (or set project = \"<name in uv.lock>\")", err)
	}
	root := ctx.String("project")
	if root == "" {
		root = proj.Name
	}
	if proj != nil {
		if err := lock.CheckDeclared(root, proj.Dependencies); err != nil {
			return nil, "", ctx.Errorf("%v", err)
		}
	}
	resolved, err := lock.ResolveGroups(root, ctx.Strings("extras"), groups, plat)
	if err != nil {
		return nil, "", &platformError{err}
	}
	lockDir := path.Dir(lockPath)
	plan := &BundlePlan{Platform: plat, Resolved: resolved, Members: map[string]string{}, LockDir: lockDir}
	for _, r := range resolved {
		if r.Member && NormalizeName(r.Name) != NormalizeName(root) {
			plan.Members[r.Name] = path.Clean(path.Join(lockDir, r.Source.Value))
		}
	}
	return plan, lockPath, nil
}

// checkMembers makes sure every workspace member in the closure has its
// sources given in deps, since pipe copies them rather than linking.
func checkMembers(ctx *engine.AnalysisContext, plan *BundlePlan, depRoots map[string][]string) error {
	var missing []string
	for name, dir := range plan.Members {
		if _, ok := depRoots[dir]; !ok {
			missing = append(missing, fmt.Sprintf("%s (%s)", name, dir))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return ctx.Errorf("workspace members %s are runtime dependencies: add a filegroup of their sources to deps, e.g. deps = [\"//%s:srcs\"]", strings.Join(missing, ", "), plan.Members[strings.SplitN(missing[0], " ", 2)[0]])
	}
	return nil
}

// loadLock parses the lock at rel, once per content for every bundle that
// reads it.
func loadLock(ctx *engine.AnalysisContext, rel string) (*Lock, error) {
	v, err := ctx.ParseFile(rel, "uv.lock", func(b []byte) (any, error) {
		return ParseLock(b, rel)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Lock), nil
}

// resolveRequirements reads a hash-pinned requirements.txt: the
// requirements whose markers hold for the platform, and local projects
// (workspace members) to copy as source.
func resolveRequirements(ctx *engine.AnalysisContext, plat Platform, file string) (*BundlePlan, string, error) {
	b, err := ctx.ReadFile(file)
	if err != nil {
		return nil, "", ctx.Errorf("%v", err)
	}
	reqs, err := ParseRequirements(b, file)
	if err != nil {
		return nil, "", ctx.Errorf("%v", err)
	}
	plan := &BundlePlan{Platform: plat, Members: map[string]string{}, LockDir: path.Dir(file)}
	env := plat.MarkerEnv()
	listed := map[string]bool{}
	for _, r := range reqs {
		if r.Marker != "" {
			ok, err := EvalMarker(r.Marker, env)
			if err != nil {
				return nil, "", ctx.Errorf("%s:%d: %v", file, r.Line, err)
			}
			if !ok {
				continue
			}
		}
		if r.Editable != "" {
			dir := path.Clean(path.Join(path.Dir(file), r.Editable))
			plan.Members[path.Base(dir)] = dir
			continue
		}
		if r.URL != "" {
			return nil, "", ctx.Errorf("%s:%d: %s @ %s: direct URL requirements are not supported; pin a version from an index", file, r.Line, r.Name, r.URL)
		}
		listed[NormalizeName(r.Name)] = true
		plan.Requirements = append(plan.Requirements, r)
	}
	// The project itself is a local entry too: it is the app, not a member.
	delete(plan.Members, path.Base(ctx.Label().Pkg))
	if proj, err := readPyproject(ctx, path.Join(ctx.Label().Pkg, "pyproject.toml")); err == nil {
		var missing []string
		for _, d := range proj.Dependencies {
			pr, err := parseRequirement(d)
			if err != nil {
				return nil, "", ctx.Errorf("pyproject dependency: %v", err)
			}
			if pr.Marker != "" {
				if ok, err := EvalMarker(pr.Marker, env); err == nil && !ok {
					continue
				}
			}
			if !listed[NormalizeName(pr.Name)] && plan.Members[pr.Name] == "" {
				missing = append(missing, pr.Name)
			}
		}
		if len(missing) > 0 {
			return nil, "", ctx.Errorf("%s does not list %s, which pyproject.toml depends on: re-export it (uv export --format requirements-txt)", file, strings.Join(missing, ", "))
		}
	}
	return plan, file, nil
}
