package cdk

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// toolchain is the host's node and the workspace's node_modules: what a
// synth runs with. Missing pieces are recorded rather than reported at
// analysis, so a workspace without node still builds its Python targets;
// the actions that need them fail with the reason.
type toolchain struct {
	Node        string `json:"node"` // absolute path, "" when not found
	NodeVersion string `json:"nodeVersion"`
	NodeErr     string `json:"nodeErr,omitempty"`
	// NodeModules is the absolute node_modules directory; Setting is how
	// WORKSPACE.star names it, which is what enters action keys so that
	// keys do not depend on where the workspace is checked out.
	NodeModules string `json:"nodeModules"`
	Setting     string `json:"setting"`
	CDKLib      string `json:"cdkLib"`     // aws-cdk-lib's version, "" if not installed
	Constructs  string `json:"constructs"` // constructs' version
	TypeScript  string `json:"typescript"` // typescript's version
	// Lock is a digest of the package manager's record of everything
	// installed, so upgrading any package the app imports changes keys.
	Lock     string `json:"lock"`
	LockFile string `json:"lockFile"`
}

// nodeIdentity names node by version only: two installs of one version
// behave alike, and a path would make keys differ between machines.
func (t *toolchain) nodeIdentity() string {
	if t.NodeVersion == "" {
		return "node (not found)"
	}
	return "node " + t.NodeVersion
}

// synthTools are the identities every synth key holds.
func (t *toolchain) synthTools() []string {
	return []string{
		t.nodeIdentity(),
		"aws-cdk-lib " + orMissing(t.CDKLib),
		"constructs " + orMissing(t.Constructs),
		t.modulesIdentity(),
	}
}

// modulesIdentity names everything installed in node_modules, by the
// digest of the package manager's record of it.
func (t *toolchain) modulesIdentity() string {
	return fmt.Sprintf("node_modules %s %s", t.Setting, orMissing(t.Lock))
}

func orMissing(s string) string {
	if s == "" {
		return "(not installed)"
	}
	return s
}

// checkNode returns why node cannot run, or nil.
func (t *toolchain) checkNode() error {
	if t.Node == "" || t.NodeErr != "" {
		return errors.New(t.NodeErr)
	}
	return nil
}

// checkCDK returns why the app cannot be synthesized, or nil.
func (t *toolchain) checkCDK() error {
	if err := t.checkNode(); err != nil {
		return err
	}
	var missing []string
	if t.CDKLib == "" {
		missing = append(missing, "aws-cdk-lib")
	}
	if t.Constructs == "" {
		missing = append(missing, "constructs")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not installed in %s (workspace node_modules = %q): run npm install aws-cdk-lib@2 constructs@10 there, or point workspace(node_modules = ...) at the directory that has them",
			strings.Join(missing, " and "), t.NodeModules, t.Setting)
	}
	return nil
}

// lockFiles are what package managers leave describing a node_modules
// tree, in the order they are looked for: inside node_modules first (it
// describes what is installed, not what was asked for), then next to it.
var lockFiles = []string{
	".package-lock.json", // npm 7+
	".modules.yaml",      // pnpm
	".yarn-state.yml",    // yarn berry, node_modules linker
	"../package-lock.json",
	"../pnpm-lock.yaml",
	"../yarn.lock",
}

// toolchainCache is the on-disk record of a probe, valid while every file
// it read keeps its stat (a missing file must still be missing).
type toolchainCache struct {
	Tools    toolchain
	Stats    map[string]*engine.FileStat // nil: the file did not exist
	Recorded int64
}

// loadToolchain returns the workspace's toolchain, probed once per command
// and, across commands, reused from .pipe/cdk/ while nothing it read
// changed: running node --version costs tens of milliseconds, a stat does
// not. The error is the analysis context's, when node's probe was
// interrupted.
func loadToolchain(ctx *engine.AnalysisContext) (*toolchain, error) {
	ws := ctx.Workspace()
	// Decided by the stats of what it reads, as its record in .pipe/cdk/
	// already is: the build snapshot revalidates it the same way.
	v, err := ctx.ProbeByStat("cdk-toolchain", func(c context.Context, reads *engine.HostReads) (any, error) {
		return probeToolchain(c, ws, reads)
	})
	if err != nil {
		return nil, err
	}
	return v.(*toolchain), nil
}

