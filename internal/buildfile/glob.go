package buildfile

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	star "go.starlark.net/starlark"

	"github.com/pipebuild/pipe/internal/engine"
)

// globContext caches the file listing of one package, shared by all glob()
// calls of that package.
type globContext struct {
	files []string // package-relative, sorted
}

// globFiles returns the package's files matching incl and not excl, and
// remembers them as known to exist.
func (ev *Evaluator) globFiles(b *pkgBuilder, incl, excl []string) ([]string, error) {
	for _, ps := range [][]string{incl, excl} {
		if _, err := checkGlobPatterns(ps); err != nil {
			return nil, err
		}
	}
	if b.globCtx == nil {
		files, err := ev.listPackage(b.pkg.Path, b.seen)
		if err != nil {
			return nil, err
		}
		b.globCtx = &globContext{files: files}
	}
	var out []string
	for _, f := range b.globCtx.files {
		if matchAny(incl, f) && !matchAny(excl, f) {
			out = append(out, f)
			if b.pkg.Globbed == nil {
				b.pkg.Globbed = map[string]bool{}
			}
			b.pkg.Globbed[f] = true
		}
	}
	return out, nil
}

// glob implements glob(include, exclude = [], allow_empty = True).
//
// It lists the files of the package's directory tree, stopping at
// sub-packages and nested workspaces (their files belong to them), skipping
// what .gitignore ignores and pipe's own dist/ and .pipe/. Results are
// package-relative and sorted.
func (ev *Evaluator) glob(thread *star.Thread, fn *star.Builtin, args star.Tuple, kwargs []star.Tuple) (star.Value, error) {
	var include, exclude *star.List
	allowEmpty := true
	if err := star.UnpackArgs("glob", args, kwargs, "include", &include, "exclude?", &exclude, "allow_empty?", &allowEmpty); err != nil {
		return nil, err
	}
	call := ev.callStart(callerPos(thread, 1))
	b, ok := thread.Local(localPkg).(*pkgBuilder)
	if !ok {
		return nil, engine.Errorf(call, "glob: can only be called while a BUILD.star is evaluated")
	}
	incl, err := globPatterns(include)
	if err != nil {
		return nil, engine.Errorf(call, "glob: include: %v", err)
	}
	var excl []string
	if exclude != nil {
		if excl, err = globPatterns(exclude); err != nil {
			return nil, engine.Errorf(call, "glob: exclude: %v", err)
		}
	}
	files, err := ev.globFiles(b, incl, excl)
	if err != nil {
		return nil, engine.Errorf(call, "glob: %v", err)
	}
	out := make([]star.Value, len(files))
	for i, f := range files {
		out[i] = star.String(f)
	}
	if len(out) == 0 && !allowEmpty {
		return nil, engine.Errorf(call, "glob(%s) matched no files in //%s; fix the patterns or pass allow_empty = True", strings.Join(quoteList(incl), ", "), b.pkg.Path)
	}
	return star.NewList(out), nil
}

