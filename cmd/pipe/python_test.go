package main

// End-to-end tests of the Python rules: python_bundle built from a uv.lock
// whose wheels a local mirror (httptest) serves, the bundle really started
// the way the Lambda Web Adapter starts it, openapi_schema and api_metadata
// on examples/fastapi, and `pipe run :serve`.
//
// PyPI is not reachable here, so the wheels are made by the tests: real
// wheel zips of the packages Debian installed for /usr/bin/python3
// (python3-fastapi, python3-uvicorn and their dependencies), and tiny
// synthetic ones for the error cases.

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
)

// debianPython is the interpreter Debian's python3-fastapi and
// python3-uvicorn are installed for.
const debianPython = "/usr/bin/python3"

// debianSitePackages is where apt installs them.
const debianSitePackages = "/usr/lib/python3/dist-packages"

// requirePython stops the test, as testenv.Need says, unless
// /usr/bin/python3 can import fastapi and uvicorn.
func requirePython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import fastapi, uvicorn").CombinedOutput()
	if err == nil {
		return
	}
	testenv.Need(t, debianPython+" with FastAPI and uvicorn", fmt.Sprintf("apt-get install python3-fastapi python3-uvicorn: %v\n%s", err, out))
}

// testWheel is a wheel file made by a test.
type testWheel struct {
	Name     string // distribution name as the lock spells it (normalised)
	Version  string
	Filename string
	Data     []byte
	SHA256   string // hex
	Deps     []string
	// Files are the wheel's entries (name → content), dist-info included:
	// what an extraction must reproduce.
	Files map[string][]byte
}

// distInfo is the wheel's .dist-info directory name.
func (w testWheel) distInfo() string {
	return wheelStem(w.Name) + "-" + w.Version + ".dist-info"
}

// wheelStem is a name as wheel file names spell it: lower case, runs of
// -_. as one underscore.
func wheelStem(name string) string {
	return regexp.MustCompile(`[-_.]+`).ReplaceAllString(strings.ToLower(name), "_")
}

// makeWheel builds a wheel zip: files (zip entry name → content; names are
// used verbatim, so a test can write a hostile one) plus a dist-info with
// METADATA, WHEEL and RECORD. Entries are sorted and dated 1980-01-02, so
// the same files give the same bytes.
func makeWheel(t *testing.T, name, version, tag string, deps []string, files map[string][]byte) testWheel {
	t.Helper()
	w, err := buildWheel(name, version, tag, deps, files)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func buildWheel(name, version, tag string, deps []string, files map[string][]byte) (testWheel, error) {
	w := testWheel{Name: name, Version: version, Deps: deps, Files: map[string][]byte{}}
	w.Filename = fmt.Sprintf("%s-%s-%s.whl", wheelStem(name), version, tag)
	for k, v := range files {
		w.Files[k] = v
	}
	di := w.distInfo()
	var meta strings.Builder
	fmt.Fprintf(&meta, "Metadata-Version: 2.1\nName: %s\nVersion: %s\n", name, version)
	for _, d := range deps {
		fmt.Fprintf(&meta, "Requires-Dist: %s\n", d)
	}
	w.Files[di+"/METADATA"] = []byte(meta.String())
	w.Files[di+"/WHEEL"] = []byte(fmt.Sprintf("Wheel-Version: 1.0\nGenerator: pipe-tests\nRoot-Is-Purelib: %t\nTag: %s\n", strings.HasSuffix(tag, "-any"), tag))
	names := make([]string, 0, len(w.Files)+1)
	for n := range w.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var record strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(w.Files[n])
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", n, base64.RawURLEncoding.EncodeToString(sum[:]), len(w.Files[n]))
	}
	fmt.Fprintf(&record, "%s/RECORD,,\n", di)
	w.Files[di+"/RECORD"] = []byte(record.String())
	names = append(names, di+"/RECORD")
	sort.Strings(names)

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(1980, 1, 2, 0, 0, 0, 0, time.UTC)}
		h.SetMode(0o644)
		f, err := zw.CreateHeader(h)
		if err != nil {
			return testWheel{}, err
		}
		if _, err := f.Write(w.Files[n]); err != nil {
			return testWheel{}, err
		}
	}
	if err := zw.Close(); err != nil {
		return testWheel{}, err
	}
	w.Data = buf.Bytes()
	sum := sha256.Sum256(w.Data)
	w.SHA256 = hex.EncodeToString(sum[:])
	return w, nil
}

// debianDist is a distribution Debian installed for /usr/bin/python3, and
// the runtime edges of its lock entry.
type debianDist struct {
	name string
	deps []string
}

// debianDists are the distributions the bundle tests wheel from Debian's
// packages, with the runtime edges of their lock entries. uvicorn 0.17
// imports asgiref at startup, so asgiref is among them.
var debianDists = []debianDist{
	{"anyio", []string{"idna", "sniffio"}},
	{"asgiref", nil},
	{"click", nil},
	{"fastapi", []string{"pydantic", "starlette"}},
	{"h11", nil},
	{"idna", nil},
	{"pydantic", []string{"typing-extensions"}},
	{"sniffio", nil},
	{"starlette", []string{"anyio"}},
	{"typing-extensions", nil},
	{"uvicorn", []string{"asgiref", "click", "h11"}},
}

var (
	debianOnce   sync.Once
	debianResult []testWheel
	debianErr    error
)

// debianWheels returns wheels of the Debian-installed FastAPI stack, made
// once per test binary: for each distribution, its top-level modules
// (top_level.txt, else the name) zipped from dist-packages without
// __pycache__, with the installed version.
func debianWheels(t *testing.T) []testWheel {
	t.Helper()
	requirePython(t)
	debianOnce.Do(func() { debianResult, debianErr = makeDebianWheels() })
	if debianErr != nil {
		t.Fatalf("wheel the Debian packages: %v", debianErr)
	}
	return debianResult
}

func makeDebianWheels() ([]testWheel, error) {
	return wheelDebianDists(debianDists)
}

