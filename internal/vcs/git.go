// Package vcs reads what changed in a git repository, for `pipe affected`.
//
// It uses go-git only: CI images and developer machines need no git binary,
// and the answers do not depend on the user's git configuration (aliases,
// diff drivers, external diff tools).
package vcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Kinds of Change.
const (
	Added    = "added"
	Modified = "modified"
	Deleted  = "deleted"
	Renamed  = "renamed"
)

// Change is one file that differs between two versions of the tree.
type Change struct {
	// Path is relative to the repository root, slash-separated. For a
	// deletion it is the deleted path; for a rename, the new one.
	Path string
	// OldPath is the path before a rename; empty otherwise.
	OldPath string
	// Kind is Added, Modified, Deleted or Renamed. A mode change (the
	// executable bit) counts as a modification.
	Kind string
}

// ErrNotRepository is returned when a directory is not inside a git
// repository.
var ErrNotRepository = errors.New("not inside a git repository")

// ErrUnknownRevision is returned for a revision that names no commit here.
var ErrUnknownRevision = errors.New("unknown revision")

// renameLimit bounds similarity rename detection the way git's
// diff.renameLimit does: beyond it, comparing every deleted file with every
// added one costs more than knowing the renames is worth, since a rename
// affects the same targets as a deletion plus an addition.
const renameLimit = 1000

// Repo is an opened repository.
type Repo struct {
	r    *git.Repository
	root string // absolute worktree root, symlinks resolved

	mu    sync.Mutex
	trees map[plumbing.Hash]*object.Tree
}

// Open finds the repository that holds dir, walking up to the nearest .git
// (a directory, or a file as in linked worktrees and submodules).
func Open(dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	r, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, fmt.Errorf("%s is %w (pipe compares git revisions; run it in a git checkout)", abs, ErrNotRepository)
		}
		return nil, fmt.Errorf("open the git repository of %s: %w", abs, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		if errors.Is(err, git.ErrIsBareRepository) {
			return nil, fmt.Errorf("%s: the repository is bare; pipe needs a checkout", abs)
		}
		return nil, err
	}
	root := wt.Filesystem.Root()
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	return &Repo{r: r, root: root, trees: map[plumbing.Hash]*object.Tree{}}, nil
}

// Root is the absolute path of the repository's working tree, with
// symlinks resolved.
func (r *Repo) Root() string { return r.root }

// Resolve returns the commit hash a revision names: a branch, tag, remote
// branch (origin/main), full or abbreviated hash, or an expression such as
// HEAD~1.
func (r *Repo) Resolve(rev string) (string, error) {
	c, err := r.commit(rev)
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

func (r *Repo) commit(rev string) (*object.Commit, error) {
	if rev == "" {
		return nil, fmt.Errorf("%w \"\": name a branch, tag or commit", ErrUnknownRevision)
	}
	h, err := r.r.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		hint := "pass a branch, tag, commit hash, or an expression such as HEAD~1 or origin/main"
		if strings.Contains(rev, "/") || r.isShallow() {
			hint += "; in a CI checkout, fetch it first (git fetch origin main, or fetch-depth: 0 in actions/checkout)"
		}
		return nil, fmt.Errorf("%w %q (%v): %s", ErrUnknownRevision, rev, err, hint)
	}
	c, err := r.r.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s is not a commit here: %v", ErrUnknownRevision, rev, h, err)
	}
	return c, nil
}

func (r *Repo) isShallow() bool {
	s, err := r.r.Storer.Shallow()
	return err == nil && len(s) > 0
}

func (r *Repo) tree(c *object.Commit) (*object.Tree, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.trees[c.Hash]; ok {
		return t, nil
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read the tree of %s: %w", c.Hash, err)
	}
	r.trees[c.Hash] = t
	return t, nil
}