func quoteList(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func globPatterns(l *star.List) ([]string, error) {
	if l == nil {
		return nil, nil
	}
	ps, err := toStrings(l)
	if err != nil {
		return nil, err
	}
	return checkGlobPatterns(ps)
}

func checkGlobPatterns(ps []string) ([]string, error) {
	for _, p := range ps {
		if p == "" {
			return nil, fmt.Errorf("empty pattern")
		}
		if strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("pattern %q leaves the package: patterns are relative to the package directory, so drop the leading /", p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == ".." {
				return nil, fmt.Errorf("pattern %q leaves the package: a package can only glob its own files; give the files to a filegroup in their own package and depend on it", p)
			}
		}
		if !doublestar.ValidatePattern(p) {
			return nil, fmt.Errorf("pattern %q is not a valid glob", p)
		}
	}
	return ps, nil
}

func matchAny(patterns []string, f string) bool {
	for _, p := range patterns {
		if ok, _ := doublestar.Match(p, f); ok {
			return true
		}
	}
	return false
}

// listPackage returns every file of package pkg, package-relative, sorted.
// It adds to seen each directory it read and each .gitignore it consulted.
func (ev *Evaluator) listPackage(pkg string, seen map[string]bool) ([]string, error) {
	root := filepath.Join(ev.root, filepath.FromSlash(pkg))
	var files []string
	var walk func(dir, rel string, m gitignore.Matcher) error
	walk = func(dir, rel string, m gitignore.Matcher) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		wsRel := path.Join(pkg, rel)
		seen[wsRel] = true
		seen[path.Join(wsRel, ".gitignore")] = true
		if ps := ev.ignores.patterns(wsRel); len(ps) > 0 {
			m = extendMatcher(m, ps)
		}
		for _, e := range ents {
			name := e.Name()
			childRel := name
			if rel != "" {
				childRel = rel + "/" + name
			}
			childWs := path.Join(pkg, childRel)
			isDir := e.IsDir()
			if e.Type()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.IsDir() {
					continue // never follow directory links out of the tree
				}
			}
			if m != nil && m.Match(strings.Split(childWs, "/"), isDir) {
				continue
			}
			if isDir {
				if name == ".git" || name == ".pipe" || (childWs == "dist") {
					continue
				}
				sub := filepath.Join(dir, name)
				if exists(filepath.Join(sub, engine.BuildFile)) || exists(filepath.Join(sub, engine.WorkspaceFile)) {
					// A sub-package owns its files; the package depends
					// only on it staying one.
					seen[childWs] = true
					continue
				}
				if err := walk(sub, childRel, m); err != nil {
					return err
				}
				continue
			}
			files = append(files, childRel)
		}
		return nil
	}
	base := ev.ignores.matcherAbove(pkg)
	if pkg != "" {
		seen[".gitignore"] = true
		parts := strings.Split(pkg, "/")
		for i := 1; i < len(parts); i++ {
			seen[strings.Join(parts[:i], "/")+"/.gitignore"] = true
		}
	}
	if err := walk(root, "", base); err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// patternMatcher is a gitignore matcher over an explicit pattern list, so
// matchers can be extended directory by directory.
type patternMatcher struct{ ps []gitignore.Pattern }

func (m *patternMatcher) Match(p []string, isDir bool) bool {
	return gitignore.NewMatcher(m.ps).Match(p, isDir)
}

func extendMatcher(m gitignore.Matcher, ps []gitignore.Pattern) gitignore.Matcher {
	var base []gitignore.Pattern
	if pm, ok := m.(*patternMatcher); ok {
		base = pm.ps
	}
	all := make([]gitignore.Pattern, 0, len(base)+len(ps))
	all = append(all, base...)
	all = append(all, ps...)
	return &patternMatcher{ps: all}
}

// ignoreCache reads each directory's .gitignore once per evaluator.
type ignoreCache struct {
	root string
	mu   sync.Mutex
	m    map[string][]gitignore.Pattern
}

func newIgnoreCache(root string) *ignoreCache {
	return &ignoreCache{root: root, m: map[string][]gitignore.Pattern{}}
}

// patterns returns the patterns of dir/.gitignore (dir workspace-relative).
func (c *ignoreCache) patterns(dir string) []gitignore.Pattern {
	if dir == "." {
		dir = ""
	}
	c.mu.Lock()
	ps, ok := c.m[dir]
	c.mu.Unlock()
	if ok {
		return ps
	}
	b, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(dir), ".gitignore"))
	if err == nil {
		var domain []string
		if dir != "" {
			domain = strings.Split(dir, "/")
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			ps = append(ps, gitignore.ParsePattern(line, domain))
		}
	}
	c.mu.Lock()
	c.m[dir] = ps
	c.mu.Unlock()
	return ps
}

// matcherAbove is the matcher made of the .gitignore files from the
// workspace root down to (not including) pkg.
func (c *ignoreCache) matcherAbove(pkg string) gitignore.Matcher {
	var all []gitignore.Pattern
	if pkg != "" {
		all = append(all, c.patterns("")...)
		parts := strings.Split(pkg, "/")
		for i := 1; i < len(parts); i++ {
			all = append(all, c.patterns(strings.Join(parts[:i], "/"))...)
		}
	}
	if len(all) == 0 {
		return nil
	}
	return &patternMatcher{ps: all}
}