// wheelDebianDists wheels the given Debian-installed distributions.
func wheelDebianDists(dists []debianDist) ([]testWheel, error) {
	var names []string
	for _, d := range dists {
		names = append(names, d.name)
	}
	// One interpreter run for every version and top_level.txt.
	script := `
import json, sys, importlib.metadata as m
out = {}
for n in sys.argv[1:]:
    d = m.distribution(n)
    out[n] = {"version": d.version, "top_level": d.read_text("top_level.txt") or ""}
print(json.dumps(out))
`
	cmd := exec.Command(debianPython, append([]string{"-I", "-c", script}, names...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", debianPython, err, stderr.String())
	}
	var info map[string]struct {
		Version  string `json:"version"`
		TopLevel string `json:"top_level"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, err
	}
	var wheels []testWheel
	for _, d := range dists {
		in := info[d.name]
		var mods []string
		for _, l := range strings.Fields(in.TopLevel) {
			if !strings.Contains(l, "/") {
				mods = append(mods, l)
			}
		}
		if len(mods) == 0 {
			mods = []string{wheelStem(d.name)}
		}
		files := map[string][]byte{}
		compiled := false
		for _, mod := range mods {
			if b, err := os.ReadFile(filepath.Join(debianSitePackages, mod+".py")); err == nil {
				files[mod+".py"] = b
				continue
			}
			root := filepath.Join(debianSitePackages, mod)
			err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if e.IsDir() && e.Name() == "__pycache__" {
					return fs.SkipDir
				}
				if e.IsDir() || !e.Type().IsRegular() || strings.HasSuffix(p, ".pyc") {
					return nil
				}
				rel, _ := filepath.Rel(debianSitePackages, p)
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				files[filepath.ToSlash(rel)] = b
				compiled = compiled || strings.HasSuffix(p, ".so")
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%s: module %s: %w", d.name, mod, err)
			}
		}
		tag := "py3-none-any"
		if compiled {
			tag = "cp311-cp311-manylinux_2_17_x86_64"
		}
		w, err := buildWheel(d.name, in.Version, tag, d.deps, files)
		if err != nil {
			return nil, err
		}
		wheels = append(wheels, w)
	}
	return wheels, nil
}

// wheelMirror is a local index serving wheels under the paths the lock's
// files.pythonhosted.org URLs have, and counting the requests.
type wheelMirror struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte // URL path → bytes served
	hits  map[string]int    // URL path → requests
}

func newWheelMirror(t *testing.T) *wheelMirror {
	m := &wheelMirror{files: map[string][]byte{}, hits: map[string]int{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.hits[r.URL.Path]++
		b, ok := m.files[r.URL.Path]
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// urlPath is where a wheel lives, on PyPI's file host and on the mirror.
func urlPath(w testWheel) string {
	return fmt.Sprintf("/packages/%s/%s/%s", w.SHA256[:2], w.SHA256[2:4], w.Filename)
}

// serve publishes w's bytes (or other bytes under its name).
func (m *wheelMirror) serve(w testWheel, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[urlPath(w)] = data
}

// requests returns how often each path was asked for.
func (m *wheelMirror) requests() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.hits {
		out[k] = v
	}
	return out
}

func (m *wheelMirror) total() int {
	n := 0
	for _, v := range m.requests() {
		n += v
	}
	return n
}

// lockEntry is one registry [[package]] of the test uv.lock.
type lockEntry struct {
	Name, Version string
	Deps          []string
	Wheels        []lockFile
	Sdist         *lockFile
}

// lockFile is a wheel or sdist as the lock lists it.
type lockFile struct {
	URL, SHA256 string
	Size        int
}

// lockEntryOf is the lock entry of a wheel published on PyPI's file host.
func lockEntryOf(w testWheel) lockEntry {
	return lockEntry{Name: w.Name, Version: w.Version, Deps: w.Deps, Wheels: []lockFile{{
		URL: "https://files.pythonhosted.org" + urlPath(w), SHA256: w.SHA256, Size: len(w.Data),
	}}}
}

// pyApp describes the test uv workspace: the app project my-api and the
// registry packages of its lock.
type pyApp struct {
	// Deps are my-api's dependencies as the lock records them (edges and
	// requires-dist).
	Deps []string
	// Pyproject are the dependencies of packages/my-api/pyproject.toml
	// (default: Deps).
	Pyproject []string
	Packages  []lockEntry
	MainPy    string // default: a placeholder module
	// Dev is my-api's dev dependency group, as the lock records it.
	Dev []string
	// RequiresPython is the lock's and pyproject's requires-python
	// (default ">=3.11").
	RequiresPython string
}

// fastAPIMain is the app the bundle tests serve.
const fastAPIMain = `"""A FastAPI app for pipe's bundle tests."""

import fastapi
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="my-api")


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
def get_item(item_id: int) -> dict:
    return {"item_id": item_id, "name": f"item {item_id}"}


@app.post("/items")
def create_item(item: Item) -> dict:
    return {"name": item.name, "price": item.price}


@app.get("/where")
def where() -> dict:
    # Which fastapi answered: the bundle's, not the system's.
    return {"fastapi": fastapi.__file__}
`

// writeLock renders the uv.lock uv would write for app.
func writeLock(app pyApp) string {
	var b strings.Builder
	rp := app.RequiresPython
	if rp == "" {
		rp = ">=3.11"
	}
	fmt.Fprintf(&b, "version = 1\nrevision = 3\nrequires-python = %q\n\n[manifest]\nmembers = [\"my-api\"]\n", rp)
	deps := func(names []string) {
		if len(names) == 0 {
			return
		}
		b.WriteString("dependencies = [\n")
		for _, d := range names {
			fmt.Fprintf(&b, "    { name = %q },\n", d)
		}
		b.WriteString("]\n")
	}
	pkgs := append([]lockEntry{{Name: "my-api", Version: "0.1.0"}}, app.Packages...)
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	for _, p := range pkgs {
		fmt.Fprintf(&b, "\n[[package]]\nname = %q\nversion = %q\n", p.Name, p.Version)
		if p.Name == "my-api" {
			b.WriteString("source = { editable = \"packages/my-api\" }\n")
			deps(app.Deps)
			if len(app.Dev) > 0 {
				b.WriteString("\n[package.dev-dependencies]\ndev = [\n")
				for _, d := range app.Dev {
					fmt.Fprintf(&b, "    { name = %q },\n", d)
				}
				b.WriteString("]\n")
			}
			b.WriteString("\n[package.metadata]\nrequires-dist = [\n")
			for _, d := range app.Deps {
				fmt.Fprintf(&b, "    { name = %q },\n", d)
			}
			b.WriteString("]\n")
			if len(app.Dev) > 0 {
				b.WriteString("\n[package.metadata.requires-dev]\ndev = [\n")
				for _, d := range app.Dev {
					fmt.Fprintf(&b, "    { name = %q },\n", d)
				}
				b.WriteString("]\n")
			}
			continue
		}
		b.WriteString("source = { registry = \"https://pypi.org/simple\" }\n")
		deps(p.Deps)
		if s := p.Sdist; s != nil {
			fmt.Fprintf(&b, "sdist = { url = %q, hash = \"sha256:%s\", size = %d }\n", s.URL, s.SHA256, s.Size)
		}
		if len(p.Wheels) > 0 {
			b.WriteString("wheels = [\n")
			for _, w := range p.Wheels {
				fmt.Fprintf(&b, "    { url = %q, hash = \"sha256:%s\", size = %d },\n", w.URL, w.SHA256, w.Size)
			}
			b.WriteString("]\n")
		}
	}
	return b.String()
}

func pyprojectOf(deps []string) string {
	var b strings.Builder
	b.WriteString("[project]\nname = \"my-api\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = [\n")
	for _, d := range deps {
		fmt.Fprintf(&b, "    %q,\n", d)
	}
	b.WriteString("]\n")
	return b.String()
}

// newPyWorkspace writes the uv workspace of app: WORKSPACE.star naming
// Debian's interpreter, the root pyproject.toml and uv.lock, and
// packages/my-api with its pyproject, sources and fastapi_project.
func newPyWorkspace(t *testing.T, app pyApp) *workspace {
	t.Helper()
	if app.Pyproject == nil {
		app.Pyproject = app.Deps
	}
	if app.MainPy == "" {
		app.MainPy = "app = None\n"
	}
	return newWorkspace(t, map[string]string{
		"WORKSPACE.star":                     "workspace(name = \"t\", python = \"" + debianPython + "\")\n",
		"pyproject.toml":                     "[tool.uv.workspace]\nmembers = [\"packages/my-api\"]\n",
		"uv.lock":                            writeLock(app),
		"packages/my-api/pyproject.toml":     pyprojectOf(app.Pyproject),
		"packages/my-api/my_api/__init__.py": "",
		"packages/my-api/my_api/main.py":     app.MainPy,
		"packages/my-api/BUILD.star": `fastapi_project(
    name = "my-api",
    python_version = "3.11",
    architecture = "x86_64",
)
`,
	})
}

// pipeCmdEnv is pipeCmd with extra environment (KEY=VALUE). A
// PIPE_PYTHON_INDEX of the developer's is not passed on: tests say which
// index they mean.
func pipeCmdEnv(ws *workspace, env []string, args ...string) *exec.Cmd {
	cmd := pipeCmd(ws, args...)
	var keep []string
	for _, kv := range cmd.Env {
		if !strings.HasPrefix(kv, "PIPE_PYTHON_INDEX=") {
			keep = append(keep, kv)
		}
	}
	cmd.Env = append(keep, env...)
	return cmd
}

// buildEnv is ws.build with extra environment (PIPE_PYTHON_INDEX).
func (ws *workspace) buildEnv(t *testing.T, env []string, args ...string) build {
	t.Helper()
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := pipeCmdEnv(ws, env, append([]string{"build", "--events", evFile}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	b := build{code: exitCode(t, cmd.Run())}
	b.stdout, b.stderr = out.String(), errb.String()
	if _, err := os.Stat(evFile); err == nil {
		b.events = readEvents(t, evFile)
	}
	return b
}

// buildEnvOK is buildEnv that fails the test unless pipe exits 0, and
// checks the summary line against the events.
func (ws *workspace) buildEnvOK(t *testing.T, env []string, args ...string) build {
	t.Helper()
	b := ws.buildEnv(t, env, args...)
	if b.code != 0 {
		t.Fatalf("pipe build %s: exit %d\nstderr:\n%s", strings.Join(args, " "), b.code, b.stderr)
	}
	s := parseSummary(t, b.stderr)
	want := summary{Total: len(b.events), Executed: len(b.labels("executed")), Cached: len(b.labels("cached")), Failed: len(b.labels("failed"))}
	if s != want {
		t.Fatalf("summary line says %+v, events say %+v\nstderr:\n%s", s, want, b.stderr)
	}
	return b
}

// mnemonics returns the sorted mnemonics of the events with the status.
func (b build) mnemonics(status string) []string {
	var out []string
	for _, ev := range b.events {
		if ev.Status == status {
			out = append(out, ev.Mnemonic)
		}
	}
	sort.Strings(out)
	return out
}

// zipEntry is one file of a zip as the tests compare it.
type zipEntry struct {
	mode    fs.FileMode
	content string
}

// readZip reads every entry of a zip, checking the properties every
// bundle.zip must have: sorted file entries only, dated 1980-01-01.
func readZip(t *testing.T, file string) ([]string, map[string]zipEntry) {
	t.Helper()
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatalf("open %s: %v", file, err)
	}
	defer zr.Close()
	var names []string
	entries := map[string]zipEntry{}
	for _, f := range zr.File {
		names = append(names, f.Name)
		if y, m, d := f.Modified.Date(); y != 1980 || m != 1 || d != 1 || f.Modified.Hour()+f.Modified.Minute()+f.Modified.Second() != 0 {
			t.Errorf("%s: entry %s is dated %s, want 1980-01-01 00:00:00", file, f.Name, f.Modified)
		}
		if len(f.Extra) != 0 {
			t.Errorf("%s: entry %s has extra fields %x (timestamps, uid/gid make zips differ)", file, f.Name, f.Extra)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("%s: %s: %v", file, f.Name, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %s: %v", file, f.Name, err)
		}
		entries[f.Name] = zipEntry{mode: f.Mode(), content: string(b)}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("%s: entries are not sorted", file)
	}
	return names, entries
}

func fileSHA256(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

const (
	bundleDir = "dist/packages/my-api/bundle"
	bundleZip = "dist/packages/my-api/bundle.zip"
	runShLine = "exec python -m uvicorn my_api.main:app --host 0.0.0.0 --port ${PORT:-8000}"
)

// fastAPIWorkspace is a workspace whose app my-api depends on fastapi and
// uvicorn, wheeled from Debian's packages and served by a mirror.
func fastAPIWorkspace(t *testing.T) (*workspace, *wheelMirror, []string, []testWheel) {
	t.Helper()
	wheels := debianWheels(t)
	m := newWheelMirror(t)
	app := pyApp{Deps: []string{"fastapi", "uvicorn"}, MainPy: fastAPIMain}
	for _, w := range wheels {
		m.serve(w, w.Data)
		app.Packages = append(app.Packages, lockEntryOf(w))
	}
	ws := newPyWorkspace(t, app)
	return ws, m, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, wheels
}

// TestBundleEndToEnd builds the bundle of a FastAPI app from wheels of
// Debian's packages and checks it file by file, then its caching: no-op,
// restore, pipe clean, a platform change, an app-only edit, a fresh clone.
func TestBundleEndToEnd(t *testing.T) {
	t.Parallel()
	ws, mirror, env, wheels := fastAPIWorkspace(t)

	b := ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "first build: executed mnemonics", b.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")

	// The directory, file by file: every wheel's entries, the app, run.sh.
	want := map[string]string{
		"my_api/__init__.py": "",
		"my_api/main.py":     fastAPIMain,
	}
	for _, w := range wheels {
		for name, content := range w.Files {
			want[name] = string(content)
		}
	}
	got := listFiles(t, ws.path(bundleDir))
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	wantNames = append(wantNames, "run.sh")
	sort.Strings(wantNames)
	if !equalStrings(got, wantNames) {
		t.Errorf("bundle files differ from the wheels' entries + the app + run.sh:\n%s", diffLists(got, wantNames))
	}
	for name, content := range want {
		if b, err := os.ReadFile(ws.path(bundleDir + "/" + name)); err != nil || string(b) != content {
			t.Errorf("bundle/%s: %v, content differs from the source (%d bytes, want %d)", name, err, len(b), len(content))
		}
	}
	for _, must := range []string{"fastapi/__init__.py", "uvicorn/main.py", "typing_extensions.py"} {
		if !ws.exists(bundleDir + "/" + must) {
			t.Errorf("bundle lacks %s", must)
		}
	}
	for _, w := range wheels {
		if !ws.exists(bundleDir + "/" + w.distInfo() + "/METADATA") {
			t.Errorf("bundle lacks %s/METADATA (importlib.metadata needs it)", w.distInfo())
		}
	}
	runSh := ws.read(t, bundleDir+"/run.sh")
	if strings.Contains(runSh, "\r") {
		t.Errorf("run.sh has CR line endings: %q", runSh)
	}
	if !strings.HasPrefix(runSh, "#!/bin/sh\n") || !strings.Contains(runSh, "\n"+runShLine+"\n") {
		t.Errorf("run.sh lacks the shebang or the line %q:\n%s", runShLine, runSh)
	}
	if fi, err := os.Stat(ws.path(bundleDir + "/run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh: %v, mode %v, want 0755", err, fi.Mode())
	}

	// The zip holds exactly the directory: names, contents, modes.
	names, entries := readZip(t, ws.path(bundleZip))
	if !equalStrings(names, got) {
		t.Errorf("bundle.zip entries differ from bundle/:\n%s", diffLists(names, got))
	}
	for _, n := range got {
		p := ws.path(bundleDir + "/" + n)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		content, _ := os.ReadFile(p)
		e, ok := entries[n]
		if !ok {
			continue
		}
		if e.content != string(content) {
			t.Errorf("bundle.zip %s: content differs from bundle/%s", n, n)
		}
		if e.mode.Perm() != fi.Mode().Perm() || !e.mode.IsRegular() {
			t.Errorf("bundle.zip %s: mode %v, the directory has %v", n, e.mode, fi.Mode())
		}
	}
	if e := entries["run.sh"]; e.mode.Perm() != 0o755 {
		t.Errorf("bundle.zip run.sh: mode %v, want 0755", e.mode)
	}
	zipSum := fileSHA256(t, ws.path(bundleZip))

	// Each wheel was downloaded exactly once, and nothing else was asked.
	checkOnce := func(when string) {
		t.Helper()
		reqs := mirror.requests()
		for _, w := range wheels {
			if n := reqs[urlPath(w)]; n != 1 {
				t.Errorf("%s: the mirror served %s %d times, want once", when, w.Filename, n)
			}
		}
		if len(reqs) != len(wheels) {
			t.Errorf("%s: the mirror got requests for %d paths, want %d: %v", when, len(reqs), len(wheels), reqs)
		}
		for _, w := range wheels {
			if _, err := os.Stat(filepath.Join(ws.Cache, "cas", w.SHA256[:2], w.SHA256)); err != nil {
				t.Errorf("%s: wheel %s is not in the CAS: %v", when, w.Filename, err)
			}
		}
	}
	checkOnce("first build")

	// A no-op build executes nothing.
	b = ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "second build: executed", b.mnemonics("executed"))
	wantLabels(t, "second build: cached", b.mnemonics("cached"), "PyApp", "PyBundle", "PyDeps")
	checkOnce("second build")

	// Tampering with the bundle directory is undone by a build that runs
	// nothing: a deleted file comes back, an edited one is restored, a
	// stray one is removed.
	os.Remove(ws.path(bundleDir + "/fastapi/__init__.py"))
	ws.write(t, bundleDir+"/run.sh", "#!/bin/sh\necho edited\n")
	ws.write(t, bundleDir+"/stray.py", "x = 1\n")
	b = ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "after tampering: executed", b.mnemonics("executed"))
	if got := listFiles(t, ws.path(bundleDir)); !equalStrings(got, wantNames) {
		t.Errorf("bundle files after tampering and a build:\n%s", diffLists(got, wantNames))
	}
	if got := ws.read(t, bundleDir+"/run.sh"); got != runSh {
		t.Errorf("run.sh after tampering and a build:\n%s", got)
	}

	// pipe clean, then build: the same zip, no download.
	if _, stderr, code := runPipe(t, ws, "clean"); code != 0 {
		t.Fatalf("pipe clean: exit %d\n%s", code, stderr)
	}
	if ws.exists(bundleZip) {
		t.Fatalf("pipe clean left %s", bundleZip)
	}
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	if s := fileSHA256(t, ws.path(bundleZip)); s != zipSum {
		t.Errorf("bundle.zip after pipe clean + build: sha256 %s, before %s", s, zipSum)
	}
	checkOnce("after pipe clean")

	// A new platform re-runs the dependency layer: its wheels come from
	// the CAS, not the mirror. All wheels are py3-none-any, so the layer's
	// files are the same and assembly is a cache hit.
	build311 := ws.read(t, "packages/my-api/BUILD.star")
	ws.write(t, "packages/my-api/BUILD.star", strings.Replace(build311, `"3.11"`, `"3.12"`, 1))
	b = ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "python 3.12: executed", b.mnemonics("executed"), "PyDeps")
	checkOnce("after a platform change")
	ws.write(t, "packages/my-api/BUILD.star", build311)
	b = ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "back to python 3.11: executed", b.mnemonics("executed"))
	if s := fileSHA256(t, ws.path(bundleZip)); s != zipSum {
		t.Errorf("bundle.zip back on 3.11: sha256 %s, before %s", s, zipSum)
	}

	// An app-only edit re-runs the app layer and assembly, not the
	// dependencies.
	edited := fastAPIMain + "\n\n@app.get(\"/ping\")\ndef ping() -> str:\n    return \"pong\"\n"
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	b = ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "after an app edit: executed", b.mnemonics("executed"), "PyApp", "PyBundle")
	wantLabels(t, "after an app edit: cached", b.mnemonics("cached"), "PyDeps")
	if got := ws.read(t, bundleDir+"/my_api/main.py"); got != edited {
		t.Errorf("bundle/my_api/main.py after the edit:\n%s", got)
	}
	if _, entries := readZip(t, ws.path(bundleZip)); entries["my_api/main.py"].content != edited {
		t.Errorf("bundle.zip my_api/main.py is not the edited file")
	}
	checkOnce("after an app edit")

	// Another workspace with the same sources and its own cache (another
	// machine, a fresh clone) builds the same bytes from scratch.
	other := newPyWorkspace(t, pyApp{Deps: []string{"fastapi", "uvicorn"}, MainPy: fastAPIMain, Packages: lockEntries(wheels)})
	b = other.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "fresh clone: executed", b.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")
	if s := fileSHA256(t, other.path(bundleZip)); s != zipSum {
		t.Errorf("bundle.zip from another workspace and cache: sha256 %s, want %s", s, zipSum)
	}
}

func lockEntries(wheels []testWheel) []lockEntry {
	var out []lockEntry
	for _, w := range wheels {
		out = append(out, lockEntryOf(w))
	}
	return out
}

// diffLists says which names only one of two sorted lists has.
func diffLists(got, want []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var b strings.Builder
	for _, s := range got {
		if !w[s] {
			fmt.Fprintf(&b, "  unexpected: %s\n", s)
		}
	}
	for _, s := range want {
		if !g[s] {
			fmt.Fprintf(&b, "  missing:    %s\n", s)
		}
	}
	return b.String()
}

// freePort returns a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe to write from a process while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGroup starts cmd in its own process group, killed at cleanup, and
// returns a channel closed when it exits and its combined output.
func startGroup(t *testing.T, cmd *exec.Cmd) (<-chan struct{}, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	return exited, out
}

// waitHTTP polls url until it answers 200 and returns the body; it fails
// the test if the process exits or 30s pass first.
func waitHTTP(t *testing.T, url string, exited <-chan struct{}, out *syncBuffer) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("the server exited before %s answered; output:\n%s", url, out.String())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
			last = fmt.Sprintf("HTTP %s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 30s (last: %s); output:\n%s", url, last, out.String())
	return ""
}

// unzipTo extracts a zip with its entries' modes, as Lambda unpacks code.
func unzipTo(t *testing.T, file, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		dst := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, f.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBundleRunsUnderWebAdapterStyleStart unpacks bundle.zip as Lambda
// does and starts ./run.sh with PORT set, as the AWS Lambda Web Adapter
// does, with only the standard library and the bundle importable.
func TestBundleRunsUnderWebAdapterStyleStart(t *testing.T) {
	t.Parallel()
	ws, _, env, _ := fastAPIWorkspace(t)
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")

	task := t.TempDir() // Lambda's /var/task
	unzipTo(t, ws.path(bundleZip), task)

	// `python` on PATH is Debian's interpreter with -S: no site module, so
	// no dist-packages (where apt put FastAPI) and no user site. Only the
	// standard library and the bundle (the current directory, which -m puts
	// first on sys.path) can be imported.
	bin := t.TempDir()
	wrapper := "#!/bin/sh\nexec " + debianPython + " -S \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "python"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command("./run.sh")
	cmd.Dir = task
	cmd.Env = []string{
		"PATH=" + bin + ":/usr/bin:/bin",
		fmt.Sprintf("PORT=%d", port),
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1", // Lambda's /var/task is read-only
	}
	exited, out := startGroup(t, cmd)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	if body := waitHTTP(t, base+"/docs", exited, out); !strings.Contains(body, "swagger-ui") {
		t.Errorf("GET /docs: not the Swagger UI page:\n%s", body)
	}
	var item map[string]any
	if err := json.Unmarshal([]byte(waitHTTP(t, base+"/items/3", exited, out)), &item); err != nil {
		t.Fatalf("GET /items/3: %v", err)
	}
	if fmt.Sprint(item) != fmt.Sprint(map[string]any{"item_id": 3.0, "name": "item 3"}) {
		t.Errorf("GET /items/3 = %v, want {item_id: 3, name: item 3}", item)
	}
	resp, err := http.Post(base+"/items", "application/json", strings.NewReader(`{"name": "pen", "price": 1.5}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"name":"pen","price":1.5}` {
		t.Errorf("POST /items: HTTP %d %s", resp.StatusCode, body)
	}
	resp, err = http.Post(base+"/items", "application/json", strings.NewReader(`{"name": "pen"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("POST /items without price: HTTP %d, want 422 (pydantic validation)", resp.StatusCode)
	}
	var where map[string]string
	if err := json.Unmarshal([]byte(waitHTTP(t, base+"/where", exited, out)), &where); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(task, "fastapi", "__init__.py"); where["fastapi"] != want {
		t.Errorf("fastapi was imported from %s, want the bundle's %s", where["fastapi"], want)
	}
}

