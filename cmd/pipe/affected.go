package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/vcs"
)

func affectedCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var base, head, output string
	c := &cobra.Command{
		Use:   "affected --base REV [--head REV]",
		Short: "list the targets that changes since a git revision affect",
		Long: `List the targets whose inputs changed between two git revisions, and every
target that depends on them: what a CI run of a pull request must build.

Changes are counted from the merge base of --base and the head, as in
git diff BASE...HEAD, so commits that landed on BASE after the branch was
made are not counted. Without --head the head is the working tree: commits
up to HEAD plus staged, unstaged and untracked (not ignored) files.

A changed file affects the targets that read it, provide it or name it; a
changed BUILD.star or loaded .star file affects its package's targets; a
changed uv.lock affects the bundles whose resolved wheels changed. Targets
and actions are read from the working tree.

  pipe affected --base origin/main
  pipe affected --base main --head HEAD --output json
  pipe build --affected --base origin/main`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if base == "" {
				return engine.Usagef("affected: --base is required: the revision to compare with, such as origin/main")
			}
			if output != "label" && output != "json" {
				return engine.Usagef("--output %q: want label or json", output)
			}
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := computeAffected(ctx, s, base, head)
			if err != nil {
				return err
			}
			res.summarize(s.stderr, base, head)
			return res.print(cmd.OutOrStdout(), output)
		},
	}
	c.Flags().StringVar(&base, "base", "", "compare with this git `REV` (branch, tag, commit, origin/main, HEAD~1)")
	c.Flags().StringVar(&head, "head", "", "the head git `REV` (default: the working tree)")
	c.Flags().StringVar(&output, "output", "label", "output format: label, or json (label, kind and reasons of each target)")
	return c
}

// affectedPatterns is the target list of `pipe build --affected --base
// REV`: one pattern per affected target. An empty list means nothing is
// affected; the caller must build nothing then, not fall back to //...
func affectedPatterns(ctx context.Context, s *session, base, head string) ([]engine.Pattern, error) {
	res, err := computeAffected(ctx, s, base, head)
	if err != nil {
		return nil, err
	}
	res.summarize(s.stderr, base, head)
	pats := make([]engine.Pattern, 0, len(res.targets))
	for _, t := range res.targets {
		pats = append(pats, engine.Pattern{Pkg: t.Label.Pkg, Name: t.Label.Name})
	}
	return pats, nil
}

// affectedResult is what computeAffected found.
type affectedResult struct {
	diff    *vcs.Diff
	changes []engine.FileChange // workspace-relative
	targets []engine.AffectedTarget
	tg      *engine.TargetGraph
}

// computeAffected diffs the repository holding the workspace and maps the
// changes to targets of the whole workspace (//...).
func computeAffected(ctx context.Context, s *session, base, head string) (*affectedResult, error) {
	repo, err := vcs.Open(s.ws.Root)
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
	prefix, err := workspacePrefix(repo.Root(), s.ws.Root)
	if err != nil {
		return nil, err
	}
	if head != "" {
		// Targets come from the files on disk; say so when they are not
		// the head's.
		if cur, err := repo.Resolve("HEAD"); err == nil && cur != d.Head {
			fmt.Fprintf(s.stderr, "pipe: warning: the checkout is at %s, not --head %s (%s); targets are read from the working tree\n", short(cur), head, short(d.Head))
		}
	}
	res := &affectedResult{diff: d, changes: toWorkspaceChanges(d.Changes, prefix)}
	if len(res.changes) == 0 {
		return res, nil
	}
	all, _ := engine.ParsePattern("//...", "")
	tg, err := engine.LoadTargets(ctx, s.ws, s.loader, []engine.Pattern{all})
	s.saveState()
	if err != nil {
		return nil, err
	}
	ag, err := engine.Analyze(tg)
	if err != nil {
		return nil, err
	}
	res.tg = tg
	overlay, err := baseOverlay(repo, d.MergeBase, prefix, res.changes)
	if err != nil {
		return nil, err
	}
	baseWS := &engine.Workspace{Root: s.ws.Root, Settings: s.ws.Settings, Overlay: overlay}
	opts := engine.AffectedOptions{
		Reanalyze: func() (*engine.ActionGraph, error) { return engine.AnalyzeWith(tg, baseWS) },
	}
	res.targets = engine.AffectedTargets(tg, ag, res.changes, opts)
	return res, nil
}

// baseOverlay holds the merge base's content of every changed file, nil
// for those it did not have, for analysing the workspace as of the base.
// Any changed file may be one a rule reads at analysis time, and only the
// rules know which.
func baseOverlay(repo *vcs.Repo, rev, prefix string, changes []engine.FileChange) (map[string][]byte, error) {
	m := map[string][]byte{}
	for _, c := range changes {
		for _, p := range []string{c.Path, c.OldPath} {
			if _, done := m[p]; done || p == "" {
				continue
			}
			b, err := repo.ReadFileAt(rev, path.Join(prefix, p))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				m[p] = nil
			case err != nil:
				return nil, fmt.Errorf("affected: %w", err)
			case b == nil:
				m[p] = []byte{}
			default:
				m[p] = b
			}
		}
	}
	return m, nil
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

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// summarize tells the user on stderr what was compared, keeping stdout for
// the list.
func (r *affectedResult) summarize(w io.Writer, base, head string) {
	headName := "the working tree"
	if head != "" {
		headName = head
	}
	files := "files"
	if len(r.changes) == 1 {
		files = "file"
	}
	targets := "targets"
	if len(r.targets) == 1 {
		targets = "target"
	}
	fmt.Fprintf(w, "pipe: %d changed %s in the workspace between %s (merge base of %s and %s) and %s: %d %s affected\n",
		len(r.changes), files, short(r.diff.MergeBase), base, headOrHEAD(head), headName, len(r.targets), targets)
}

func headOrHEAD(head string) string {
	if head == "" {
		return "HEAD"
	}
	return head
}

type affectedJSON struct {
	Label   string   `json:"label"`
	Kind    string   `json:"kind"`
	Reasons []string `json:"reasons"`
}

func (r *affectedResult) print(w io.Writer, format string) error {
	if format == "json" {
		out := make([]affectedJSON, 0, len(r.targets))
		for _, t := range r.targets {
			out = append(out, affectedJSON{Label: t.Label.String(), Kind: r.tg.Targets[t.Label].Rule.Name, Reasons: t.Reasons})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, t := range r.targets {
		fmt.Fprintln(w, t.Label)
	}
	return nil
}
