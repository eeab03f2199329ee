package engine

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// materializeCached makes the workspace hold r's outputs, restoring any that
// are missing or were edited, and removing from its output directories
// whatever r does not list. It reports false when a blob is missing or
// corrupt, so the action must run again.
//
// A directory output of many files (a Python bundle's site-packages) is
// checked by stat: one lstat per file against the digest cache, in
// parallel, and one per directory of the tree, which is listed only when
// its stat changed since it was last found clean. No file is read unless
// its stat changed.
func (e *Executor) materializeCached(r *cache.ActionResult) (int, error) {
	restored := 0
	if len(r.Dirs) > 0 {
		restored += e.pruneDirs(r)
	}
	for _, i := range e.changedOutputs(r.Outputs) {
		o := r.Outputs[i]
		abs := e.WS.Abs(o.Path)
		if err := e.safeParents(o.Path); err != nil {
			return restored, err
		}
		if fi, err := os.Lstat(abs); err == nil && fi.IsDir() {
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
		if err := e.safeParents(p); err != nil {
			return restored, err
		}
		os.RemoveAll(abs)
		os.MkdirAll(filepath.Dir(abs), 0o755)
		if err := os.Symlink(target, abs); err != nil {
			return restored, fmt.Errorf("restore %s: %w", p, err)
		}
		restored++
	}
	return restored, nil
}

// parallelOutputs is the number of outputs from which a result's files are
// checked by several goroutines: below it, starting them costs more than
// the stats.
const parallelOutputs = 512

// changedOutputs returns the indexes of the outputs that are not in place
// as recorded: missing, not a regular file, another exec bit, or other
// content. A file whose stat the digest cache vouches for is not read;
// one whose stat changed but whose size is right is hashed. The stats are
// fstatat calls relative to the workspace root, which build no absolute
// path and allocate nothing per file.
func (e *Executor) changedOutputs(outs []cache.OutputFile) []int {
	root, err := syscall.Open(e.WS.Root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		root = atFDCWD // and absolute paths below
	} else {
		defer syscall.Close(root)
	}
	inPlace := func(o *cache.OutputFile, cpath []byte) []byte {
		p := o.Path
		if root == atFDCWD {
			p = e.WS.Abs(p)
		}
		cpath = append(append(cpath[:0], p...), 0)
		var st FileStat
		var errno syscall.Errno
		for {
			if st, errno = statAt(root, p, cpath, unix.AT_SYMLINK_NOFOLLOW); errno != syscall.EINTR {
				break
			}
		}
		mode := fs.FileMode(st.Mode)
		if errno != 0 || !mode.IsRegular() || (mode&0o111 != 0) != o.Executable {
			return nil
		}
		if d, ok := e.Digests.lookupStat(o.Path, st); ok && d == o.Digest {
			return cpath
		}
		if st.Size != o.Size {
			return nil
		}
		if d, _, err := e.Digests.Digest(o.Path, e.WS.Abs(o.Path)); err == nil && d == o.Digest {
			return cpath
		}
		return nil
	}
	bad := make([]bool, len(outs))
	check := func(lo, hi int) {
		cpath := make([]byte, 0, 256)
		for i := lo; i < hi; i++ {
			if c := inPlace(&outs[i], cpath); c != nil {
				cpath = c
			} else {
				bad[i] = true
			}
		}
	}
	workers := 1
	if len(outs) >= parallelOutputs {
		workers = min(2*runtime.GOMAXPROCS(0), len(outs)/128+1)
	}
	forChunks(len(outs), 128, workers, nil, check)
	var changed []int
	for i, b := range bad {
		if b {
			changed = append(changed, i)
		}
	}
	return changed
}

// pruneDirs removes from r's output directories what r does not list, so a
// restored directory equals what the action produced. Each directory of the
// tree (the output directory and every directory holding one of its files
// or symlinks) costs an lstat; it is listed only when that stat differs from
// the one the digest cache recorded when the directory was last found
// clean: a file or directory added, removed or renamed in it changes its
// modification time. An edited file does not, and is found by its own stat
// (changedOutputs). The stat recorded is the one taken before listing, so a
// change during the listing is seen next time.
func (e *Executor) pruneDirs(r *cache.ActionResult) int {
	removed := 0
	var want map[string]bool
	for _, d := range r.Dirs {
		dirs := treeDirs(r, d)
		for _, dir := range sortedKeys(dirs) {
			abs := e.WS.Abs(dir)
			fi, err := os.Lstat(abs)
			switch {
			case err != nil && dir == d:
				// An output directory, even an empty one, is in place.
				os.MkdirAll(abs, 0o755)
				continue
			case err != nil:
				continue // restored with its files
			case !fi.IsDir():
				// A file or symbolic link where the tree has a directory.
				os.RemoveAll(abs)
				removed++
				continue
			}
			if _, ok := e.Digests.Lookup(dir, fi); ok {
				continue
			}
			if want == nil {
				want = make(map[string]bool, len(r.Outputs)+len(r.Symlinks))
				for _, o := range r.Outputs {
					want[o.Path] = true
				}
				for p := range r.Symlinks {
					want[p] = true
				}
			}
			ents, err := os.ReadDir(abs)
			if err != nil {
				continue
			}
			for _, de := range ents {
				rel := dir + "/" + de.Name()
				if de.IsDir() && dirs[rel] || !de.IsDir() && want[rel] {
					continue
				}
				os.RemoveAll(filepath.Join(abs, de.Name()))
				e.Digests.Forget(rel)
				removed++
			}
			e.Digests.Record(dir, fi, cache.Digest{})
		}
	}
	return removed
}

// treeDirs is the set of directories of output directory d's tree: d and
// every directory between it and one of r's files or symlinks.
func treeDirs(r *cache.ActionResult, d string) map[string]bool {
	dirs := map[string]bool{d: true}
	prefix := d + "/"
	add := func(p string) {
		if !strings.HasPrefix(p, prefix) {
			return
		}
		for q := path.Dir(p); !dirs[q]; q = path.Dir(q) {
			dirs[q] = true
		}
	}
	for _, o := range r.Outputs {
		add(o.Path)
	}
	for p := range r.Symlinks {
		add(p)
	}
	return dirs
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pruneOwn removes from the directories a's outputs live in (inside the
// target's own part of dist/: dist/<pkg>/<name>/… and siblings such as
// dist/<pkg>/<name>.layers/) whatever no action declares: outputs renamed or
// dropped from a BUILD file, and files a user put there. With force false
// (a cache hit that restored nothing) a directory is only listed when its
// stat changed since it was last found clean, so a no-op build pays one
// lstat per directory, not a listing.
func (e *Executor) pruneOwn(a *Action, force bool) {
	if e.Graph == nil {
		return
	}
	for _, d := range ownDirs(a) {
		abs := e.WS.Abs(d)
		if !force {
			fi, err := os.Lstat(abs)
			if err != nil {
				continue
			}
			if _, ok := e.Digests.Lookup(d, fi); ok {
				continue
			}
		}
		e.pruneDir(d)
		if fi, err := os.Lstat(abs); err == nil && fi.IsDir() {
			e.Digests.Record(d, fi, cache.Digest{})
		}
	}
}

// ownDirs lists the directories under dist/ that hold a's outputs and
// belong to a's target alone, parents first.
func ownDirs(a *Action) []string {
	base := path.Join("dist", a.Owner.Pkg, a.Owner.Name)
	mine := func(d string) bool {
		rest, ok := strings.CutPrefix(d, base)
		return ok && (rest == "" || rest[0] == '/' || rest[0] == '.')
	}
	var dirs []string
	for _, o := range a.Outputs {
		for d := path.Dir(o.Path); mine(d) && !slices.Contains(dirs, d); d = path.Dir(d) {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	return dirs
}

// pruneDir removes the entries of dir that are neither declared outputs nor
// directories holding declared outputs.
func (e *Executor) pruneDir(dir string) {
	ents, err := os.ReadDir(e.WS.Abs(dir))
	if err != nil {
		return
	}
	// dist/<pkg>/<name> can also be the dist/ directory of package
	// <pkg>/<name>: its targets' directories are not this target's to
	// prune when that package is not part of this build.
	_, err = os.Stat(e.WS.Abs(path.Join(strings.TrimPrefix(dir, "dist/"), "BUILD.star")))
	holdsPackage := err == nil
	for _, de := range ents {
		rel := dir + "/" + de.Name()
		// A temp file or set-aside directory here is not a write in
		// progress: the directory is the target's own, its actions are done,
		// and the workspace lock keeps other builds out. It is what a killed
		// build left behind, and goes with the other strays.
		output, ancestor := e.Graph.declaredKind(rel)
		if output || ancestor || (holdsPackage && de.IsDir()) {
			continue
		}
		os.RemoveAll(e.WS.Abs(rel))
		e.Digests.Forget(rel)
	}
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
	if err := e.safeParents(o.Path); err != nil {
		return err
	}
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