// probeToolchain adds to reads every path whose stat decided the answer:
// each place node was looked for, node itself, node_modules, the package
// files and lock files read or found missing.
func probeToolchain(ctx context.Context, ws *engine.Workspace, reads *engine.HostReads) (*toolchain, error) {
	setting := ws.Settings.NodeModules
	if setting == "" {
		setting = "node_modules"
	}
	nm := setting
	if !filepath.IsAbs(nm) {
		nm = filepath.Join(ws.Root, filepath.FromSlash(nm))
	}
	node := lookPath("node", ws.Settings.Path, reads)
	cacheFile := filepath.Join(ws.StateDir(), "cdk", fmt.Sprintf("toolchain-%x.json", sha256.Sum256([]byte(node+"\x00"+nm+"\x00"+setting))))
	if b, err := os.ReadFile(cacheFile); err == nil {
		var c toolchainCache
		if json.Unmarshal(b, &c) == nil && c.Stats != nil && statsHold(c.Stats, c.Recorded) {
			for p := range c.Stats {
				reads.Stat(p)
			}
			return &c.Tools, nil
		}
	}
	start := time.Now().UnixNano()
	t := &toolchain{Node: node, NodeModules: nm, Setting: setting}
	read := map[string]*engine.FileStat{}
	record := func(p string) {
		reads.Stat(p)
		if fi, err := os.Stat(p); err == nil {
			st := engine.StatOf(fi)
			read[p] = &st
		} else {
			read[p] = nil
		}
	}
	if node == "" {
		t.NodeErr = fmt.Sprintf("no node on the action PATH (%s): install Node.js 20 or later, or add its directory to workspace(action_path = ...) in WORKSPACE.star", ws.Settings.Path)
	} else {
		record(node)
		t.NodeVersion, t.NodeErr = nodeVersion(ctx, node)
		if err := ctx.Err(); err != nil {
			// Not node's fault: neither record nor keep the failure.
			return nil, fmt.Errorf("probe %s: %w", node, err)
		}
		if t.NodeErr != "" {
			// The long way would run node again: no stat says it
			// would fail again.
			reads.Volatile("node failed to run: " + t.NodeErr)
		}
	}
	record(nm)
	version := func(pkg string) string {
		p := filepath.Join(nm, pkg, "package.json")
		record(p)
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		var m struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(b, &m) != nil {
			return ""
		}
		return m.Version
	}
	t.CDKLib = version("aws-cdk-lib")
	t.Constructs = version("constructs")
	t.TypeScript = version("typescript")
	for _, name := range lockFiles {
		p := filepath.Join(nm, filepath.FromSlash(name))
		record(p)
		if b, err := os.ReadFile(p); err == nil {
			t.Lock = fmt.Sprintf("%x", sha256.Sum256(b))[:16]
			t.LockFile = name
			break
		}
	}
	c := toolchainCache{Tools: *t, Stats: read, Recorded: start}
	if b, err := json.Marshal(c); err == nil {
		files.WriteAtomic(cacheFile, b, 0o644)
	}
	return t, nil
}

func statsHold(stats map[string]*engine.FileStat, recorded int64) bool {
	for f, want := range stats {
		fi, err := os.Stat(f)
		if want == nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return false
			}
			continue
		}
		if err != nil || engine.StatOf(fi) != *want || !want.Settled(recorded) {
			return false
		}
	}
	return true
}

func nodeVersion(ctx context.Context, node string) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--version")
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Sprintf("%s --version failed: %v", node, err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "v") {
		return "", fmt.Sprintf("%s --version printed %q, not a node version", node, v)
	}
	return v, ""
}

// lookPath finds an executable on a PATH-style list; "" when absent.
func lookPath(name, pathList string, reads *engine.HostReads) string {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		// Found or not, its stat decided where the search ended.
		reads.Stat(p)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
