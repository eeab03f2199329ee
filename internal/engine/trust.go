package engine

import (
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
)

// A cached result is data from outside the process: the local cache is
// shared by every workspace of the user, and a remote cache read without a
// signing key is trusted by whoever can write to it. So a result is held
// to the action it answers for: it may name exactly the outputs the action
// declares (files, and files and symlinks inside declared directories),
// and pipe never writes through a symbolic link on the way to an output.

// checkResult reports how r differs from what a declares, or nil.
func checkResult(a *Action, r *cache.ActionResult) error {
	// The common case, checked without allocating: file outputs only, in
	// the order the action declares them (the order execute records).
	if len(r.Dirs) == 0 && len(r.Symlinks) == 0 && len(r.Outputs) == len(a.Outputs) {
		same := true
		for i, o := range a.Outputs {
			if o.Dir || r.Outputs[i].Path != o.Path {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	files := map[string]bool{}
	dirs := map[string]bool{}
	for _, o := range a.Outputs {
		if o.Dir {
			dirs[o.Path] = true
		} else {
			files[o.Path] = true
		}
	}
	inDir := func(p string) bool {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if dirs[d] {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	for _, o := range r.Outputs {
		if !files[o.Path] && !inDir(o.Path) {
			return fmt.Errorf("it names %s, which the action does not declare", o.Path)
		}
		seen[o.Path] = true
	}
	for f := range files {
		if !seen[f] {
			return fmt.Errorf("it lacks the declared output %s", f)
		}
	}
	gotDirs := map[string]bool{}
	for _, d := range r.Dirs {
		if !dirs[d] {
			return fmt.Errorf("it names the directory %s, which the action does not declare", d)
		}
		gotDirs[d] = true
	}
	for d := range dirs {
		if !gotDirs[d] {
			return fmt.Errorf("it lacks the declared output directory %s", d)
		}
	}
	for p := range r.Symlinks {
		if !inDir(p) {
			return fmt.Errorf("it names a symbolic link %s outside the action's output directories", p)
		}
	}
	// Nothing may sit under a symlink of the same result: restoring it would
	// write wherever the link points.
	for p := range r.Symlinks {
		for _, o := range r.Outputs {
			if strings.HasPrefix(o.Path, p+"/") {
				return fmt.Errorf("its output %s lies under its symbolic link %s", o.Path, p)
			}
		}
		for q := range r.Symlinks {
			if strings.HasPrefix(q, p+"/") {
				return fmt.Errorf("its symbolic link %s lies under its symbolic link %s", q, p)
			}
		}
	}
	return nil
}

// safeParents refuses to write the workspace path rel when a directory on
// the way to it, inside the workspace, is a symbolic link: the write would
// land wherever the link points (outside the workspace, or in a source
// directory). Directories already checked in this build are remembered.
func (e *Executor) safeParents(rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	if _, ok := e.safeDirs.Load(dir); ok {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if _, ok := e.safeDirs.Load(p); ok {
			continue
		}
		fi, err := os.Lstat(e.WS.Abs(p))
		if os.IsNotExist(err) {
			return nil // created below as a plain directory
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("refusing to write %s: %s is a symbolic link, and pipe does not write through links; replace it with a directory", rel, p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("cannot write %s: %s is not a directory", rel, p)
		}
		e.safeDirs.Store(p, true)
	}
	return nil
}