// tinyWheel is the one-wheel runtime closure of the error tests, which need
// no interpreter: my-api → tinydep.
func tinyWheel(t *testing.T) testWheel {
	t.Helper()
	return makeWheel(t, "tinydep", "1.0", "py3-none-any", nil, map[string][]byte{
		"tinydep/__init__.py": []byte("VALUE = 1\n"),
	})
}

// TestBundleHashMismatch: the mirror serves other bytes than the lock
// pins; the build fails naming the package and both digests, and writes no
// bundle.
func TestBundleHashMismatch(t *testing.T) {
	t.Parallel()
	w := tinyWheel(t)
	m := newWheelMirror(t)
	// Same size, one byte changed, so the size check cannot catch it.
	bad := append([]byte(nil), w.Data...)
	bad[len(bad)/2] ^= 0xff
	m.serve(w, bad)
	badSum := sha256.Sum256(bad)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(w)}})
	env := []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}

	b := ws.buildEnv(t, env, "//packages/my-api:bundle")
	if b.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr:\n%s", b.code, b.stderr)
	}
	for _, want := range []string{"tinydep", w.SHA256, hex.EncodeToString(badSum[:]), "sha256 mismatch", "//packages/my-api:bundle"} {
		if !strings.Contains(b.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
		}
	}
	if got := b.mnemonics("failed"); !equalStrings(got, []string{"PyDeps"}) {
		t.Errorf("failed actions %q, want [PyDeps]", got)
	}
	if ws.exists(bundleDir) || ws.exists(bundleZip) {
		t.Errorf("a failed bundle left %s or %s", bundleDir, bundleZip)
	}
	// The app layer may have been built alongside (it succeeded); the
	// dependency layer must not exist at all.
	if got := listFiles(t, ws.path("dist/packages/my-api/bundle.layers/deps")); len(got) != 0 || ws.exists("dist/packages/my-api/bundle.layers/deps.zip") {
		t.Errorf("the failed dependency layer left %q in dist/", got)
	}
	badHex := hex.EncodeToString(badSum[:])
	if _, err := os.Stat(filepath.Join(ws.Cache, "cas", badHex[:2], badHex)); err == nil {
		t.Errorf("the CAS kept the wrong download")
	}

	// Once the mirror serves the right file, the same workspace builds.
	m.serve(w, w.Data)
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	if got := ws.read(t, bundleDir+"/tinydep/__init__.py"); got != "VALUE = 1\n" {
		t.Errorf("tinydep/__init__.py = %q", got)
	}
}

