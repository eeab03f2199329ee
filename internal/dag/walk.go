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
	deps, err := g.AdjacencyMap()
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	dependents, err := g.PredecessorMap()
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	w := &walker[K]{
		ctx:        ctx,
		opt:        opt,
		visit:      visit,
		dependents: make(map[K][]K, len(deps)),
		pending:    make(map[K]int, len(deps)),
		blocked:    map[K]K{},
	}
	var roots []K
	for v, ds := range deps {
		w.pending[v] = len(ds)
		if len(ds) == 0 {
			roots = append(roots, v)
		}
		for d := range dependents[v] {
			w.dependents[v] = append(w.dependents[v], d)
		}
		if opt.Less != nil {
			sort.Slice(w.dependents[v], func(i, j int) bool { return opt.Less(w.dependents[v][i], w.dependents[v][j]) })
		}
	}
	if err := checkAcyclic(deps, w.dependents, roots); err != nil {
		return err
	}
	w.sortReady(roots)

	watcherDone := make(chan struct{})
	stopWatcher := context.AfterFunc(ctx, func() {
		defer close(watcherDone)
		w.mu.Lock()
		queued := w.queue
		w.queue = nil
		for _, v := range queued {
			w.skip(v, ctx.Err())
		}
		w.mu.Unlock()
		w.report()
	})

	w.mu.Lock()
	for _, v := range roots {
		w.ready(v)
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

type walker[K comparable] struct {
	ctx        context.Context
	opt        Options[K]
	visit      func(context.Context, K) error
	dependents map[K][]K

	mu      sync.Mutex
	pending map[K]int // dependencies not ended yet
	blocked map[K]K   // a vertex → a dependency that did not succeed
	queue   []K       // ready, waiting for a slot
	running int
	stopped bool
	errs    []error
	// skips are decided under mu and told to Options.Skipped after it is
	// released, so the callback may take its own locks freely.
	skips []skipped[K]
	// reportMu keeps Skipped calls from running concurrently.
	reportMu sync.Mutex
	wg       sync.WaitGroup
}

type skipped[K comparable] struct {
	v      K
	reason error
}

func (w *walker[K]) sortReady(vs []K) {
	if w.opt.Less != nil {
		sort.SliceStable(vs, func(i, j int) bool { return w.opt.Less(vs[i], vs[j]) })
	}
}

// ready starts v, queues it for a slot, or skips it when the walk is over
// for new work. Called with mu held.
func (w *walker[K]) ready(v K) {
	switch {
	case w.ctx.Err() != nil:
		w.skip(v, w.ctx.Err())
	case w.stopped:
		w.skip(v, ErrStopped)
	case w.opt.Concurrency > 0 && w.running >= w.opt.Concurrency:
		w.queue = append(w.queue, v)
		w.sortReady(w.queue)
	default:
		w.start(v)
	}
}

// start runs v's visit on its own goroutine. Called with mu held.
func (w *walker[K]) start(v K) {
	w.running++
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		err := w.visit(w.ctx, v)
		w.mu.Lock()
		w.running--
		if err != nil {
			w.errs = append(w.errs, err)
			if !w.opt.KeepGoing {
				w.stopped = true
			}
		}
		w.ended(v, err == nil)
		for len(w.queue) > 0 && (w.opt.Concurrency <= 0 || w.running < w.opt.Concurrency) {
			next := w.queue[0]
			w.queue = w.queue[1:]
			w.ready(next)
		}
		w.mu.Unlock()
		w.report()
	}()
}

// skip records that v is not visited and ends it. Called with mu held.
func (w *walker[K]) skip(v K, reason error) {
	w.skips = append(w.skips, skipped[K]{v, reason})
	w.ended(v, false)
}

// ended releases v's dependents: the last dependency to end decides
// whether a dependent runs or is skipped. Called with mu held.
func (w *walker[K]) ended(v K, ok bool) {
	for _, d := range w.dependents[v] {
		if _, bad := w.blocked[d]; !ok && !bad {
			w.blocked[d] = v
		}
		w.pending[d]--
		if w.pending[d] > 0 {
			continue
		}
		dep, bad := w.blocked[d]
		switch {
		case bad && w.ctx.Err() != nil:
			w.skip(d, w.ctx.Err())
		case bad:
			w.skip(d, &DependencyError[K]{Dep: dep})
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
		w.opt.Skipped(s.v, s.reason)
	}
}

// checkAcyclic fails on a cycle, which would leave its vertices waiting
// forever, naming the vertices that could never start.
func checkAcyclic[K comparable](deps map[K]map[K]graph.Edge[K], dependents map[K][]K, roots []K) error {
	pending := make(map[K]int, len(deps))
	for v, ds := range deps {
		pending[v] = len(ds)
	}
	stack := append([]K(nil), roots...)
	seen := 0
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		seen++
		for _, d := range dependents[v] {
			if pending[d]--; pending[d] == 0 {
				stack = append(stack, d)
			}
		}
	}
	if seen == len(deps) {
		return nil
	}
	var stuck []string
	for v, n := range pending {
		if n > 0 {
			stuck = append(stuck, fmt.Sprint(v))
		}
	}
	sort.Strings(stuck)
	return fmt.Errorf("dependency cycle among %s", strings.Join(stuck, ", "))
}
