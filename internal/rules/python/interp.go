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
	"strconv"
	"strings"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// Interpreter is a CPython that Python actions run: what it is, as far as
// it can change what they produce.
type Interpreter struct {
	// Path is the interpreter as discovery found it (absolute). Empty for
	// one pipe is still to download (Download).
	Path string
	// Source says where discovery found it: "python_interpreters",
	// "workspace python", "uv", "pyenv", "PATH" or "download".
	Source              string
	Major, Minor, Patch int
	// Build is sys.version: the release, build date and compiler.
	Build string
	// CacheTag is sys.implementation.cache_tag ("cpython-312"): which
	// bytecode it reads.
	CacheTag string
	// SOABI is the extension-module ABI ("cpython-312-x86_64-linux-gnu").
	SOABI string
	// ABITag is the wheel tag of that ABI ("cp312", "cp313t" when
	// free-threaded).
	ABITag string
	// Machine is platform.machine() ("x86_64", "aarch64").
	Machine string
	// Glibc is the C library it runs on; zero on a musl system.
	Glibc [2]int
	// Download, for an interpreter pipe downloads, is the pinned archive.
	Download *PythonDownload
	// Identity is what action keys record of it: path, version, ABI and
	// build. A downloaded interpreter is named by its archive's sha256
	// instead of a path, which differs between cache directories.
	Identity string
}

// Version is "3.12.1".
func (i *Interpreter) Version() string { return fmt.Sprintf("%d.%d.%d", i.Major, i.Minor, i.Patch) }

// MinorVersion is "3.12".
func (i *Interpreter) MinorVersion() string { return fmt.Sprintf("%d.%d", i.Major, i.Minor) }

// Describe is one line for people: version, path and where it was found.
func (i *Interpreter) Describe() string {
	where := i.Path
	if where == "" && i.Download != nil {
		where = "to be downloaded: " + i.Download.File
	}
	return fmt.Sprintf("Python %s (%s, %s)", i.Version(), where, i.Source)
}

// probeScript prints what identifies an interpreter. It runs with -I -S,
// as every Python action does, so nothing of site-packages is imported.
const probeScript = `
import json, os, platform, sys, sysconfig
libc = ""
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except (ValueError, OSError, AttributeError):
    pass
print(json.dumps({
    "version": list(sys.version_info[:3]),
    "releaselevel": sys.version_info.releaselevel,
    "build": sys.version,
    "implementation": sys.implementation.name,
    "cache_tag": sys.implementation.cache_tag,
    "soabi": sysconfig.get_config_var("SOABI") or "",
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "machine": platform.machine(),
    "libc": libc,
    "libdir": sysconfig.get_config_var("LIBDIR") or "",
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY") or "",
}))
`

type probeResult struct {
	Version        []int  `json:"version"`
	ReleaseLevel   string `json:"releaselevel"`
	Build          string `json:"build"`
	Implementation string `json:"implementation"`
	CacheTag       string `json:"cache_tag"`
	SOABI          string `json:"soabi"`
	GILDisabled    bool   `json:"gil_disabled"`
	Machine        string `json:"machine"`
	Libc           string `json:"libc"`
	LibDir         string `json:"libdir"`
	LDLibrary      string `json:"ldlibrary"`
}

// probeRecord is the on-disk record of a probe in .pipe/python/, valid
// while the interpreter (and its shared library, when it has one) keep
// their stat: an upgrade in place changes them.
type probeRecord struct {
	Probe    probeResult
	Stats    map[string]engine.FileStat
	Recorded int64
}

// probeInterpreter learns what the interpreter at path is, from
// .pipe/python/ while nothing it depends on changed, else by running it.
// deps are the files whose stat decides the answer: the interpreter as
// named, the file its symbolic links lead to, and its shared library.
func probeInterpreter(ctx context.Context, stateDir, path string) (p *probeResult, deps []string, err error) {
	record := filepath.Join(stateDir, "python", fmt.Sprintf("%x.json", sha256.Sum256([]byte("probe-2\x00"+path))))
	if b, err := os.ReadFile(record); err == nil {
		var r probeRecord
		if json.Unmarshal(b, &r) == nil && len(r.Stats) > 0 && statsHold(r.Stats, r.Recorded) {
			for f := range r.Stats {
				deps = append(deps, f)
			}
			sort.Strings(deps)
			return &r.Probe, deps, nil
		}
	}
	start := time.Now().UnixNano()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-I", "-S", "-c", probeScript)
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			lines := strings.Split(strings.TrimSpace(string(ee.Stderr)), "\n")
			msg = lines[len(lines)-1]
		}
		return nil, []string{path}, fmt.Errorf("%s does not run: %s", path, msg)
	}
	var res probeResult
	if err := json.Unmarshal(out, &res); err != nil || len(res.Version) != 3 {
		return nil, []string{path}, fmt.Errorf("%s is not a CPython pipe can use: it printed %q", path, strings.TrimSpace(string(out)))
	}
	r := probeRecord{Probe: res, Stats: map[string]engine.FileStat{}, Recorded: start}
	deps = []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		deps = append(deps, real)
	}
	if res.LibDir != "" && (strings.HasSuffix(res.LDLibrary, ".so") || strings.Contains(res.LDLibrary, ".so.")) {
		deps = append(deps, filepath.Join(res.LibDir, res.LDLibrary))
	}
	for _, f := range deps {
		if fi, err := os.Stat(f); err == nil {
			r.Stats[f] = engine.StatOf(fi)
		}
	}
	if b, err := json.Marshal(r); err == nil {
		files.WriteAtomic(record, b, 0o644)
	}
	return &res, deps, nil
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

// interpreterFrom turns a probe into an Interpreter, or says why pipe
// cannot run Python actions on it.
func interpreterFrom(path, source string, p *probeResult) (*Interpreter, error) {
	if p.Implementation != "cpython" {
		return nil, fmt.Errorf("%s is %s; pipe runs CPython", path, p.Implementation)
	}
	if p.Version[0] != 3 {
		return nil, fmt.Errorf("%s is Python %d; pipe runs Python 3", path, p.Version[0])
	}
	in := &Interpreter{
		Path: path, Source: source,
		Major: p.Version[0], Minor: p.Version[1], Patch: p.Version[2],
		Build: p.Build, CacheTag: p.CacheTag, SOABI: p.SOABI, Machine: p.Machine,
		ABITag: fmt.Sprintf("cp%d%d", p.Version[0], p.Version[1]),
	}
	if p.GILDisabled {
		in.ABITag += "t"
	}
	if v, ok := strings.CutPrefix(p.Libc, "glibc "); ok {
		in.Glibc = parseGlibc(v)
	}
	in.Identity = fmt.Sprintf("python %s %s %s %s", path, in.Version(), p.SOABI, oneLine(p.Build))
	return in, nil
}

// parseGlibc reads "2.36" (zero if it does not parse).
func parseGlibc(v string) [2]int {
	major, minor, ok := strings.Cut(strings.TrimSpace(v), ".")
	if !ok {
		return [2]int{}
	}
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return [2]int{}
	}
	return [2]int{a, b}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
