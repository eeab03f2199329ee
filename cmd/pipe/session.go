package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/kvfile"
	"github.com/pipebuild/pipe/internal/rules"
)

// session is one command's view of a workspace.
type session struct {
	start time.Time
	g     *globalFlags
	ws    *engine.Workspace
	eval  *buildfile.Evaluator
	// loader evaluates packages through the package cache.
	loader *buildfile.PackageCache
	relPkg string
	stderr io.Writer
	phases []engine.Phase
	// ui is the last build's, which holds its events for --events.
	ui *ui
	// shard, when set, narrows build to one part (--shard K/N).
	shard *engine.Shard
}

// openWorkspace finds the workspace and evaluates WORKSPACE.star.
func openWorkspace(g *globalFlags, stderr io.Writer) (*session, error) {
	s := &session{start: time.Now(), g: g, stderr: stderr}
	dir := g.dir
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return nil, err
		}
	} else if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, engine.Usagef("-C %s: not a directory", dir)
	}
	root, err := engine.FindWorkspace(dir)
	if err != nil {
		return nil, err
	}
	s.relPkg = engine.RelPackage(root, dir)
	s.eval = buildfile.NewEvaluator(root, rules.Registry())
	s.eval.Print = func(pos engine.Pos, msg string) {
		fmt.Fprintf(stderr, "DEBUG %s: %s\n", pos, msg)
	}
	settings, err := s.eval.EvalWorkspace()
	if err != nil {
		return nil, err
	}
	s.ws = &engine.Workspace{Root: root, Settings: settings}
	s.loader = buildfile.NewPackageCache(s.eval, filepath.Join(s.ws.StateDir(), "packages"), pipeVersion())
	return s, nil
}

// lock takes the workspace lock, telling the user when it has to wait.
func (s *session) lock(ctx context.Context) (*engine.Lock, error) {
	return engine.AcquireLock(ctx, s.ws.StateDir(), func(holder string) {
		if holder == "" {
			holder = "another process"
		}
		fmt.Fprintf(s.stderr, "pipe: waiting for the workspace lock (held by %s)…\n", holder)
	})
}

// patterns parses command-line patterns; none means //...
func (s *session) patterns(args []string) ([]engine.Pattern, error) {
	if len(args) == 0 {
		args = []string{"//..."}
	}
	var out []engine.Pattern
	for _, a := range args {
		p, err := engine.ParsePattern(a, s.relPkg)
		if err != nil {
			return nil, engine.Usagef("%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func openCache() (*cache.Cache, error) {
	dir, err := cache.DefaultDir()
	if err != nil {
		return nil, err
	}
	return cache.Open(dir)
}

func (s *session) digestsPath() string {
	return filepath.Join(s.ws.StateDir(), "digests")
}

// saveState writes the package cache; losing it only costs time.
func (s *session) saveState() {
	if err := s.loader.Save(); err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
	}
}

// reportState says, under -v, how many entries of the file-digest and
// package caches the build read and wrote: a build after one edit touches
// the entries of what it loaded and ran, not the whole workspace's.
func (s *session) reportState(digests *engine.FileDigests, ledger *engine.Ledger) {
	if !s.g.verbose {
		return
	}
	d, p := digests.Stats(), s.loader.Stats()
	line := func(name string, st kvfile.Stats) string {
		w := fmt.Sprintf("%d appended", st.Appended)
		if st.Compacted {
			w = fmt.Sprintf("%d rewritten", st.Rewritten)
		}
		return fmt.Sprintf("%s %d read, %s", name, st.Lookups, w)
	}
	fmt.Fprintf(s.stderr, "state: %s; %s; ledger %d BUILD.star statted\n", line("file digests", d), line("packages", p), ledger.Stats())
}
