package cache

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// buildActions is the number of actions of the simulated builds below.
const buildActions = 20

// boundsFixture uploads, straight to the store, the results of
// buildActions actions, each with a 64 KiB output of its own and a
// recorded execution time of execMs.
func boundsFixture(t *testing.T, s *remoteSetup, execMs int64) []ActionKey {
	t.Helper()
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true, InlineUploads: true})
	w := &recorder{}
	writer.opt.Warn = w.warn
	var keys []ActionKey
	for i := range buildActions {
		d, n, err := writer.local.PutReader(newGen(uint64(1001+2*i), 64<<10)) // odd seeds: newGen sets the low bit
		if err != nil {
			t.Fatal(err)
		}
		key := ActionKey(Sum([]byte(fmt.Sprintf("bounds fixture %d", i))))
		writer.Upload(context.Background(), key, &ActionResult{
			Outputs:    []OutputFile{{Path: fmt.Sprintf("pkg/out%d.bin", i), Digest: d, Size: n}},
			DurationMs: execMs,
		})
		keys = append(keys, key)
	}
	writer.Wait(context.Background())
	w.expect(t, 0)
	return keys
}

// simulateBuild does what the executor does for a chain of actions: look
// each up, and on a miss execute it (here: take exec) and hand the result
// to Upload. It returns the number of hits, or fails the test when the
// build does not end within limit, a bound that proves termination (the
// unbounded remotes take minutes, or forever).
func simulateBuild(t *testing.T, r *Remote, keys []ActionKey, exec, limit time.Duration) int {
	t.Helper()
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		hits := 0
		for _, key := range keys {
			if _, ok := r.Fetch(ctx, key); ok {
				hits++
				continue
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(exec)
			r.Upload(ctx, key, &ActionResult{DurationMs: exec.Milliseconds()})
		}
		done <- hits
	}()
	select {
	case hits := <-done:
		return hits
	case <-time.After(limit):
		t.Fatalf("a %d-action build did not finish within %s", len(keys), limit)
	}
	return 0
}

// A server that answers every request after 2 s, inside the 5 s timeout:
// once its lookups have cost more than executing locally does, the build
// stops asking it (one warning) instead of paying 2 s per request for all
// twenty actions.
func TestRemoteSlowServerDropped(t *testing.T) {
	eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
		keys := boundsFixture(t, s, 50)
		s.proxy.set(faults{Delay: 2 * time.Second})
		r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true})
		start := time.Now()
		// Without the budget: 20 hits × (AC + blob) × 2 s = 80 s.
		hits := simulateBuild(t, r, keys, 50*time.Millisecond, 30*time.Second)
		t.Logf("%d hits, build took %s", hits, time.Since(start))
		w.expect(t, 1, "costs more than building locally", "--remote-budget")
		// A hit costs at least 4 s (two requests) against a 5 s
		// allowance: the second exceeds it, or the first on a machine
		// slow enough.
		if got := s.proxy.count("GET", "ac"); got < 1 || got > 2 {
			t.Errorf("%d AC lookups reached the slow server, want 1 or 2", got)
		}
		if st := r.Stats(); st.Hits != hits || hits < 1 || hits > 2 {
			t.Errorf("%d hits (stats: %d), want 1 or 2", hits, st.Hits)
		}
	})
}

// --remote-budget replaces the learned budget, and names itself.
func TestRemoteBudgetFlag(t *testing.T) {
	s := setupNginx(t)
	keys := boundsFixture(t, s, 10)
	s.proxy.set(faults{Delay: 300 * time.Millisecond})
	r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Budget: 1500 * time.Millisecond})
	simulateBuild(t, r, keys, time.Millisecond, 30*time.Second)
	w.expect(t, 1, "--remote-budget 1.5s")
	// Each hit costs at least 600 ms (AC, then the blob) and saves 10 ms:
	// the third at the latest goes past 1.5 s.
	if got := s.proxy.count("GET", "ac"); got < 1 || got > 3 {
		t.Errorf("%d AC lookups, want 1 to 3", got)
	}

	// A negative budget is no limit: every action is a hit.
	s.proxy.set(faults{Delay: 50 * time.Millisecond})
	r, _, w = newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Budget: -1})
	if hits := simulateBuild(t, r, keys, time.Millisecond, 30*time.Second); hits != buildActions {
		t.Errorf("%d hits with no budget, want %d", hits, buildActions)
	}
	w.expect(t, 0)
}

// A server that sends one byte every 200 ms never stalls for a whole
// timeout; the rate floor fails the transfer, the breaker opens, and the
// build finishes locally with one warning.
func TestRemoteDrippingServer(t *testing.T) {
	eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
		keys := boundsFixture(t, s, 50)
		s.proxy.set(faults{DripCAS: 200 * time.Millisecond})
		r, local, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: time.Second})
		// Without the floor: 64 KiB at 5 bytes/s, 3.6 hours per action.
		hits := simulateBuild(t, r, keys, time.Millisecond, 30*time.Second)
		w.expect(t, 1, "below --remote-min-rate 8192 bytes/s", "continuing without it")
		if hits != 0 {
			t.Errorf("%d hits from a dripping server", hits)
		}
		if got := s.proxy.count("GET", "cas"); got != 1 {
			t.Errorf("%d blob downloads tried, want 1 (then the breaker holds)", got)
		}
		checkLocalClean(t, local)
	})
}

// No false positive: a healthy server serves every hit of the build, with
// no warning, though the actions are fast; a cold one costs every lookup
// but is not dropped.
func TestRemoteHealthyServerKept(t *testing.T) {
	eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
		keys := boundsFixture(t, s, 20)
		r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true})
		if hits := simulateBuild(t, r, keys, 20*time.Millisecond, 30*time.Second); hits != buildActions {
			t.Errorf("%d hits from a healthy server, want %d", hits, buildActions)
		}
		if got := s.proxy.count("GET", "ac"); got != buildActions {
			t.Errorf("%d AC lookups, want %d", got, buildActions)
		}
		w.expect(t, 0)

		var cold []ActionKey
		for i := range 5 * buildActions {
			cold = append(cold, ActionKey(Sum([]byte(fmt.Sprintf("never built %d", i)))))
		}
		r, _, w = newReader(t, s.proxied, RemoteOptions{AcceptCached: true})
		simulateBuild(t, r, cold, time.Millisecond, 30*time.Second)
		if st := r.Stats(); st.Misses != len(cold) {
			t.Errorf("%d misses of %d lookups: the cold remote was dropped", st.Misses, len(cold))
		}
		w.expect(t, 0)
	})
}

// A fast transfer of a large blob, longer than the grace, is not mistaken
// for a slow one.
func TestRemoteRateFloorLargeBlob(t *testing.T) {
	s := setupNginx(t)
	key, res, _ := faultFixture(t, s)
	// A floor the loopback link beats many times over, a short window.
	r, local, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: 200 * time.Millisecond, MinRate: 256 << 10})
	if _, ok := r.Fetch(context.Background(), key); !ok {
		t.Fatalf("Fetch of a healthy 4 MB result failed: %q", w.list())
	}
	checkBlobs(t, local, res)
	w.expect(t, 0)
}
