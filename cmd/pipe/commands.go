package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/python"
)

func queryCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "query EXPR",
		Short: "list targets: patterns, deps(x), rdeps(universe, x), kind(rule, x), filter(re, x), + - ^",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			q, err := engine.ParseQuery(args[0], s.relPkg)
			if err != nil {
				return err
			}
			tg, err := engine.LoadTargets(ctx, s.ws, s.loader, q.Patterns())
			s.saveState()
			if err != nil {
				return err
			}
			labels, err := q.Eval(tg)
			if err != nil {
				return err
			}
			if output == "wheels" {
				return printWheelPlans(ctx, s, cmd.OutOrStdout(), tg, labels)
			}
			return printTargets(cmd.OutOrStdout(), output, tg, labels)
		},
	}
	c.Flags().StringVar(&output, "output", "label", "output format: label, label_kind, json, or wheels (the wheel plan of python_bundle targets, without downloading)")
	return c
}

// printWheelPlans analyses the bundles among labels and prints the exact
// distributions and wheel files each would use. Nothing is downloaded.
func printWheelPlans(ctx context.Context, s *session, w io.Writer, tg *engine.TargetGraph, labels []engine.Label) error {
	var pats []engine.Pattern
	for _, l := range labels {
		if tg.Targets[l].Rule.Name == python.Bundle.Name {
			pats = append(pats, engine.Pattern{Pkg: l.Pkg, Name: l.Name})
		}
	}
	if len(pats) == 0 {
		return engine.Usagef("query --output wheels: the query selects no python_bundle targets")
	}
	plan, err := engine.PlanBuild(ctx, s.ws, s.loader, pats)
	if err != nil {
		return err
	}
	for _, p := range pats {
		l := engine.Label{Pkg: p.Pkg, Name: p.Name}
		info, ok := engine.TargetInfo(plan.Actions, l, python.BundleKey)
		if !ok || info.Plan == nil {
			continue
		}
		fmt.Fprintf(w, "%s\n%s", l, info.Plan.Describe())
	}
	return nil
}

type targetJSON struct {
	Label string   `json:"label"`
	Kind  string   `json:"kind"`
	Deps  []string `json:"deps"`
	Pos   string   `json:"location"`
	Tags  []string `json:"tags,omitempty"`
}

func printTargets(w io.Writer, format string, tg *engine.TargetGraph, labels []engine.Label) error {
	switch format {
	case "label":
		for _, l := range labels {
			fmt.Fprintln(w, l)
		}
	case "label_kind":
		for _, l := range labels {
			fmt.Fprintf(w, "%s rule %s\n", tg.Targets[l].Rule.Name, l)
		}
	case "json":
		out := make([]targetJSON, 0, len(labels))
		for _, l := range labels {
			t := tg.Targets[l]
			tj := targetJSON{Label: l.String(), Kind: t.Rule.Name, Pos: t.Pos.String(), Deps: []string{}, Tags: t.Tags}
			for _, d := range tg.DirectDeps(l) {
				tj.Deps = append(tj.Deps, d.String())
			}
			out = append(out, tj)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	default:
		return engine.Usagef("--output %q: want label, label_kind or json", format)
	}
	return nil
}

func graphCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var format string
	var actions bool
	c := &cobra.Command{
		Use:   "graph [PATTERN...]",
		Short: "print the target graph as Graphviz dot or JSON",
		Long: `Print the targets the patterns select, their dependencies, and the edges
between them. Render dot with: pipe graph //... | dot -Tsvg > graph.svg`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			pats, err := s.patterns(args)
			if err != nil {
				return err
			}
			if actions {
				plan, err := engine.PlanBuild(ctx, s.ws, s.loader, pats)
				s.saveState()
				if err != nil {
					return err
				}
				return writeActionGraph(cmd.OutOrStdout(), format, plan.Needed)
			}
			tg, err := engine.LoadTargets(ctx, s.ws, s.loader, pats)
			s.saveState()
			if err != nil {
				return err
			}
			labels := append([]engine.Label(nil), tg.Order...)
			engine.SortLabels(labels)
			w := cmd.OutOrStdout()
			switch format {
			case "dot":
				return writeDot(w, tg, labels)
			case "json":
				return printTargets(w, "json", tg, labels)
			default:
				return engine.Usagef("--format %q: want dot or json", format)
			}
		},
	}
	c.Flags().StringVar(&format, "format", "dot", "dot or json")
	c.Flags().BoolVar(&actions, "actions", false, "print the action graph (what runs) instead of the target graph")
	return c
}