// TestBundlePathEscapingWheel: a wheel whose entries leave the extraction
// directory is refused before anything is written.
func TestBundlePathEscapingWheel(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	for _, c := range []struct{ name, entry string }{
		{"dot-dot", "../evil.py"},
		{"dot-dot inside a package", "tinydep/../../../evil.py"},
		{"absolute", filepath.ToSlash(filepath.Join(outside, "evil.py"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := makeWheel(t, "tinydep", "1.0", "py3-none-any", nil, map[string][]byte{
				"tinydep/__init__.py": []byte("VALUE = 1\n"),
				c.entry:               []byte("import os; os.system('echo pwned')\n"),
			})
			m := newWheelMirror(t)
			m.serve(w, w.Data)
			ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(w)}})
			b := ws.buildEnv(t, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, "//packages/my-api:bundle")
			if b.code != 1 {
				t.Fatalf("exit %d, want 1\nstderr:\n%s", b.code, b.stderr)
			}
			for _, want := range []string{w.Filename, fmt.Sprintf("%q", c.entry)} {
				if !strings.Contains(b.stderr, want) {
					t.Errorf("stderr lacks %s:\n%s", want, b.stderr)
				}
			}
			for _, dir := range []string{filepath.Dir(ws.Root), ws.Root, ws.Cache, outside} {
				filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.Name() == "evil.py" {
						t.Errorf("the wheel wrote %s", p)
					}
					return nil
				})
			}
			if ws.exists(bundleDir) || ws.exists(bundleZip) {
				t.Errorf("a failed bundle left %s or %s", bundleDir, bundleZip)
			}
		})
	}
}

