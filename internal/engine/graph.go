package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dominikbraun/graph"
)

// Loader evaluates one package's BUILD.star. It must be safe for
// concurrent use, and stop evaluating when ctx is cancelled.
type Loader interface {
	LoadPackage(ctx context.Context, pkg string) (*Package, error)
}

// TargetGraph is the loaded part of the workspace: the targets the patterns
// selected and everything they depend on.
type TargetGraph struct {
	WS       *Workspace
	Packages map[string]*Package
	Targets  map[Label]*Target
	// Roots are the targets the patterns selected, sorted.
	Roots []Label
	// Resolved maps each (target, dep) reference to what it names.
	Resolved map[Label]Resolved
	// Order lists every target with each target after its dependencies.
	Order []Label
	// Walked lists the directories read to find packages, and Checked
	// the BUILD.star paths looked for, present or not: the target graph
	// stays the same while their stats and the packages' own inputs do.
	Walked, Checked []string
	g               graph.Graph[string, string]
}

// Resolved is what a label in an attribute names: a target, one output
// file of a target, or a source file.
type Resolved struct {
	Target *Target // nil for a source file
	Output string  // for a label naming one output of Target
	File   string  // workspace-relative path of a source file
}

// loadSet loads packages in parallel, each once.
type loadSet struct {
	loader Loader
	mu     sync.Mutex
	pkgs   map[string]*pkgLoad
}

type pkgLoad struct {
	done chan struct{}
	pkg  *Package
	err  error
}

func (s *loadSet) get(ctx context.Context, pkg string) (*Package, error) {
	s.mu.Lock()
	pl, ok := s.pkgs[pkg]
	if !ok {
		pl = &pkgLoad{done: make(chan struct{})}
		s.pkgs[pkg] = pl
		s.mu.Unlock()
		pl.pkg, pl.err = s.loader.LoadPackage(ctx, pkg)
		close(pl.done)
		return pl.pkg, pl.err
	}
	s.mu.Unlock()
	<-pl.done
	return pl.pkg, pl.err
}

// loadAll loads pkgs concurrently and returns the errors, in package order.
// A fixed pool of workers evaluates them: each worker's stack grows once to
// the depth the Starlark parser needs, instead of once per package. When
// ctx is cancelled the workers take no more packages, and the only error
// is ctx's.
func (s *loadSet) loadAll(ctx context.Context, pkgs []string) []error {
	errs := make([]error, len(pkgs))
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(len(pkgs), 2*runtime.GOMAXPROCS(0))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pkgs) || ctx.Err() != nil {
					return
				}
				_, errs[i] = s.get(ctx, pkgs[i])
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return []error{fmt.Errorf("loading interrupted: %w", err)}
	}
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// ExpandPatterns lists the packages the patterns need loaded.
func ExpandPatterns(ws *Workspace, patterns []Pattern) ([]string, error) {
	pkgs, _, _, err := expandPatterns(ws, patterns)
	return pkgs, err
}

// expandPatterns is ExpandPatterns that also returns the directories read
// and the BUILD.star paths checked.
func expandPatterns(ws *Workspace, patterns []Pattern) (pkgs, walked, checked []string, err error) {
	seen := map[string]bool{}
	for _, p := range patterns {
		var list []string
		if p.Recursive {
			found, read, err := findPackages(ws.Root, p.Pkg)
			if err != nil {
				return nil, nil, nil, err
			}
			list = found
			walked = append(walked, read...)
		} else {
			checked = append(checked, path.Join(p.Pkg, BuildFile))
			if !PackageExists(ws.Root, p.Pkg) {
				return nil, nil, nil, Usagef("%s: no package //%s (there is no %s in %s)", p, p.Pkg, BuildFile, displayDir(p.Pkg))
			}
			list = []string{p.Pkg}
		}
		for _, pkg := range list {
			if !seen[pkg] {
				seen[pkg] = true
				pkgs = append(pkgs, pkg)
			}
		}
	}
	return pkgs, walked, checked, nil
}

func displayDir(pkg string) string {
	if pkg == "" {
		return "the workspace root"
	}
	return pkg + "/"
}

