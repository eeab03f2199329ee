package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
)

// assemblyInfo is the provider key under which cdk_stack targets give the
// workspace-relative path of their cloud assembly.
const assemblyInfo = "cdk.assembly"

type deployFlags struct {
	apps        []string
	stacks      []string
	concurrency int
	approval    string
	dryRun      bool
	force       bool
	outputsFile string
	fail        bool
}

func deployCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	f := &deployFlags{}
	cmd := &cobra.Command{
		Use:   "deploy [PATTERN...]",
		Short: "build the cdk_stack targets (default //...) and deploy their stacks, skipping those already up to date",
		Long: `Build the cdk_stack targets the patterns select, then deploy every stack of
their cloud assemblies (nested stages included) to CloudFormation.

A stack whose deployed template, parameters and tags already match is reported
as "(no changes)" without a single write call. Otherwise pipe publishes its
file assets to the bootstrap bucket (objects already there are not uploaded
again), creates a change set, shows it, asks for approval when
--require-approval says so, executes it and streams the stack's events.
Stacks wait for the stacks they depend on; independent ones deploy
concurrently. Ctrl-C starts nothing new and reports what was in flight.

Region and credentials come from the standard AWS chain (AWS_PROFILE,
AWS_REGION, SSO…); AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> are
honoured.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(ctx, g, f, args, cmd)
		},
	}
	fl := cmd.Flags()
	addAssemblyFlags(cmd, f)
	fl.IntVar(&f.concurrency, "concurrency", 4, "deploy at most `N` independent stacks at once")
	fl.StringVar(&f.approval, "require-approval", string(deploy.ApproveBroadening), "ask before executing: never, any-change, or broadening (changes that widen IAM permissions or security-group ingress)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "show what would be deployed, using read calls only")
	fl.BoolVar(&f.force, "force", false, "deploy stacks even when they are up to date")
	fl.StringVar(&f.outputsFile, "outputs-file", "", "write the stacks' outputs as JSON ({stack: {key: value}}) to `FILE`")
	return cmd
}

func diffCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	f := &deployFlags{}
	cmd := &cobra.Command{
		Use:   "diff [PATTERN...]",
		Short: "show how the cdk_stack targets' stacks (default //...) differ from the deployed ones, without deploying",
		Long: `Build the cdk_stack targets the patterns select and compare each stack's
template, parameters and tags with what CloudFormation holds: resources added,
removed and changed (with the changed properties), outputs, parameters, and
IAM changes that broaden permissions. Only read calls are made.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(ctx, g, f, args, cmd)
		},
	}
	addAssemblyFlags(cmd, f)
	cmd.Flags().BoolVar(&f.fail, "fail", false, "exit 1 when there are differences")
	return cmd
}

func addAssemblyFlags(cmd *cobra.Command, f *deployFlags) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.apps, "app", nil, "use this synthesized cloud assembly `DIR` (cdk.out) instead of building targets; repeatable")
	fl.StringArrayVar(&f.stacks, "stacks", nil, "only stacks whose construct path or name matches `GLOB`, with the stacks they depend on; repeatable")
}

// loaded is what deploy and diff work on: the stacks, and the lock that
// keeps another pipe from rewriting dist/ while they are read.
type loaded struct {
	stacks []*deploy.Stack
	zips   []deploy.PrebuiltZip
	unlock func()
}

// loadStacks builds the patterns and reads the cloud assemblies of the
// selected targets that provide one, or reads --app directories.
func loadStacks(ctx context.Context, g *globalFlags, f *deployFlags, args []string, stderr io.Writer) (*loaded, error) {
	l := &loaded{unlock: func() {}}
	var dirs []string
	if len(f.apps) > 0 {
		if len(args) > 0 {
			return nil, engine.Usagef("give patterns or --app, not both")
		}
		base := g.dir
		if base == "" {
			base = "."
		}
		for _, a := range f.apps {
			if !filepath.IsAbs(a) {
				a = filepath.Join(base, a)
			}
			dirs = append(dirs, a)
		}
	} else {
		s, err := openWorkspace(g, stderr)
		if err != nil {
			return nil, err
		}
		pats, err := s.patterns(args)
		if err != nil {
			return nil, err
		}
		plan, err := s.build(ctx, pats)
		if err != nil {
			return nil, err
		}
		for _, t := range plan.Targets.Roots {
			if v, ok := plan.Actions.TargetInfo(t, assemblyInfo); ok {
				if p, ok := v.(string); ok {
					dirs = append(dirs, filepath.Join(s.ws.Root, filepath.FromSlash(p)))
				}
			}
		}
		if len(dirs) == 0 {
			return nil, engine.Usagef("no cdk_stack target among %s: nothing to deploy (or give a synthesized cloud assembly with --app DIR)", strings.Join(patternArgs(args), " "))
		}
		l.zips = prebuiltZips(s.ws.Root, plan)
		// The build released the lock; deploying reads dist/ (templates,
		// asset directories) for a while, so hold it again.
		lock, err := s.lock(ctx)
		if err != nil {
			return nil, err
		}
		l.unlock = lock.Release
	}
	stacks, err := deploy.LoadAssemblies(dirs)
	if err == nil {
		stacks, err = deploy.Select(stacks, f.stacks)
	}
	if err != nil {
		l.unlock()
		return nil, err
	}
	if len(stacks) == 0 {
		l.unlock()
		return nil, engine.Usagef("the cloud assemblies hold no stacks")
	}
	l.stacks = stacks
	return l, nil
}

