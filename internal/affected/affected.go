// Package affected maps the changes between two git revisions to the
// targets they affect: what `pipe affected` prints and `pipe build
// --affected` builds. It joins git (internal/vcs), which the engine does
// not know, with the engine's AffectedTargets.
package affected

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/vcs"
)

// Result is what Compute found.
type Result struct {
	Diff *vcs.Diff
	// Changes are the changed files inside the workspace, with
	// workspace-relative paths.
	Changes []engine.FileChange
	Targets []engine.AffectedTarget
	// Graph is the whole workspace's target graph (//...); nil when no
	// file of the workspace changed, since nothing was loaded then.
	Graph *engine.TargetGraph
}

// Compute diffs the repository holding the workspace between base and
// head (as git diff base...head does; head "" is the working tree) and
// maps the changes to targets of the whole workspace. Targets and actions
// are read from the working tree; the files rules read at analysis are
// also read at the merge base, for the targets that read a changed one.
// warn, if not nil, is told what the user should know about the
// comparison. Revisions git does not know and workspaces outside a
// repository are usage errors (engine.IsUserError).
func Compute(ctx context.Context, ws *engine.Workspace, loader engine.Loader, base, head string, warn func(msg string)) (*Result, error) {
	repo, err := vcs.Open(ws.Root)
	if err != nil {
		if errors.Is(err, vcs.ErrNotRepository) {
			return nil, engine.Usagef("affected: %v", err)
		}
		return nil, err
	}
	d, err := repo.Diff(base, head)
	if err != nil {
		if errors.Is(err, vcs.ErrUnknownRevision) {
			return nil, engine.Usagef("affected: %v", err)
		}
		return nil, fmt.Errorf("affected: %w", err)
	}
	prefix, err := workspacePrefix(repo.Root(), ws.Root)
	if err != nil {
		return nil, err
	}
	if head != "" && warn != nil {
		// Targets come from the files on disk; say so when they are not
		// the head's.
		if cur, err := repo.Resolve("HEAD"); err == nil && cur != d.Head {
			warn(fmt.Sprintf("the checkout is at %s, not --head %s (%s); targets are read from the working tree", Short(cur), head, Short(d.Head)))
		}
	}
	res := &Result{Diff: d, Changes: toWorkspaceChanges(d.Changes, prefix)}
	if len(res.Changes) == 0 {
		return res, nil
	}
	all, _ := engine.ParsePattern("//...", "")
	tg, err := engine.LoadTargets(ctx, ws, loader, []engine.Pattern{all})
	if err != nil {
		return nil, err
	}
	ag, err := engine.Analyze(ctx, tg)
	if err != nil {
		return nil, err
	}
	res.Graph = tg
	opts := engine.AffectedOptions{BaseFile: baseFile(repo, d.MergeBase, prefix)}
	if res.Targets, err = engine.AffectedTargets(ctx, tg, ag, res.Changes, opts); err != nil {
		return nil, err
	}
	return res, nil
}

// baseFile reads a workspace file as the merge base has it, for the base
// analysis: only the changed files a rule reads at analysis are asked for.
func baseFile(repo *vcs.Repo, rev, prefix string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		b, err := repo.ReadFileAt(rev, path.Join(prefix, p))
		if err != nil {
			// A missing file wraps fs.ErrNotExist, as the engine wants.
			return nil, fmt.Errorf("affected: %w", err)
		}
		return b, nil
	}
}

// workspacePrefix is the workspace root's path inside the repository ("" at
// the repository root).
func workspacePrefix(repoRoot, wsRoot string) (string, error) {
	real, err := filepath.EvalSymlinks(wsRoot)
	if err != nil {
		real = wsRoot
	}
	rel, err := filepath.Rel(repoRoot, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("affected: the workspace %s is not inside the repository %s", wsRoot, repoRoot)
	}
	if rel == "." {
		return "", nil
	}
	return filepath.ToSlash(rel), nil
}

// toWorkspaceChanges keeps the changes inside the workspace, with paths
// relative to it. A rename across the workspace's edge is an addition or a
// deletion seen from inside.
func toWorkspaceChanges(changes []vcs.Change, prefix string) []engine.FileChange {
	rel := func(p string) (string, bool) {
		if p == "" {
			return "", false
		}
		if prefix == "" {
			return p, true
		}
		r, ok := strings.CutPrefix(p, prefix+"/")
		return r, ok
	}
	var out []engine.FileChange
	for _, c := range changes {
		p, inNew := rel(c.Path)
		old, inOld := rel(c.OldPath)
		switch {
		case c.Kind == vcs.Renamed && inNew && inOld:
			out = append(out, engine.FileChange{Path: p, OldPath: old, Kind: engine.ChangeRenamed})
		case c.Kind == vcs.Renamed && inNew:
			out = append(out, engine.FileChange{Path: p, Kind: engine.ChangeAdded})
		case c.Kind == vcs.Renamed && inOld:
			out = append(out, engine.FileChange{Path: old, Kind: engine.ChangeDeleted})
		case inNew:
			out = append(out, engine.FileChange{Path: p, Kind: c.Kind})
		}
	}
	return out
}

// Short abbreviates a commit hash for messages.
func Short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
