package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Analysis reads: everything a rule learns at analysis time from outside
// its attributes and its dependencies goes through the AnalysisContext
// methods here, and each read is recorded on the target. The record is
// what `pipe affected` intersects with the changed files to find the
// targets whose analysis must be redone with the base revision's files.

// AnalysisInputKind says what an AnalysisInput names.
type AnalysisInputKind string

const (
	// InputFile is a workspace file the rule read (ReadFile, ParseFile);
	// its Value is "sha256:<hex>" of the content, or "missing".
	InputFile AnalysisInputKind = "file"
	// InputStat is a workspace path the rule checked for (FileExists); its
	// Value is "file", "dir" or "missing".
	InputStat AnalysisInputKind = "stat"
	// InputEnv is a host environment variable (LookupEnv, Getenv); its
	// Value is the variable's value, and Set says whether it was set.
	InputEnv AnalysisInputKind = "env"
	// InputProbe is a memoised host probe (Probe, ProbeByStat,
	// ToolIdentity) named by its key, such as the Python interpreter's
	// identity. Its Value is ProbeDecidedByStat for a probe whose host
	// paths are recorded (InputHostPath), "" otherwise.
	InputProbe AnalysisInputKind = "probe"
	// InputHostPath is a host path (absolute) whose stat, following
	// symbolic links, decided a probe's result (ProbeByStat); its Value
	// is the probe's key.
	InputHostPath AnalysisInputKind = "host path"
)

// ProbeDecidedByStat is the Value of an InputProbe whose result is decided
// by the stats of the InputHostPath entries recorded with it.
const ProbeDecidedByStat = "decided by stat"

// AnalysisInput is one thing a target's analysis read.
type AnalysisInput struct {
	Kind  AnalysisInputKind
	Name  string // workspace-relative path, variable name or probe key
	Value string
	Set   bool // InputEnv only
}

func (in AnalysisInput) String() string {
	switch in.Kind {
	case InputEnv:
		if !in.Set {
			return "env " + in.Name + " (unset)"
		}
		return fmt.Sprintf("env %s=%q", in.Name, in.Value)
	case InputProbe:
		return "probe " + in.Name
	case InputHostPath:
		return "host path " + in.Name + " (probe " + in.Value + ")"
	}
	return fmt.Sprintf("%s %s (%s)", in.Kind, in.Name, in.Value)
}

// AnalysisInputs returns what target l's analysis read, in the order it
// first read each.
func (ag *ActionGraph) AnalysisInputs(l Label) []AnalysisInput {
	return ag.inputs[l]
}

// fileView is what analysis reads workspace files through: the disk or,
// for the base analysis of `pipe affected`, the disk with the base
// revision's content of the changed files in its place. Each path is read
// once per view: analysis sees one snapshot even when a hundred bundles
// read the same uv.lock.
type fileView struct {
	root string
	// base returns the base revision's content of a changed path, or an
	// error wrapping fs.ErrNotExist when the base did not have it. Nil for
	// the head's view.
	base    func(rel string) ([]byte, error)
	changed map[string]bool

	mu    sync.Mutex
	files map[string]*viewFile
	// baseErr is the first failure to read the base revision other than a
	// missing file: the base analysis cannot be trusted after it.
	baseErr error
}

type viewFile struct {
	kind   string // "file", "dir" or "missing"; "" until known
	data   []byte
	read   bool
	err    error // reading failed for another reason than a missing file
	digest string
}

func newFileView(root string) *fileView {
	return &fileView{root: root, files: map[string]*viewFile{}}
}

func (v *fileView) entry(rel string) *viewFile {
	f := v.files[rel]
	if f == nil {
		f = &viewFile{}
		v.files[rel] = f
	}
	return f
}

// stat reports what is at rel: "file", "dir" or "missing".
func (v *fileView) stat(rel string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.entry(rel)
	if f.kind != "" {
		return f.kind
	}
	if v.base != nil && v.changed[rel] {
		v.readBase(rel, f)
		return f.kind
	}
	fi, err := os.Stat(filepath.Join(v.root, filepath.FromSlash(rel)))
	switch {
	case err != nil:
		f.kind = "missing"
	case fi.IsDir():
		f.kind = "dir"
	default:
		f.kind = "file"
	}
	return f.kind
}