// mergeBase returns the commit `git diff a...b` compares b with: the best
// common ancestor of a and b. With several (criss-cross merges) it takes
// the newest, as git takes one and warns.
func (r *Repo) mergeBase(a, b *object.Commit, aName, bName string) (*object.Commit, error) {
	bases, err := a.MergeBase(b)
	if err != nil {
		if r.isShallow() {
			return nil, fmt.Errorf("find the merge base of %s and %s: %v: the clone is shallow; fetch more history (git fetch --unshallow, or fetch-depth: 0 in actions/checkout)", aName, bName, err)
		}
		return nil, fmt.Errorf("find the merge base of %s and %s: %w", aName, bName, err)
	}
	if len(bases) == 0 {
		hint := "they share no history"
		if r.isShallow() {
			hint = "the clone is shallow; fetch more history (git fetch --unshallow, or fetch-depth: 0 in actions/checkout)"
		}
		return nil, fmt.Errorf("%s and %s have no common ancestor: %s", aName, bName, hint)
	}
	sort.Slice(bases, func(i, j int) bool {
		ti, tj := bases[i].Committer.When, bases[j].Committer.When
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return bases[i].Hash.String() < bases[j].Hash.String()
	})
	return bases[0], nil
}

// Diff is the result of comparing two revisions.
type Diff struct {
	// MergeBase is the commit the changes are relative to: the merge base
	// of the base revision and the head.
	MergeBase string
	// Head is the head commit; with the working tree as head, the commit
	// HEAD names.
	Head string
	// Changes are sorted by Path.
	Changes []Change
}

// Diff lists the files that differ between base and head the way
// `git diff base...head` does: against the merge base of the two, so
// commits that landed on base after head branched off are not counted as
// changes of head. head == "" means the working tree: the commits from the
// merge base to HEAD plus staged, unstaged and untracked files (those that
// .gitignore does not exclude).
func (r *Repo) Diff(base, head string) (*Diff, error) {
	baseC, err := r.commit(base)
	if err != nil {
		return nil, err
	}
	headName := head
	if head == "" {
		headName = "HEAD"
	}
	headC, err := r.commit(headName)
	if err != nil {
		return nil, err
	}
	mb, err := r.mergeBase(baseC, headC, base, headName)
	if err != nil {
		return nil, err
	}
	mbTree, err := r.tree(mb)
	if err != nil {
		return nil, err
	}
	headTree, err := r.tree(headC)
	if err != nil {
		return nil, err
	}
	changes, err := diffTrees(mbTree, headTree)
	if err != nil {
		return nil, err
	}
	if head == "" {
		if changes, err = r.withWorktree(mbTree, headTree, changes); err != nil {
			return nil, err
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	return &Diff{MergeBase: mb.Hash.String(), Head: headC.Hash.String(), Changes: changes}, nil
}

func diffTrees(a, b *object.Tree) ([]Change, error) {
	chs, err := object.DiffTreeWithOptions(context.Background(), a, b, &object.DiffTreeOptions{
		DetectRenames: true,
		RenameScore:   60,
		RenameLimit:   renameLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("compare trees: %w", err)
	}
	var out []Change
	for _, ch := range chs {
		from, to := ch.From.Name, ch.To.Name
		switch {
		case from == "":
			out = append(out, Change{Path: to, Kind: Added})
		case to == "":
			out = append(out, Change{Path: from, Kind: Deleted})
		case from != to:
			out = append(out, Change{Path: to, OldPath: from, Kind: Renamed})
		default:
			out = append(out, Change{Path: to, Kind: Modified})
		}
	}
	return out, nil
}

// fileState is a path's content in one version: absent, or a blob hash and
// mode.
type fileState struct {
	exists bool
	hash   plumbing.Hash
	mode   filemode.FileMode
}

func treeState(t *object.Tree, p string) fileState {
	e, err := t.FindEntry(p)
	if err != nil || e.Mode == filemode.Dir {
		return fileState{}
	}
	return fileState{exists: true, hash: e.Hash, mode: e.Mode}
}

// diskState hashes a working-tree file as git would store it.
func (r *Repo) diskState(p string) (fileState, error) {
	abs := filepath.Join(r.root, filepath.FromSlash(p))
	fi, err := os.Lstat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return fileState{}, nil
		}
		return fileState{}, err
	}
	var data []byte
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return fileState{}, err
		}
		data = []byte(target)
	case fi.Mode().IsRegular():
		if data, err = os.ReadFile(abs); err != nil {
			return fileState{}, err
		}
	default:
		return fileState{}, nil // a directory where a file was
	}
	mode, err := filemode.NewFromOSFileMode(fi.Mode())
	if err != nil {
		return fileState{}, err
	}
	return fileState{exists: true, hash: plumbing.ComputeHash(plumbing.BlobObject, data), mode: mode}, nil
}

