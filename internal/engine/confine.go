package engine

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pipebuild/pipe/internal/sandbox"
)

// Confinement says what a program an in-process step starts
// (ExecContext.Run) may see besides its scratch directory, in the
// namespace sandbox. There it runs as a command action's command does:
// the file system read-only, the workspace hidden but for the scratch
// directory (where the step staged its inputs), a private /tmp, a /proc
// of its own processes, only loopback unless the target has
// tags = ["requires-network"], and nothing of pipe's environment. In
// --sandbox=none (and where namespaces are unavailable) the fields
// change nothing.
type Confinement struct {
	// Reads are absolute paths the program reads outside the scratch
	// directory: its interpreter, its environment in the shared cache,
	// node_modules. Those in the workspace or /tmp, which the sandbox
	// hides, are shown read-only at their own paths; the rest of the file
	// system is visible (read-only) anyway.
	Reads []string
	// Writes are directories outside the scratch directory the program
	// writes, shown writable: a plugin cache shared between builds.
	Writes []string
	// Inputs are shown read-only at their workspace paths in the scratch
	// directory, for a step that does not stage its inputs itself
	// (ExecContext.Confined): bound, not copied or linked, so the
	// program can change neither them nor the workspace through them.
	Inputs []*File
	// Network keeps the host's network for this program even without
	// requires-network: a step that fetches what its declared inputs
	// name (terraform init fetching providers).
	Network bool
}

// Confined reports whether the programs of this action run in the
// namespace sandbox with the workspace hidden (see Confinement): a step
// then passes the inputs it would stage as Confinement.Inputs.
func (ec *ExecContext) Confined() bool { return ec.sandbox != nil }

// confine is the sandbox's spec for a program of an in-process step.
func (ec *ExecContext) confine(c Command) sandbox.Spec {
	spec := sandbox.Spec{
		Argv:    c.Argv,
		Env:     envList(c.Env),
		Dir:     c.Dir,
		Isolate: true,
		Hide:    ec.ws.Root,
		Scratch: ec.Dir,
		Network: ec.a.Network || c.Network,
		Reads:   cleanPaths(c.Reads),
		Writes:  cleanPaths(c.Writes),
	}
	ec.mounted = append(ec.mounted, c.Inputs...)
	for _, in := range inputMounts(c.Inputs) {
		spec.Inputs = append(spec.Inputs, sandbox.Mount{Src: ec.ws.Abs(in.Path), Dst: joinSlash(ec.Dir, in.Path), Dir: in.Dir})
	}
	return spec
}

// cleanPaths drops empty and repeated paths.
func cleanPaths(ps []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range ps {
		if p == "" {
			continue
		}
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// stageMounted puts copies of the inputs the step's programs saw bound in
// place of their empty mount points, in a scratch directory kept for the
// user (--sandbox-debug), so what the program read is there to look at.
func (ec *ExecContext) stageMounted() error {
	for _, in := range inputMounts(ec.mounted) {
		dst := joinSlash(ec.Dir, in.Path)
		os.RemoveAll(dst)
		if err := stage(ec.ws.Abs(in.Path), dst, in.Dir); err != nil {
			return fmt.Errorf("stage input %s: %w", in.Path, err)
		}
	}
	return nil
}
