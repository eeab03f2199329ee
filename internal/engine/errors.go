package engine

import (
	"errors"
	"fmt"
)

// BuildFileError is a mistake in a WORKSPACE.star, BUILD.star or .star file,
// or in how targets refer to each other: the user fixes it by editing a file.
// The CLI exits with status 2 for it.
type BuildFileError struct {
	Pos Pos
	Msg string
}

func (e *BuildFileError) Error() string {
	if e.Pos.File == "" {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errorf returns a BuildFileError at pos.
func Errorf(pos Pos, format string, args ...any) error {
	return &BuildFileError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// UsageError is a bad command line. The CLI exits with status 2 for it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// IsUserError reports whether err is a usage or build-file error (exit 2).
func IsUserError(err error) bool {
	var b *BuildFileError
	var u *UsageError
	var nw *NoWorkspaceError
	return errors.As(err, &b) || errors.As(err, &u) || errors.As(err, &nw)
}

// MultiError joins several build-file errors so one run reports them all.
type MultiError []error

func (m MultiError) Error() string {
	s := ""
	for i, e := range m {
		if i > 0 {
			s += "\n"
		}
		s += e.Error()
	}
	return s
}

func (m MultiError) Unwrap() []error { return m }

// TestFailedError is what a test action (Action.Test) returns when its
// tests ran and did not pass, or ran out of time: the build worked, the
// tests did not. The executor still puts the action's outputs (logs,
// reports) in place, never caches them, and the CLI reports a failed test
// (exit 3) rather than a failed build (exit 1).
type TestFailedError struct {
	// Reason says what failed, as "2 of 9 tests failed".
	Reason string
}

func (e *TestFailedError) Error() string { return e.Reason }

// IsTestFailure reports whether err is a test that ran and failed.
func IsTestFailure(err error) bool {
	var t *TestFailedError
	return errors.As(err, &t)
}