// withWorktree turns the committed changes (merge base → HEAD) into the
// changes from the merge base to the working tree. Each touched path is
// judged by its two end states, so an edit that undoes a commit, or a file
// added in a commit and removed again on disk, is no change at all.
func (r *Repo) withWorktree(mbTree, headTree *object.Tree, committed []Change) ([]Change, error) {
	wt, err := r.r.Worktree()
	if err != nil {
		return nil, err
	}
	status, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("read the working tree status: %w", err)
	}
	touched := map[string]bool{}
	renamedFrom := map[string]string{} // new path → old path, from commits
	for _, c := range committed {
		touched[c.Path] = true
		if c.OldPath != "" {
			touched[c.OldPath] = true
			renamedFrom[c.Path] = c.OldPath
		}
	}
	for p, s := range status {
		if s.Staging == git.Unmodified && s.Worktree == git.Unmodified {
			continue
		}
		touched[p] = true
	}
	paths := make([]string, 0, len(touched))
	for p := range touched {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	type end struct {
		kind string
		now  fileState
		was  fileState
	}
	ends := map[string]end{}
	for _, p := range paths {
		was := treeState(mbTree, p)
		var now fileState
		if _, ok := status[p]; ok {
			if now, err = r.diskState(p); err != nil {
				return nil, err
			}
		} else {
			now = treeState(headTree, p)
		}
		switch {
		case !was.exists && now.exists:
			ends[p] = end{Added, now, was}
		case was.exists && !now.exists:
			ends[p] = end{Deleted, now, was}
		case was.exists && now.exists && (was.hash != now.hash || was.mode != now.mode):
			ends[p] = end{Modified, now, was}
		}
	}

	var out []Change
	paired := map[string]bool{}
	// Renames the commits recorded stand when both ends still agree.
	for _, p := range paths {
		old, ok := renamedFrom[p]
		if ok && ends[p].kind == Added && ends[old].kind == Deleted {
			out = append(out, Change{Path: p, OldPath: old, Kind: Renamed})
			paired[p], paired[old] = true, true
		}
	}
	// Uncommitted renames are a deletion and an addition of the same
	// content. Empty files are never paired: they are all alike.
	emptyBlob := plumbing.ComputeHash(plumbing.BlobObject, nil)
	deletedByHash := map[plumbing.Hash][]string{}
	for _, p := range paths {
		if e := ends[p]; e.kind == Deleted && !paired[p] && e.was.hash != emptyBlob {
			deletedByHash[e.was.hash] = append(deletedByHash[e.was.hash], p)
		}
	}
	for _, p := range paths {
		e := ends[p]
		if e.kind != Added || paired[p] {
			continue
		}
		if olds := deletedByHash[e.now.hash]; len(olds) > 0 {
			deletedByHash[e.now.hash] = olds[1:]
			out = append(out, Change{Path: p, OldPath: olds[0], Kind: Renamed})
			paired[p], paired[olds[0]] = true, true
		}
	}
	for _, p := range paths {
		if e, ok := ends[p]; ok && !paired[p] {
			out = append(out, Change{Path: p, Kind: e.kind})
		}
	}
	return out, nil
}

// ReadFileAt returns the content of the repository-relative file p at
// revision rev. A file absent at rev gives an *fs.PathError wrapping
// fs.ErrNotExist.
func (r *Repo) ReadFileAt(rev, p string) ([]byte, error) {
	c, err := r.commit(rev)
	if err != nil {
		return nil, err
	}
	t, err := r.tree(c)
	if err != nil {
		return nil, err
	}
	p = path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "/"))
	f, err := t.File(p)
	if err != nil {
		if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
			return nil, &fs.PathError{Op: "read at " + rev, Path: p, Err: fs.ErrNotExist}
		}
		return nil, fmt.Errorf("read %s at %s: %w", p, rev, err)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", p, rev, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", p, rev, err)
	}
	return b, nil
}
