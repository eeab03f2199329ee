package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/affected"
	"github.com/pipebuild/pipe/internal/engine"
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
	pats := make([]engine.Pattern, 0, len(res.Targets))
	for _, t := range res.Targets {
		pats = append(pats, engine.Pattern{Pkg: t.Label.Pkg, Name: t.Label.Name})
	}
	return pats, nil
}

// affectedResult is what computeAffected found.
type affectedResult struct {
	*affected.Result
}

// computeAffected maps the changes between base and head to targets of
// the whole workspace (//...).
func computeAffected(ctx context.Context, s *session, base, head string) (*affectedResult, error) {
	res, err := affected.Compute(ctx, s.ws, s.loader, base, head, func(msg string) {
		fmt.Fprintf(s.stderr, "pipe: warning: %s\n", msg)
	})
	s.saveState()
	if err != nil {
		return nil, err
	}
	return &affectedResult{res}, nil
}

// summarize tells the user on stderr what was compared, keeping stdout for
// the list.
func (r *affectedResult) summarize(w io.Writer, base, head string) {
	headName := "the working tree"
	if head != "" {
		headName = head
	}
	files := "files"
	if len(r.Changes) == 1 {
		files = "file"
	}
	targets := "targets"
	if len(r.Targets) == 1 {
		targets = "target"
	}
	fmt.Fprintf(w, "pipe: %d changed %s in the workspace between %s (merge base of %s and %s) and %s: %d %s affected\n",
		len(r.Changes), files, affected.Short(r.Diff.MergeBase), base, headOrHEAD(head), headName, len(r.Targets), targets)
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
		out := make([]affectedJSON, 0, len(r.Targets))
		for _, t := range r.Targets {
			out = append(out, affectedJSON{Label: t.Label.String(), Kind: r.Graph.Targets[t.Label].Rule.Name, Reasons: t.Reasons})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, t := range r.Targets {
		fmt.Fprintln(w, t.Label)
	}
	return nil
}
