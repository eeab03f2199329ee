// Command pipe-sandbox is pipe's sandbox supervisor on its own: the first
// process of the namespaces a command runs in (internal/sandbox). pipe
// uses it when it lies next to pipe's executable, because it starts in a
// fraction of the time pipe's own binary takes; without it pipe starts
// itself as the supervisor. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	_ "github.com/pipebuild/pipe/internal/sandbox" // its init is the supervisor
)

func main() {
	// Reached only when not started by pipe: the package's init runs the
	// supervisor and exits when pipe starts it.
	fmt.Fprintln(os.Stderr, "pipe-sandbox: pipe starts this program to run commands in a sandbox; it is not meant to be run by hand")
	os.Exit(2)
}