// TestBundleErrors: lock problems found before anything is fetched, with
// messages that say what to do.
func TestBundleErrors(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	cases := []struct {
		name string
		app  pyApp
		want []string
	}{
		{
			name: "pyproject dependency missing from the lock",
			app: pyApp{
				Deps:      []string{"tinydep"},
				Pyproject: []string{"tinydep", "httpx>=0.23"},
				Packages:  []lockEntry{lockEntryOf(tiny)},
			},
			want: []string{"uv.lock", "httpx", "run `uv lock`"},
		},
		{
			name: "sdist only",
			app: pyApp{
				Deps: []string{"sdistonly"},
				Packages: []lockEntry{{Name: "sdistonly", Version: "2.0", Sdist: &lockFile{
					URL:    "https://files.pythonhosted.org/packages/aa/bb/sdistonly-2.0.tar.gz",
					SHA256: strings.Repeat("ab", 32), Size: 1234,
				}}},
			},
			want: []string{"sdistonly", "2.0", "sdistonly-2.0.tar.gz"},
		},
		{
			name: "no compatible wheel",
			app: pyApp{
				Deps: []string{"winonly"},
				Packages: []lockEntry{{Name: "winonly", Version: "3.1", Wheels: []lockFile{
					{URL: "https://files.pythonhosted.org/packages/aa/bb/winonly-3.1-cp311-cp311-win_amd64.whl", SHA256: strings.Repeat("cd", 32), Size: 100},
					{URL: "https://files.pythonhosted.org/packages/aa/bb/winonly-3.1-cp311-cp311-macosx_11_0_arm64.whl", SHA256: strings.Repeat("ef", 32), Size: 100},
				}}},
			},
			want: []string{"winonly", "3.1", "winonly-3.1-cp311-cp311-win_amd64.whl", "winonly-3.1-cp311-cp311-macosx_11_0_arm64.whl", "x86_64"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := newWheelMirror(t)
			m.serve(tiny, tiny.Data)
			ws := newPyWorkspace(t, c.app)
			b := ws.buildEnv(t, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, "//packages/my-api:bundle")
			// Found at analysis, before anything runs: pipe reports these
			// like BUILD-file errors, at the target's declaration, exit 2.
			if b.code != 2 {
				t.Errorf("exit %d, want 2\nstderr:\n%s", b.code, b.stderr)
			}
			if !strings.HasPrefix(b.stderr, "pipe: packages/my-api/BUILD.star:1:1: //packages/my-api:bundle: ") {
				t.Errorf("the error does not name the target's declaration and label:\n%s", b.stderr)
			}
			for _, want := range c.want {
				if !strings.Contains(b.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
				}
			}
			if m.total() != 0 {
				t.Errorf("the mirror got %d requests; a lock error must be found before fetching", m.total())
			}
			if ws.exists("dist") {
				t.Errorf("the failed build left %q in dist/", listFiles(t, ws.path("dist")))
			}
		})
	}
}