func patternArgs(args []string) []string {
	if len(args) == 0 {
		return []string{"//..."}
	}
	return args
}

// prebuiltZips finds the directory outputs the build also zipped next to
// themselves (python_bundle's <name>/ and <name>.zip), so publishing a
// staged copy of such a directory reuses the zip instead of zipping again.
func prebuiltZips(root string, plan *engine.Plan) []deploy.PrebuiltZip {
	var out []deploy.PrebuiltZip
	labels := make([]engine.Label, 0, len(plan.Targets.Targets))
	for l := range plan.Targets.Targets {
		labels = append(labels, l)
	}
	sort.Slice(labels, func(i, j int) bool { return labels[i].String() < labels[j].String() })
	for _, l := range labels {
		files := plan.Actions.TargetFiles(l)
		paths := map[string]bool{}
		for _, f := range files {
			if !f.Dir {
				paths[f.Path] = true
			}
		}
		for _, f := range files {
			if f.Dir && paths[f.Path+".zip"] {
				out = append(out, deploy.PrebuiltZip{
					Dir: filepath.Join(root, filepath.FromSlash(f.Path)),
					Zip: filepath.Join(root, filepath.FromSlash(f.Path+".zip")),
				})
			}
		}
	}
	return out
}

func runDeploy(ctx context.Context, g *globalFlags, f *deployFlags, args []string, cmd *cobra.Command) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	approval, err := deploy.ParseApproval(f.approval)
	if err != nil {
		return engine.Usagef("%v", err)
	}
	if f.concurrency < 1 {
		return engine.Usagef("--concurrency %d: want 1 or more", f.concurrency)
	}
	start := time.Now()
	l, err := loadStacks(ctx, g, f, args, stderr)
	if err != nil {
		return err
	}
	defer l.unlock()
	cfg, err := deploy.LoadConfig(ctx)
	if err != nil {
		return err
	}
	opt := deploy.Options{
		Out:         stderr,
		Concurrency: f.concurrency,
		Approval:    approval,
		DryRun:      f.dryRun,
		Force:       f.force,
		Zips:        l.zips,
	}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		opt.Prompt = terminalPrompt(stderr)
	}
	results, derr := deploy.Deploy(ctx, cfg, l.stacks, opt)

	counts := map[deploy.Status]int{}
	for _, r := range results {
		counts[r.Status]++
	}
	var parts []string
	for _, st := range []deploy.Status{deploy.StatusDeployed, deploy.StatusWould, deploy.StatusUnchanged, deploy.StatusFailed, deploy.StatusSkipped, deploy.StatusNotStarted} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(stderr, "%d stack%s: %s (%.2fs)\n", len(results), plural(len(results)), strings.Join(parts, ", "), time.Since(start).Seconds())

	if lines := deploy.SortedOutputs(results); len(lines) > 0 && !f.dryRun {
		fmt.Fprintln(stdout, "Outputs:")
		for _, line := range lines {
			fmt.Fprintln(stdout, line)
		}
	}
	if f.outputsFile != "" && !f.dryRun {
		if err := writeOutputs(f.outputsFile, results); err != nil {
			fmt.Fprintf(stderr, "pipe: %v\n", err)
			if derr == nil {
				return &exitError{code: 1}
			}
		}
	}
	switch {
	case derr == nil:
		return nil
	case errors.Is(derr, context.Canceled):
		fmt.Fprintln(stderr, "pipe: interrupted; no new stack was started (see above for those in flight)")
		return &exitError{code: 130}
	case results == nil:
		return derr // failed before any stack started: say why
	default:
		return &exitError{code: 1} // each failure was printed under its stack
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// writeOutputs writes {stack: {key: value}} atomically, the shape of the
// CDK CLI's --outputs-file.
func writeOutputs(file string, results []*deploy.Result) error {
	m := map[string]map[string]string{}
	for _, r := range results {
		if len(r.Outputs) > 0 {
			m[r.Stack.StackName] = r.Outputs
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, ".outputs-*.json")
	if err != nil {
		return fmt.Errorf("--outputs-file: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--outputs-file: %w", err)
	}
	return nil
}

// terminalPrompt asks on the terminal; anything but y/yes is a no.
func terminalPrompt(w io.Writer) func(string) (bool, error) {
	in := bufio.NewReader(os.Stdin)
	return func(q string) (bool, error) {
		fmt.Fprint(w, q)
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return false, err
		}
		a := strings.ToLower(strings.TrimSpace(line))
		return a == "y" || a == "yes", nil
	}
}

func runDiff(ctx context.Context, g *globalFlags, f *deployFlags, args []string, cmd *cobra.Command) error {
	l, err := loadStacks(ctx, g, f, args, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer l.unlock()
	cfg, err := deploy.LoadConfig(ctx)
	if err != nil {
		return err
	}
	differs, err := deploy.Diff(ctx, cfg, l.stacks, cmd.OutOrStdout())
	if err != nil {
		return err
	}
	if differs && f.fail {
		return &exitError{code: 1}
	}
	return nil
}
