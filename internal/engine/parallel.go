package engine

import (
	"sync"
	"sync/atomic"
)

// forChunks calls do on consecutive ranges [lo, hi) of n items, chunk
// items at a time, from up to workers goroutines, until every range is
// done or stop (when set) reports true between two ranges. Ranges are
// handed out as they are asked for, so a worker slowed by a few costly
// items (a stat that misses the cache) does not hold up the rest. One
// worker runs in the caller's goroutine.
func forChunks(n, chunk, workers int, stop func() bool, do func(lo, hi int)) {
	var next atomic.Int64
	work := func() {
		for stop == nil || !stop() {
			lo := int(next.Add(int64(chunk))) - chunk
			if lo >= n {
				return
			}
			do(lo, min(lo+chunk, n))
		}
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	wg.Wait()
}
