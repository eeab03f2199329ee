package main

// Integration tests: they build the real pipe binary once and run it with
// os/exec against workspaces written into temp directories, each test with
// its own shared-cache directory ($PIPE_CACHE_DIR).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// pipeBin is the pipe binary TestMain builds.
var pipeBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pipe-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Servers shared by the tests (MinIO) stop with the test binary.
	defer testenv.StopShared()
	pipeBin = filepath.Join(dir, "pipe")
	cmd := exec.Command("go", "build", "-o", pipeBin, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build pipe: %v\n", err)
		return 1
	}
	// Installed next to pipe, as users install it: the sandbox's
	// supervisor.
	cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "pipe-sandbox"), "../pipe-sandbox")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build pipe-sandbox: %v\n", err)
		return 1
	}
	return testenv.Main(m)
}

// workspace is a pipe workspace in a temp directory, with the shared cache
// directory its pipe runs use.
type workspace struct {
	Root  string
	Cache string
}

// newWorkspace writes files (workspace-relative slash paths → contents) into
// a fresh temp directory. A WORKSPACE.star is added unless files has one.
// Files whose path ends in ".sh" are made executable.
func newWorkspace(t *testing.T, files map[string]string) *workspace {
	t.Helper()
	ws := &workspace{Root: t.TempDir(), Cache: t.TempDir()}
	if _, ok := files["WORKSPACE.star"]; !ok {
		ws.write(t, "WORKSPACE.star", "workspace(name = \"test\")\n")
	}
	for name, content := range files {
		ws.write(t, name, content)
	}
	return ws
}

// copyWorkspace copies the directory src (skipping dist/ and .pipe/, which
// belong to whoever built there) into a fresh temp workspace.
func copyWorkspace(t *testing.T, src string) *workspace {
	t.Helper()
	ws := &workspace{Root: t.TempDir(), Cache: t.TempDir()}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if d.IsDir() && (rel == "dist" || rel == ".pipe") {
			return fs.SkipDir
		}
		dst := filepath.Join(ws.Root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm()|0o200)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return ws
}

func (ws *workspace) path(rel string) string {
	return filepath.Join(ws.Root, filepath.FromSlash(rel))
}

// write writes a workspace file, creating its directory.
func (ws *workspace) write(t *testing.T, rel, content string) {
	t.Helper()
	p := ws.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	mode := os.FileMode(0o644)
	if strings.HasSuffix(rel, ".sh") {
		mode = 0o755
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// read returns a workspace file's contents, failing the test if it is absent.
func (ws *workspace) read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(ws.path(rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

func (ws *workspace) exists(rel string) bool {
	_, err := os.Lstat(ws.path(rel))
	return err == nil
}

// pipeCmd returns an unstarted pipe command in the workspace root, with
// PIPE_CACHE_DIR set to the workspace's cache directory.
func pipeCmd(ws *workspace, args ...string) *exec.Cmd {
	cmd := exec.Command(pipeBin, args...)
	cmd.Dir = ws.Root
	var env []string
	for _, kv := range os.Environ() {
		// A developer's PIPE_SERVER=1 would start a server per test
		// workspace; the tests that want one say so.
		if strings.HasPrefix(kv, "PIPE_CACHE_DIR=") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") || strings.HasPrefix(kv, "NO_COLOR=") || strings.HasPrefix(kv, "PIPE_SERVER") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "PIPE_CACHE_DIR="+ws.Cache)
	return cmd
}

// runPipe runs pipe with args in the workspace and returns its stdout,
// stderr and exit code.
func runPipe(t *testing.T, ws *workspace, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := pipeCmd(ws, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), exitCode(t, err)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	t.Fatalf("run pipe: %v", err)
	return -1
}

// event is one line of the --events file.
type event struct {
	Label      string   `json:"label"`
	Mnemonic   string   `json:"mnemonic"`
	Key        string   `json:"key"`
	Status     string   `json:"status"` // executed, cached, failed or skipped
	Cached     bool     `json:"cached"`
	DurationMs float64  `json:"duration_ms"`
	Restored   int      `json:"restored"`
	Outputs    []string `json:"outputs"`
	Explain    string   `json:"explain"`
	Error      string   `json:"error"`
}

// readEvents parses an --events file: one JSON object per line. Lines of
// pipe deploy's stack events ("kind": "stack") are left to
// readStackEvents.
func readEvents(t *testing.T, file string) []event {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	var evs []event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var kind struct{ Kind string }
		if line == "" || json.Unmarshal([]byte(line), &kind) == nil && kind.Kind == "stack" {
			continue
		}
		var ev event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events line %q: %v", line, err)
		}
		switch ev.Status {
		case "executed", "cached", "failed", "skipped":
		default:
			t.Fatalf("events line %q: unknown status %q", line, ev.Status)
		}
		if ev.Cached != (ev.Status == "cached") {
			t.Fatalf("events line %q: cached=%t disagrees with status %q", line, ev.Cached, ev.Status)
		}
		evs = append(evs, ev)
	}
	return evs
}

// build is the result of one `pipe build --events FILE` run.
type build struct {
	stdout, stderr string
	code           int
	events         []event
	// stackEvents are pipe deploy's lines of the events file.
	stackEvents []stackEvent
}

// build runs `pipe build --events FILE args...` and reads the events (none
// when pipe stopped before executing anything).
func (ws *workspace) build(t *testing.T, args ...string) build {
	t.Helper()
	return ws.buildEnv(t, nil, args...)
}

// buildOK is build that fails the test unless pipe exits 0, and checks the
// summary line against the events.
func (ws *workspace) buildOK(t *testing.T, args ...string) build {
	t.Helper()
	return ws.buildEnvOK(t, nil, args...)
}

// labels returns the sorted labels of the events with the given status.
func (b build) labels(status string) []string {
	var out []string
	for _, ev := range b.events {
		if ev.Status == status {
			out = append(out, ev.Label)
		}
	}
	sort.Strings(out)
	return out
}

// event returns the event of the action owned by label.
func (b build) event(t *testing.T, label string) event {
	t.Helper()
	var found []event
	for _, ev := range b.events {
		if ev.Label == label {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one event for %s, got %d: %+v", label, len(found), b.events)
	}
	return found[0]
}

// summary is the counts of the line every build ends with.
type summary struct {
	Total, Executed, Cached, Failed int
}

var summaryRE = regexp.MustCompile(`(?m)^(\d+) actions: (\d+) executed, (\d+) cached, (\d+) failed \(\d+\.\d\ds\)(; remote: [^\n]*)?$`)

// parseSummary finds the summary line in stderr; it must be the last line.
func parseSummary(t *testing.T, stderr string) summary {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	m := summaryRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("stderr does not end with a summary line `N actions: X executed, Y cached, Z failed (…s)`:\n%s", stderr)
	}
	n := func(s string) int { i, _ := strconv.Atoi(s); return i }
	return summary{Total: n(m[1]), Executed: n(m[2]), Cached: n(m[3]), Failed: n(m[4])}
}

// equalStrings compares sorted string lists, treating nil as empty.
func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantLabels(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if !equalStrings(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// listFiles returns every file and symlink under dir, relative and sorted
// (nil when dir does not exist).
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
