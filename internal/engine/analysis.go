package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/dominikbraun/graph"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/sandbox"
)

// File is an input or output of actions: a source file in the workspace, or
// a file (or directory) an action generates.
type File struct {
	Path      string  // workspace-relative, slash-separated
	Dir       bool    // a generated directory (tree artifact)
	Generator *Action // nil for source files
	Owner     Label
}

// IsSource reports whether f is a source file.
func (f *File) IsSource() bool { return f.Generator == nil }

func (f *File) String() string { return f.Path }

// ExecContext is what a running action sees.
type ExecContext struct {
	// Dir is the action's scratch directory. Commands run in it; inputs are
	// staged into it at their workspace paths when the action is sandboxed.
	Dir   string
	ws    *Workspace
	a     *Action
	cache *cache.Cache
	// Stdout and Stderr collect the action's output for the user.
	Stdout, Stderr *limitedBuffer
	progress       func(msg string)
	// sandbox, when set, runs the programs an in-process step starts in
	// the namespace sandbox (see confine.go).
	sandbox *sandbox.Runner
	// mounted are the inputs its programs saw bound into Dir, whose
	// mount points a kept scratch directory holds (confine.go).
	mounted []*File
}

// Progress reports how far a long step is ("12/43 wheels"); the live
// progress line shows it next to the action's label.
func (ec *ExecContext) Progress(msg string) {
	if ec.progress != nil {
		ec.progress(msg)
	}
}

// Input returns the absolute path to read input f from.
func (ec *ExecContext) Input(f *File) string {
	if ec.a.Sandbox {
		return joinSlash(ec.Dir, f.Path)
	}
	return ec.ws.Abs(f.Path)
}

// Output returns the absolute path the action must write output f to.
func (ec *ExecContext) Output(f *File) string { return joinSlash(ec.Dir, f.Path) }

// Workspace is the workspace the action runs in.
func (ec *ExecContext) Workspace() *Workspace { return ec.ws }

// Cache is the local cache, for steps that keep downloads in the CAS.
func (ec *ExecContext) Cache() *cache.Cache { return ec.cache }

// Logf adds a line to the action's output.
func (ec *ExecContext) Logf(format string, args ...any) {
	fmt.Fprintf(ec.Stderr, format+"\n", args...)
}

// Action is one unit of work with declared inputs and outputs.
type Action struct {
	Owner    Label
	Mnemonic string // short kind, e.g. Genrule, PyDeps
	// Description is shown in progress output.
	Description string
	Inputs      []*File
	Outputs     []*File
	// Argv, when set, is a command run in the scratch directory with Env
	// as its whole environment. Otherwise Run is called in-process.
	Argv []string
	Env  map[string]string
	Run  func(ctx context.Context, ec *ExecContext) error
	// Identity names what the action does beyond its inputs and command: an
	// in-process step's name and parameters. Part of the key.
	Identity string
	// Tools are identities of host tools the action uses (interpreter path
	// and version, …). Part of the key.
	Tools []string
	// Sandbox stages the inputs into the scratch directory, so the action
	// can read nothing it did not declare.
	Sandbox bool
	// Network keeps the host's network for a sandboxed command, which
	// otherwise has only loopback: tags = ["requires-network"].
	Network bool
	// Test marks an action that runs tests: pipe test runs it and pipe
	// build does not. A *TestFailedError from it is a failed test, whose
	// outputs are put in place but never cached.
	Test bool
	// RuleVersion is copied from the owning rule.
	RuleVersion string
	RuleKind    string

	id   int
	deps []*Action
}

// ID is the action's index in the action graph.
func (a *Action) ID() int { return a.id }

// AnalysisContext is handed to a rule's Analyze function. A rule reads
// nothing but its attributes, its dependencies' results and what the
// methods of reads.go give it (files, environment, host probes), so that
// every analysis input is recorded.
type AnalysisContext struct {
	Target *Target
	tg     *TargetGraph
	ag     *ActionGraph
	// Provided is what the target gives to targets that depend on it.
	provided []*File
	info     map[string]any
	runnable *Runnable

	ctx      context.Context
	inputs   []AnalysisInput
	recorded map[string]bool // kind and name of each input, once
}

