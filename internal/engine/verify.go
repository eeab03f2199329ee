package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/pipebuild/pipe/internal/cache"
)

// Verify mode (pipe build --verify, PIPE_CACHE_VERIFY=1) is the answer to
// "can I trust this cache?", as GODEBUG=gocacheverify=1 is for Go: every
// cache hit is executed again, and an action whose fresh outputs differ
// from the cached ones fails the build by name. A key that maps to two
// different results means something the key does not cover changed the
// output (a clock, randomness, an undeclared input), so every later hit of
// that key would be a lie.

// NondeterministicError is the failure of an action whose re-execution gave
// other outputs than the cached result of the same key.
type NondeterministicError struct {
	Action *Action
	Diff   *cache.ResultDiff
}

func (e *NondeterministicError) Error() string {
	// The CLI prints the label and mnemonic in front of every failure.
	return fmt.Sprintf("not deterministic: executed again for --verify, it wrote %s as %s, but the cache holds %s for the same inputs; make its output depend only on its declared inputs (no clock, random numbers, absolute paths or undeclared files)",
		e.Diff.Path, e.Diff.New, e.Diff.Old)
}

// verifyHit executes a again in a job slot, without touching the
// workspace, and compares its outputs with the cached result.
func (e *Executor) verifyHit(ctx context.Context, a *Action, cached *cache.ActionResult, execSem chan int, ev *ActionEvent) error {
	release, err := e.takeSlot(ctx, a, execSem, ev)
	if err != nil {
		return err
	}
	defer release()
	fresh, out, err := e.execute(ctx, a, false)
	if err != nil {
		ev.Output = out
		return fmt.Errorf("executed again for --verify, the cached action failed: %w", err)
	}
	if d := cache.CompareResults(cached, fresh); d != nil {
		return &NondeterministicError{Action: a, Diff: d}
	}
	return nil
}

// nondeterminism turns the *cache.ReplacedError of PutAC into a warning
// naming the action and the differing output; it returns "" for any other
// error.
func nondeterminism(a *Action, err error, why string) string {
	var rep *cache.ReplacedError
	if !errors.As(err, &rep) {
		return ""
	}
	return fmt.Sprintf("%s (%s) is not deterministic: %s (%s); run pipe build --verify to check every cached action", a.Owner, a.Mnemonic, why, rep.Diff)
}