// LoadTargets loads the packages the patterns select, selects the targets,
// follows their dependencies across packages and builds the target graph.
// Cancelling ctx stops the loading with ctx's error.
func LoadTargets(ctx context.Context, ws *Workspace, loader Loader, patterns []Pattern) (*TargetGraph, error) {
	pkgs, walked, checked, err := expandPatterns(ws, patterns)
	if err != nil {
		return nil, err
	}
	ls := &loadSet{loader: loader, pkgs: map[string]*pkgLoad{}}
	if errs := ls.loadAll(ctx, pkgs); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	tg := &TargetGraph{
		WS:       ws,
		Packages: map[string]*Package{},
		Targets:  map[Label]*Target{},
		Resolved: map[Label]Resolved{},
		Walked:   walked,
		Checked:  checked,
	}
	addPkg := func(p *Package) {
		if _, ok := tg.Packages[p.Path]; ok {
			return
		}
		tg.Packages[p.Path] = p
		for _, t := range p.Targets {
			tg.Targets[t.Label] = t
		}
	}
	for _, p := range pkgs {
		pkg, _ := ls.get(ctx, p)
		addPkg(pkg)
	}
	// Select roots.
	rootSet := map[Label]bool{}
	for _, pat := range patterns {
		if !pat.Recursive && !pat.All {
			pkg := tg.Packages[pat.Pkg]
			if _, ok := pkg.Targets[pat.Name]; !ok {
				return nil, Usagef("%s: no target %q in package //%s (%s)%s", pat, pat.Name, pat.Pkg, pkg.File, suggest(pat.Name, pkg.Order))
			}
			rootSet[Label{pat.Pkg, pat.Name}] = true
			continue
		}
		for _, p := range pkgs {
			pkg := tg.Packages[p]
			for _, name := range pkg.Order {
				if l := (Label{p, name}); pat.Matches(l) {
					rootSet[l] = true
				}
			}
		}
	}
	for l := range rootSet {
		tg.Roots = append(tg.Roots, l)
	}
	sortLabels(tg.Roots)

	// Follow dependencies breadth-first, loading each wave of newly
	// referenced packages in parallel.
	var errs []error
	visited := map[Label]bool{}
	queue := append([]Label(nil), tg.Roots...)
	for _, l := range queue {
		visited[l] = true
	}
	for len(queue) > 0 {
		var need []string
		needSeen := map[string]bool{}
		for _, l := range queue {
			for _, d := range tg.Targets[l].Deps() {
				if _, ok := tg.Packages[d.Label.Pkg]; !ok && !needSeen[d.Label.Pkg] {
					needSeen[d.Label.Pkg] = true
					tg.Checked = append(tg.Checked, path.Join(d.Label.Pkg, BuildFile))
					if PackageExists(ws.Root, d.Label.Pkg) {
						need = append(need, d.Label.Pkg)
					}
				}
			}
		}
		sort.Strings(need)
		if lerrs := ls.loadAll(ctx, need); len(lerrs) > 0 {
			return nil, joinErrors(lerrs)
		}
		for _, p := range need {
			pkg, _ := ls.get(ctx, p)
			addPkg(pkg)
		}
		var next []Label
		for _, l := range queue {
			t := tg.Targets[l]
			for _, d := range t.Deps() {
				r, err := tg.resolve(t, d)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				tg.Resolved[refKey(l, d.Label)] = r
				if r.Target != nil && !visited[r.Target.Label] {
					visited[r.Target.Label] = true
					next = append(next, r.Target.Label)
				}
			}
		}
		queue = next
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	if err := tg.buildGraph(visited); err != nil {
		return nil, err
	}
	return tg, nil
}

// refKey packs a (referrer, referenced) pair into one map key. The
// referrer's label is folded into Pkg with a separator no label can hold.
func refKey(from, to Label) Label {
	return Label{Pkg: from.String() + "\x00" + to.Pkg, Name: to.Name}
}

// Resolve returns what dep, written in an attribute of from, names.
func (tg *TargetGraph) Resolve(from, dep Label) Resolved {
	return tg.Resolved[refKey(from, dep)]
}

func (tg *TargetGraph) resolve(t *Target, d Dep) (Resolved, error) {
	l := d.Label
	pkg, ok := tg.Packages[l.Pkg]
	if ok {
		if dt, ok := pkg.Targets[l.Name]; ok {
			return Resolved{Target: dt}, nil
		}
		// A label may name one declared output of a target, as in Bazel.
		for _, name := range pkg.Order {
			dt := pkg.Targets[name]
			for _, out := range dt.OutputNames() {
				if out == l.Name {
					return Resolved{Target: dt, Output: out}, nil
				}
			}
		}
	}
	file := path.Join(l.Pkg, l.Name)
	if ok && pkg.Globbed[l.Name] {
		return Resolved{File: file}, nil
	}
	if fi, err := os.Stat(tg.WS.Abs(file)); err == nil {
		if fi.IsDir() {
			return Resolved{}, Errorf(t.Pos, "%s: attribute %s: %s is a directory; name files, or use glob([\"%s/**\"])", t.Label, d.Attr, l, l.Name)
		}
		if !ok && !PackageExists(tg.WS.Root, l.Pkg) {
			return Resolved{}, Errorf(t.Pos, "%s: attribute %s: %s: no package //%s; a file label must name the package that owns the file", t.Label, d.Attr, l, l.Pkg)
		}
		return Resolved{File: file}, nil
	}
	if !ok {
		return Resolved{}, Errorf(t.Pos, "%s: attribute %s refers to %s, but there is no package //%s (no %s in %s)", t.Label, d.Attr, l, l.Pkg, BuildFile, displayDir(l.Pkg))
	}
	return Resolved{}, Errorf(t.Pos, "%s: attribute %s refers to %s, but package //%s has no target or file %q%s", t.Label, d.Attr, l, l.Pkg, l.Name, suggest(l.Name, pkg.Order))
}

func suggest(name string, candidates []string) string {
	if s := DidYouMean(name, candidates); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// OutputNames lists the file names the target declares in output attributes.
func (t *Target) OutputNames() []string {
	var outs []string
	for _, a := range t.Rule.Attrs {
		switch v := t.Attrs[a.Name].(type) {
		case string:
			if a.Type == AttrOutput && v != "" {
				outs = append(outs, v)
			}
		case []string:
			if a.Type == AttrOutputList {
				outs = append(outs, v...)
			}
		}
	}
	return outs
}

func (tg *TargetGraph) buildGraph(labels map[Label]bool) error {
	g := graph.New(graph.StringHash, graph.Directed())
	sorted := make([]Label, 0, len(labels))
	for l := range labels {
		sorted = append(sorted, l)
	}
	sortLabels(sorted)
	for _, l := range sorted {
		_ = g.AddVertex(l.String())
	}
	for _, l := range sorted {
		t := tg.Targets[l]
		for _, d := range t.Deps() {
			r := tg.Resolve(l, d.Label)
			if r.Target == nil {
				continue
			}
			if r.Target == t {
				return Errorf(t.Pos, "dependency cycle: %s depends on itself (attribute %s)", l, d.Attr)
			}
			if err := g.AddEdge(l.String(), r.Target.Label.String()); err != nil && !errors.Is(err, graph.ErrEdgeAlreadyExists) {
				return fmt.Errorf("target graph: %w", err)
			}
		}
	}
	order, ok := postorder(g, sorted)
	if !ok {
		return tg.cycleError(g)
	}
	tg.Order = order
	tg.g = g
	return nil
}

// postorder lists the vertices with every target after its dependencies,
// visiting in label order so the result is deterministic. It reports false
// on a cycle. (The library's topological sorts are quadratic on graphs of
// thousands of targets; a depth-first walk over one adjacency map is not.)
func postorder(g graph.Graph[string, string], sorted []Label) ([]Label, bool) {
	adj, err := g.AdjacencyMap()
	if err != nil {
		return nil, false
	}
	state := make(map[string]uint8, len(sorted)) // 1 visiting, 2 done
	order := make([]Label, 0, len(sorted))
	var visit func(v string) bool
	visit = func(v string) bool {
		switch state[v] {
		case 1:
			return false
		case 2:
			return true
		}
		state[v] = 1
		next := make([]string, 0, len(adj[v]))
		for w := range adj[v] {
			next = append(next, w)
		}
		sort.Strings(next)
		for _, w := range next {
			if !visit(w) {
				return false
			}
		}
		state[v] = 2
		order = append(order, MustParseLabel(v))
		return true
	}
	for _, l := range sorted {
		if !visit(l.String()) {
			return nil, false
		}
	}
	return order, true
}

// cycleError finds one cycle and prints it as a chain of labels.
func (tg *TargetGraph) cycleError(g graph.Graph[string, string]) error {
	adj, err := g.AdjacencyMap()
	if err != nil {
		return err
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var cycle []string
	var visit func(v string) bool
	visit = func(v string) bool {
		color[v] = grey
		stack = append(stack, v)
		var next []string
		for w := range adj[v] {
			next = append(next, w)
		}
		sort.Strings(next)
		for _, w := range next {
			switch color[w] {
			case grey:
				for i := len(stack) - 1; i >= 0; i-- {
					if stack[i] == w {
						cycle = append(append([]string(nil), stack[i:]...), w)
						return true
					}
				}
			case white:
				if visit(w) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[v] = black
		return false
	}
	var verts []string
	for v := range adj {
		verts = append(verts, v)
	}
	sort.Strings(verts)
	for _, v := range verts {
		if color[v] == white && visit(v) {
			break
		}
	}
	first := tg.Targets[MustParseLabel(cycle[0])]
	return Errorf(first.Pos, "dependency cycle:\n    %s\n  remove one of these dependencies to break it", strings.Join(cycle, "\n -> "))
}

// Deps returns the targets t depends on directly, sorted.
func (tg *TargetGraph) DirectDeps(l Label) []Label {
	t := tg.Targets[l]
	if t == nil {
		return nil
	}
	seen := map[Label]bool{}
	var out []Label
	for _, d := range t.Deps() {
		r := tg.Resolve(l, d.Label)
		if r.Target != nil && !seen[r.Target.Label] {
			seen[r.Target.Label] = true
			out = append(out, r.Target.Label)
		}
	}
	sortLabels(out)
	return out
}

func sortLabels(ls []Label) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].Less(ls[j]) })
}

// SortLabels sorts labels by package, then name.
func SortLabels(ls []Label) { sortLabels(ls) }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return MultiError(errs)
}
