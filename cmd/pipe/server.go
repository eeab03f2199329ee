package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/journal"
)

// The change journal (internal/journal) is kept by `pipe server`, one per
// workspace. With PIPE_SERVER=1, a build asks it what changed since the
// previous build and stats only that, instead of every path its snapshot
// recorded; it starts the server when none answers. Without the variable,
// builds neither ask nor start one.

// serverIdle is how long a server started on demand waits for a build.
const serverIdle = 3 * time.Hour

func serverCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var idle time.Duration
	c := &cobra.Command{
		Use:   "server",
		Short: "keep the workspace's change journal, so builds stat only what changed (PIPE_SERVER=1)",
		Long: `Run the workspace's server in the foreground. It watches the workspace
with inotify and tells each build which paths changed since the build
before it, so a build answered from its snapshot stats those paths only.

Builds use the server when PIPE_SERVER=1 is set, and start it in the
background when none is running (its log: .pipe/journal/log; its idle
time: PIPE_SERVER_IDLE, default 3h). It exits after --idle without a
build, when the workspace root is removed, on pipe shutdown and on pipe
clean. Without a server, or where it cannot vouch for a path, builds
stat as before: the results are the same either way. Linux only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// pipe's short-lived commands trade memory for fewer
			// collections (main); a server that lives for hours
			// collects as usual, and hands freed memory back.
			debug.SetGCPercent(100)
			err = journal.Serve(ctx, s.ws.Root, journal.ServeOptions{Version: pipeVersion(), Idle: idle, Log: cmd.ErrOrStderr()})
			if errors.Is(err, journal.ErrRunning) {
				return fmt.Errorf("%w (pipe shutdown stops it)", err)
			}
			return err
		},
	}
	c.Flags().DurationVar(&idle, "idle", serverIdle, "exit after this long without a build")
	return c
}

func shutdownCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "shutdown",
		Short: "stop the workspace's server (pipe server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			stopped, err := s.stopServer(ctx)
			if err == nil && !stopped {
				fmt.Fprintln(cmd.ErrOrStderr(), "no pipe server is running for this workspace")
			}
			return err
		},
	}
}

// stopServer stops the workspace's server, if one runs, and says so.
func (s *session) stopServer(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl := &journal.Client{Root: s.ws.Root, Version: pipeVersion()}
	pid, err := cl.Shutdown(ctx)
	if errors.Is(err, journal.ErrNoServer) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stop the pipe server: %w", err)
	}
	fmt.Fprintf(s.stderr, "stopped the pipe server (pid %d)\n", pid)
	return true, nil
}

// journalOn reports whether builds ask the change journal. The journal
// needs inotify: elsewhere a server could not start, and every build would
// try to start one again.
func journalOn() bool {
	v := os.Getenv("PIPE_SERVER")
	return (v == "1" || v == "true") && runtime.GOOS == "linux"
}

func (s *session) tokenPath() string {
	return filepath.Join(s.ws.StateDir(), "snapshot.token")
}

// journalAnswer is what the change journal told a build.
type journalAnswer struct {
	// changes vouches for the paths that did not change since the token
	// kept with the snapshot; nil when no server answered.
	changes *journal.Changes
	// asked is the token the build asked about.
	asked journal.Token
}

// now is the token to keep with the snapshot this build verifies or
// writes: every stat the build takes comes after it.
func (a journalAnswer) now() journal.Token {
	if a.changes == nil {
		return journal.Token{}
	}
	return a.changes.Now
}

// known is what Snapshot.Changed may skip.
func (a journalAnswer) known() engine.Known {
	if a.changes == nil || !a.changes.Complete {
		return nil
	}
	return a.changes
}

// askJournal asks the workspace's server what changed since the token kept
// with snap (nil: since nothing). It must come before the build's first
// stat. With no server answering, it starts one for the builds after this
// one.
func (s *session) askJournal(ctx context.Context, snap *engine.Snapshot) journalAnswer {
	if !journalOn() {
		return journalAnswer{}
	}
	var a journalAnswer
	if snap != nil {
		a.asked = journal.LoadToken(s.tokenPath(), snap.Stamp())
	}
	cl := &journal.Client{Root: s.ws.Root, Version: pipeVersion()}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ch, err := cl.Since(qctx, a.asked)
	switch {
	case errors.Is(err, journal.ErrNoServer):
		s.startServer()
	case err != nil:
		fmt.Fprintf(s.stderr, "pipe: warning: %v; stat'ing everything\n", err)
	default:
		a.changes = ch
		if s.g.verbose {
			if ch.Complete {
				fmt.Fprintf(s.stderr, "change journal: %d paths and %d trees changed since the last build\n", len(ch.Paths), len(ch.Trees))
			} else {
				fmt.Fprintf(s.stderr, "change journal not used: %s\n", ch.Why)
			}
		}
	}
	return a
}

// startServer starts the workspace's server in the background.
func (s *session) startServer() {
	args := []string{"server", "-C", s.ws.Root}
	if v := os.Getenv("PIPE_SERVER_IDLE"); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			fmt.Fprintf(s.stderr, "pipe: warning: PIPE_SERVER_IDLE=%q is not a duration such as 30m; the server waits %v\n", v, serverIdle)
		} else {
			args = append(args, "--idle", d.String())
		}
	}
	exe, err := os.Executable()
	if err == nil {
		err = journal.Start(s.ws.Root, exe, args, filepath.Join(journal.Dir(s.ws.Root), "log"))
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
		return
	}
	if s.g.verbose {
		fmt.Fprintln(s.stderr, "change journal: started a pipe server for the builds after this one")
	}
}

// keepToken records tok as the token of the snapshot with stamp.
func (s *session) keepToken(stamp [40]byte, tok journal.Token) {
	if tok.IsZero() {
		return
	}
	if err := journal.SaveToken(s.tokenPath(), stamp, tok); err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
	}
}
