package dag

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dominikbraun/graph"
)

// newGraph builds a graph from "a->b" edges (a depends on b) and lone
// vertices.
func newGraph(t *testing.T, vertices string, edges ...string) graph.Graph[string, string] {
	t.Helper()
	g := graph.New(graph.StringHash, graph.Directed())
	for _, v := range strings.Fields(vertices) {
		if err := g.AddVertex(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edges {
		from, to, _ := strings.Cut(e, "->")
		if err := g.AddEdge(from, to); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// recorder keeps what a walk did, in order.
type recorder struct {
	mu      sync.Mutex
	started []string
	ended   map[string]time.Time
	begun   map[string]time.Time
	skipped map[string]error
}

func newRecorder() *recorder {
	return &recorder{ended: map[string]time.Time{}, begun: map[string]time.Time{}, skipped: map[string]error{}}
}

func (r *recorder) visit(fail map[string]bool, delay time.Duration) func(context.Context, string) error {
	return func(ctx context.Context, v string) error {
		r.mu.Lock()
		r.started = append(r.started, v)
		r.begun[v] = time.Now()
		r.mu.Unlock()
		time.Sleep(delay)
		r.mu.Lock()
		r.ended[v] = time.Now()
		r.mu.Unlock()
		if fail[v] {
			return fmt.Errorf("%s failed", v)
		}
		return nil
	}
}

func (r *recorder) skip(v string, reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skipped[v] = reason
}

func TestWalkOrder(t *testing.T) {
	g := newGraph(t, "app lib util tool", "app->lib", "lib->util", "app->tool")
	r := newRecorder()
	err := Walk(context.Background(), g, Options[string]{Skipped: r.skip}, r.visit(nil, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.started) != 4 || len(r.skipped) != 0 {
		t.Fatalf("started %v, skipped %v", r.started, r.skipped)
	}
	for _, e := range [][2]string{{"app", "lib"}, {"lib", "util"}, {"app", "tool"}} {
		if !r.begun[e[0]].After(r.ended[e[1]]) {
			t.Errorf("%s started before %s ended", e[0], e[1])
		}
	}
}

// A failure skips its dependents, transitively, and says which dependency;
// with KeepGoing the independent vertices still run.
func TestWalkSkipsDependentsOfFailure(t *testing.T) {
	g := newGraph(t, "a b c d e", "b->a", "c->b", "e->d")
	r := newRecorder()
	err := Walk(context.Background(), g, Options[string]{KeepGoing: true, Skipped: r.skip}, r.visit(map[string]bool{"a": true}, 0))
	if err == nil || err.Error() != "a failed" {
		t.Fatalf("err = %v, want a's error", err)
	}
	sort.Strings(r.started)
	if !slices.Equal(r.started, []string{"a", "d", "e"}) {
		t.Errorf("started %v, want a d e", r.started)
	}
	var de *DependencyError[string]
	if !errors.As(r.skipped["b"], &de) || de.Dep != "a" {
		t.Errorf("b skipped for %v, want its dependency a", r.skipped["b"])
	}
	if !errors.As(r.skipped["c"], &de) || de.Dep != "b" {
		t.Errorf("c skipped for %v, want its dependency b", r.skipped["c"])
	}
	if de.Error() != "its dependency b did not succeed" {
		t.Errorf("message %q", de.Error())
	}
}

// Without KeepGoing the first failure starts nothing new; what runs
// finishes.
func TestWalkStopsOnFailure(t *testing.T) {
	g := newGraph(t, "a b c d", "d->c")
	r := newRecorder()
	var running atomic.Int32
	visit := func(ctx context.Context, v string) error {
		running.Add(1)
		defer running.Add(-1)
		r.mu.Lock()
		r.started = append(r.started, v)
		r.mu.Unlock()
		if v == "a" {
			return errors.New("a failed")
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	less := func(x, y string) bool { return x < y }
	err := Walk(context.Background(), g, Options[string]{Concurrency: 1, Less: less, Skipped: r.skip}, visit)
	if err == nil {
		t.Fatal("no error")
	}
	if !slices.Equal(r.started, []string{"a"}) {
		t.Errorf("started %v, want a alone (one slot, a first)", r.started)
	}
	for _, v := range []string{"b", "c"} {
		if !errors.Is(r.skipped[v], ErrStopped) {
			t.Errorf("%s skipped for %v, want ErrStopped", v, r.skipped[v])
		}
	}
	if r.skipped["d"] == nil {
		t.Errorf("d not skipped")
	}
}

// Concurrency bounds the visits in flight; Less orders the waiting ones.
func TestWalkConcurrency(t *testing.T) {
	g := newGraph(t, "e d c b a")
	var now, peak atomic.Int32
	var mu sync.Mutex
	var order []string
	visit := func(ctx context.Context, v string) error {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		order = append(order, v)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		now.Add(-1)
		return nil
	}
	err := Walk(context.Background(), g, Options[string]{Concurrency: 2, Less: func(a, b string) bool { return a < b }}, visit)
	if err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d, want 2", peak.Load())
	}
	// Visits that start together record themselves in either order.
	pairs := func(i int) []string {
		p := append([]string(nil), order[i:i+2]...)
		sort.Strings(p)
		return p
	}
	if len(order) != 5 || !slices.Equal(pairs(0), []string{"a", "b"}) || !slices.Equal(pairs(2), []string{"c", "d"}) {
		t.Errorf("start order %v", order)
	}
}

// Cancelling starts nothing new, skips what waits (also for a slot) with
// the context's error, and lets running visits see it.
func TestWalkCancel(t *testing.T) {
	g := newGraph(t, "a b c d", "c->a")
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	started := make(chan struct{})
	visit := func(ctx context.Context, v string) error {
		r.mu.Lock()
		r.started = append(r.started, v)
		r.mu.Unlock()
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan error)
	go func() {
		done <- Walk(ctx, g, Options[string]{Concurrency: 1, KeepGoing: true, Less: func(a, b string) bool { return a < b }, Skipped: r.skip}, visit)
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Walk did not return after cancel")
	}
	if !slices.Equal(r.started, []string{"a"}) {
		t.Errorf("started %v", r.started)
	}
	for _, v := range []string{"b", "c", "d"} {
		if !errors.Is(r.skipped[v], context.Canceled) {
			t.Errorf("%s skipped for %v, want context.Canceled", v, r.skipped[v])
		}
	}
}

func TestWalkCycle(t *testing.T) {
	g := newGraph(t, "a b c", "a->b", "b->a")
	called := false
	err := Walk(context.Background(), g, Options[string]{}, func(context.Context, string) error { called = true; return nil })
	if err == nil || !strings.Contains(err.Error(), "dependency cycle among a, b") {
		t.Errorf("err = %v", err)
	}
	if called {
		t.Error("a vertex was visited despite the cycle")
	}
}

func TestWalkEmpty(t *testing.T) {
	g := newGraph(t, "")
	if err := Walk(context.Background(), g, Options[string]{}, func(context.Context, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// WalkVertices takes the caller's adjacency; one slot shows the order:
// ready vertices start in the order given.
func TestWalkVertices(t *testing.T) {
	deps := map[string][]string{"app": {"lib", "gen"}, "lib": {"gen"}, "doc": nil, "gen": nil}
	var order []string
	visit := func(ctx context.Context, v string) error { order = append(order, v); return nil }
	err := WalkVertices(context.Background(), []string{"gen", "doc", "lib", "app"}, func(v string) []string { return deps[v] }, Options[string]{Concurrency: 1}, visit)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []string{"gen", "doc", "lib", "app"}) {
		t.Errorf("order %v", order)
	}
	err = WalkVertices(context.Background(), []string{"app"}, func(v string) []string { return deps[v] }, Options[string]{}, visit)
	if err == nil || !strings.Contains(err.Error(), "app depends on lib, which is not a vertex") {
		t.Errorf("unknown dependency: %v", err)
	}
}
