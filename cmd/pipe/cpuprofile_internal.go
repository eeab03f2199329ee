package main

import (
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a Go CPU profile to $PIPE_CPUPROFILE, for pipe's
// own performance work.
func startCPUProfile() func() {
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
