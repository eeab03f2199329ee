package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/migrate"
)

func migrateCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate TOOL",
		Short: "move a workspace of another build tool onto pipe: pipe migrate nx",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return engine.Usagef("pipe migrate: no migration from %q; the one there is: nx (pipe migrate nx)", args[0])
			}
			return cmd.Help()
		},
	}
	c.AddCommand(migrateNxCmd(g))
	return c
}

func migrateNxCmd(g *globalFlags) *cobra.Command {
	var opts migrate.NxOptions
	c := &cobra.Command{
		Use:   "nx [DIR]",
		Short: "write WORKSPACE.star and a BUILD.star per project of the Nx workspace at DIR (default: here)",
		Long: `Read an Nx workspace (nx.json and every project.json) and write WORKSPACE.star
and one BUILD.star per project with pipe's rules for the targets the
@aws/nx-plugin generators write: bundle-x86/bundle-arm (python_bundle),
openapi (openapi_schema), serve (fastapi_serve), generate:<api>-metadata
(api_metadata) and a ts#infra app's synth (cdk_stack). Outputs keep Nx's
dist/ layout. Every other target is listed with its project, executor and
what to do instead. An existing BUILD.star is kept unless --force.
The manual steps that remain are in pipe's docs/migrate-nx.md.`,
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
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return engine.Usagef("pipe migrate nx %s: not a directory", dir)
			}
			opts.Root = dir
			res, err := migrate.Nx(opts)
			if res != nil {
				printMigrateResult(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	c.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be written, and write nothing")
	c.Flags().BoolVar(&opts.Force, "force", false, "overwrite BUILD.star files that exist")
	return c
}

func printMigrateResult(w io.Writer, res *migrate.NxResult) {
	verb := map[migrate.Status]string{
		migrate.Created: "created", migrate.Overwritten: "overwritten", migrate.Updated: "updated",
		migrate.Kept: "kept (exists; --force overwrites)", migrate.Unchanged: "unchanged",
	}
	if res.DryRun {
		verb[migrate.Created] = "would create"
		verb[migrate.Overwritten] = "would overwrite"
		verb[migrate.Updated] = "would update"
	}
	fmt.Fprintf(w, "Nx workspace %s: %d project%s\n\n", res.Root, res.Projects, plural(res.Projects))
	for _, f := range res.Files {
		if f.Path == engine.WorkspaceFile && f.Status == migrate.Kept {
			fmt.Fprintf(w, "  kept (exists)  %s\n", f.Path)
			continue
		}
		fmt.Fprintf(w, "  %s  %s\n", verb[f.Status], f.Path)
	}
	if res.DryRun {
		for _, f := range res.Files {
			if f.Status == migrate.Kept && f.Path == engine.WorkspaceFile || f.Status == migrate.Unchanged {
				continue
			}
			fmt.Fprintf(w, "\n--- %s\n%s", f.Path, f.Content)
		}
	}
	if len(res.Translated) > 0 {
		fmt.Fprintf(w, "\nTranslated:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range res.Translated {
			fmt.Fprintf(tw, "  %s:%s\t→ %s\t(%s)\n", t.Project, t.Target, t.Label, t.Rule)
		}
		tw.Flush()
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "\nNot translated (see docs/migrate-nx.md):\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  PROJECT\tTARGET\tEXECUTOR\tWHAT TO DO\n")
		for _, s := range res.Skipped {
			target, exec := s.Target, s.Executor
			if target == "" {
				target = "-"
			}
			if exec == "" {
				exec = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Project, target, exec, s.Reason)
		}
		tw.Flush()
	}
	if len(res.Notes) > 0 {
		fmt.Fprintf(w, "\nCheck:\n")
		for _, n := range res.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	if !res.DryRun {
		fmt.Fprintf(w, "\nNext: uv sync and npm install, if the checkout lacks .venv or node_modules; then pipe build //...\n")
	}
}
