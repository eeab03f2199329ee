package python

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

// Toolchain is the interpreter one target runs, and how it was chosen.
type Toolchain struct {
	// Want is the version the target asks for, and WantFrom where that
	// came from ("python_version", a .python-version file, …).
	Want     PythonRequest
	WantFrom string
	// Interp is the interpreter chosen; nil when none matches, and then
	// Err says what was found and how to fix it.
	Interp *Interpreter
	Err    error
	// Downloads is where a missing interpreter comes from ("" when
	// downloads are off).
	Downloads string
}

// Found is one interpreter discovery came across.
type Found struct {
	Path   string
	Source string
	// Version is what its name says ("3.12.1", "3.12"), or what a probe
	// found; "" when neither is known.
	Version string
	// Interp is set when it was probed and is usable; Err when it was
	// probed and is not.
	Interp *Interpreter
	Err    error
}

func (f Found) String() string {
	v := f.Version
	if f.Interp != nil {
		v = f.Interp.Version()
	}
	if v == "" {
		v = "?"
	}
	s := fmt.Sprintf("%s (%s, %s)", v, f.Source, f.Path)
	if f.Err != nil {
		s += ": " + f.Err.Error()
	}
	return s
}

// discovery is what finding interpreters depends on: the workspace's
// settings and the host variables that say where uv and pyenv keep theirs.
type discovery struct {
	root, stateDir string
	python         string            // workspace(python = …)
	interpreters   map[string]string // workspace(python_interpreters = …)
	actionPath     string
	uvDir          string
	pyenvRoot      string
	cacheDir       string
}

// lookupFunc reads a host variable: AnalysisContext.LookupEnv (recorded)
// during analysis, os.LookupEnv for pipe python.
type lookupFunc func(string) (string, bool)

func newDiscovery(ws *engine.Workspace, lookup lookupFunc) *discovery {
	get := func(k string) string { v, _ := lookup(k); return v }
	d := &discovery{
		root: ws.Root, stateDir: ws.StateDir(),
		python: ws.Settings.Python, interpreters: ws.Settings.PythonInterpreters,
		actionPath: ws.Settings.Path,
	}
	home := get("HOME")
	switch {
	case get("UV_PYTHON_INSTALL_DIR") != "":
		d.uvDir = get("UV_PYTHON_INSTALL_DIR")
	case get("XDG_DATA_HOME") != "":
		d.uvDir = filepath.Join(get("XDG_DATA_HOME"), "uv", "python")
	case home != "":
		d.uvDir = filepath.Join(home, ".local", "share", "uv", "python")
	}
	switch {
	case get("PYENV_ROOT") != "":
		d.pyenvRoot = get("PYENV_ROOT")
	case home != "":
		d.pyenvRoot = filepath.Join(home, ".pyenv")
	}
	// The same rule as cache.DefaultDir, through lookup so that analysis
	// records the variables.
	switch {
	case get("PIPE_CACHE_DIR") != "":
		d.cacheDir, _ = filepath.Abs(get("PIPE_CACHE_DIR"))
	case get("XDG_CACHE_HOME") != "":
		d.cacheDir = filepath.Join(get("XDG_CACHE_HOME"), "pipe")
	case home != "":
		d.cacheDir = filepath.Join(home, ".cache", "pipe")
	}
	return d
}