// TestBundleLockOutOfDateAfterBuild: a dependency added to pyproject.toml
// after a successful build is noticed on the next build, although no
// source of the app changed.
func TestBundleLockOutOfDateAfterBuild(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	m := newWheelMirror(t)
	m.serve(tiny, tiny.Data)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}})
	env := []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	ws.buildEnvOK(t, env, "//packages/my-api:bundle")

	ws.write(t, "packages/my-api/pyproject.toml", pyprojectOf([]string{"tinydep", "httpx"}))
	b := ws.buildEnv(t, env, "//packages/my-api:bundle")
	if b.code != 2 || !strings.Contains(b.stderr, "httpx is not in it; run `uv lock`") {
		t.Errorf("after adding httpx to pyproject.toml: exit %d, want 2 and advice to run `uv lock`\nstderr:\n%s", b.code, b.stderr)
	}

	// A version range the locked version does not satisfy is stale too.
	ws.write(t, "packages/my-api/pyproject.toml", pyprojectOf([]string{"tinydep>=2"}))
	b = ws.buildEnv(t, env, "//packages/my-api:bundle")
	if b.code != 2 || !strings.Contains(b.stderr, "tinydep>=2 is required but 1.0 is locked") || !strings.Contains(b.stderr, "run `uv lock`") {
		t.Errorf("after requiring tinydep>=2: exit %d\nstderr:\n%s", b.code, b.stderr)
	}
}

