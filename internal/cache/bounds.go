package cache

// Bounds on what a remote may cost a build, beyond the per-operation
// timeouts of remote.go. A server can answer every request just inside the
// timeout, or keep a transfer alive with a byte now and then; neither trips
// a timeout, and either can make a build far slower than building locally.
// Two more bounds hold:
//
//   - A rate floor per blob transfer (RemoteOptions.MinRate): after a grace
//     of one Timeout, every further Timeout window must move at least
//     MinRate bytes per second on average, or the transfer fails like a
//     stalled one (and the breaker opens).
//   - A per-build account of what lookups cost against what they save:
//     the time Fetch calls waited on the remote, minus the recorded
//     execution time of the results they brought (ActionResult.DurationMs,
//     measured when the action ran, carried in REAPI's execution
//     metadata). When that net cost exceeds the budget, the remote is not
//     asked again in this build, lookups in flight are abandoned, and one
//     warning says why. The budget is RemoteOptions.Budget when set;
//     otherwise it is learned from the build: the execution time of the
//     actions that ran here (what building locally costs) plus one
//     Timeout. Net cost above that means the lookups cost more than
//     executing every looked-up action locally would have.
//
// Uploads are not counted: they run in the background and Close bounds
// the wait for them.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinRate is the rate floor for blob transfers when
// RemoteOptions.MinRate is zero: far below any link worth using for a
// cache, far above a server that drips.
const DefaultMinRate = 8 << 10

// errOverBudget ends lookups in flight once the remote is dropped for
// costing more than it saves; they count as misses, silently (the drop
// warned once).
var errOverBudget = errors.New("remote cache dropped for this build: it cost more than it saved")

// transferContext returns a context for one streamed transfer that is
// cancelled when progress has not been called for Timeout (a stall), or
// when, after a grace of one Timeout, a window of Timeout moves fewer than
// MinRate bytes per second. progress reports bytes moved; stop releases
// the timers.
func (r *Remote) transferContext(ctx context.Context) (tctx context.Context, progress func(n int), stop func()) {
	tctx, cancel := context.WithCancelCause(ctx)
	window := r.opt.Timeout
	stall := fmt.Errorf("transfer made no progress for %s: %w", window, errTimedOut)
	st := time.AfterFunc(window, func() { cancel(stall) })
	var moved atomic.Int64
	var (
		mu     sync.Mutex
		rt     *time.Timer
		mark   int64 // bytes moved when the current window began
		closed bool
	)
	if rate := r.opt.MinRate; rate > 0 {
		floor := int64(float64(rate) * window.Seconds())
		var check func()
		check = func() {
			mu.Lock()
			defer mu.Unlock()
			if closed {
				return
			}
			// A transfer too slow is a kind of timeout: the breaker
			// treats it as the store failing.
			n := moved.Load()
			if n-mark < floor {
				cancel(fmt.Errorf("transfer moved %d bytes in %s, below --remote-min-rate %d bytes/s: %w", n-mark, window, rate, errTimedOut))
				return
			}
			mark = n
			rt = time.AfterFunc(window, check)
		}
		// The grace: the first window (connection set-up, the server
		// finding the blob) is not measured.
		mu.Lock()
		rt = time.AfterFunc(window, func() {
			mu.Lock()
			defer mu.Unlock()
			if closed {
				return
			}
			mark = moved.Load()
			rt = time.AfterFunc(window, check)
		})
		mu.Unlock()
	}
	progress = func(n int) {
		moved.Add(int64(n))
		st.Reset(window)
	}
	stop = func() {
		st.Stop()
		mu.Lock()
		closed = true
		if rt != nil {
			rt.Stop()
		}
		mu.Unlock()
		cancel(nil)
	}
	return tctx, progress, stop
}

// costAccount is a build's account of what remote lookups cost against
// what they save, all in nanoseconds of action time: lookups run
// concurrently, and so do executions, so both sides are sums over actions.
type costAccount struct {
	waited   atomic.Int64 // time Fetch calls spent, hits and misses
	saved    atomic.Int64 // recorded execution time of the hits
	executed atomic.Int64 // execution time of actions that ran here
	lookups  atomic.Int64
	hits     atomic.Int64
}

// lookupContext derives a lookup's context from ctx that also ends when
// the remote is dropped, so lookups in flight stop at once.
func (r *Remote) lookupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(r.life, func() { cancel(context.Cause(r.life)) })
	return lctx, func() { stop(); cancel(nil) }
}

// dropped reports whether the remote was dropped (breaker or budget), so
// lookups are not made.
func (r *Remote) dropped() bool { return r.down.Load() || r.life.Err() != nil }

// account records one finished lookup and drops the remote when it has
// cost more than the budget allows.
func (r *Remote) account(waited time.Duration, hit *ActionResult) {
	a := &r.cost
	a.lookups.Add(1)
	w := a.waited.Add(int64(waited))
	s := a.saved.Load()
	if hit != nil {
		a.hits.Add(1)
		s = a.saved.Add(int64(time.Duration(hit.DurationMs) * time.Millisecond))
	}
	budget, learned := r.opt.Budget, false
	if budget < 0 {
		return
	}
	if budget == 0 {
		budget, learned = time.Duration(a.executed.Load())+r.opt.Timeout, true
	}
	net := time.Duration(w - s)
	if net <= budget || r.life.Err() != nil {
		return
	}
	var msg string
	why := fmt.Sprintf("%d lookups (%d hits) waited %s on it in total; the hits would have taken %s to execute",
		a.lookups.Load(), a.hits.Load(), roundDuration(time.Duration(w)), roundDuration(time.Duration(s)))
	if learned {
		msg = fmt.Sprintf("remote cache %s costs more than building locally: %s, and the actions that ran here took %s; not using it for the rest of this build (check the link to the cache and its load; --remote-budget=D allows lookups D more than they save, --remote-accept-cached=false skips them)",
			r.b, why, roundDuration(time.Duration(a.executed.Load())))
	} else {
		msg = fmt.Sprintf("remote cache %s cost more than --remote-budget %s allows: %s; not using it for the rest of this build (check the link to the cache and its load, or raise --remote-budget)",
			r.b, r.opt.Budget, why)
	}
	r.mu.Lock()
	seen := r.warned["budget"]
	r.warned["budget"] = true
	r.mu.Unlock()
	r.stop(errOverBudget)
	if !seen {
		r.opt.Warn(msg)
	}
}

// noteExecuted records the execution time of an action that ran here.
func (r *Remote) noteExecuted(res *ActionResult) {
	if res != nil && res.DurationMs > 0 {
		r.cost.executed.Add(int64(time.Duration(res.DurationMs) * time.Millisecond))
	}
}

// roundDuration keeps figures in warnings readable.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