type actionJSON struct {
	ID       int      `json:"id"`
	Label    string   `json:"label"`
	Mnemonic string   `json:"mnemonic"`
	Inputs   []string `json:"inputs"`
	Outputs  []string `json:"outputs"`
	Deps     []int    `json:"deps"`
}

// writeActionGraph prints the actions that produce the selected targets and
// the edges from each action to the producers of its inputs.
func writeActionGraph(w io.Writer, format string, actions []*engine.Action) error {
	switch format {
	case "json":
		out := make([]actionJSON, 0, len(actions))
		for _, a := range actions {
			aj := actionJSON{ID: a.ID(), Label: a.Owner.String(), Mnemonic: a.Mnemonic, Inputs: []string{}, Outputs: []string{}, Deps: []int{}}
			for _, f := range a.Inputs {
				aj.Inputs = append(aj.Inputs, f.Path)
			}
			for _, f := range a.Outputs {
				aj.Outputs = append(aj.Outputs, f.Path)
			}
			for _, d := range a.Deps() {
				aj.Deps = append(aj.Deps, d.ID())
			}
			out = append(out, aj)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "dot":
		var b strings.Builder
		b.WriteString("digraph actions {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=11];\n")
		for _, a := range actions {
			fmt.Fprintf(&b, "  a%d [label=%q];\n", a.ID(), a.Mnemonic+" "+a.Owner.Short())
		}
		for _, a := range actions {
			for _, d := range a.Deps() {
				fmt.Fprintf(&b, "  a%d -> a%d;\n", a.ID(), d.ID())
			}
		}
		b.WriteString("}\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	return engine.Usagef("--format %q: want dot or json", format)
}

func writeDot(w io.Writer, tg *engine.TargetGraph, labels []engine.Label) error {
	var b strings.Builder
	b.WriteString("digraph pipe {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=11];\n")
	roots := map[engine.Label]bool{}
	for _, r := range tg.Roots {
		roots[r] = true
	}
	for _, l := range labels {
		t := tg.Targets[l]
		style := ""
		if roots[l] {
			style = ", style=bold"
		}
		fmt.Fprintf(&b, "  %q [label=%q%s];\n", l.String(), l.Short()+"\n"+t.Rule.Name, style)
	}
	for _, l := range labels {
		for _, d := range tg.DirectDeps(l) {
			fmt.Fprintf(&b, "  %q -> %q;\n", l.String(), d.String())
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func cleanCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "clean",
		Short: "remove dist/ and .pipe/; with --cache also empty the shared cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// The server's socket and lock live in .pipe/: stop it
			// rather than orphan it.
			if _, err := s.stopServer(ctx); err != nil {
				return err
			}
			lock, err := s.lock(ctx)
			if err != nil {
				return err
			}
			if err := os.RemoveAll(s.ws.DistDir()); err != nil {
				lock.Release()
				return fmt.Errorf("clean: %w", err)
			}
			// Remove .pipe/ but its lock last, while still holding it.
			ents, _ := os.ReadDir(s.ws.StateDir())
			for _, e := range ents {
				if e.Name() != "lock" {
					if err := os.RemoveAll(s.ws.StateDir() + "/" + e.Name()); err != nil {
						lock.Release()
						return fmt.Errorf("clean: %w", err)
					}
				}
			}
			lock.Release()
			os.RemoveAll(s.ws.StateDir())
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %s and %s\n", s.ws.DistDir(), s.ws.StateDir())
			if all {
				c, err := openCache()
				if err != nil {
					return err
				}
				if err := c.Clean(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "emptied the shared cache %s\n", c.Dir())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&all, "cache", false, "also empty the shared cache ($PIPE_CACHE_DIR)")
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print pipe's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "pipe %s\n", pipeVersion())
			return nil
		},
	}
}

// pipeVersion identifies this build of pipe. In-process steps put it in their
// action keys, so a new pipe never reuses results an older one computed.
// A build from a modified tree adds the executable's size and time, since
// the revision alone does not name its code.
func pipeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	var parts []string
	if v != "" && v != "(devel)" {
		parts = append(parts, v)
	}
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, rev)
	}
	if settings["vcs.modified"] == "true" || len(parts) == 0 {
		if exe, err := os.Executable(); err == nil {
			if fi, err := os.Stat(exe); err == nil {
				parts = append(parts, fmt.Sprintf("dev-%d-%d", fi.Size(), fi.ModTime().Unix()))
			}
		}
	}
	if len(parts) == 0 {
		return "devel"
	}
	return strings.Join(parts, "+")
}