// TestOpenAPIAndMetadataOnExample builds the example's OpenAPI schema on
// the locked environment and the TypeScript operation table made from it.
// The example locks Python 3.14 and FastAPI from PyPI, neither of which
// this machine has: the test locks it again for Python 3.11 with wheels of
// Debian's FastAPI, as `uv lock` would against such an index.
func TestOpenAPIAndMetadataOnExample(t *testing.T) {
	t.Parallel()
	wheels := debianWheels(t)
	requirePyenv(t, "3.11")
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "fastapi"))
	m := newWheelMirror(t)
	app := pyApp{Deps: []string{"fastapi", "uvicorn"}}
	for _, w := range wheels {
		m.serve(w, w.Data)
		app.Packages = append(app.Packages, lockEntryOf(w))
	}
	ws.write(t, "uv.lock", writeLock(app))
	for _, f := range []string{"pyproject.toml", "packages/my-api/pyproject.toml"} {
		ws.write(t, f, strings.ReplaceAll(ws.read(t, f), ">=3.14", ">=3.11"))
	}
	ws.write(t, "packages/my-api/BUILD.star", strings.Replace(ws.read(t, "packages/my-api/BUILD.star"), `"3.14"`, `"3.11"`, 1))
	env := []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}
	const gen = "packages/common/constructs/src/generated/my-api/metadata.gen.ts"
	// A copy of a built example may carry it; pipe must write it.
	os.RemoveAll(ws.path("packages/common/constructs/src/generated"))
	targets := []string{"//packages/my-api:openapi", "//packages/common/constructs:my-api-metadata"}

	b := ws.buildEnvOK(t, env, targets...)
	wantLabels(t, "first build: executed", b.labels("executed"), targets...)
	var spec struct {
		OpenAPI string                                `json:"openapi"`
		Info    struct{ Title string }                `json:"info"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(ws.read(t, "dist/packages/my-api/openapi/openapi.json")), &spec); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if spec.Info.Title != "my-api" || !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Errorf("openapi.json: openapi %q, title %q", spec.OpenAPI, spec.Info.Title)
	}
	for p, methods := range map[string][]string{
		"/items/{item_id}": {"get"},
		"/items":           {"get", "post"},
		"/users":           {"get"},
		"/events":          {"get"},
	} {
		for _, m := range methods {
			if _, ok := spec.Paths[p][m]; !ok {
				t.Errorf("openapi.json lacks %s %s; paths: %v", m, p, spec.Paths)
			}
		}
	}
	ts := ws.read(t, gen)
	for _, want := range []string{
		"export const OPERATION_DETAILS = {",
		"  'items.list': {\n    path: '/items',\n    method: 'GET',\n  },\n",
		"  'users.list': {\n    path: '/users',\n    method: 'GET',\n  },\n",
		"    path: '/events',\n    method: 'GET',\n    streaming: true,\n",
		"} as const;\n",
		"export type Operations = keyof typeof OPERATION_DETAILS;\n",
	} {
		if !strings.Contains(ts, want) {
			t.Errorf("%s lacks %q:\n%s", gen, want, ts)
		}
	}
	if strings.Count(ts, "streaming: true") != 1 {
		t.Errorf("%s: want exactly one streaming operation (/events):\n%s", gen, ts)
	}
	if got := ws.read(t, "dist/packages/common/constructs/my-api-metadata/metadata.gen.ts"); got != ts {
		t.Errorf("dist's metadata.gen.ts differs from the source tree's")
	}

	b = ws.buildEnvOK(t, env, targets...)
	wantLabels(t, "second build: executed", b.labels("executed"))
	wantLabels(t, "second build: cached", b.labels("cached"), targets...)

	// An import error fails the schema with Python's traceback under the
	// target's label.
	mainPy := ws.read(t, "packages/my-api/my_api/main.py")
	ws.write(t, "packages/my-api/my_api/main.py", "import nonexistent\n"+mainPy)
	b = ws.buildEnv(t, env, targets...)
	if b.code != 1 {
		t.Fatalf("with an import error: exit %d, want 1\nstderr:\n%s", b.code, b.stderr)
	}
	fail := strings.Index(b.stderr, "FAIL //packages/my-api:openapi (OpenAPI)")
	if fail < 0 {
		t.Fatalf("stderr names no failed //packages/my-api:openapi:\n%s", b.stderr)
	}
	under := b.stderr[fail:]
	for _, want := range []string{"\n  Traceback (most recent call last):\n", "\n      import nonexistent\n", "\n  ModuleNotFoundError: No module named 'nonexistent'\n"} {
		if !strings.Contains(under, want) {
			t.Errorf("the traceback under the label lacks %q:\n%s", want, b.stderr)
		}
	}
	if got := b.labels("failed"); !equalStrings(got, []string{"//packages/my-api:openapi"}) {
		t.Errorf("failed: %q", got)
	}
	if got := b.labels("executed"); len(got) != 0 {
		t.Errorf("executed after a failed schema: %q", got)
	}

	// Fixed again: the earlier results come back from the cache.
	ws.write(t, "packages/my-api/my_api/main.py", mainPy)
	b = ws.buildEnvOK(t, env, targets...)
	wantLabels(t, "after the fix: executed", b.labels("executed"))
	if got := ws.read(t, gen); got != ts {
		t.Errorf("%s after the fix differs from the first build's", gen)
	}
}

// TestServeRuns: `pipe run //packages/my-api:serve -- --port N` serves the
// app with uvicorn --reload, picks up an edit, and stops on SIGINT.
func TestServeRuns(t *testing.T) {
	t.Parallel()
	ws, _, env, _ := fastAPIWorkspace(t)
	port := freePort(t)
	// uvicorn takes the last --port: the one after --.
	cmd := pipeCmdEnv(ws, env, "run", "--verbose", "//packages/my-api:serve", "--", "--port", fmt.Sprint(port))
	exited, out := startGroup(t, cmd)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	var spec struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(waitHTTP(t, base+"/openapi.json", exited, out)), &spec); err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	if _, ok := spec.Paths["/items/{item_id}"]; !ok {
		t.Errorf("/openapi.json lacks /items/{item_id}: %v", spec.Paths)
	}
	// --verbose: what it runs on. The workspace names Debian's python3.
	if want := "python: Python 3.11.2 (" + debianPython + ", workspace python) with the locked environment (11 distributions: runtime dependencies) in " + ws.Cache + "/trees/pyenv/"; !strings.Contains(out.String(), want) {
		t.Errorf("pipe run --verbose does not say %q:\n%s", want, out.String())
	}
	if body := waitHTTP(t, base+"/docs", exited, out); !strings.Contains(body, "swagger-ui") {
		t.Errorf("GET /docs: not the Swagger UI page:\n%s", body)
	}
	if body := waitHTTP(t, base+"/redoc", exited, out); !strings.Contains(body, "redoc") {
		t.Errorf("GET /redoc: not the ReDoc page:\n%s", body)
	}

	// --reload: an edit in the source tree is served without a restart.
	ws.write(t, "packages/my-api/my_api/main.py", fastAPIMain+"\n\n@app.get(\"/added\")\ndef added() -> dict:\n    return {\"added\": True}\n")
	if body := waitHTTP(t, base+"/added", exited, out); strings.TrimSpace(body) != `{"added":true}` {
		t.Errorf("GET /added after the edit: %s", body)
	}

	// Ctrl-C: pipe passes SIGINT on and exits once uvicorn has stopped.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("pipe run did not exit within 20s of SIGINT; output:\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 && code != 130 {
		t.Errorf("pipe run exited %d after SIGINT, want 0 or 130; output:\n%s", code, out.String())
	}
	// Nothing of it is left: no listener, no process in its group
	// (uvicorn's reloader, its worker, multiprocessing's resource tracker).
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, dialErr := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if dialErr == nil {
			conn.Close()
		}
		groupErr := syscall.Kill(-cmd.Process.Pid, 0)
		if dialErr != nil && groupErr == syscall.ESRCH {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after pipe run exited: port open: %t, processes left in its group: %t; output:\n%s", dialErr == nil, groupErr != syscall.ESRCH, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBundleMirrorMissingWheel: a mirror without the wheel fails the
// dependency layer with the package, both URLs and the HTTP status.
func TestBundleMirrorMissingWheel(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	m := newWheelMirror(t) // serves nothing
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}})
	b := ws.buildEnv(t, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL + "/simple"}, "//packages/my-api:bundle")
	if b.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr:\n%s", b.code, b.stderr)
	}
	// A trailing /simple (what pip's --index-url takes) is dropped.
	want := "FAIL //packages/my-api:bundle (PyDeps): fetch tinydep 1.0 from " + m.srv.URL + urlPath(tiny) +
		" (mirror of https://files.pythonhosted.org" + urlPath(tiny) + "): HTTP 404 Not Found\n"
	if !strings.Contains(b.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
	}
	if n := m.requests()[urlPath(tiny)]; n != 1 {
		t.Errorf("the mirror was asked %d times for the wheel; a 404 is not worth a retry", n)
	}
	if ws.exists(bundleDir) || ws.exists(bundleZip) {
		t.Errorf("a failed bundle left %s or %s", bundleDir, bundleZip)
	}
}

