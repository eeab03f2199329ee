package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/python"
)

func pythonCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "python [PATTERN...]",
		Aliases: []string{"toolchains"},
		Short:   "list the Python interpreters pipe finds, and which the targets (default //...) run",
		Long: `List the Python interpreters pipe considers, in the order it prefers them:
workspace(python_interpreters = {...}) in WORKSPACE.star, interpreters uv
manages (~/.local/share/uv/python), pyenv's ($PYENV_ROOT/versions),
python3.X on the action PATH, and those pipe downloaded. Then, for every
target among the patterns that runs Python (openapi_schema, fastapi_serve,
py_test, py_lint), the version it wants, where that comes from, and the
interpreter and locked environment it runs on.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			pats, err := s.patterns(args)
			if err != nil {
				return err
			}
			plan, err := engine.PlanBuild(ctx, s.ws, s.loader, pats)
			s.saveState()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			printInterpreters(ctx, w, s.ws)
			return printTargetPythons(w, plan)
		},
	}
}

func printInterpreters(ctx context.Context, w io.Writer, ws *engine.Workspace) {
	found := python.DiscoverInterpreters(ctx, ws)
	fmt.Fprintln(w, "interpreters, in the order pipe prefers them:")
	if len(found) == 0 {
		fmt.Fprintln(w, "  none (install one with uv python install 3.12 or pyenv install 3.12, or name one in workspace(python_interpreters = {...}))")
	}
	for _, f := range found {
		if f.Err != nil {
			fmt.Fprintf(w, "  %-8s %-28s %s: %v\n", "?", f.Source, f.Path, f.Err)
			continue
		}
		in := f.Interp
		libc := "no glibc"
		if in.Glibc != [2]int{} {
			libc = fmt.Sprintf("glibc %d.%d", in.Glibc[0], in.Glibc[1])
		}
		fmt.Fprintf(w, "  %-8s %-28s %s  (%s, %s, %s)\n", in.Version(), f.Source, f.Path, in.ABITag, in.Machine, libc)
	}
}

func printTargetPythons(w io.Writer, plan *engine.Plan) error {
	c, _ := openCache()
	var lines []string
	for _, l := range plan.Targets.Order {
		tp, ok := python.PythonOf(plan.Actions, l)
		if !ok {
			continue
		}
		tc := tp.Toolchain
		var b strings.Builder
		fmt.Fprintf(&b, "  %s\n    wants Python %s (%s)\n", l, tc.Want, tc.WantFrom)
		if tc.Interp != nil {
			fmt.Fprintf(&b, "    runs %s\n", tc.Interp.Describe())
		} else {
			fmt.Fprintf(&b, "    runs nothing: %s\n", strings.ReplaceAll(strings.TrimSpace(tc.Err.Error()), "\n", "\n      "))
		}
		fmt.Fprintf(&b, "    on %s\n", tp.Environment(c))
		lines = append(lines, b.String())
	}
	fmt.Fprintln(w, "\ntargets:")
	if len(lines) == 0 {
		fmt.Fprintln(w, "  none of the selected targets runs Python")
	}
	for _, l := range lines {
		fmt.Fprint(w, l)
	}
	return nil
}
