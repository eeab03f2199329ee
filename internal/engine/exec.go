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
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/dag"
	"github.com/pipebuild/pipe/internal/sandbox"
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
	// safeDirs holds workspace directories found not to be symbolic links
	// on the way to an output (see safeParents).
	safeDirs sync.Map
	// Verify re-executes every cache hit and fails the action when its
	// outputs differ from the cached ones (see verify.go).
	Verify bool
	// KeepFailedScratch keeps the scratch directory of a failed action
	// and reports it in a *KeptScratchError (--sandbox-debug).
	KeepFailedScratch bool
	// RerunTests runs test actions (Action.Test) even when a passing
	// result is cached (pipe test --cache-test-results=no).
	RerunTests bool
	// last are the states of the latest Execute, for KeyOf.
	last map[*Action]*actionState

	// results holds each succeeded action's result, for the build
	// snapshot (RecordSnapshot).
	resultsMu sync.Mutex
	results   map[*Action]keptResult

	// Sandbox is how commands are isolated (--sandbox); "" means auto.
	// Warn receives the one warning auto gives when namespaces are
	// unavailable. See run.go.
	Sandbox       sandbox.Mode
	Warn          func(msg string)
	sandboxOnce   sync.Once
	sandboxRunner *sandbox.Runner
	sandboxError  error
}

type keptResult struct {
	key cache.ActionKey
	r   *cache.ActionResult
}

// RemoteCache is the executor's view of a shared cache: look up results
// by action key, fetch their blobs into the local cache, and upload.
type RemoteCache interface {
	// Fetch returns a result for key whose blobs are now in the local cache.
	Fetch(ctx context.Context, key cache.ActionKey) (*cache.ActionResult, bool)
	// Upload stores a result and its blobs (if uploads are enabled). It
	// may queue them and return at once: it is called while the action
	// holds its job slot, and r is not changed afterwards.
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
	a *Action
	// digests of the action's outputs once it finished; dirs hold a tree
	// digest.
	outDigests map[string]KeyInput
	result     *cache.ActionResult
	ok         bool
}

// takeSlot waits for one of the --jobs slots an execution needs (or for
// ctx to end) and reports the action started in it. The caller returns the
// slot with release.
func (e *Executor) takeSlot(ctx context.Context, a *Action, execSem chan int, ev *ActionEvent) (release func(), err error) {
	var worker int
	select {
	case worker = <-execSem:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ev.Worker, ev.Start = worker, time.Now()
	if e.Reporter != nil {
		e.Reporter.ActionStarted(a, worker)
	}
	return func() { execSem <- worker }, nil
}

// errNotBuilt tells the walker an action did not succeed, so that its
// dependents are skipped; the event says why.
var errNotBuilt = errors.New("action did not succeed")

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
	for _, a := range actions {
		for _, d := range a.deps {
			if _, ok := states[d]; !ok {
				return Summary{}, fmt.Errorf("internal error: %s depends on %s, which is not scheduled", a.Owner, d.Owner)
			}
		}
	}
	os.RemoveAll(filepath.Join(e.WS.StateDir(), "sandbox"))
	defer e.closeSandbox()

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var (
		mu       sync.Mutex
		summary  = Summary{Total: len(actions)}
		failed   []*ActionEvent
		checkSem = make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
		execSem  = make(chan int, jobs)
	)
	for i := 1; i <= jobs; i++ {
		execSem <- i
	}
	finish := func(ev *ActionEvent) {
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
	}
	// The walker starts an action once its producers succeeded, each on
	// its own goroutine: slots are taken inside runOne (a cache check
	// needs no job slot), so the walk itself is unbounded. Without
	// --keep-going the first failure starts nothing new; running actions
	// finish and are cached. Dependents of a failed or skipped action, and
	// everything not started after an interrupt, are reported skipped.
	walkErr := dag.WalkVertices(runCtx, actions, (*Action).Deps, dag.Options[*Action]{
		KeepGoing: e.KeepGoing,
		Skipped: func(a *Action, _ error) {
			now := time.Now()
			finish(&ActionEvent{Action: a, Status: StatusSkipped, Start: now, End: now})
		},
	}, func(ctx context.Context, a *Action) error {
		s := states[a]
		ev := e.runOne(ctx, s, states, checkSem, execSem)
		finish(ev)
		switch {
		case ev.Status == StatusFailed && ev.Action.Test && IsTestFailure(ev.Err):
			// A failed test is a result, not a broken build: the other
			// tests still run, as they would one by one.
			return nil
		case ev.Status == StatusFailed:
			return ev.Err
		case !s.ok:
			// Skipped inside runOne: the build was interrupted. Not a
			// failure, but nothing that needs it can run.
			return errNotBuilt
		}
		return nil
	})
	summary.Duration = time.Since(start)
	e.last = states
	if err := ctx.Err(); err != nil {
		return summary, err
	}
	if len(failed) > 0 {
		sort.Slice(failed, func(i, j int) bool { return failed[i].Action.Owner.Less(failed[j].Action.Owner) })
		return summary, &BuildFailedError{Failed: failed}
	}
	if walkErr != nil {
		// Not an action's failure: the graph itself (a cycle), found
		// before anything ran.
		return summary, fmt.Errorf("internal error: action graph: %w", walkErr)
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
		e.keepResult(a, key, r)
		ev.Status, ev.Restored, ev.End = StatusCached, restored, time.Now()
		ev.RanFor = time.Duration(r.DurationMs) * time.Millisecond
		return ev
	}
	// rejected: a cached result failed checkResult; replacing it is the
	// point, not a sign of non-determinism.
	rejected := false
	// pipe test --cache-test-results=no runs tests whatever is cached.
	lookup := !(a.Test && e.RerunTests)
	r, err := e.Cache.GetAC(key)
	if err == nil && !lookup {
		err = cache.ErrMiss
	}
	if err == nil {
		if cerr := checkResult(a, r); cerr != nil {
			ev.Warning = fmt.Sprintf("ignored the local cache's result for this action: %v; the action runs again", cerr)
			err, rejected = cerr, true
		}
	}
	if err == nil {
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
			if cerr := checkResult(a, r); cerr != nil {
				ev.Warning = fmt.Sprintf("ignored the remote cache's result for this action: %v; the action runs here", cerr)
			} else if restored, err := e.materializeCached(r); err == nil {
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
	if e.Explain {
		ev.Explain = e.explain(a, parts)
	}
	release, err := e.takeSlot(ctx, a, execSem, ev)
	if err != nil {
		ev.Status, ev.End = StatusSkipped, time.Now()
		return ev
	}
	defer release()
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
		// A test's report carries timestamps: a test run again writes other
		// bytes by nature, and says nothing about the code under test.
		if !rejected && !a.Test {
			ev.Warning = w
		}
	}
	e.Ledger.Record(a, r)
	e.recordKey(a, parts)
	if e.Remote != nil {
		e.Remote.Upload(ctx, key, r)
	}
	s.result, s.outDigests, s.ok = r, resultDigests(r), true
	e.keepResult(a, key, r)
	ev.Status, ev.End = StatusExecuted, time.Now()
	return ev
}

func (e *Executor) keepResult(a *Action, key cache.ActionKey, r *cache.ActionResult) {
	e.resultsMu.Lock()
	if e.results == nil {
		e.results = map[*Action]keptResult{}
	}
	e.results[a] = keptResult{key, r}
	e.resultsMu.Unlock()
}
