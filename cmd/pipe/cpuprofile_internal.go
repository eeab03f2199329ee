package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

// startCPUProfile writes a Go CPU profile to $PIPE_CPUPROFILE, and the
// allocations of the whole run to $PIPE_MEMPROFILE (go tool pprof
// -sample_index=alloc_space), for pipe's own performance work.
func startCPUProfile() func() {
	if m := os.Getenv("PIPE_MEMPROFILE"); m != "" {
		stop := startCPUProfileOnly()
		return func() {
			stop()
			// The profile holds what was allocated up to the last
			// collection: collect, so it covers the whole run.
			runtime.GC()
			if f, err := os.Create(m); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
	return startCPUProfileOnly()
}

func startCPUProfileOnly() func() {
	p := os.Getenv("PIPE_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err != nil {
		return func() {}
	}
	pprof.StartCPUProfile(f)
	return func() { pprof.StopCPUProfile(); f.Close() }
}
