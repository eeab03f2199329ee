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
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules"
	"github.com/pipebuild/pipe/internal/tfdeploy"
)

type deployFlags struct {
	apps        []string
	stacks      []string
	concurrency int
	approval    string
	dryRun      bool
	force       bool
	outputsFile string
	fail        bool
	// destroy: --stacks adds the stacks that depend on the named ones
	// (they must go first), not the ones they depend on.
	destroy bool
	// hotswap and hotswapFallback are --hotswap and --hotswap-fallback.
	hotswap         bool
	hotswapFallback string
}

// hotswapMode checks --hotswap and --hotswap-fallback.
func (f *deployFlags) hotswapMode() (deploy.HotswapMode, error) {
	switch {
	case f.hotswapFallback != "deploy" && f.hotswapFallback != "never":
		return "", engine.Usagef("--hotswap-fallback %q: want deploy or never", f.hotswapFallback)
	case !f.hotswap && f.hotswapFallback != "deploy":
		return "", engine.Usagef("--hotswap-fallback needs --hotswap")
	case !f.hotswap:
		return deploy.HotswapOff, nil
	case f.hotswapFallback == "never":
		return deploy.HotswapOnly, nil
	}
	return deploy.HotswapFallBack, nil
}

func addHotswapFlags(cmd *cobra.Command, f *deployFlags) {
	fl := cmd.Flags()
	fl.BoolVar(&f.hotswap, "hotswap", false, "update Lambda functions (code, environment, description, layers, versions and aliases) directly where that is all that changed; other stacks deploy with change sets. For development: the stacks then differ from their templates until the next pipe deploy")
	fl.StringVar(&f.hotswapFallback, "hotswap-fallback", "deploy", "with --hotswap, what to do with a stack that cannot be hotswapped: deploy (with a change set) or never (refuse it)")
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

--hotswap is for development: a stack whose template differs from the
deployed one only in its Lambda functions' code, environment variables or
description (or a layer's content the functions follow, with the versions
and aliases that move along) is updated with Lambda calls instead of a
change set, in about a second; any other difference deploys that stack with
a change set, saying why (--hotswap-fallback=never refuses it instead).
The deployed stack then differs from its template: pipe records that in
.pipe/hotswap/, and the next deploy without --hotswap deploys the stack and
sets the functions back to the template. Stacks of a cdk_stack with
hotswap = False (or context pipe:hotswap = "false"), and stacks tagged
pipe:hotswap=false, are never hotswapped. When the only inputs of a
cdk_stack's synth that changed are directories its app stages as assets
(a python_bundle), --hotswap does not run the synth: it deploys the
assembly kept from its last synth with the new directories in place; any
other change, or a stack that cannot be hotswapped, synthesizes.

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
	addHotswapFlags(cmd, f)
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

// deployInput is what deploy and diff work on: the stacks, the zips the
// build made, and the workspace lock, held from before the build until
// the deployment ends so that no other pipe rewrites dist/ (templates,
// asset directories) in between.
type deployInput struct {
	stacks []*deploy.Stack
	zips   []deploy.PrebuiltZip
	// ui holds the build's events, to which --events adds the deploy's;
	// a fresh one with --app.
	ui      *ui
	start   time.Time
	release func()
	// records are the workspace's hotswap records (.pipe/hotswap); nil
	// for --app outside a workspace.
	records *deploy.HotswapRecords
	// tf are the terraform_root targets among the patterns (terraform.go).
	tf []*tfdeploy.Root
	// quick, with --hotswap, is the build that may have left synths out.
	quick *hotswapBuild
}

// hotswapRecords are the hotswap records of the workspace at root.
func hotswapRecords(root string) *deploy.HotswapRecords {
	return &deploy.HotswapRecords{Dir: filepath.Join(root, ".pipe", "hotswap")}
}

// loadDeployInput builds the patterns under the workspace lock, which it
// keeps, and reads the stacks of the cdk_stack targets among them (their
// AssemblyInfo), or reads --app directories. --stacks narrows the stacks.
func loadDeployInput(ctx context.Context, g *globalFlags, f *deployFlags, args []string, stderr io.Writer) (_ *deployInput, err error) {
	in := &deployInput{release: func() {}, start: time.Now()}
	defer func() {
		if err != nil {
			in.release()
		}
	}()
	var stacks []*deploy.Stack
	if len(f.apps) > 0 {
		if len(args) > 0 {
			return nil, engine.Usagef("give patterns or --app, not both")
		}
		base := g.dir
		if base == "" {
			base = "."
		}
		var dirs []string
		for _, a := range f.apps {
			if !filepath.IsAbs(a) {
				a = filepath.Join(base, a)
			}
			dirs = append(dirs, a)
		}
		if in.ui, err = newUI(g, stderr, 0); err != nil {
			return nil, err
		}
		if stacks, err = deploy.LoadAssemblies(dirs); err != nil {
			return nil, err
		}
		if root, err := engine.FindWorkspace(base); err == nil {
			in.records = hotswapRecords(root)
		}
	} else {
		s, err := openWorkspace(g, stderr)
		if err != nil {
			return nil, err
		}
		in.start = s.start
		pats, err := s.patterns(args)
		if err != nil {
			return nil, err
		}
		lock, err := s.lock(ctx)
		if err != nil {
			return nil, err
		}
		in.release = lock.Release
		var plan *engine.Plan
		var d *rules.Deployment
		if f.hotswap {
			plan, d, in.quick, err = s.buildForHotswap(ctx, pats, true, stderr)
		} else if plan, err = s.buildLocked(ctx, pats); err == nil {
			d, err = rules.DeploymentOf(s.ws.Root, plan, plan.Targets.Roots)
		}
		if err != nil {
			return nil, err
		}
		in.ui = s.ui
		if in.tf, err = terraformRoots(s.ws, plan, plan.Targets.Roots); err != nil {
			return nil, err
		}
		if len(d.Targets) == 0 && len(in.tf) == 0 {
			return nil, engine.Usagef("no cdk_stack target among %s, nor a terraform_root: nothing to deploy (or give a synthesized cloud assembly with --app DIR)", strings.Join(patternArgs(args), " "))
		}
		stacks, in.zips = d.Stacks, d.Zips
		in.records = hotswapRecords(s.ws.Root)
	}
	pick := deploy.Select
	if f.destroy {
		pick = deploy.SelectWithDependents
	}
	if stacks, err = pick(stacks, f.stacks); err != nil {
		return nil, fmt.Errorf("--stacks %w", err)
	}
	if len(stacks) == 0 && len(in.tf) == 0 {
		return nil, engine.Usagef("the cloud assemblies hold no stacks")
	}
	in.stacks = stacks
	return in, nil
}

// writeEvents writes --events with the build's and the deployment's
// events; a failure is a warning, as it is for a build.
func (in *deployInput) writeEvents(stderr io.Writer) {
	if in.ui == nil {
		return
	}
	if err := in.ui.writeEvents(in.start); err != nil {
		fmt.Fprintf(stderr, "pipe: warning: %v\n", err)
	}
}

func patternArgs(args []string) []string {
	if len(args) == 0 {
		return []string{"//..."}
	}
	return args
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
	hotswap, err := f.hotswapMode()
	if err != nil {
		return err
	}
	start := time.Now()
	in, err := loadDeployInput(ctx, g, f, args, stderr)
	if err != nil {
		return err
	}
	defer in.release()
	defer in.writeEvents(stderr)
	if len(in.tf) > 0 {
		if err := runTerraformDeploy(ctx, in.tf, f, approval, stdout, stderr); err != nil || len(in.stacks) == 0 {
			return err
		}
	}
	if hotswap != deploy.HotswapOff && in.records == nil {
		return engine.Usagef("--hotswap records what it changed in the workspace's .pipe/hotswap, and --app %s is outside any workspace: run it inside one", strings.Join(f.apps, " "))
	}
	cfg, err := deploy.LoadConfig(ctx)
	if err != nil {
		return err
	}
	rep := newDeployUI(stderr, in.ui, in.start)
	results, planned, derr := planAndApply(ctx, cfg, in, f, deploy.PlanOptions{Force: f.force, Approval: approval, Hotswap: hotswap, Records: in.records}, rep, stderr)
	if !planned {
		if errors.Is(derr, context.Canceled) {
			fmt.Fprintln(stderr, "pipe: interrupted; no stack was started")
			return &exitError{code: 130}
		}
		return derr
	}
	fmt.Fprintf(stderr, "%d stack%s: %s (%.2fs)\n", len(results), plural(len(results)), countResults(results), time.Since(start).Seconds())

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

// planAndApply plans the stacks and applies the plans, or with --dry-run
// prints them. planned is false when planning failed as a whole (err).
func planAndApply(ctx context.Context, cfg aws.Config, in *deployInput, f *deployFlags, po deploy.PlanOptions, rep *deployUI, stderr io.Writer) (results []*deploy.Result, planned bool, err error) {
	plans, err := deploy.Plan(ctx, cfg, in.stacks, po)
	if why := in.quick.blocked(plans); err == nil && why != "" {
		fmt.Fprintf(stderr, "%s: synthesizing\n", why)
		if in.stacks, in.zips, err = in.quick.resynth(ctx, f.stacks, stderr); err != nil {
			return nil, false, err
		}
		in.quick = nil
		plans, err = deploy.Plan(ctx, cfg, in.stacks, po)
	}
	if err != nil {
		return nil, false, err
	}
	if f.dryRun {
		results, err = rep.dryRun(plans)
		return results, true, err
	}
	opt := deploy.ApplyOptions{Concurrency: f.concurrency, Zips: in.zips}
	if term.IsTerminal(int(os.Stdin.Fd())) {
		opt.Prompt = terminalPrompt(stderr)
	}
	results, err = deploy.Apply(ctx, cfg, plans, opt, rep)
	return results, true, err
}

// countResults is the summary of a deployment (or, with order, of a
// destroy): how many stacks ended how, in the order of the statuses.
func countResults(results []*deploy.Result, order ...deploy.Status) string {
	counts := map[deploy.Status]int{}
	for _, r := range results {
		counts[r.Status]++
	}
	var parts []string
	if len(order) == 0 {
		order = []deploy.Status{deploy.StatusHotswapped, deploy.StatusDeployed, deploy.StatusWouldHotswap, deploy.StatusWould, deploy.StatusUnchanged, deploy.StatusFailed, deploy.StatusSkipped, deploy.StatusNotStarted}
	}
	for _, st := range order {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return strings.Join(parts, ", ")
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
	stderr := cmd.ErrOrStderr()
	in, err := loadDeployInput(ctx, g, f, args, stderr)
	if err != nil {
		return err
	}
	defer in.release()
	tfDiffers := false
	if len(in.tf) > 0 {
		if tfDiffers, err = runTerraformDiff(ctx, in.tf, cmd.OutOrStdout(), stderr); err != nil {
			return err
		}
		if len(in.stacks) == 0 {
			if tfDiffers && f.fail {
				return &exitError{code: 1}
			}
			return nil
		}
	}
	cfg, err := deploy.LoadConfig(ctx)
	if err != nil {
		return err
	}
	plans, err := deploy.Plan(ctx, cfg, in.stacks, deploy.PlanOptions{DiffOnly: true, Records: in.records})
	if err != nil {
		return err
	}
	differs, err := renderDiff(cmd.OutOrStdout(), plans)
	if err != nil {
		return err
	}
	if (differs || tfDiffers) && f.fail {
		return &exitError{code: 1}
	}
	return nil
}
