package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
)

func destroyCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	f := &deployFlags{destroy: true}
	cmd := &cobra.Command{
		Use:   "destroy [PATTERN...]",
		Short: "delete the stacks of the cdk_stack targets (default //...), dependents first",
		Long: `Build the cdk_stack targets the patterns select and delete the stacks that
pipe deploy with the same arguments would deploy, each after the stacks that
depend on it; independent ones concurrently. --stacks narrows the set and
adds the stacks that depend on the named ones, which must go first.

On a terminal pipe lists the stacks and asks; elsewhere (CI) --force is
required. A stack with termination protection is refused. Stacks that do not
exist are reported as not deployed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDestroy(ctx, g, f, args, cmd)
		},
	}
	addAssemblyFlags(cmd, f)
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 4, "delete at most `N` independent stacks at once")
	cmd.Flags().BoolVarP(&f.force, "force", "f", false, "do not ask for confirmation (needed when not on a terminal)")
	return cmd
}

func runDestroy(ctx context.Context, g *globalFlags, f *deployFlags, args []string, cmd *cobra.Command) error {
	stderr := cmd.ErrOrStderr()
	if f.concurrency < 1 {
		return engine.Usagef("--concurrency %d: want 1 or more", f.concurrency)
	}
	interactive := term.IsTerminal(int(os.Stdin.Fd()))
	if !f.force && !interactive {
		return engine.Usagef("pipe destroy deletes stacks and asks first, but there is no terminal to ask on: run it on a terminal, or add --force")
	}
	start := time.Now()
	in, err := loadDeployInput(ctx, g, f, args, stderr)
	if err != nil {
		return err
	}
	defer in.release()
	defer in.writeEvents(stderr)
	if !f.force {
		var names []string
		for _, s := range in.stacks {
			names = append(names, s.DisplayName)
		}
		names = append(names, terraformNames(in.tf)...)
		ok, err := terminalPrompt(stderr)(fmt.Sprintf("Delete %d stack%s (%s)? [y/N] ", len(names), plural(len(names)), strings.Join(names, ", ")))
		if err != nil || !ok {
			fmt.Fprintln(stderr, "pipe: nothing deleted")
			return &exitError{code: 1}
		}
	}
	if len(in.tf) > 0 {
		if err := runTerraformDestroy(ctx, in.tf, stderr); err != nil || len(in.stacks) == 0 {
			return err
		}
	}
	cfg, err := deploy.LoadConfig(ctx)
	if err != nil {
		return err
	}
	rep := newDeployUI(stderr, in.ui, in.start)
	results, derr := deploy.Destroy(ctx, cfg, in.stacks, deploy.DestroyOptions{Concurrency: f.concurrency}, rep)
	fmt.Fprintf(stderr, "%d stack%s: %s (%.2fs)\n", len(results), plural(len(results)),
		countResults(results, deploy.StatusDestroyed, deploy.StatusAbsent, deploy.StatusFailed, deploy.StatusKept, deploy.StatusNotStarted), time.Since(start).Seconds())
	switch {
	case derr == nil:
		return nil
	case errors.Is(derr, context.Canceled):
		fmt.Fprintln(stderr, "pipe: interrupted; no new stack deletion was started (those in flight go on in CloudFormation)")
		return &exitError{code: 130}
	default:
		return &exitError{code: 1}
	}
}
