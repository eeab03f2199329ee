//go:build !linux

package sandbox

import (
	"context"
	"io"
)

// Runner has no helper processes off Linux: Resolve never chooses the
// namespace sandbox there, and Run reports that it is unavailable.
type Runner struct{}

// Run runs spec without a helper.
func (r *Runner) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) error {
	return Run(ctx, spec, stdout, stderr)
}

// Close does nothing: there is no helper to stop.
func (r *Runner) Close() error { return nil }
