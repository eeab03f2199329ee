package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/scaffold"
)

func initCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "init [DIR]",
		Short: "make DIR (default: the current directory) a pipe workspace: WORKSPACE.star and .gitignore entries",
		Long: `Make DIR (default: the current directory, or -C DIR) the root of a pipe
workspace: write WORKSPACE.star, named after the directory, and add dist/
and .pipe/ to .gitignore. Nothing is overwritten, so running it again is
safe. pipe init also says what it finds there (an Nx, uv or npm
workspace) and what to do next.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := g.dir
			if len(args) == 1 {
				dir = args[0]
				if g.dir != "" && !filepath.IsAbs(dir) {
					dir = filepath.Join(g.dir, dir)
				}
			}
			if dir == "" {
				dir = "."
			}
			res, err := scaffold.Init(dir)
			if err != nil {
				return err
			}
			printInitResult(cmd.OutOrStdout(), res)
			return nil
		},
	}
}

func printInitResult(w io.Writer, res *scaffold.InitResult) {
	verb := "Initialized"
	for _, f := range res.Files {
		if f.Path == engine.WorkspaceFile && f.Status != scaffold.Created {
			verb = "Already"
		}
	}
	if verb == "Already" {
		fmt.Fprintf(w, "%s is already a pipe workspace\n\n", res.Root)
	} else {
		fmt.Fprintf(w, "Initialized pipe workspace %q in %s\n\n", res.Name, res.Root)
	}
	width := 0
	for _, f := range res.Files {
		width = max(width, len(f.Status))
	}
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %-*s  %s\n", width, f.Status, f.Path)
	}
	if res.Parent != "" {
		fmt.Fprintf(w, "\nNote: %s was inside the workspace at %s; it is now a workspace of its own, and //... there no longer includes it.\n", res.Root, res.Parent)
	}
	if len(res.Found) > 0 {
		fmt.Fprintf(w, "\nFound:\n")
		for _, f := range res.Found {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	fmt.Fprintf(w, "\nNext:\n")
	steps := [][2]string{
		{"pipe new fastapi NAME", "a FastAPI service with its CDK constructs and infra app"},
		{"pipe build", "build every package (a directory with a BUILD.star)"},
	}
	if res.Nx {
		steps = append([][2]string{{"pipe migrate nx --dry-run", "see the BUILD.star files pipe would write for the Nx projects"}}, steps...)
	}
	width = 0
	for _, s := range steps {
		width = max(width, len(s[0]))
	}
	for _, s := range steps {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, s[0], s[1])
	}
}

// noWorkspaceHint turns "no workspace" into advice for a command that
// creates files in one, such as pipe new.
func noWorkspaceHint(err error, command string) error {
	var nw *engine.NoWorkspaceError
	if errors.As(err, &nw) {
		return engine.Usagef("no %s in %s or any parent directory: %s writes into a pipe workspace; run pipe init first to make this directory one (or pass -C DIR to use another)", engine.WorkspaceFile, nw.Dir, command)
	}
	return err
}
