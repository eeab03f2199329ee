// Package dag walks a dependency graph: each vertex is visited once every
// vertex it depends on was visited successfully, independent vertices
// concurrently. pipe deploys stacks with it (a stack after the stacks it
// depends on); the graph itself is a dominikbraun/graph Graph.
//
// Edges point from a vertex to the vertices it depends on, as in pipe's
// action graph: an edge a → b means a waits for b.
package dag

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/dominikbraun/graph"
)

// Options tune a walk.
type Options[K comparable] struct {
	// Concurrency bounds the visits running at once; 0 means no bound.
	Concurrency int
	// KeepGoing keeps starting vertices after a visit failed, except those
	// that depend on the failed one. Without it the first failure stops
	// the walk: visits already running finish, nothing new starts.
	KeepGoing bool
	// Skipped, when set, is told of each vertex that is not visited and
	// why: a *DependencyError, ErrStopped, or the context's error. It is
	// called from the goroutine that decided the skip, never concurrently
	// with itself.
	Skipped func(v K, reason error)
	// Less, when set, orders the vertices that are ready at the same time
	// (the first ones to start, and those waiting for a free slot), so a
	// walk with bounded concurrency starts them in a stable order.
	Less func(a, b K) bool
}

// ErrStopped is why a vertex was not visited after an earlier visit failed
// without Options.KeepGoing.
var ErrStopped = errors.New("not started: an earlier failure stopped the walk")

// DependencyError is why a vertex was not visited: Dep, a vertex it
// depends on, failed or was not visited itself.
type DependencyError[K comparable] struct {
	Dep K
}

func (e *DependencyError[K]) Error() string {
	return fmt.Sprintf("its dependency %v did not succeed", e.Dep)
}

// Walk visits every vertex of g, each after all the vertices it has edges
// to returned nil from visit. A vertex whose dependency failed or was
// skipped is skipped too, as is every vertex not yet started when ctx is
// cancelled. visit gets ctx; it should return soon after ctx is done.
//
// Walk returns ctx's error when the context was cancelled before the walk
// ended, otherwise the visits' errors joined (nil when every visit
// succeeded). A cycle is an error before anything is visited.
func Walk[K comparable, T any](ctx context.Context, g graph.Graph[K, T], opt Options[K], visit func(ctx context.Context, v K) error) error {
	adj, err := g.AdjacencyMap()
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	vertices := make([]K, 0, len(adj))
	for v := range adj {
		vertices = append(vertices, v)
	}
	sortBy(vertices, opt.Less)
	deps := func(v K) []K {
		out := make([]K, 0, len(adj[v]))
		for d := range adj[v] {
			out = append(out, d)
		}
		sortBy(out, opt.Less)
		return out
	}
	return WalkVertices(ctx, vertices, deps, opt, visit)
}

