package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
)

// Status is how an action ended.
type Status string

const (
	StatusExecuted Status = "executed"
	StatusCached   Status = "cached"
	StatusFailed   Status = "failed"
	// StatusSkipped: not run because a dependency failed or the build was
	// interrupted.
	StatusSkipped Status = "skipped"
)

// ActionEvent reports one finished action.
type ActionEvent struct {
	Action *Action
	Key    cache.ActionKey
	Status Status
	Start  time.Time
	End    time.Time
	// Restored counts outputs copied back from the cache because they were
	// missing or edited in the workspace.
	Restored int
	// Output is what the action printed (stdout then stderr), possibly cut.
	Output string
	Err    error
	// Warning is something the user should know though the action
	// succeeded, such as a corrupt cache entry that was replaced.
	Warning string
	// Explain says why the action ran (with Executor.Explain).
	Explain string
	Worker  int
	// RanFor is how long the action took when it executed: this time, or,
	// for a cached result, the run that produced it.
	RanFor time.Duration
}

// Reporter receives progress from the executor. Calls may come from many
// goroutines at once.
type Reporter interface {
	ActionStarted(a *Action, worker int)
	ActionFinished(ev *ActionEvent)
}

// ProgressReporter is a Reporter that also shows progress within an
// action (ExecContext.Progress).
type ProgressReporter interface {
	ActionProgress(a *Action, msg string)
}

// Summary counts a build's actions.
type Summary struct {
	Total, Executed, Cached, Failed, Skipped int
	Duration                                 time.Duration
}

// Executor runs actions against the cache.
type Executor struct {
	WS          *Workspace
	Cache       *cache.Cache
	Digests     *FileDigests
	Jobs        int
	KeepGoing   bool
	Reporter    Reporter
	PipeVersion string
	// Hooks for a remote cache, set by the CLI; nil means local only.
	Remote RemoteCache
	// Graph, when set, lets the executor remove files that an executed
	// target no longer declares from its dist/ directory.
	Graph *ActionGraph
	// Explain says, for each executed action, what differs from the key
	// recorded when it last executed (ActionEvent.Explain).
	Explain bool
	// Ledger, when set, records every output the executor puts in place,
	// so later builds can remove what no target declares any more.
	Ledger *Ledger
	// Verify re-executes every cache hit and fails the action when its
	// outputs differ from the cached ones (see verify.go).
	Verify bool
	// RerunTests runs test actions (Action.Test) even when a passing
	// result is cached (pipe test --cache-test-results=no).
	RerunTests bool
}

// RemoteCache is the executor's view of a shared cache: look up results
// by action key, fetch their blobs into the local cache, and upload.
type RemoteCache interface {
	// Fetch returns a result for key whose blobs are now in the local cache.
	Fetch(ctx context.Context, key cache.ActionKey) (*cache.ActionResult, bool)
	// Upload stores a result and its blobs (if uploads are enabled).
	Upload(ctx context.Context, key cache.ActionKey, r *cache.ActionResult)
}

// BuildFailedError reports actions that failed; the CLI exits with 1.
type BuildFailedError struct {
	Failed []*ActionEvent
}

func (e *BuildFailedError) Error() string {
	if len(e.Failed) == 1 {
		return fmt.Sprintf("%s failed: %v", e.Failed[0].Action.Owner, e.Failed[0].Err)
	}
	return fmt.Sprintf("%d actions failed", len(e.Failed))
}

type actionState struct {
	a          *Action
	pending    int32
	dependents []*actionState
	// digests of the action's outputs once it finished; dirs hold a tree
	// digest.
	outDigests map[string]KeyInput
	result     *cache.ActionResult
	ok         bool
	depFailed  atomic.Bool
}

// Execute runs actions (a dependency-closed list) and returns counts. The
// error is a *BuildFailedError when actions failed, ctx.Err() when the
// build was interrupted.
func (e *Executor) Execute(ctx context.Context, actions []*Action) (Summary, error) {
	start := time.Now()
	jobs := e.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	states := make(map[*Action]*actionState, len(actions))
	for _, a := range actions {
		states[a] = &actionState{a: a}
	}
	var roots []*actionState
	for _, a := range actions {
		s := states[a]
		for _, d := range a.deps {
			ds, ok := states[d]
			if !ok {
				return Summary{}, fmt.Errorf("internal error: %s depends on %s, which is not scheduled", a.Owner, d.Owner)
			}
			ds.dependents = append(ds.dependents, s)
			s.pending++
		}
		if s.pending == 0 {
			roots = append(roots, s)
		}
	}
	os.RemoveAll(filepath.Join(e.WS.StateDir(), "sandbox"))

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var (
		mu       sync.Mutex
		summary  = Summary{Total: len(actions)}
		failed   []*ActionEvent
		stopped  atomic.Bool
		wg       sync.WaitGroup
		checkSem = make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
		execSem  = make(chan int, jobs)
	)
	for i := 1; i <= jobs; i++ {
		execSem <- i
	}
	var schedule func(s *actionState)
	var finish func(s *actionState, ev *ActionEvent)
	skipped := func(s *actionState) {
		now := time.Now()
		finish(s, &ActionEvent{Action: s.a, Status: StatusSkipped, Start: now, End: now})
	}
	finish = func(s *actionState, ev *ActionEvent) {
		mu.Lock()
		switch ev.Status {
		case StatusExecuted:
			summary.Executed++
		case StatusCached:
			summary.Cached++
		case StatusFailed:
			summary.Failed++
			failed = append(failed, ev)
		case StatusSkipped:
			summary.Skipped++
		}
		mu.Unlock()
		if e.Reporter != nil {
			e.Reporter.ActionFinished(ev)
		}
		// A failed test is a result, not a broken build: the other tests
		// still run, as they would one by one.
		if ev.Status == StatusFailed && !e.KeepGoing && !(ev.Action.Test && IsTestFailure(ev.Err)) {
			stopped.Store(true)
		}
		for _, d := range s.dependents {
			if !s.ok {
				d.depFailed.Store(true)
			}
			// The last dependency to finish decides whether d runs.
			if atomic.AddInt32(&d.pending, -1) == 0 {
				if d.depFailed.Load() {
					skipped(d)
				} else {
					schedule(d)
				}
			}
		}
	}
	schedule = func(s *actionState) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stopped.Load() || runCtx.Err() != nil {
				skipped(s)
				return
			}
			finish(s, e.runOne(runCtx, s, states, checkSem, execSem))
		}()
	}
	for _, r := range roots {
		schedule(r)
	}
	wg.Wait()
	summary.Duration = time.Since(start)
	if err := ctx.Err(); err != nil {
		return summary, err
	}
	if len(failed) > 0 {
		sort.Slice(failed, func(i, j int) bool { return failed[i].Action.Owner.Less(failed[j].Action.Owner) })
		return summary, &BuildFailedError{Failed: failed}
	}
	return summary, nil
}