// TestBundleOfflineIndex: workspace(python_index = "file://wheels") finds
// the wheels by file name in a directory relative to the workspace.
func TestBundleOfflineIndex(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}})
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", python_index = \"file://wheels\")\n")
	if err := os.MkdirAll(ws.path("wheels"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ws.path("wheels/"+tiny.Filename), tiny.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	b := ws.buildEnvOK(t, nil, "//packages/my-api:bundle")
	wantLabels(t, "executed", b.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")
	if got := ws.read(t, bundleDir+"/tinydep/__init__.py"); got != "VALUE = 1\n" {
		t.Errorf("tinydep/__init__.py = %q", got)
	}
	if !ws.exists(bundleDir + "/" + tiny.distInfo() + "/RECORD") {
		t.Errorf("bundle lacks %s/RECORD", tiny.distInfo())
	}
}

// TestBundlesShareDownloads: two bundles of one build that need the same
// wheel download it once; the second waits for the first and finds the
// blob in the CAS.
func TestBundlesShareDownloads(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	m := newWheelMirror(t)
	m.serve(tiny, tiny.Data)
	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}})
	build := ws.read(t, "packages/my-api/BUILD.star") + `
python_bundle(
    name = "bundle312",
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
    python_version = "3.12",
)
`
	ws.write(t, "packages/my-api/BUILD.star", build)
	b := ws.buildEnvOK(t, []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}, "//packages/my-api:bundle", "//packages/my-api:bundle312")
	wantLabels(t, "executed", b.mnemonics("executed"), "PyApp", "PyApp", "PyBundle", "PyBundle", "PyDeps", "PyDeps")
	if got := m.requests()[urlPath(tiny)]; got != 1 {
		t.Errorf("the mirror served %s %d times in one build, want 1", tiny.Filename, got)
	}
}

// TestBundleFromRequirements: a hash-pinned requirements.txt (as `uv
// export` writes it) instead of uv.lock. The wheels are found on a PEP 503
// simple index by the hashes the file pins; a file:// directory works as
// an index too; a wheel whose hash the file does not allow is never used.
func TestBundleFromRequirements(t *testing.T) {
	t.Parallel()
	tiny := tinyWheel(t)
	other := makeWheel(t, "tinydep", "1.0", "py3-none-manylinux_2_17_x86_64", nil, map[string][]byte{
		"tinydep/__init__.py": []byte("VALUE = 'unpinned'\n"),
	})
	m := newWheelMirror(t)
	m.serve(tiny, tiny.Data)
	m.serve(other, other.Data)
	// The simple page lists both files; only tiny's hash is pinned, though
	// the other wheel's tag would rank higher.
	m.mu.Lock()
	m.files["/simple/tinydep/"] = []byte(fmt.Sprintf(`<!DOCTYPE html><html><body>
<a href="../../packages/%s/%s/%s#sha256=%s">%s</a><br/>
<a href="%s#sha256=%s" data-requires-python="&gt;=3.8">%s</a><br/>
</body></html>`, tiny.SHA256[:2], tiny.SHA256[2:4], tiny.Filename, tiny.SHA256, tiny.Filename,
		m.srv.URL+urlPath(other), other.SHA256, other.Filename))
	m.mu.Unlock()

	ws := newPyWorkspace(t, pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(tiny)}})
	os.Remove(ws.path("uv.lock"))
	ws.write(t, "packages/my-api/requirements.txt", fmt.Sprintf(`# This file was autogenerated by uv via the following command:
#    uv export --format requirements-txt
-e .
tinydep==1.0 \
    --hash=sha256:%s
colorama==0.4.6 ; sys_platform == 'win32' \
    --hash=sha256:4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6
`, tiny.SHA256))
	ws.write(t, "packages/my-api/BUILD.star", `python_bundle(
    name = "bundle",
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
    requirements = "requirements.txt",
    python_version = "3.11",
)
`)
	env := []string{"PIPE_PYTHON_INDEX=" + m.srv.URL + "/simple"}
	b := ws.buildEnvOK(t, env, "//packages/my-api:bundle")
	wantLabels(t, "executed", b.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")
	if got := ws.read(t, bundleDir+"/tinydep/__init__.py"); got != "VALUE = 1\n" {
		t.Errorf("tinydep/__init__.py = %q, want the pinned wheel's", got)
	}
	if n := m.requests()[urlPath(other)]; n != 0 {
		t.Errorf("the unpinned wheel was downloaded %d times", n)
	}
	if b := ws.buildEnvOK(t, env, "//packages/my-api:bundle"); len(b.mnemonics("executed")) != 0 {
		t.Errorf("second build executed %v", b.mnemonics("executed"))
	}

	// The plan names the requirement without touching the index.
	before := m.total()
	out, stderr, code := runPipe(t, ws, "query", "--output", "wheels", "//packages/my-api:bundle")
	if code != 0 || !strings.Contains(out, "tinydep 1.0") || strings.Contains(out, "colorama") {
		t.Errorf("query --output wheels: exit %d\n%s%s", code, out, stderr)
	}
	if m.total() != before {
		t.Errorf("the plan contacted the index")
	}

	// A flat directory of wheels is an index too.
	ws.write(t, "wheels/"+tiny.Filename, string(tiny.Data))
	ws.write(t, "wheels/"+other.Filename, string(other.Data))
	ws.write(t, "packages/my-api/my_api/main.py", "app = 'edited'\n")
	os.RemoveAll(ws.Cache)
	b = ws.buildEnvOK(t, []string{"PIPE_PYTHON_INDEX=file://wheels"}, "//packages/my-api:bundle")
	wantLabels(t, "executed", b.mnemonics("executed"), "PyApp", "PyBundle", "PyDeps")
	if got := ws.read(t, bundleDir+"/tinydep/__init__.py"); got != "VALUE = 1\n" {
		t.Errorf("from file:// index: tinydep/__init__.py = %q", got)
	}

	// A pinned hash no file on the index has: a clear error.
	ws.write(t, "packages/my-api/requirements.txt", "tinydep==1.0 --hash=sha256:"+strings.Repeat("0", 64)+"\n")
	b = ws.buildEnv(t, env, "//packages/my-api:bundle")
	if b.code != 1 || !strings.Contains(b.stderr, "tinydep 1.0: no wheel on "+m.srv.URL+"/simple matches the hashes requirements.txt allows") {
		t.Errorf("exit %d, stderr:\n%s", b.code, b.stderr)
	}
}