// read returns the content of the file at rel.
func (v *fileView) read(rel string) *viewFile {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := v.entry(rel)
	if f.read {
		return f
	}
	if v.base != nil && v.changed[rel] {
		v.readBase(rel, f)
		return f
	}
	f.read = true
	b, err := os.ReadFile(filepath.Join(v.root, filepath.FromSlash(rel)))
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.kind = "missing"
	case errors.As(err, &pe):
		// Named by its workspace path, as the user knows it.
		f.err = &fs.PathError{Op: "read", Path: rel, Err: pe.Err}
	case err != nil:
		f.err = fmt.Errorf("read %s: %w", rel, err)
	default:
		f.kind, f.data = "file", b
		f.digest = sha256Hex(b)
	}
	return f
}

func (v *fileView) readBase(rel string, f *viewFile) {
	f.read = true
	b, err := v.base(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.kind = "missing"
	case err != nil:
		f.kind = "missing"
		f.err = fmt.Errorf("read %s at the base revision: %w", rel, err)
		if v.baseErr == nil {
			v.baseErr = f.err
		}
	default:
		f.kind, f.data = "file", b
		f.digest = sha256Hex(b)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// workspacePath checks that rel names a path inside the workspace and
// cleans it.
func workspacePath(rel string) (string, error) {
	p := path.Clean(rel)
	if rel == "" || path.IsAbs(rel) || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(rel, `\`) {
		return "", fmt.Errorf("%q is not a workspace-relative path: write it relative to the workspace root, with /", rel)
	}
	return p, nil
}

// record adds in to the target's analysis inputs, once per kind and name.
func (c *AnalysisContext) record(in AnalysisInput) {
	k := string(in.Kind) + "\x00" + in.Name
	if c.recorded[k] {
		return
	}
	if c.recorded == nil {
		c.recorded = map[string]bool{}
	}
	c.recorded[k] = true
	c.inputs = append(c.inputs, in)
}

// Context is the context analysis runs under: cancelled when the user
// interrupts pipe. Anything a rule does at analysis that can block must
// honour it.
func (c *AnalysisContext) Context() context.Context { return c.ctx }

// ReadFile returns the content of the workspace file at rel (relative to
// the workspace root, slash-separated) and records it as an input of the
// target's analysis. Every target reading rel in this analysis gets the
// same bytes, which it must not modify. Errors are *fs.PathError naming
// rel; a missing file's wraps fs.ErrNotExist, and is recorded too:
// creating the file may change what the rule does.
func (c *AnalysisContext) ReadFile(rel string) ([]byte, error) {
	p, err := workspacePath(rel)
	if err != nil {
		return nil, err
	}
	f := c.ag.view.read(p)
	switch {
	case f.err != nil:
		c.record(AnalysisInput{Kind: InputFile, Name: p, Value: "error"})
		return nil, f.err
	case f.kind == "missing":
		c.record(AnalysisInput{Kind: InputFile, Name: p, Value: "missing"})
		return nil, &fs.PathError{Op: "read", Path: p, Err: fs.ErrNotExist}
	}
	c.record(AnalysisInput{Kind: InputFile, Name: p, Value: "sha256:" + f.digest})
	return f.data, nil
}

// ParseFile reads rel like ReadFile and returns parse(content). The
// result is computed once per path, content and kind in this command and
// shared between targets (a uv.lock is parsed once, not once per bundle),
// so parse must not depend on anything but its argument and the result
// must not be modified.
func (c *AnalysisContext) ParseFile(rel, kind string, parse func(b []byte) (any, error)) (any, error) {
	b, err := c.ReadFile(rel)
	if err != nil {
		return nil, err
	}
	p, _ := workspacePath(rel)
	digest := c.ag.view.read(p).digest
	return c.tg.WS.memoize("parse\x00"+kind+"\x00"+p+"\x00"+digest, func() (any, error) {
		return parse(b)
	})
}

// FileExists reports whether rel is a regular file in the workspace, and
// records the check as an input of the target's analysis.
func (c *AnalysisContext) FileExists(rel string) bool {
	p, err := workspacePath(rel)
	if err != nil {
		return false
	}
	kind := c.ag.view.stat(p)
	c.record(AnalysisInput{Kind: InputStat, Name: p, Value: kind})
	return kind == "file"
}

// LookupEnv returns the host environment variable name, and records it
// with its value as an input of the target's analysis.
func (c *AnalysisContext) LookupEnv(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	c.record(AnalysisInput{Kind: InputEnv, Name: name, Value: v, Set: ok})
	return v, ok
}

// Getenv is LookupEnv without the distinction between unset and empty.
func (c *AnalysisContext) Getenv(name string) string {
	v, _ := c.LookupEnv(name)
	return v
}

// Probe returns f's result for key, running f once per command with the
// analysis context: facts about the host that many targets need and that
// cost a process to learn, such as an interpreter's identity. Errors are
// shared like results. The probe is recorded by key as an input of the
// target's analysis; its result must reach the action keys that depend on
// it (as a tool identity, say), since the probe's own inputs are not
// recorded.
func (c *AnalysisContext) Probe(key string, f func(ctx context.Context) (any, error)) (any, error) {
	c.record(AnalysisInput{Kind: InputProbe, Name: key})
	return c.tg.WS.memoize("probe\x00"+key, func() (any, error) { return f(c.ctx) })
}

// HostReads collects what a probe's result depends on besides its key, so
// that a later build can tell by stat alone that the probe would answer the
// same (the build snapshot). It is complete or the snapshot lies: every
// file the probe reads or runs, every directory it lists and every path
// whose absence it relies on must be added.
type HostReads struct {
	mu    sync.Mutex
	paths []string
	seen  map[string]bool
	// volatile names something the result depends on that no stat
	// decides; "" while there is none.
	volatile string
}

// Stat records that the stat of the host path p (absolute), following
// symbolic links, decided the result: a file read or run, a directory
// listed (its modification time changes with its entries), a path found
// missing. A nil HostReads records nothing. Relative paths are made absolute against the working
// directory, as the probe resolved them.
func (r *HostReads) Stat(p string) {
	if r == nil || p == "" {
		return
	}
	if !filepath.IsAbs(p) {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
	}
	p = filepath.Clean(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[p] {
		return
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[p] = true
	r.paths = append(r.paths, p)
}

// Volatile records that the result depends on something no stat decides
// (a process that failed and would run again, the C library's version
// asked of getconf): the probe keeps the build from recording a snapshot,
// as Probe does. why is for the message.
func (r *HostReads) Volatile(why string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.volatile == "" {
		r.volatile = why
	}
}

// probeByStat is the memoised result of a ProbeByStat.
type probeByStat struct {
	v     any
	reads *HostReads
}

// ProbeByStat is Probe for a probe whose result is decided by the stats of
// host paths: f adds each path that decided its result to reads (and the
// environment it depends on is read through LookupEnv before, so it is
// recorded too). The paths are recorded as inputs of the target's analysis,
// which lets a build snapshot revalidate the probe by stat. A probe that
// fails, or that calls reads.Volatile, is recorded as Probe records it.
func (c *AnalysisContext) ProbeByStat(key string, f func(ctx context.Context, reads *HostReads) (any, error)) (any, error) {
	m, err := c.tg.WS.memoize("probe by stat\x00"+key, func() (any, error) {
		reads := &HostReads{}
		v, err := f(c.ctx, reads)
		if err != nil {
			return nil, err
		}
		return &probeByStat{v: v, reads: reads}, nil
	})
	if err != nil {
		c.record(AnalysisInput{Kind: InputProbe, Name: key})
		return nil, err
	}
	pb := m.(*probeByStat)
	if pb.reads.volatile != "" {
		c.record(AnalysisInput{Kind: InputProbe, Name: key})
		return pb.v, nil
	}
	c.record(AnalysisInput{Kind: InputProbe, Name: key, Value: ProbeDecidedByStat})
	for _, p := range pb.reads.paths {
		c.record(AnalysisInput{Kind: InputHostPath, Name: p, Value: key})
	}
	return pb.v, nil
}

// ToolIdentity names the host program at path by path, size and
// modification time (Workspace.ToolIdentity), recorded as a probe.
func (c *AnalysisContext) ToolIdentity(path string) string {
	c.record(AnalysisInput{Kind: InputProbe, Name: "tool " + path})
	return c.tg.WS.ToolIdentity(path)
}