func (e *Executor) runOne(ctx context.Context, s *actionState, states map[*Action]*actionState, checkSem chan struct{}, execSem chan int) *ActionEvent {
	a := s.a
	ev := &ActionEvent{Action: a, Start: time.Now()}
	fail := func(err error) *ActionEvent {
		ev.Status, ev.Err, ev.End = StatusFailed, err, time.Now()
		return ev
	}
	checkSem <- struct{}{}
	key, parts, err := e.actionKey(a, states)
	if err != nil {
		<-checkSem
		return fail(err)
	}
	ev.Key = key
	hit := func(r *cache.ActionResult, restored int) *ActionEvent {
		e.pruneOwn(a, restored > 0)
		e.Ledger.Record(a, r)
		s.result, s.outDigests, s.ok = r, resultDigests(r), true
		ev.Status, ev.Restored, ev.End = StatusCached, restored, time.Now()
		ev.RanFor = time.Duration(r.DurationMs) * time.Millisecond
		return ev
	}
	lookup := !(a.Test && e.RerunTests)
	if r, err := e.Cache.GetAC(key); lookup && err == nil {
		restored, err := e.materializeCached(r)
		if err == nil {
			<-checkSem
			if e.Verify {
				if err := e.verifyHit(ctx, a, r, execSem, ev); err != nil {
					return fail(err)
				}
			}
			return hit(r, restored)
		}
		if errors.Is(err, cache.ErrCorrupt) {
			ev.Warning = fmt.Sprintf("the cache held a corrupt copy of an output (%v); it was deleted and the action runs again", err)
		}
	}
	<-checkSem
	if e.Remote != nil && lookup {
		if r, ok := e.Remote.Fetch(ctx, key); ok {
			if restored, err := e.materializeCached(r); err == nil {
				err := e.Cache.PutAC(key, r)
				if w := nondeterminism(a, err, "the remote cache's result differs from the one this machine cached"); w != "" {
					ev.Warning, err = w, nil
				}
				if err == nil && e.Verify {
					if err := e.verifyHit(ctx, a, r, execSem, ev); err != nil {
						return fail(err)
					}
				}
				if err == nil {
					return hit(r, restored)
				}
			}
		}
	}
	var worker int
	select {
	case worker = <-execSem:
	case <-ctx.Done():
		ev.Status, ev.End = StatusSkipped, time.Now()
		return ev
	}
	defer func() { execSem <- worker }()
	ev.Worker = worker
	if e.Explain {
		ev.Explain = e.explain(a, parts)
	}
	ev.Start = time.Now()
	if e.Reporter != nil {
		e.Reporter.ActionStarted(a, worker)
	}
	r, out, err := e.execute(ctx, a, true)
	ev.Output = out
	ev.RanFor = time.Since(ev.Start)
	if err != nil {
		if ctx.Err() != nil {
			ev.Status, ev.Err, ev.End = StatusSkipped, ctx.Err(), time.Now()
			return ev
		}
		if r != nil {
			// A failed test's logs and reports are in place: pipe owns
			// them, though nothing is cached.
			e.Ledger.Record(a, r)
		}
		return fail(err)
	}
	r.DurationMs = ev.RanFor.Milliseconds()
	if err := e.Cache.PutAC(key, r); err != nil {
		w := nondeterminism(a, err, "it ran again and its result differs from the one cached for the same inputs")
		if w == "" {
			return fail(err)
		}
		ev.Warning = w
	}
	e.Ledger.Record(a, r)
	e.recordKey(a, parts)
	if e.Remote != nil {
		e.Remote.Upload(ctx, key, r)
	}
	s.result, s.outDigests, s.ok = r, resultDigests(r), true
	ev.Status, ev.End = StatusExecuted, time.Now()
	return ev
}
