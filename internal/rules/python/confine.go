package python

import (
	"path/filepath"

	"github.com/pipebuild/pipe/internal/engine"
)

// confinement is what a Python program of a step (openapi, pytest, ruff)
// reads outside its scratch directory in the namespace sandbox: the
// interpreter's installation and the locked environment. Both are
// visible anyway where they lie on the read-only root (pyenv, a
// system Python); they are named so that an interpreter in the
// workspace (a .venv, workspace(python = …)) or a cache under /tmp stays
// reachable when the sandbox hides those. The step's inputs are staged
// in the scratch directory; nothing else of the workspace is visible,
// and nothing outside the scratch directory is writable: pytest runs
// with -p no:cacheprovider, PYTHONDONTWRITEBYTECODE and -B (no
// .pytest_cache, no __pycache__), HOME and TMPDIR in the scratch
// directory.
func confinement(python, envDir string) engine.Confinement {
	reads := []string{installOf(python), envDir}
	if real, err := filepath.EvalSymlinks(python); err == nil && real != python {
		// A venv's python links to its base interpreter, which may be
		// hidden too (a downloaded one in a cache under /tmp).
		reads = append(reads, installOf(real))
	}
	return engine.Confinement{Reads: reads}
}

// installOf is the installation an interpreter belongs to: the parent of
// its bin directory (whose lib holds the standard library, or whose
// pyvenv.cfg names the base), else the directory it lies in.
func installOf(python string) string {
	dir := filepath.Dir(python)
	if filepath.Base(dir) == "bin" {
		return filepath.Dir(dir)
	}
	return dir
}