// Label is the target's label.
func (c *AnalysisContext) Label() Label { return c.Target.Label }

// Workspace is the workspace being built: its root and settings. Read its
// files through ReadFile and FileExists, which record the reads.
func (c *AnalysisContext) Workspace() *Workspace { return c.tg.WS }

// String returns a string attribute.
func (c *AnalysisContext) String(name string) string { s, _ := c.Target.Attrs[name].(string); return s }

// Strings returns a list-of-strings (or output list) attribute.
func (c *AnalysisContext) Strings(name string) []string {
	s, _ := c.Target.Attrs[name].([]string)
	return s
}

// Bool returns a bool attribute.
func (c *AnalysisContext) Bool(name string) bool { b, _ := c.Target.Attrs[name].(bool); return b }

// Int returns an int attribute.
func (c *AnalysisContext) Int(name string) int64 { i, _ := c.Target.Attrs[name].(int64); return i }

// Dict returns a string-dict attribute.
func (c *AnalysisContext) Dict(name string) map[string]string {
	d, _ := c.Target.Attrs[name].(map[string]string)
	return d
}

// Labels returns the labels of a label or label-list attribute.
func (c *AnalysisContext) Labels(name string) []Label {
	switch v := c.Target.Attrs[name].(type) {
	case Label:
		if v == (Label{}) {
			return nil
		}
		return []Label{v}
	case []Label:
		return v
	}
	return nil
}

