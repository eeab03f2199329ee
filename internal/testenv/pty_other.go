//go:build !linux

package testenv

import (
	"errors"
	"os"
)

// openPty has no implementation off Linux: the tests that need a terminal
// are skipped there (Need), and fail under PIPE_REQUIRE_ALL=1.
func openPty(cols, rows int) (master, slave *os.File, err error) {
	return nil, nil, errors.New("pseudo-terminals are opened through Linux's /dev/pts only")
}
