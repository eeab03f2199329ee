package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
)

func runCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run LABEL [-- ARGS...]",
		Short: "build a runnable target (such as //pkg:serve) and run it in the foreground",
		Long: `Build LABEL and what it needs, then run it with your terminal attached.
The workspace lock is released before the program starts, so other pipe
commands can build while it runs. Arguments after -- are passed on.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			pat, err := engine.ParsePattern(args[0], s.relPkg)
			if err != nil {
				return engine.Usagef("%v", err)
			}
			if pat.Recursive || pat.All {
				return engine.Usagef("pipe run %s: name one target, not a pattern", args[0])
			}
			plan, err := s.build(ctx, []engine.Pattern{pat})
			if err != nil {
				return err
			}
			l := engine.Label{Pkg: pat.Pkg, Name: pat.Name}
			r := plan.Actions.Runnable(l)
			if r == nil {
				return engine.Usagef("%s (%s) is not runnable; runnable targets are the :serve targets of fastapi_project and other rules that say so", l, plan.Targets.Targets[l].Rule.Name)
			}
			if r.Prepare != nil {
				c, err := openCache()
				if err != nil {
					return err
				}
				if r, err = r.Prepare(ctx, c, func(msg string) {
					if g.verbose {
						fmt.Fprintln(s.stderr, msg)
					}
				}); err != nil {
					return err
				}
			}
			// Arguments after -- may change what the banner says (uvicorn
			// takes the last --port), so it is printed only without them.
			if r.Banner != "" && len(args) == 1 {
				fmt.Fprintln(s.stderr, r.Banner)
			}
			return runForeground(ctx, s.ws, r, args[1:])
		},
	}
}

// runForeground runs r with the terminal attached. Ctrl-C reaches the
// program (it shares the terminal's process group); pipe waits for it and
// exits with its status.
func runForeground(ctx context.Context, ws *engine.Workspace, r *engine.Runnable, extra []string) error {
	argv := append(append([]string(nil), r.Argv...), extra...)
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = filepath.Join(ws.Root, filepath.FromSlash(r.Dir))
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	env := os.Environ()
	keys := make([]string, 0, len(r.Env))
	for k := range r.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+r.Env[k])
	}
	c.Env = env
	if err := c.Start(); err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return exitStatus(err)
	case <-ctx.Done():
		// The terminal already sent SIGINT to the program; give it time to
		// shut down cleanly, then insist.
		c.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			return exitStatus(err)
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			return exitStatus(<-done)
		}
	}
}

func exitStatus(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() >= 0 {
			return &exitError{code: ee.ExitCode()}
		}
		return &exitError{code: 130}
	}
	return err
}
