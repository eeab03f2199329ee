package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

// The build snapshot (engine.Snapshot) lets `pipe build` answer a no-op
// without loading, analysing or looking anything up in the cache.
// PIPE_SNAPSHOT=0 turns it off.

// snapshotUsed is what -v says when the snapshot answered the build.
const snapshotUsed = "nothing changed since the last build: answered from its snapshot"

func (s *session) snapshotPath() string {
	return filepath.Join(s.ws.StateDir(), "snapshot")
}

// snapshotKey returns the key of a build of pats, or "" when this build
// cannot use a snapshot: it is turned off, or a flag asks for work or
// reports a no-op does not do (--explain, --verify, --shard,
// --sandbox-debug), or a remote cache is configured (its statistics are
// part of the summary).
func (s *session) snapshotKey(pats []engine.Pattern) string {
	g := s.g
	if os.Getenv("PIPE_SNAPSHOT") == "0" || g.explain || g.verify || g.sandboxDebug || s.shard != nil {
		return ""
	}
	if url, _ := s.ws.Settings.Extra["remote_cache"].(string); g.remoteCache != "" || os.Getenv("PIPE_REMOTE_CACHE") != "" || url != "" {
		return ""
	}
	dir, err := cache.DefaultDir()
	if err != nil {
		return ""
	}
	return engine.SnapshotKey(pipeVersion(), s.ws.Root, dir, pats)
}

// buildFromSnapshot answers the build of pats from the snapshot when
// nothing it recorded changed, and reports whether it did.
func (s *session) buildFromSnapshot(ctx context.Context, pats []engine.Pattern, key string) (bool, error) {
	if key == "" {
		return false, nil
	}
	lock, err := s.lock(ctx)
	if err != nil {
		return false, err
	}
	defer lock.Release()
	snap, ok := engine.LoadSnapshot(s.snapshotPath(), key)
	if !ok {
		return false, nil
	}
	if ok, why := snap.Check(ctx, s.ws.Root); !ok {
		if s.g.verbose {
			fmt.Fprintf(s.stderr, "build snapshot not used: %s\n", why)
		}
		return false, nil
	}
	c, err := openCache()
	if err != nil {
		return false, err
	}
	ui, err := newUI(s.g, s.stderr, len(snap.Actions))
	if err != nil {
		return false, err
	}
	s.ui = ui
	if s.g.verbose {
		fmt.Fprintln(s.stderr, snapshotUsed)
	}
	execStart := time.Now()
	for i := range snap.Actions {
		ui.ActionFinished(snap.Actions[i].Event(execStart))
	}
	n := len(snap.Actions)
	ui.finish(engine.Summary{Total: n, Cached: n, Duration: time.Since(s.start)}, nil)
	phases := []engine.Phase{{Name: "snapshot", Start: s.start, End: time.Now()}}
	if err := ui.writeFiles(phases, s.start); err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
	}
	s.autoTrim(ctx, c)
	return true, nil
}

// recordSnapshot writes the snapshot of a build in which every action in
// executed succeeded. Not being able to is no failure: the next build
// takes the long way.
func (s *session) recordSnapshot(key string, plan *engine.Plan, executed []*engine.Action, exec *engine.Executor, ledgerPath string) {
	dir, err := cache.DefaultDir()
	if err != nil {
		return
	}
	snap, err := engine.RecordSnapshot(key, engine.SnapshotInputs{
		WS:            s.ws,
		Plan:          plan,
		Executed:      executed,
		Exec:          exec,
		PackageInputs: s.loader.PackageInputs,
		Extra:         []string{ledgerPath, dir},
		Start:         s.start.UnixNano(),
	})
	var no *engine.ErrNoSnapshot
	if errors.As(err, &no) {
		if s.g.verbose {
			fmt.Fprintf(s.stderr, "%v\n", err)
		}
		return
	}
	if err == nil {
		err = snap.Save(s.snapshotPath())
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
	}
}