// WalkVertices is Walk for a caller that keeps its own adjacency, such as
// the executor, whose actions hold their dependencies already: deps(v)
// lists what v depends on, each among vertices. Vertices that are ready
// together start in the order of vertices (or Options.Less).
func WalkVertices[K comparable](ctx context.Context, vertices []K, deps func(K) []K, opt Options[K], visit func(ctx context.Context, v K) error) error {
	n := len(vertices)
	index := make(map[K]int, n)
	for i, v := range vertices {
		if _, dup := index[v]; dup {
			return fmt.Errorf("walk: vertex %v listed twice", v)
		}
		index[v] = i
	}
	w := &walker[K]{
		ctx:        ctx,
		opt:        opt,
		visit:      visit,
		vertices:   vertices,
		dependents: make([][]int, n),
		pending:    make([]int, n),
		blocked:    make([]int, n),
	}
	var roots []int
	for i, v := range vertices {
		w.blocked[i] = -1
		ds := deps(v)
		for _, d := range ds {
			j, ok := index[d]
			if !ok {
				return fmt.Errorf("walk: %v depends on %v, which is not a vertex", v, d)
			}
			w.dependents[j] = append(w.dependents[j], i)
		}
		w.pending[i] = len(ds)
		if len(ds) == 0 {
			roots = append(roots, i)
		}
	}
	if err := checkAcyclic(vertices, w.pending, w.dependents, roots); err != nil {
		return err
	}

	watcherDone := make(chan struct{})
	stopWatcher := context.AfterFunc(ctx, func() {
		defer close(watcherDone)
		w.mu.Lock()
		queued := w.queue
		w.queue = nil
		for _, i := range queued {
			w.skip(i, ctx.Err())
		}
		w.mu.Unlock()
		w.report()
	})

	w.mu.Lock()
	for _, i := range roots {
		w.ready(i)
	}
	w.mu.Unlock()
	w.report()
	w.wg.Wait()
	if !stopWatcher() {
		<-watcherDone
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(w.errs...)
}

func sortBy[K any](vs []K, less func(a, b K) bool) {
	if less != nil {
		sort.SliceStable(vs, func(i, j int) bool { return less(vs[i], vs[j]) })
	}
}

// walker holds a walk's state; vertices are numbered by their position in
// vertices, so the bookkeeping is slices, cheap for thousands of actions.
type walker[K comparable] struct {
	ctx        context.Context
	opt        Options[K]
	visit      func(context.Context, K) error
	vertices   []K
	dependents [][]int

	mu      sync.Mutex
	pending []int // dependencies not ended yet
	blocked []int // a dependency that did not succeed, or -1
	queue   []int // ready, waiting for a slot
	running int
	stopped bool
	errs    []error
	// skips are decided under mu and told to Options.Skipped after it is
	// released, so the callback may take its own locks freely.
	skips []skipped
	// reportMu keeps Skipped calls from running concurrently.
	reportMu sync.Mutex
	wg       sync.WaitGroup
}

type skipped struct {
	i      int
	reason error
}

// ready queues i when every slot is taken or others wait already (they go
// first), and launches it otherwise. Called with mu held.
func (w *walker[K]) ready(i int) {
	if w.opt.Concurrency > 0 && (w.running >= w.opt.Concurrency || len(w.queue) > 0) {
		w.queue = append(w.queue, i)
		if w.opt.Less != nil {
			sort.SliceStable(w.queue, func(a, b int) bool { return w.opt.Less(w.vertices[w.queue[a]], w.vertices[w.queue[b]]) })
		}
		return
	}
	w.launch(i)
}

// launch starts i, or skips it when the walk is over for new work. Called
// with mu held.
func (w *walker[K]) launch(i int) {
	switch {
	case w.ctx.Err() != nil:
		w.skip(i, w.ctx.Err())
	case w.stopped:
		w.skip(i, ErrStopped)
	default:
		w.start(i)
	}
}

// start runs i's visit on its own goroutine. Called with mu held.
func (w *walker[K]) start(i int) {
	w.running++
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		err := w.visit(w.ctx, w.vertices[i])
		w.mu.Lock()
		w.running--
		if err != nil {
			w.errs = append(w.errs, err)
			if !w.opt.KeepGoing {
				w.stopped = true
			}
		}
		w.ended(i, err == nil)
		for len(w.queue) > 0 && (w.opt.Concurrency <= 0 || w.running < w.opt.Concurrency) {
			next := w.queue[0]
			w.queue = w.queue[1:]
			w.launch(next)
		}
		w.mu.Unlock()
		w.report()
	}()
}

// skip records that i is not visited and ends it. Called with mu held.
func (w *walker[K]) skip(i int, reason error) {
	w.skips = append(w.skips, skipped{i, reason})
	w.ended(i, false)
}

// ended releases i's dependents: the last dependency to end decides
// whether a dependent runs or is skipped. Called with mu held.
func (w *walker[K]) ended(i int, ok bool) {
	for _, d := range w.dependents[i] {
		if !ok && w.blocked[d] < 0 {
			w.blocked[d] = i
		}
		w.pending[d]--
		if w.pending[d] > 0 {
			continue
		}
		switch dep := w.blocked[d]; {
		case dep >= 0 && w.ctx.Err() != nil:
			w.skip(d, w.ctx.Err())
		case dep >= 0:
			w.skip(d, &DependencyError[K]{Dep: w.vertices[dep]})
		default:
			w.ready(d)
		}
	}
}

// report tells Options.Skipped of the skips decided so far, in order.
func (w *walker[K]) report() {
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	w.mu.Lock()
	skips := w.skips
	w.skips = nil
	w.mu.Unlock()
	if w.opt.Skipped == nil {
		return
	}
	for _, s := range skips {
		w.opt.Skipped(w.vertices[s.i], s.reason)
	}
}

// checkAcyclic fails on a cycle, which would leave its vertices waiting
// forever, naming the vertices that could never start.
func checkAcyclic[K comparable](vertices []K, pending0 []int, dependents [][]int, roots []int) error {
	pending := append([]int(nil), pending0...)
	stack := append([]int(nil), roots...)
	seen := 0
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		seen++
		for _, d := range dependents[i] {
			if pending[d]--; pending[d] == 0 {
				stack = append(stack, d)
			}
		}
	}
	if seen == len(vertices) {
		return nil
	}
	var stuck []string
	for i, n := range pending {
		if n > 0 {
			stuck = append(stuck, fmt.Sprint(vertices[i]))
		}
	}
	sort.Strings(stuck)
	return fmt.Errorf("dependency cycle among %s", strings.Join(stuck, ", "))
}