var (
	// pyenvVersionRE is a CPython release as pyenv names its directory.
	pyenvVersionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^3\.(\d+)\.(\d+)$`) })
	// uvVersionRE is a CPython build as uv names its directory:
	// cpython-3.12.1-linux-x86_64-gnu.
	uvVersionRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^cpython-3\.(\d+)\.(\d+)-linux-([a-z0-9_]+)-gnu$`)
	})
	// pathPythonRE is python3.X on PATH.
	pathPythonRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^python3\.(\d+)$`) })
)

// candidates lists the interpreters to consider, in the order pipe
// prefers them: the workspace's own (python_interpreters, and the older
// python setting), uv's, pyenv's, python3.X on the action PATH, and those
// pipe downloaded. Nothing is run: versions come from names. Every
// directory listed and every path checked goes to reads (nil for pipe
// python): they decide the list.
func (d *discovery) candidates(reads *engine.HostReads) []Found {
	var out []Found
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			return filepath.Join(d.root, p)
		}
		return p
	}
	if len(d.interpreters) > 0 {
		versions := make([]string, 0, len(d.interpreters))
		for v := range d.interpreters {
			versions = append(versions, v)
		}
		sort.Strings(versions)
		for _, v := range versions {
			out = append(out, Found{Path: abs(d.interpreters[v]), Source: fmt.Sprintf("python_interpreters[%q]", v), Version: v})
		}
	}
	if d.python != "" {
		p := d.python
		if strings.Contains(p, "/") {
			out = append(out, Found{Path: abs(p), Source: "workspace python"})
		} else if found := lookPath(p, d.actionPath, reads); found != "" {
			out = append(out, Found{Path: found, Source: "workspace python"})
		}
	}
	if d.uvDir != "" {
		var uv []Found
		reads.Stat(d.uvDir)
		ents, _ := os.ReadDir(d.uvDir)
		for _, e := range ents {
			m := uvVersionRE().FindStringSubmatch(e.Name())
			if m == nil || m[3] != hostArch() {
				continue
			}
			p := filepath.Join(d.uvDir, e.Name(), "bin", "python3."+m[1])
			if !isExecutable(p, reads) {
				continue
			}
			uv = append(uv, Found{Path: p, Source: "uv", Version: "3." + m[1] + "." + m[2]})
		}
		out = append(out, newestFirst(uv)...)
	}
	if d.pyenvRoot != "" {
		var py []Found
		dir := filepath.Join(d.pyenvRoot, "versions")
		reads.Stat(dir)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			m := pyenvVersionRE().FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			p := filepath.Join(dir, e.Name(), "bin", "python3."+m[1])
			if !isExecutable(p, reads) {
				continue
			}
			py = append(py, Found{Path: p, Source: "pyenv", Version: e.Name()})
		}
		out = append(out, newestFirst(py)...)
	}
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(d.actionPath) {
		var onPath []Found
		if dir == "" {
			continue
		}
		reads.Stat(dir)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			m := pathPythonRE().FindStringSubmatch(e.Name())
			p := filepath.Join(dir, e.Name())
			if m == nil || seen[e.Name()] || !isExecutable(p, reads) {
				continue
			}
			seen[e.Name()] = true
			onPath = append(onPath, Found{Path: p, Source: "PATH", Version: "3." + m[1]})
		}
		out = append(out, newestFirst(onPath)...)
	}
	if d.cacheDir != "" {
		var dl []Found
		for _, pd := range downloadedInterpreters(d.cacheDir, reads) {
			if pd.Arch != hostArch() {
				continue
			}
			p := filepath.Join(cache.TreeKindDir(d.cacheDir, interpreterTrees), pd.TreeName(), "python", "bin", fmt.Sprintf("python%d.%d", pd.Major, pd.Minor))
			dl = append(dl, Found{Path: p, Source: "download", Version: pd.Version()})
		}
		out = append(out, newestFirst(dl)...)
	}
	return out
}

// newestFirst orders interpreters of one source by version, newest first.
func newestFirst(fs []Found) []Found {
	key := func(v string) [3]int {
		var k [3]int
		for i, p := range strings.SplitN(v, ".", 3) {
			k[i], _ = strconv.Atoi(p)
		}
		return k
	}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := key(fs[i].Version), key(fs[j].Version)
		for n := range a {
			if a[n] != b[n] {
				return a[n] > b[n]
			}
		}
		return false
	})
	return fs
}

// nameMayMatch reports whether a candidate's name leaves open that it is
// what r asks for ("3.12" may be 3.12.1; "3.11.7" is not 3.12).
func nameMayMatch(version string, r PythonRequest) bool {
	if version == "" {
		return true
	}
	p, err := ParsePythonRequest(version)
	if err != nil {
		return true
	}
	if p.Major != r.Major || p.Minor != r.Minor {
		return false
	}
	return !p.HasPatch || !r.HasPatch || p.Patch == r.Patch
}

// find picks the first candidate that is what want asks for, probing only
// those whose names allow it. It returns every candidate, probed or not,
// for the message when none fits.
func (d *discovery) find(ctx context.Context, want PythonRequest, reads *engine.HostReads) (*Interpreter, []Found) {
	cands := d.candidates(reads)
	for i := range cands {
		c := &cands[i]
		if !nameMayMatch(c.Version, want) {
			continue
		}
		in, err := d.probe(ctx, c.Path, c.Source, reads)
		if err != nil {
			c.Err = err
			continue
		}
		c.Interp = in
		if strings.HasPrefix(c.Source, "python_interpreters") && (in.MinorVersion() != c.Version && in.Version() != c.Version) {
			c.Err = fmt.Errorf("it is Python %s, not %s: fix python_interpreters in WORKSPACE.star", in.Version(), c.Version)
			continue
		}
		if want.Matches(in.Major, in.Minor, in.Patch) {
			return in, cands
		}
	}
	return nil, cands
}

// probe identifies the interpreter at path; a downloaded one is named by
// its archive. What decided the answer goes to reads: the files the probe
// record depends on, or, when the interpreter did not run, the fact that
// the next build would run it again.
func (d *discovery) probe(ctx context.Context, path, source string, reads *engine.HostReads) (*Interpreter, error) {
	p, deps, err := probeInterpreter(ctx, d.stateDir, path)
	for _, f := range deps {
		reads.Stat(f)
	}
	if err != nil {
		// A failure is not recorded in .pipe/python: the long way would
		// run the interpreter again, and a stat cannot say what it
		// would answer.
		reads.Volatile(err.Error())
		return nil, err
	}
	in, err := interpreterFrom(path, source, p)
	if err != nil {
		return nil, err
	}
	if source == "download" {
		for _, pd := range downloadedInterpreters(d.cacheDir, reads) {
			if strings.HasPrefix(path, filepath.Join(cache.TreeKindDir(d.cacheDir, interpreterTrees), pd.TreeName())+string(filepath.Separator)) {
				pd := pd
				in.Download = &pd
				in.Identity = pd.Identity()
			}
		}
	}
	return in, nil
}

// All probes every candidate, for pipe python.
func (d *discovery) all(ctx context.Context) []Found {
	cands := d.candidates(nil)
	for i := range cands {
		c := &cands[i]
		in, err := d.probe(ctx, c.Path, c.Source, nil)
		c.Interp, c.Err = in, err
	}
	return cands
}

// DiscoverInterpreters lists every interpreter pipe would consider for the
// workspace, in its order of preference, each probed (pipe python).
func DiscoverInterpreters(ctx context.Context, ws *engine.Workspace) []Found {
	return newDiscovery(ws, os.LookupEnv).all(ctx)
}

// isExecutable reports whether p is an executable file, and records its
// stat as having decided that.
func isExecutable(p string, reads *engine.HostReads) bool {
	reads.Stat(p)
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func lookPath(name, pathList string, reads *engine.HostReads) string {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); isExecutable(p, reads) {
			return p
		}
	}
	return ""
}

// hostArch is this machine's architecture as wheel tags and
// python-build-standalone spell it.
func hostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// hostGlibc asks getconf for the C library's version, for an interpreter
// that is still to be downloaded (one that runs says it itself).
func hostGlibc(ctx context.Context) [2]int {
	out, err := exec.CommandContext(ctx, "getconf", "GNU_LIBC_VERSION").Output()
	if err != nil {
		return [2]int{}
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "glibc ")
	if !ok {
		return [2]int{}
	}
	return parseGlibc(v)
}

// downloadSetting reads PIPE_PYTHON_DOWNLOADS, else workspace(
// python_downloads = …): "never" turns downloads off; "", "auto" and
// "default" mean python-build-standalone's GitHub releases; anything else
// is a base URL (http(s)://, or file:// relative to the workspace).
func downloadSetting(ws *engine.Workspace, lookup lookupFunc) (base, from string, err error) {
	v, from := ws.Settings.PythonDownloads, "workspace(python_downloads)"
	if e, ok := lookup("PIPE_PYTHON_DOWNLOADS"); ok && e != "" {
		v, from = e, "PIPE_PYTHON_DOWNLOADS"
	}
	switch strings.ToLower(v) {
	case "never", "off", "false", "0", "no":
		return "", from, nil
	case "", "auto", "default":
		return DefaultDownloadsBase, from, nil
	}
	if rest, ok := strings.CutPrefix(v, "file://"); ok {
		if rest == "" {
			return "", from, fmt.Errorf("%s = %q: want file:///dir/of/releases", from, v)
		}
		if !strings.HasPrefix(rest, "/") {
			v = "file://" + ws.Abs(rest)
		}
		return v, from, nil
	}
	if strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://") {
		return v, from, nil
	}
	return "", from, fmt.Errorf("%s = %q: want a base URL of python-build-standalone releases (https://…, file:///dir), \"auto\" or \"never\"", from, v)
}

// NoInterpreterError says that no interpreter is what a target wants.
type NoInterpreterError struct {
	Want     PythonRequest
	WantFrom string
	Found    []Found
	// Downloads says why downloading did not help; Pinned are the
	// versions pipe can download for this machine, and DownloadsOn whether
	// it may.
	Downloads   string
	Pinned      []string
	DownloadsOn bool
}

func (e *NoInterpreterError) Error() string {
	var b strings.Builder
	v := e.Want.String()
	fmt.Fprintf(&b, "no Python %s interpreter on this machine (%s comes from %s)", v, v, e.WantFrom)
	if len(e.Found) == 0 {
		b.WriteString("\nfound: no interpreters at all (looked at workspace(python_interpreters), uv, pyenv and python3.X on the action PATH)")
	} else {
		b.WriteString("\nfound:")
		for _, f := range e.Found {
			b.WriteString("\n  " + f.String())
		}
	}
	if e.Downloads != "" {
		b.WriteString("\ndownloads: " + e.Downloads)
	}
	fmt.Fprintf(&b, "\nto fix it, one of:"+
		"\n  1. install Python %s: uv python install %s, or pyenv install %s"+
		"\n  2. name one in WORKSPACE.star: workspace(python_interpreters = {%q: \"/path/to/python%s\"})",
		v, v, v, e.Want.MinorVersion(), e.Want.MinorVersion())
	pinned := false
	for _, p := range e.Pinned {
		if r, err := ParsePythonRequest(p); err == nil && e.Want.Matches(r.Major, r.Minor, r.Patch) {
			pinned = true
		}
	}
	switch {
	case pinned && !e.DownloadsOn:
		b.WriteString("\n  3. let pipe download it: PIPE_PYTHON_DOWNLOADS=auto, or workspace(python_downloads = \"auto\") (they are off)")
	case len(e.Pinned) > 0:
		fmt.Fprintf(&b, "\n  3. ask for a version pipe downloads (%s): python_version = \"%s\" on the target, or `uv python pin` it in .python-version", strings.Join(e.Pinned, ", "), minorOf(e.Pinned[0]))
		if !e.DownloadsOn {
			b.WriteString(", with PIPE_PYTHON_DOWNLOADS=auto")
		}
	default:
		b.WriteString("\n  3. ask for a version you have: python_version on the target, or `uv python pin` it in .python-version")
	}
	return b.String()
}

// resolveToolchain finds the interpreter the analysed target runs. Not
// finding one does not fail analysis: the target's actions fail with the
// reason when they run, so pipe query, graph and the targets that need no
// Python still work on a machine without it.
func resolveToolchain(ctx *engine.AnalysisContext) (*Toolchain, error) {
	want, from, err := wantedPython(ctx)
	if err != nil {
		return nil, err
	}
	ws := ctx.Workspace()
	base, baseFrom, err := downloadSetting(ws, ctx.LookupEnv)
	if err != nil {
		return nil, ctx.Errorf("%v", err)
	}
	d := newDiscovery(ws, ctx.LookupEnv)
	type found struct {
		in    *Interpreter
		cands []Found
		dlMsg string
	}
	v, err := ctx.ProbeByStat("python toolchain "+want.String()+" "+base, func(c context.Context, reads *engine.HostReads) (any, error) {
		in, cands := d.find(c, want, reads)
		f := &found{in: in, cands: cands}
		if in != nil {
			return f, nil
		}
		arch := hostArch()
		switch dl, ok := PinnedDownloads().Find(want, arch); {
		case base == "":
			f.dlMsg = fmt.Sprintf("off (%s = never)", baseFrom)
		case !ok:
			pinned := PinnedDownloads().Versions(arch)
			f.dlMsg = fmt.Sprintf("pipe pins no python-build-standalone build of %s for %s (it pins %s)", want, arch, strings.Join(pinned, ", "))
		default:
			f.in = &Interpreter{
				Source: "download", Major: dl.Major, Minor: dl.Minor, Patch: dl.Patch,
				CacheTag: fmt.Sprintf("cpython-%d%d", dl.Major, dl.Minor),
				ABITag:   fmt.Sprintf("cp%d%d", dl.Major, dl.Minor),
				Machine:  arch, Glibc: hostGlibc(c), Download: &dl, Identity: dl.Identity(),
			}
			// The C library's version comes from getconf, which no stat
			// of ours covers; once downloaded, the interpreter is found
			// in the cache and says it itself.
			reads.Volatile("the C library's version, for an interpreter still to be downloaded")
		}
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	f := v.(*found)
	tc := &Toolchain{Want: want, WantFrom: from, Interp: f.in}
	if base != "" {
		tc.Downloads = base
	}
	if f.in == nil {
		tc.Err = &NoInterpreterError{Want: want, WantFrom: from, Found: f.cands, Downloads: f.dlMsg,
			Pinned: PinnedDownloads().Versions(hostArch()), DownloadsOn: base != ""}
	}
	return tc, nil
}

// ensure returns the path of the toolchain's interpreter, downloading it
// into the cache first when it is one pipe downloads.
func (tc *Toolchain) ensure(ctx context.Context, c *cache.Cache, progress func(string)) (string, error) {
	if tc.Interp == nil {
		return "", tc.Err
	}
	if tc.Interp.Path != "" {
		return tc.Interp.Path, nil
	}
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	// Tests of one run share the interpreter: one downloads and unpacks
	// it, the others wait and find it.
	// (Not the archive's digest: the fetch inside locks that one.)
	defer c.LockBlob(cache.Sum([]byte("install " + tc.Interp.Download.SHA256)))()
	d := &Downloader{Base: tc.Downloads, Cache: c, Progress: progress}
	return d.Install(ctx, *tc.Interp.Download)
}

// minorOf is "3.13" for "3.13.0".
func minorOf(v string) string {
	if r, err := ParsePythonRequest(v); err == nil {
		return r.MinorVersion()
	}
	return v
}
