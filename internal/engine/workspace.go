package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Names of the files that define a workspace and its packages.
const (
	WorkspaceFile = "WORKSPACE.star"
	BuildFile     = "BUILD.star"
)

// Settings are the values given to workspace() in WORKSPACE.star.
type Settings struct {
	Name        string
	Python      string
	NodeModules string
	PythonIndex string
	// PythonInterpreters maps Python versions ("3.12") to interpreters
	// (absolute or workspace-relative paths) that Python actions of that
	// version run, ahead of any pipe discovers.
	PythonInterpreters map[string]string
	// PythonDownloads is where missing interpreters are downloaded from:
	// a base URL of python-build-standalone releases, "never", or "" for
	// the default.
	PythonDownloads string
	// ActionEnv names host environment variables passed to genrule
	// commands; their values become part of the action key.
	ActionEnv []string
	// Path is the PATH given to commands; part of the action key.
	Path string
	// Extra holds settings the engine does not interpret (for rules).
	Extra map[string]any
}

// DefaultActionPath is the PATH commands see unless WORKSPACE.star says
// otherwise: fixed, so a user's shell setup cannot change outputs.
const DefaultActionPath = "/usr/local/bin:/usr/bin:/bin"

// Workspace is a pipe workspace on disk.
type Workspace struct {
	Root     string // absolute
	Settings Settings

	tools sync.Map // path → identity, so each tool is stat'ed once
	// memo holds what analysis computes once per command and shares
	// between targets: host probes (AnalysisContext.Probe) and parsed
	// files (AnalysisContext.ParseFile, keyed by content).
	memo sync.Map // key → *memoEntry
}

type memoEntry struct {
	once sync.Once
	v    any
	err  error
}

// memoize computes f once per key for this command and shares the result.
func (w *Workspace) memoize(key string, f func() (any, error)) (any, error) {
	e, _ := w.memo.LoadOrStore(key, &memoEntry{})
	me := e.(*memoEntry)
	me.once.Do(func() { me.v, me.err = f() })
	return me.v, me.err
}

// ToolIdentity names a host program by path, size, modification time and
// mode: an upgrade of the program changes it, and so every key that uses
// it; so does a chmod, which decides whether it runs at all.
// Rules call AnalysisContext.ToolIdentity, which records the probe.
func (w *Workspace) ToolIdentity(path string) string {
	if id, ok := w.tools.Load(path); ok {
		return id.(string)
	}
	id := path + " (missing)"
	if fi, err := os.Stat(path); err == nil {
		id = fmt.Sprintf("%s %d %d %v", path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode().Perm())
	}
	w.tools.Store(path, id)
	return id
}

// StateDir is the workspace's private state directory, .pipe/.
func (w *Workspace) StateDir() string { return filepath.Join(w.Root, ".pipe") }

// DistDir is where outputs are materialized.
func (w *Workspace) DistDir() string { return filepath.Join(w.Root, "dist") }

// Abs turns a workspace-relative slash path into an absolute path.
func (w *Workspace) Abs(rel string) string {
	return filepath.Join(w.Root, filepath.FromSlash(rel))
}

// NoWorkspaceError says that no directory from Dir up holds
// WORKSPACE.star. The CLI exits with status 2 for it.
type NoWorkspaceError struct{ Dir string }

func (e *NoWorkspaceError) Error() string {
	return fmt.Sprintf("no %s in %s or any parent directory: run pipe inside a workspace, pass -C DIR, or make this directory one with pipe init", WorkspaceFile, e.Dir)
}

// FindWorkspace walks up from dir to the nearest directory that holds
// WORKSPACE.star.
func FindWorkspace(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; {
		if _, err := os.Stat(filepath.Join(d, WorkspaceFile)); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", &NoWorkspaceError{Dir: abs}
		}
		d = parent
	}
}

// RelPackage is the package path of dir inside the workspace root, used to
// resolve relative patterns typed in a sub-directory.
func RelPackage(root, dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return ""
	}
	return filepath.ToSlash(rel)
}

// skipDir reports directories that never hold packages: pipe's own output
// and state, VCS data, installed dependencies and hidden directories.
func skipDir(rel, name string) bool {
	if strings.HasPrefix(name, ".") || name == "node_modules" || name == "__pycache__" {
		return true
	}
	return rel == "dist"
}

// FindPackages lists the packages at or beneath the package path under,
// skipping nested workspaces. The walk reads directories in parallel: on a
// large tree it is the bulk of a no-op build's file system work.
func FindPackages(root, under string) ([]string, error) {
	pkgs, _, err := findPackages(root, under)
	return pkgs, err
}

// findPackages is FindPackages that also returns the directories it read,
// sorted: a package appears or disappears only by a change to one of them.
func findPackages(root, under string) ([]string, []string, error) {
	start := filepath.Join(root, filepath.FromSlash(under))
	if fi, err := os.Stat(start); err != nil || !fi.IsDir() {
		if errors.Is(err, fs.ErrNotExist) || err == nil {
			return nil, nil, Usagef("//%s/...: no directory %s in the workspace", under, under)
		}
		return nil, nil, err
	}
	var (
		mu   sync.Mutex
		pkgs []string
		read []string
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 8)
	)
	var walk func(rel string, top bool)
	walk = func(rel string, top bool) {
		defer wg.Done()
		sem <- struct{}{}
		ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
		<-sem
		mu.Lock()
		if err != nil {
			errs = append(errs, err)
			mu.Unlock()
			return
		}
		if rel == "" {
			read = append(read, ".")
		} else {
			read = append(read, rel)
		}
		mu.Unlock()
		var subdirs []string
		isPkg := false
		for _, e := range ents {
			name := e.Name()
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				continue // never follow links while discovering packages
			}
			if typ.IsDir() {
				child := name
				if rel != "" {
					child = rel + "/" + name
				}
				if !skipDir(child, name) {
					subdirs = append(subdirs, child)
				}
				continue
			}
			switch name {
			case BuildFile:
				isPkg = true
			case WorkspaceFile:
				if !top {
					return // a nested workspace is not part of this one
				}
			}
		}
		if isPkg {
			mu.Lock()
			pkgs = append(pkgs, rel)
			mu.Unlock()
		}
		for _, c := range subdirs {
			wg.Add(1)
			go walk(c, false)
		}
	}
	wg.Add(1)
	walk(under, true)
	wg.Wait()
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("find packages: %w", errs[0])
	}
	sort.Strings(pkgs)
	sort.Strings(read)
	return pkgs, read, nil
}

// PackageExists reports whether pkg has a BUILD.star.
func PackageExists(root, pkg string) bool {
	fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(pkg), BuildFile))
	return err == nil && !fi.IsDir()
}
