package engine

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// materializeCached makes the workspace hold r's outputs, restoring any that
// are missing or were edited. It reports false when a blob is missing or
// corrupt, so the action must run again.
func (e *Executor) materializeCached(r *cache.ActionResult) (int, error) {
	restored := 0
	for _, o := range r.Outputs {
		abs := e.WS.Abs(o.Path)
		fi, err := os.Lstat(abs)
		if err == nil && fi.Mode().IsRegular() && (fi.Mode()&0o111 != 0) == o.Executable {
			if d, ok := e.Digests.Lookup(o.Path, fi); ok && d == o.Digest {
				continue
			}
			if fi.Size() == o.Size {
				if d, _, err := e.Digests.Digest(o.Path, abs); err == nil && d == o.Digest {
					continue
				}
			}
		}
		if err == nil && fi.IsDir() {
			os.RemoveAll(abs)
		}
		if err := e.Cache.CopyOut(o.Digest, abs, o.Executable); err != nil {
			return restored, fmt.Errorf("restore %s: %w", o.Path, err)
		}
		if fi, err := os.Stat(abs); err == nil {
			e.Digests.Record(o.Path, fi, o.Digest)
		}
		restored++
	}
	for p, target := range r.Symlinks {
		abs := e.WS.Abs(p)
		if cur, err := os.Readlink(abs); err == nil && cur == target {
			continue
		}
		os.RemoveAll(abs)
		os.MkdirAll(filepath.Dir(abs), 0o755)
		if err := os.Symlink(target, abs); err != nil {
			return restored, fmt.Errorf("restore %s: %w", p, err)
		}
		restored++
	}
	if len(r.Dirs) > 0 {
		restored += e.pruneDirs(r)
	}
	return restored, nil
}

// pruneDirs removes files in output directories that the result does not
// list, so a restored directory equals what the action produced.
func (e *Executor) pruneDirs(r *cache.ActionResult) int {
	want := map[string]bool{}
	for _, o := range r.Outputs {
		want[o.Path] = true
	}
	for p := range r.Symlinks {
		want[p] = true
	}
	removed := 0
	for _, d := range r.Dirs {
		root := e.WS.Abs(d)
		os.MkdirAll(root, 0o755)
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || p == root {
				return nil
			}
			rel := d + "/" + filepath.ToSlash(p[len(root)+1:])
			if de.IsDir() {
				if !hasPrefixDir(rel, want) {
					os.RemoveAll(p)
					removed++
					return fs.SkipDir
				}
				return nil
			}
			if !want[rel] {
				os.Remove(p)
				removed++
			}
			return nil
		})
	}
	return removed
}

func hasPrefixDir(dir string, want map[string]bool) bool {
	prefix := dir + "/"
	for p := range want {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// pruneStale removes from the target's dist/ directory what no action
// declares any more (outputs renamed or dropped from a BUILD file), so dist/
// holds exactly what the build produces. It only runs after an action of
// the target executed or had outputs restored: a changed declaration always
// changes the key, so the stale file is either there after an execution or
// next to a file restored from an older result.
func (e *Executor) pruneStale(owner Label) {
	root := path.Join("dist", owner.Pkg, owner.Name)
	if output, _ := e.Graph.declaredKind(root); output {
		// The target's directory is itself a declared output directory;
		// restoring it already removed what the action did not produce.
		return
	}
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := os.ReadDir(e.WS.Abs(dir))
		if err != nil {
			return
		}
		for _, de := range ents {
			rel := dir + "/" + de.Name()
			if strings.HasPrefix(de.Name(), ".pipe-tmp-") || strings.HasSuffix(de.Name(), ".pipe-old") {
				continue // another action's write in progress
			}
			output, ancestor := e.Graph.declaredKind(rel)
			switch {
			case output:
			case ancestor && de.IsDir():
				walk(rel)
			default:
				os.RemoveAll(e.WS.Abs(rel))
				e.Digests.Forget(rel)
			}
		}
	}
	walk(root)
}

func outputName(a *Action, o *File) string {
	return fmt.Sprintf("%s (of %s)", o.Path, a.Owner)
}

func (e *Executor) collectDir(r *cache.ActionResult, scratch, dir string) error {
	root := joinSlash(scratch, dir)
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(p[len(scratch)+1:])
		switch {
		case de.IsDir():
			return nil
		case de.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			resolved := path.Join(path.Dir(rel), target)
			if path.IsAbs(target) || !strings.HasPrefix(resolved, dir+"/") {
				return fmt.Errorf("output %s is a symlink to %s, outside its directory %s", rel, target, dir)
			}
			if r.Symlinks == nil {
				r.Symlinks = map[string]string{}
			}
			r.Symlinks[rel] = target
			return nil
		case de.Type().IsRegular():
			fi, err := de.Info()
			if err != nil {
				return err
			}
			d, size, err := e.Cache.PutFile(p)
			if err != nil {
				return fmt.Errorf("store %s: %w", rel, err)
			}
			r.Outputs = append(r.Outputs, cache.OutputFile{Path: rel, Digest: d, Size: size, Executable: fi.Mode()&0o111 != 0})
			return nil
		default:
			return fmt.Errorf("output %s is not a regular file, directory or symlink", rel)
		}
	})
}

// moveIntoPlace renames a finished output from the scratch directory to its
// place in the workspace, replacing what was there.
func (e *Executor) moveIntoPlace(src string, o *File) error {
	dst := e.WS.Abs(o.Path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !o.Dir {
		if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
			os.RemoveAll(dst)
		}
		return os.Rename(src, dst)
	}
	// A directory cannot be replaced in one rename: move the old one aside
	// first, then delete it.
	old := dst + ".pipe-old"
	os.RemoveAll(old)
	if _, err := os.Lstat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return removeTree(old)
}

func ensureDir(d string) string {
	os.MkdirAll(d, 0o755)
	return d
}

// removeTree removes a tree even where the action left read-only dirs.
func removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	filepath.WalkDir(p, func(q string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// stage copies an input into the scratch directory, read-only, so the
// action sees exactly its declared inputs and cannot change the originals.
func stage(src, dst string, dir bool) error {
	return StageTree(src, dst, dir, func(s, d string) error {
		return files.Copy(s, d, files.CopyOptions{ReadOnly: true})
	})
}

// StageTree recreates the file or directory src at dst: directories are
// made, symlinks recreated as they are, and each file placed with place
// (a copy, a hard link…).
func StageTree(src, dst string, dir bool, place func(src, dst string) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !dir {
		return place(src, dst)
	}
	return filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, p[len(src):])
		switch {
		case de.IsDir():
			return os.MkdirAll(target, 0o755)
		case de.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return place(p, target)
		}
	})
}
