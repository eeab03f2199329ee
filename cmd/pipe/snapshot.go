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
	"github.com/pipebuild/pipe/internal/journal"
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
// nothing it recorded changed, and reports whether it did. When it did
// not, asked is what the change journal said before any stat, for the
// build that goes the long way.
func (s *session) buildFromSnapshot(ctx context.Context, pats []engine.Pattern, key string) (done bool, asked journalAnswer, err error) {
	if key == "" {
		return false, asked, nil
	}
	lock, err := s.lock(ctx)
	if err != nil {
		return false, asked, err
	}
	defer lock.Release()
	snap, ok := engine.LoadSnapshot(s.snapshotPath(), key)
	if !ok {
		return false, s.askJournal(ctx, nil), nil
	}
	asked = s.askJournal(ctx, snap)
	changed, ok, why, stats := snap.Changed(ctx, s.ws.Root, asked.known())
	if s.g.verbose {
		fmt.Fprintf(s.stderr, "build snapshot: %d paths stat'ed\n", stats)
	}
	if !ok {
		if s.g.verbose {
			fmt.Fprintf(s.stderr, "build snapshot not used: %s\n", why)
		}
		return false, asked, nil
	}
	if len(changed) > 0 {
		// The graph is the one the snapshot holds, and only these actions'
		// sources or outputs changed: build the targets downstream of them
		// alone, unless that is most of the build anyway.
		owners, n := snap.Downstream(changed)
		if 2*n > len(snap.Actions) {
			if s.g.verbose {
				fmt.Fprintf(s.stderr, "build snapshot not used: %d of %d actions are downstream of a change\n", n, len(snap.Actions))
			}
			return false, asked, nil
		}
		if s.g.verbose {
			fmt.Fprintf(s.stderr, "build snapshot: %d of %d actions are downstream of a change; building %d targets\n", n, len(snap.Actions), len(owners))
		}
		pats := make([]engine.Pattern, len(owners))
		for i, l := range owners {
			pats[i] = engine.Pattern{Pkg: l.Pkg, Name: l.Name}
		}
		_, err := s.buildLockedWith(ctx, pats, buildOptions{snapshotKey: key, base: snap, journal: asked.now()})
		return true, asked, err
	}
	// Every path was found as recorded after the journal's token was
	// handed out: the token now speaks for the snapshot.
	if now := asked.now(); now != asked.asked {
		s.keepToken(snap.Stamp(), now)
	}
	c, err := openCache()
	if err != nil {
		return false, asked, err
	}
	ui, err := newUI(s.g, s.stderr, len(snap.Actions))
	if err != nil {
		return false, asked, err
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
	return true, asked, nil
}

// withdrawSnapshot keeps the snapshot from answering a build while this
// one changes what it recorded: a build of part of base's graph appends a
// withdrawal its success lifts (engine.Snapshot.Void); any other build
// removes it.
func (s *session) withdrawSnapshot(base *engine.Snapshot) error {
	if base != nil {
		return base.Void(s.snapshotPath())
	}
	if err := os.Remove(s.snapshotPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the build snapshot: %w", err)
	}
	return nil
}

// recordSnapshot writes the snapshot of a build in which every action in
// executed succeeded. Not being able to is no failure: the next build
// takes the long way.
//
// With base, the build was of part of base's graph: its actions replace
// theirs in base.
//
// tok, the change journal's token from before the build's first stat, is
// kept with the snapshot written.
func (s *session) recordSnapshot(key string, base *engine.Snapshot, plan *engine.Plan, executed []*engine.Action, exec *engine.Executor, tok journal.Token) {
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
		// Every build that does not go through the snapshot removes it,
		// so the ledger and dist/ change under it only by hand (which the
		// outputs' stats show) or by pipe clean; the cache directory's
		// stat shows it was removed.
		Extra:       []string{dir},
		Start:       s.start.UnixNano(),
		ActionsOnly: base != nil,
	})
	if err == nil && base != nil {
		// The part's actions are appended to the snapshot (see
		// engine.Snapshot.SavePart), not written with all the others.
		var stamp [40]byte
		stamp, err = base.SavePart(s.snapshotPath(), snap)
		snap = nil
		if err == nil {
			s.keepToken(stamp, tok)
		}
	}
	var no *engine.ErrNoSnapshot
	if errors.As(err, &no) {
		if s.g.verbose {
			fmt.Fprintf(s.stderr, "%v\n", err)
		}
		return
	}
	if err == nil && snap != nil {
		if err = snap.Save(s.snapshotPath()); err == nil {
			s.keepToken(snap.Stamp(), tok)
		}
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: %v\n", err)
	}
}

// addUnchanged reports base's actions that a build of part of its graph
// did not include as the cache hits they are, in the summary and in
// --events, so the build reads as the whole build it stands for.
func (s *session) addUnchanged(base *engine.Snapshot, built []*engine.Action, sum engine.Summary) engine.Summary {
	ids := engine.Identities(built)
	at := time.Now()
	for i := range base.Actions {
		sa := &base.Actions[i]
		if sa.Includes(ids) {
			continue
		}
		sum.Total++
		sum.Cached++
		if s.ui != nil {
			s.ui.ActionFinished(sa.Event(at))
		}
	}
	return sum
}
