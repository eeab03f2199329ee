package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// pytestNoop times a no-op `pipe test //...` on the workspace `pipe new
// fastapi` scaffolds: its uv.lock holds wheels made from the FastAPI stack
// and pytest that Debian installed for /usr/bin/python3 (no PyPI here),
// typing-extensions from pyenv's Python 3.11 (Debian's does not import on
// 3.12), and stand-ins for aws-lambda-powertools and aws-xray-sdk.
func pytestNoop(args []string) error {
	fs := flag.NewFlagSet("pytest", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	runs := fs.Int("runs", 21, "no-op runs to time")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	ws := filepath.Join(dir, "ws")
	wheels := filepath.Join(dir, "wheels")
	for _, d := range []string{ws, wheels} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	env := append(os.Environ(), "PIPE_CACHE_DIR="+filepath.Join(dir, "cache"), "PIPE_PYTHON_INDEX=file://"+wheels)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(*pipe, append([]string{"-C", ws, "--color=never"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("pipe %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if err := os.WriteFile(filepath.Join(ws, "WORKSPACE.star"), []byte("workspace(name = \"scaffold\")\n"), 0o644); err != nil {
		return err
	}
	if _, err := run("new", "fastapi", "my-api"); err != nil {
		return err
	}
	// The scaffold pins PyPI's current releases; the lock below holds the
	// versions Debian ships, so the project asks for the names alone.
	pyproject := filepath.Join(ws, "packages", "my-api", "pyproject.toml")
	pp, err := os.ReadFile(pyproject)
	if err != nil {
		return err
	}
	unpinned := regexp.MustCompile(`(?s)dependencies = \[.*?\n\]\n\n\[dependency-groups\]\ndev = \[.*?\n\]`).ReplaceAllString(string(pp),
		"dependencies = [\n    \"aws-lambda-powertools[tracer]\",\n    \"fastapi\",\n    \"uvicorn\",\n]\n\n[dependency-groups]\ndev = [\n    \"httpx\",\n    \"pytest\",\n]")
	if unpinned == string(pp) {
		return fmt.Errorf("%s: the scaffold's dependency lists were not where the benchmark expects them", pyproject)
	}
	if err := os.WriteFile(pyproject, []byte(unpinned), 0o644); err != nil {
		return err
	}
	type dist struct {
		name string
		deps []string
	}
	runtime := []dist{{"anyio", []string{"idna", "sniffio"}}, {"asgiref", nil}, {"click", nil}, {"fastapi", []string{"pydantic", "starlette"}},
		{"h11", nil}, {"idna", nil}, {"pydantic", []string{"typing-extensions"}}, {"sniffio", nil}, {"starlette", []string{"anyio"}},
		{"uvicorn", []string{"asgiref", "click", "h11"}}}
	dev := []dist{{"attrs", nil}, {"certifi", nil}, {"httpcore", []string{"anyio", "certifi", "h11", "sniffio"}},
		{"httpx", []string{"certifi", "httpcore", "rfc3986", "sniffio"}}, {"iniconfig", nil}, {"packaging", nil}, {"pluggy", nil},
		{"pytest", []string{"attrs", "iniconfig", "packaging", "pluggy"}}, {"rfc3986", []string{"idna"}}}
	type locked struct {
		name, version, file, sum string
		size                     int64
		deps                     []string
	}
	var pkgs []locked
	add := func(name, version string, deps []string, files map[string][]byte) error {
		file, sum, size, err := wheelFiles(wheels, name, version, files)
		if err != nil {
			return err
		}
		pkgs = append(pkgs, locked{name, version, file, sum, size, deps})
		return nil
	}
	for _, d := range append(append([]dist(nil), runtime...), dev...) {
		version, files, err := debianDist(d.name)
		if err != nil {
			return fmt.Errorf("%s: %w (apt-get install python3-fastapi python3-uvicorn python3-pytest python3-httpx)", d.name, err)
		}
		if err := add(d.name, version, d.deps, files); err != nil {
			return err
		}
	}
	te, err := os.ReadFile(filepath.Join(os.Getenv("HOME"), ".pyenv", "versions", "3.11.7", "lib", "python3.11", "site-packages", "typing_extensions.py"))
	if err != nil {
		return fmt.Errorf("typing_extensions 4.15 from pyenv's Python 3.11.7: %w", err)
	}
	if err := add("typing-extensions", "4.15.0", nil, map[string][]byte{"typing_extensions.py": te}); err != nil {
		return err
	}
	if err := add("aws-lambda-powertools", "0.0.0", nil, map[string][]byte{
		"aws_lambda_powertools/__init__.py": []byte(powertoolsStandIn),
		"aws_lambda_powertools/metrics.py":  []byte("from . import Metrics, MetricUnit\n"),
	}); err != nil {
		return err
	}
	if err := add("aws-xray-sdk", "0.0.0", nil, map[string][]byte{"aws_xray_sdk/__init__.py": []byte("")}); err != nil {
		return err
	}
	var lock strings.Builder
	lock.WriteString("version = 1\nrevision = 3\nrequires-python = \">=3.12\"\n\n[manifest]\nmembers = [\"my-api\"]\n")
	lock.WriteString("\n[[package]]\nname = \"my-api\"\nversion = \"0.1.0\"\nsource = { virtual = \"packages/my-api\" }\n" +
		"dependencies = [\n    { name = \"aws-lambda-powertools\", extra = [\"tracer\"] },\n    { name = \"fastapi\" },\n    { name = \"uvicorn\" },\n]\n" +
		"\n[package.dev-dependencies]\ndev = [\n    { name = \"httpx\" },\n    { name = \"pytest\" },\n]\n" +
		"\n[package.metadata]\nrequires-dist = [\n    { name = \"aws-lambda-powertools\", extras = [\"tracer\"] },\n    { name = \"fastapi\" },\n    { name = \"uvicorn\" },\n]\n")
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].name < pkgs[j].name })
	for _, p := range pkgs {
		fmt.Fprintf(&lock, "\n[[package]]\nname = %q\nversion = %q\nsource = { registry = \"https://pypi.org/simple\" }\n", p.name, p.version)
		if len(p.deps) > 0 {
			lock.WriteString("dependencies = [\n")
			for _, d := range p.deps {
				fmt.Fprintf(&lock, "    { name = %q },\n", d)
			}
			lock.WriteString("]\n")
		}
		fmt.Fprintf(&lock, "wheels = [\n    { url = \"https://files.pythonhosted.org/packages/00/00/%s\", hash = \"sha256:%s\", size = %d },\n]\n", p.file, p.sum, p.size)
		if p.name == "aws-lambda-powertools" {
			lock.WriteString("\n[package.optional-dependencies]\ntracer = [\n    { name = \"aws-xray-sdk\" },\n]\n")
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "uv.lock"), []byte(lock.String()), 0o644); err != nil {
		return err
	}
	start := time.Now()
	out, err := run("test", "//...")
	if err != nil {
		return err
	}
	fmt.Printf("first pipe test //... (environment made, tests run): %v\n%s", time.Since(start).Round(time.Millisecond), out)
	var ds []time.Duration
	for i := 0; i < *runs; i++ {
		t0 := time.Now()
		out, err := run("test", "//...")
		if err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
		if !strings.Contains(out, "0 executed") {
			return fmt.Errorf("a no-op pipe test executed something:\n%s", out)
		}
	}
	fmt.Printf("no-op pipe test //..., %d runs: median %.1f ms (min %.1f, max %.1f)\n", *runs, ms(medianOf(ds)), ms(minOf(ds)), ms(maxOf(ds)))
	return nil
}

// powertoolsStandIn has what the scaffolded app uses of
// aws-lambda-powertools, doing nothing: the benchmark times pipe, not it.
const powertoolsStandIn = `import contextlib


class Logger:
    def __init__(self, service=None):
        pass

    def append_keys(self, **keys):
        pass

    def remove_keys(self, keys):
        pass

    def set_correlation_id(self, value):
        pass

    def info(self, *a, **k):
        pass

    def exception(self, *a, **k):
        pass


class MetricUnit:
    Count = "Count"


class Metrics:
    def add_metric(self, **k):
        pass

    def add_dimension(self, name, value):
        pass

    def flush_metrics(self, raise_on_empty_metrics=False):
        pass


class _Provider:
    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name):
        yield None


class Tracer:
    provider = _Provider()
`

// debianDist reads a distribution Debian installed for /usr/bin/python3:
// its version and its top-level modules' files, without bytecode.
func debianDist(name string) (string, map[string][]byte, error) {
	const site = "/usr/lib/python3/dist-packages"
	out, err := exec.Command("/usr/bin/python3", "-I", "-c", `
import json, sys, importlib.metadata as m
d = m.distribution(sys.argv[1])
print(json.dumps({"version": d.version, "top_level": d.read_text("top_level.txt") or ""}))
`, name).Output()
	if err != nil {
		return "", nil, err
	}
	var info struct {
		Version  string `json:"version"`
		TopLevel string `json:"top_level"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", nil, err
	}
	var mods []string
	for _, l := range strings.Fields(info.TopLevel) {
		if !strings.Contains(l, "/") {
			mods = append(mods, l)
		}
	}
	if len(mods) == 0 {
		mods = []string{stem(name)}
	}
	files := map[string][]byte{}
	for _, mod := range mods {
		if b, err := os.ReadFile(filepath.Join(site, mod+".py")); err == nil {
			files[mod+".py"] = b
			continue
		}
		err := filepath.WalkDir(filepath.Join(site, mod), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && e.Name() == "__pycache__" {
				return fs.SkipDir
			}
			if e.IsDir() || !e.Type().IsRegular() || strings.HasSuffix(p, ".pyc") {
				return nil
			}
			rel, _ := filepath.Rel(site, p)
			b, err := os.ReadFile(p)
			files[filepath.ToSlash(rel)] = b
			return err
		})
		if err != nil {
			return "", nil, err
		}
	}
	return info.Version, files, nil
}

func stem(name string) string {
	return regexp.MustCompile(`[-_.]+`).ReplaceAllString(strings.ToLower(name), "_")
}

// wheelFiles writes a py3-none-any wheel of files into dir and returns its
// file name, sha256 (hex) and size.
func wheelFiles(dir, name, version string, files map[string][]byte) (string, string, int64, error) {
	file := fmt.Sprintf("%s-%s-py3-none-any.whl", stem(name), version)
	di := stem(name) + "-" + version + ".dist-info/"
	all := map[string][]byte{}
	for k, v := range files {
		all[k] = v
	}
	all[di+"METADATA"] = []byte(fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", name, version))
	all[di+"WHEEL"] = []byte("Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
	var names []string
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	var record strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(all[n])
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", n, base64.RawURLEncoding.EncodeToString(sum[:]), len(all[n]))
	}
	fmt.Fprintf(&record, "%sRECORD,,\n", di)
	all[di+"RECORD"] = []byte(record.String())
	names = append(names, di+"RECORD")
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		return "", "", 0, err
	}
	zw := zip.NewWriter(f)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			return "", "", 0, err
		}
		w.Write(all[n])
	}
	if err := zw.Close(); err != nil {
		return "", "", 0, err
	}
	f.Close()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", "", 0, err
	}
	sum := sha256.Sum256(b)
	return file, fmt.Sprintf("%x", sum), int64(len(b)), nil
}