// Files returns the files that the labels of attribute name provide, in
// attribute order, without duplicates.
func (c *AnalysisContext) Files(name string) []*File {
	var out []*File
	seen := map[string]bool{}
	for _, l := range c.Labels(name) {
		for _, f := range c.FilesOf(l) {
			if !seen[f.Path] {
				seen[f.Path] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// FilesOf returns the files label l (written in this target) provides.
func (c *AnalysisContext) FilesOf(l Label) []*File {
	r := c.tg.Resolve(c.Target.Label, l)
	switch {
	case r.Target != nil:
		res := c.ag.results[r.Target.Label]
		if r.Output != "" {
			for _, f := range res.files {
				if path.Base(f.Path) == r.Output || strings.HasSuffix(f.Path, "/"+r.Output) {
					return []*File{f}
				}
			}
			return nil
		}
		return res.files
	case r.File != "":
		return []*File{c.ag.sourceFile(r.File, Label{l.Pkg, l.Name})}
	}
	return nil
}

// RuleOf returns the rule of the target that label l names, or nil for a file.
func (c *AnalysisContext) RuleOf(l Label) *Rule {
	if r := c.tg.Resolve(c.Target.Label, l); r.Target != nil {
		return r.Target.Rule
	}
	return nil
}

// OutDir is the directory the target's outputs go to: dist/<pkg>/<name>.
func (c *AnalysisContext) OutDir() string {
	return path.Join("dist", c.Target.Label.Pkg, c.Target.Label.Name)
}

// Declare declares an output file at rel inside the target's output dir.
func (c *AnalysisContext) Declare(rel string) *File {
	return &File{Path: path.Join(c.OutDir(), rel), Owner: c.Target.Label}
}

// DeclareDir declares an output directory inside the target's output dir.
func (c *AnalysisContext) DeclareDir(rel string) *File {
	return &File{Path: path.Join(c.OutDir(), rel), Dir: true, Owner: c.Target.Label}
}

// DeclareAt declares an output at a workspace-relative path outside dist/,
// such as a generated source file the rule owns.
func (c *AnalysisContext) DeclareAt(wsPath string) *File {
	return &File{Path: wsPath, Owner: c.Target.Label}
}

// SourceFile returns the File for a source file at a workspace-relative path.
func (c *AnalysisContext) SourceFile(wsPath string) *File {
	return c.ag.sourceFile(wsPath, Label{})
}

// AddAction adds a to the build. Its outputs' Generator is set to a.
func (c *AnalysisContext) AddAction(a *Action) {
	a.Owner = c.Target.Label
	a.RuleKind = c.Target.Rule.Name
	a.RuleVersion = c.Target.Rule.Version
	a.Network = a.Network || slices.Contains(c.Target.Tags, "requires-network")
	for _, o := range a.Outputs {
		o.Generator = a
	}
	c.ag.Actions = append(c.ag.Actions, a)
}

// Runnable is how `pipe run` starts a target in the foreground.
type Runnable struct {
	Argv []string
	// Env is added to the user's environment: a program run by hand sees
	// the user's shell, unlike an action.
	Env map[string]string
	// Dir is the workspace-relative working directory ("" for the root).
	Dir string
	// Banner, when set, is printed to stderr just before the program
	// starts: what a user needs to reach it, such as the URL it serves.
	// pipe run prints it only when no arguments follow --, which could
	// make it wrong.
	Banner string
	// Prepare, when set, runs after the build and just before the program
	// starts: it readies what the program needs outside the workspace (a
	// Python environment in the shared cache) and returns the program to
	// run, whose argv and environment depend on where that lives. It says
	// what it runs on through info (pipe run --verbose prints it).
	Prepare func(ctx context.Context, c *cache.Cache, info func(string)) (*Runnable, error)
}

// SetRunnable makes the target runnable with `pipe run`.
func (c *AnalysisContext) SetRunnable(r *Runnable) { c.runnable = r }

// Provide sets the files the target gives to targets that depend on it.
func (c *AnalysisContext) Provide(files ...*File) { c.provided = append(c.provided, files...) }

// Errorf reports an error at the target's declaration.
func (c *AnalysisContext) Errorf(format string, args ...any) error {
	return Errorf(c.Target.Pos, "%s: %s", c.Target.Label, fmt.Sprintf(format, args...))
}

type targetResult struct {
	files    []*File
	info     map[string]any
	runnable *Runnable
}

// ActionGraph is every action of the analysed targets.
type ActionGraph struct {
	Actions []*Action
	// Outputs maps each target to the files it provides.
	results map[Label]targetResult
	sources map[string]*File
	byPath  map[string]*Action
	// inputs are what each target's analysis read (AnalysisInputs).
	inputs map[Label][]AnalysisInput
	// view is what analysis reads files through; nil once it is done.
	view *fileView

	g graph.Graph[int, int]

	ancestorsOnce sync.Once
	ancestors     map[string]bool
}

func (ag *ActionGraph) sourceFile(p string, owner Label) *File {
	if f, ok := ag.sources[p]; ok {
		return f
	}
	f := &File{Path: p, Owner: owner}
	ag.sources[p] = f
	return f
}

// Runnable returns how to run target l, or nil if it is not runnable.
func (ag *ActionGraph) Runnable(l Label) *Runnable { return ag.results[l].runnable }

// TargetFiles returns the files target l provides.
func (ag *ActionGraph) TargetFiles(l Label) []*File { return ag.results[l].files }

func newActionGraph(view *fileView) *ActionGraph {
	return &ActionGraph{
		results: map[Label]targetResult{},
		sources: map[string]*File{},
		byPath:  map[string]*Action{},
		inputs:  map[Label][]AnalysisInput{},
		view:    view,
	}
}

// Analyze runs every target's rule, dependencies first, and links the
// declared actions into a graph. Targets are analysed one at a time in
// tg.Order, so the action list comes out in the same order every run; ctx
// is checked between targets and handed to the rules (Context, Probe), so
// an interrupt stops analysis with ctx's error.
func Analyze(ctx context.Context, tg *TargetGraph) (*ActionGraph, error) {
	ag := newActionGraph(newFileView(tg.WS.Root))
	var errs []error
	for i, l := range tg.Order {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("analysis interrupted after %d of %d targets: %w", i, len(tg.Order), err)
		}
		if err := ag.analyzeTarget(ctx, tg, tg.Targets[l]); err != nil {
			errs = append(errs, err)
		}
	}
	// A rule whose probe was killed by the interrupt fails with the
	// probe's error; the interrupt is the news.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("analysis interrupted: %w", err)
	}
	ag.view = nil
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return ag, ag.link()
}

// analyzeTarget runs t's rule and records its results. A target whose rule
// fails leaves no actions behind.
func (ag *ActionGraph) analyzeTarget(ctx context.Context, tg *TargetGraph, t *Target) error {
	c := &AnalysisContext{Target: t, tg: tg, ag: ag, ctx: ctx}
	n := len(ag.Actions)
	if t.Rule.Analyze != nil {
		if err := t.Rule.Analyze(c); err != nil {
			ag.Actions = ag.Actions[:n]
			return err
		}
	}
	ag.results[t.Label] = targetResult{files: c.provided, info: c.info, runnable: c.runnable}
	if len(c.inputs) > 0 {
		ag.inputs[t.Label] = c.inputs
	}
	return nil
}

// link numbers the actions, checks that no two write the same path, and
// records each action's producers.
func (ag *ActionGraph) link() error {
	var errs []string
	for i, a := range ag.Actions {
		a.id = i
		for _, o := range a.Outputs {
			if prev, dup := ag.byPath[o.Path]; dup {
				errs = append(errs, fmt.Sprintf("%s and %s both write %s; give one of them another output name", prev.Owner, a.Owner, o.Path))
				continue
			}
			ag.byPath[o.Path] = a
		}
	}
	// An output inside another action's output directory would be
	// clobbered when that directory is restored.
	var dirs []string
	for p, a := range ag.byPath {
		for _, o := range a.Outputs {
			if o.Path == p && o.Dir {
				dirs = append(dirs, p)
			}
		}
	}
	for _, d := range dirs {
		for p, a := range ag.byPath {
			if strings.HasPrefix(p, d+"/") {
				errs = append(errs, fmt.Sprintf("%s writes %s inside %s, the output directory of %s", a.Owner, p, d, ag.byPath[d].Owner))
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("conflicting outputs:\n  %s", strings.Join(errs, "\n  "))
	}
	// The action graph: an edge from each action to every action that
	// produces one of its inputs.
	g := graph.New(graph.IntHash, graph.Directed())
	for _, a := range ag.Actions {
		_ = g.AddVertex(a.id)
	}
	for _, a := range ag.Actions {
		for _, in := range a.Inputs {
			if p := in.Generator; p != nil {
				if err := g.AddEdge(a.id, p.id); err != nil && !errors.Is(err, graph.ErrEdgeAlreadyExists) {
					return fmt.Errorf("action graph: %w", err)
				}
			}
		}
	}
	adj, err := g.AdjacencyMap()
	if err != nil {
		return fmt.Errorf("action graph: %w", err)
	}
	// The scheduler walks deps once per action: keep them as a slice.
	for _, a := range ag.Actions {
		for id := range adj[a.id] {
			a.deps = append(a.deps, ag.Actions[id])
		}
		sort.Slice(a.deps, func(i, j int) bool { return a.deps[i].id < a.deps[j].id })
	}
	ag.g = g
	return nil
}

// Deps returns the actions that produce a's inputs.
func (a *Action) Deps() []*Action { return a.deps }

// declaredKind reports whether p is a declared output, or a directory
// holding declared outputs.
func (ag *ActionGraph) declaredKind(p string) (output, ancestor bool) {
	ag.ancestorsOnce.Do(func() {
		ag.ancestors = map[string]bool{}
		for q := range ag.byPath {
			for d := path.Dir(q); d != "." && d != "/" && !ag.ancestors[d]; d = path.Dir(d) {
				ag.ancestors[d] = true
			}
		}
	})
	return ag.byPath[p] != nil, ag.ancestors[p]
}

// Producer returns the action that writes path, if any.
func (ag *ActionGraph) Producer(p string) *Action { return ag.byPath[p] }

// Closure returns the actions needed to produce the files of the given
// targets, in dependency order.
func (ag *ActionGraph) Closure(targets []Label) []*Action {
	seen := make([]bool, len(ag.Actions))
	var order []*Action
	var visit func(a *Action)
	visit = func(a *Action) {
		if seen[a.id] {
			return
		}
		seen[a.id] = true
		for _, d := range a.deps {
			visit(d)
		}
		order = append(order, a)
	}
	for _, l := range targets {
		for _, f := range ag.results[l].files {
			if f.Generator != nil {
				visit(f.Generator)
			}
		}
	}
	// Actions of the selected targets whose outputs nothing provides still run.
	want := map[Label]bool{}
	for _, l := range targets {
		want[l] = true
	}
	for _, a := range ag.Actions {
		if want[a.Owner] {
			visit(a)
		}
	}
	return order
}

func joinSlash(dir, rel string) string {
	return dir + "/" + rel
}
