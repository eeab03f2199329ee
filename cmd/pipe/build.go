package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/journal"
	"github.com/pipebuild/pipe/internal/sandbox"
)

func buildCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	var aff affectedFlags
	c := &cobra.Command{
		Use:   "build [PATTERN...]",
		Short: "build targets (default //...), reusing cached results",
		Long: `Build the targets the patterns select and everything they depend on.

Patterns: //pkg:name, //pkg (= //pkg:<last element>), //pkg:all, //pkg/..., //...
Relative patterns (:name, sub/dir/...) resolve against the current directory.
Outputs land in dist/<pkg>/<target>/.

--affected --base REV builds only the targets a change since REV affects
(see pipe affected), narrowed by any patterns given.

--shard K/N builds the K-th of N parts of the selection, for N CI jobs
sharing a remote cache: the top-level targets (those no other selected
target depends on) are split deterministically, balanced by the actions
each needs, so the N shards together build everything, each top-level
target in one shard.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(ctx, g, &aff, args, cmd)
		},
	}
	c.Flags().BoolVar(&aff.on, "affected", false, "build only the targets affected by changes since --base")
	c.Flags().StringVar(&aff.base, "base", "", "with --affected: the revision to compare with (e.g. origin/main)")
	c.Flags().StringVar(&aff.head, "head", "", "with --affected: the revision to compare (default: the working tree)")
	c.Flags().StringVar(&aff.shard, "shard", "", "build only part `K/N` of the selection (CI fan-out over one remote cache)")
	return c
}

type affectedFlags struct {
	on         bool
	base, head string
	shard      string
}

func runBuild(ctx context.Context, g *globalFlags, aff *affectedFlags, args []string, cmd *cobra.Command) error {
	var shard *engine.Shard
	if aff.shard != "" {
		sh, err := engine.ParseShard(aff.shard)
		if err != nil {
			return err
		}
		shard = &sh
	}
	s, err := openWorkspace(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	s.shard = shard
	pats, err := s.selectedPatterns(ctx, aff, args)
	if err != nil {
		return err
	}
	var key string
	if !aff.on {
		key = s.snapshotKey(pats)
	}
	done, asked, err := s.buildFromSnapshot(ctx, pats, key)
	if done || err != nil {
		return err
	}
	_, err = s.buildWith(ctx, pats, buildOptions{snapshotKey: key, journal: asked.now()})
	return err
}

// selectedPatterns turns a command's arguments into patterns: the patterns
// given or, with --affected, the targets a change since --base affects,
// narrowed by any patterns given. An empty affected set selects nothing
// (not //...).
func (s *session) selectedPatterns(ctx context.Context, aff *affectedFlags, args []string) ([]engine.Pattern, error) {
	if !aff.on {
		if aff.base != "" || aff.head != "" {
			return nil, engine.Usagef("--base and --head need --affected")
		}
		return s.patterns(args)
	}
	if aff.base == "" {
		return nil, engine.Usagef("--affected needs --base REV (for example --base origin/main)")
	}
	affected, err := affectedPatterns(ctx, s, aff.base, aff.head)
	if err != nil {
		return nil, err
	}
	var want []engine.Pattern
	if len(args) > 0 {
		if want, err = s.patterns(args); err != nil {
			return nil, err
		}
	}
	var pats []engine.Pattern
	for _, p := range affected {
		l := engine.Label{Pkg: p.Pkg, Name: p.Name}
		keep := len(want) == 0
		for _, w := range want {
			keep = keep || w.Matches(l)
		}
		if keep {
			pats = append(pats, p)
		}
	}
	return pats, nil
}

// build plans and executes the patterns under the workspace lock and prints
// the summary line. It returns the plan so callers (pipe run) can use it;
// a failed execution returns it with the error. Tests are built but not
// run: that is pipe test.
func (s *session) build(ctx context.Context, pats []engine.Pattern) (*engine.Plan, error) {
	return s.buildWith(ctx, pats, buildOptions{})
}

// buildOptions is what pipe test changes in a build.
type buildOptions struct {
	// needed picks the actions to execute from the plan; nil means the
	// selected targets' actions and what they need, tests left out.
	needed func(plan *engine.Plan) []*engine.Action
	// rerunTests runs test actions whose passing result is cached.
	rerunTests bool
	// reporter, when set, wraps the progress display (it must pass every
	// call on).
	reporter func(ui *ui) engine.Reporter
	// done runs after the summary line, before the exit status is
	// decided; its error, if any, is the command's.
	done func(plan *engine.Plan, buildErr error) error
	// then runs after needed built without error; the actions it
	// returns (a dependency-closed list) are executed next, in the same
	// build (pipe deploy --hotswap decides there whether a synth runs).
	then func(exec *engine.Executor, plan *engine.Plan) ([]*engine.Action, error)
	// snapshotKey, when set, records the build's snapshot under this key
	// if every action succeeds (see snapshot.go).
	snapshotKey string
	// base, when set, is the snapshot of the whole graph this build is
	// part of: the summary and --events count its other actions as cached,
	// and the recorded snapshot is base with this build's actions.
	base *engine.Snapshot
	// journal is the change journal's token from before the build's
	// first stat, kept with the snapshot it records.
	journal journal.Token
}

// withoutTests drops test actions: a build never runs them.
func withoutTests(actions []*engine.Action) []*engine.Action {
	out := actions[:0:0]
	for _, a := range actions {
		if !a.Test {
			out = append(out, a)
		}
	}
	return out
}

// buildWith is build with options, under the workspace lock.
func (s *session) buildWith(ctx context.Context, pats []engine.Pattern, opts buildOptions) (*engine.Plan, error) {
	lock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	return s.buildLockedWith(ctx, pats, opts)
}

// buildLocked is build for a caller that holds the workspace lock and goes
// on holding it: pipe deploy reads dist/ after building, and another pipe
// must not rebuild it in between.
func (s *session) buildLocked(ctx context.Context, pats []engine.Pattern) (*engine.Plan, error) {
	return s.buildLockedWith(ctx, pats, buildOptions{})
}

func (s *session) buildLockedWith(ctx context.Context, pats []engine.Pattern, opts buildOptions) (*engine.Plan, error) {
	g, stderr := s.g, s.stderr
	// A snapshot speaks for the build that wrote it; this one may change
	// what it recorded.
	if err := s.withdrawSnapshot(opts.base); err != nil {
		return nil, err
	}
	plan, err := engine.PlanBuild(ctx, s.ws, s.loader, pats)
	s.saveState()
	if err != nil {
		return nil, err
	}
	if s.shard != nil {
		mine, total := plan.ApplyShard(*s.shard)
		fmt.Fprintf(stderr, "shard %s: %d of %d top-level targets\n", s.shard, len(mine), total)
	}
	c, err := openCache()
	if err != nil {
		return nil, err
	}
	digests := engine.LoadFileDigests(s.digestsPath())
	defer digests.Close()
	if err := digests.Confine(s.ws.Root); err != nil {
		return nil, err
	}
	// Outputs of targets that were removed or renamed, and outputs a target
	// no longer declares, go before anything runs: a build never serves them.
	ledger := engine.LoadLedger(filepath.Join(s.ws.StateDir(), "outputs"))
	reconcile := ledger.Reconcile
	if opts.base != nil {
		reconcile = ledger.ReconcilePart
	}
	removed, err := reconcile(s.ws, plan.Targets, plan.Actions, digests)
	if len(removed) > 0 {
		fmt.Fprintf(stderr, "removed %d output%s no target declares any more: %s\n", len(removed), plural(len(removed)), strings.Join(removed, ", "))
	}
	if err != nil {
		return nil, err
	}
	needed := withoutTests(plan.Needed)
	if opts.needed != nil {
		needed = opts.needed(plan)
	}
	total := len(needed)
	if opts.base != nil {
		total = len(opts.base.Actions)
	}
	ui, err := newUI(g, stderr, total)
	if err != nil {
		return nil, err
	}
	s.ui = ui
	var reporter engine.Reporter = ui
	if opts.reporter != nil {
		reporter = opts.reporter(ui)
	}
	remote, err := s.openRemote(ctx, c, ui.warn)
	if err != nil {
		return nil, err
	}
	sandboxMode, err := sandbox.ParseMode(g.sandbox)
	if err != nil {
		return nil, engine.Usagef("%v", err)
	}
	exec := &engine.Executor{
		Sandbox:   sandboxMode,
		Warn:      ui.warn,
		WS:        s.ws,
		Cache:     c,
		Digests:   digests,
		Jobs:      g.jobs,
		KeepGoing: g.keepGoing,
		// Only a failed action's directory is kept; the others go.
		KeepFailedScratch: g.sandboxDebug,
		Reporter:          reporter,
		PipeVersion:       pipeVersion(),
		Graph:             plan.Actions,
		Explain:           g.explain,
		Verify:            g.verify,
		Ledger:            ledger,
		RerunTests:        opts.rerunTests,
	}
	if remote != nil {
		exec.Remote = remote
	}
	execStart := time.Now()
	sum, buildErr := exec.Execute(ctx, needed)
	if buildErr == nil && opts.then != nil {
		more, err := opts.then(exec, plan)
		if err != nil {
			return nil, err
		}
		if len(more) > 0 {
			// The actions of the first execution are checked again (as
			// cache hits) but reported once.
			first := make(map[*engine.Action]bool, len(needed))
			for _, a := range needed {
				first[a] = true
			}
			ui.mu.Lock()
			ui.total += len(more) - len(needed)
			ui.mu.Unlock()
			exec.Reporter = &newOnly{Reporter: reporter, old: first}
			again, err := exec.Execute(ctx, more)
			// What the first execution counted is not counted twice.
			sum.Total += len(more) - len(needed)
			sum.Cached += again.Cached - len(needed)
			sum.Executed += again.Executed
			sum.Failed += again.Failed
			sum.Skipped += again.Skipped
			buildErr = err
		}
	}
	phases := append(plan.Phases, engine.Phase{Name: "execute", Start: execStart, End: time.Now()})
	if remote != nil {
		// Results were uploaded in the background while the build went
		// on; wait for the rest (bounded, and not at all after Ctrl-C).
		uploadStart := time.Now()
		remote.Close(ctx)
		if d := time.Since(uploadStart); d > 50*time.Millisecond {
			phases = append(phases, engine.Phase{Name: "remote uploads", Start: uploadStart, End: time.Now()})
			if g.verbose {
				fmt.Fprintf(stderr, "waited %s for remote uploads\n", d.Round(time.Millisecond))
			}
		}
	}
	if err := digests.Save(); err != nil {
		fmt.Fprintf(stderr, "pipe: warning: %v\n", err)
	}
	s.reportState(digests, ledger)
	if err := ledger.Save(); err != nil {
		fmt.Fprintf(stderr, "pipe: warning: %v\n", err)
	}
	if opts.snapshotKey != "" && buildErr == nil {
		s.recordSnapshot(opts.snapshotKey, opts.base, plan, needed, exec, opts.journal)
	}
	if opts.base != nil {
		sum = s.addUnchanged(opts.base, needed, sum)
	}
	sum.Duration = time.Since(s.start)
	if remote != nil {
		st := remote.Stats()
		ui.remote = fmt.Sprintf("remote: %d hits, %d misses, %s down, %s up", st.Hits, st.Misses, formatBytes(st.BytesDown), formatBytes(st.BytesUp))
	}
	ui.finish(sum, buildErr)
	if err := ui.writeFiles(phases, s.start); err != nil {
		fmt.Fprintf(stderr, "pipe: warning: %v\n", err)
	}
	if opts.done != nil {
		if err := opts.done(plan, buildErr); err != nil {
			return nil, err
		}
	}
	if buildErr != nil {
		if errors.Is(buildErr, context.Canceled) {
			fmt.Fprintln(stderr, "pipe: interrupted; finished outputs are kept, the rest will build next time")
			return nil, &exitError{code: 130}
		}
		// The plan goes back with the failure: pipe watch watches the
		// inputs of a build that failed as well.
		return plan, &exitError{code: 1}
	}
	s.autoTrim(ctx, c)
	return plan, nil
}

// newOnly passes on the events of actions not in old.
type newOnly struct {
	engine.Reporter
	old map[*engine.Action]bool
}

func (r *newOnly) ActionStarted(a *engine.Action, worker int) {
	if !r.old[a] {
		r.Reporter.ActionStarted(a, worker)
	}
}

func (r *newOnly) ActionFinished(ev *engine.ActionEvent) {
	if !r.old[ev.Action] {
		r.Reporter.ActionFinished(ev)
	}
}

func (r *newOnly) ActionProgress(a *engine.Action, msg string) {
	if p, ok := r.Reporter.(engine.ProgressReporter); ok && !r.old[a] {
		p.ActionProgress(a, msg)
	}
}

// autoTrim trims the shared cache by age at most once a day (see
// cache.AutoTrim). A failure only warns: the build itself succeeded.
func (s *session) autoTrim(ctx context.Context, c *cache.Cache) {
	maxAge, err := s.cacheMaxAge()
	if err == nil {
		var trimmed bool
		var st cache.TrimStats
		trimmed, st, err = c.AutoTrim(ctx, maxAge, time.Now())
		if trimmed && err == nil && s.g.verbose {
			fmt.Fprintf(s.stderr, "trimmed the shared cache: removed %d entries unused for %s (%s)\n", st.RemovedEntries, maxAge, formatBytes(st.RemovedBytes))
		}
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "pipe: warning: trimming the shared cache: %v\n", err)
	}
}

// cacheMaxAge is PIPE_CACHE_MAX_AGE, else workspace(cache_max_age = …),
// else cache.DefaultMaxAge.
func (s *session) cacheMaxAge() (time.Duration, error) {
	if os.Getenv("PIPE_CACHE_MAX_AGE") != "" {
		return maxAgeFromEnv()
	}
	if v, ok := s.ws.Settings.Extra["cache_max_age"].(string); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, engine.Usagef("WORKSPACE.star: cache_max_age = %q: want a duration such as \"168h\"", v)
		}
		return d, nil
	}
	return cache.DefaultMaxAge, nil
}

// openRemote opens the remote cache the flags, PIPE_REMOTE_CACHE or
// workspace(remote_cache = …) name; nil when none does. Its warnings go to
// warn.
func (s *session) openRemote(ctx context.Context, local *cache.Cache, warn func(string)) (*cache.Remote, error) {
	extra := s.ws.Settings.Extra
	workspaceURL, _ := extra["remote_cache"].(string)
	wsEndpoint := cache.EndpointSettings{}
	wsEndpoint.InstanceName, _ = extra["remote_instance_name"].(string)
	wsEndpoint.Headers, _ = extra["remote_headers"].([]string)
	if ca, _ := extra["remote_tls_ca"].(string); ca != "" {
		wsEndpoint.TLSCA = filepath.Join(s.ws.Root, ca)
		if filepath.IsAbs(ca) {
			wsEndpoint.TLSCA = ca
		}
	}
	spec := cache.RemoteSpec{
		URL:          s.g.remoteCache,
		WorkspaceURL: workspaceURL,
		Endpoint: cache.EndpointSettings{
			InstanceName: s.g.remoteInstance,
			Headers:      s.g.remoteHeaders,
			TLSCA:        s.g.remoteTLSCA,
		},
		WorkspaceEndpoint: wsEndpoint,
		Options: cache.RemoteOptions{
			Upload:        s.g.remoteUpload,
			AcceptCached:  s.g.remoteAcceptCached,
			Timeout:       s.g.remoteTimeout,
			InlineUploads: s.g.remoteUploadInline,
			MinRate:       minRate(s.g.remoteMinRate),
			Budget:        s.g.remoteBudget,
			Warn:          func(msg string) { warn("remote cache: " + msg) },
		},
		RequireSigned: s.g.remoteRequireSig,
	}
	r, err := spec.Open(ctx, local)
	if err != nil {
		return nil, engine.Usagef("%v", err)
	}
	return r, nil
}

// minRate maps --remote-min-rate, where 0 turns the floor off, to
// RemoteOptions.MinRate, whose zero means the default and a negative
// value no floor.
func minRate(flag int64) int64 {
	if flag <= 0 {
		return -1
	}
	return flag
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
