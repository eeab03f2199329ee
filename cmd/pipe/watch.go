package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules"
)

type watchFlags struct {
	deployFlags
	deploy   bool
	debounce time.Duration
}

func watchCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	f := &watchFlags{}
	cmd := &cobra.Command{
		Use:   "watch [PATTERN... | --app DIR] [--deploy [--hotswap]] [-- COMMAND [ARG...]]",
		Short: "build the targets (default //...) whenever one of their source files changes; optionally deploy, and run a command",
		Long: `Build the targets the patterns select, then watch the files their build
reads: the actions' source inputs, the files analysis read (uv.lock,
tsconfig.json…), and the BUILD.star and .star files that declare them. A
file that is no input of the watched targets never starts a cycle; nor do
dist/, .pipe/ and editor temp files. A new file starts one when a glob of a
target now matches it.

Each change (after --debounce of quiet) starts a cycle: build, then with
--deploy deploy the cdk_stack targets' stacks as pipe deploy does (with
--hotswap, Lambda code and configuration go straight to Lambda), then run
COMMAND if one follows --. Each cycle ends with one line: what changed and
how long each phase took. A failed cycle prints why and waits for the next
change.

--deploy --app DIR builds nothing: it deploys the cloud assembly in DIR
(as pipe deploy --app does) at start and whenever a tool writes it again
(cdk synth, pipe build).

Ctrl-C stops pipe watch: exit status 0 when it was waiting for a change,
130 when it interrupted a cycle.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			patterns, command := args, []string(nil)
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				patterns, command = args[:n], args[n:]
			}
			return runWatch(ctx, g, f, patterns, command, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.deploy, "deploy", false, "deploy the stacks of the cdk_stack targets after each successful build")
	fl.DurationVar(&f.debounce, "debounce", 100*time.Millisecond, "wait until files have been quiet for `D` before a cycle")
	fl.IntVar(&f.concurrency, "concurrency", 4, "with --deploy: deploy at most `N` independent stacks at once")
	fl.StringVar(&f.approval, "require-approval", string(deploy.ApproveBroadening), "with --deploy: ask before executing: never, any-change, or broadening")
	fl.StringArrayVar(&f.stacks, "stacks", nil, "with --deploy: only stacks whose construct path or name matches `GLOB`, with the stacks they depend on; repeatable")
	fl.StringArrayVar(&f.apps, "app", nil, "with --deploy: build nothing; deploy this cloud assembly `DIR` (cdk.out) whenever a tool writes it again; repeatable")
	addHotswapFlags(cmd, &f.deployFlags)
	return cmd
}

// watcher runs pipe watch's cycles.
type watcher struct {
	g        *globalFlags
	f        *watchFlags
	patterns []string
	command  []string
	stderr   io.Writer
	cfg      aws.Config
	approval deploy.Approval
	hotswap  deploy.HotswapMode
	fs       *fsnotify.Watcher
	root     string
	// inputs are the workspace-relative files the last planned build
	// reads; pkgs its packages' directories.
	inputs map[string]bool
	pkgs   []string
	// watched are the directories fsnotify watches.
	watched map[string]bool
	// exec are the inputs' execute bits as last seen.
	exec map[string]bool
	// driftSaid: the note that hotswapped stacks differ from their
	// templates is printed once per pipe watch.
	driftSaid bool
	// apps are the --app assemblies (absolute), watched instead of a
	// build's inputs.
	apps []string
}

func runWatch(ctx context.Context, g *globalFlags, f *watchFlags, patterns, command []string, stderr io.Writer) error {
	w := &watcher{g: g, f: f, patterns: patterns, command: command, stderr: stderr, inputs: map[string]bool{}, watched: map[string]bool{}, exec: map[string]bool{}}
	var err error
	if w.hotswap, err = f.hotswapMode(); err != nil {
		return err
	}
	if w.hotswap != deploy.HotswapOff && !f.deploy {
		return engine.Usagef("--hotswap needs --deploy")
	}
	if w.approval, err = deploy.ParseApproval(f.approval); err != nil {
		return engine.Usagef("%v", err)
	}
	if f.concurrency < 1 {
		return engine.Usagef("--concurrency %d: want 1 or more", f.concurrency)
	}
	if f.debounce < 0 {
		return engine.Usagef("--debounce %s: want 0 or more", f.debounce)
	}
	if len(f.apps) > 0 {
		return w.runApps(ctx)
	}
	s, err := openWorkspace(g, stderr)
	if err != nil {
		return err
	}
	w.root = s.ws.Root
	if _, err := s.patterns(patterns); err != nil {
		return err
	}
	if f.deploy {
		if w.cfg, err = deploy.LoadConfig(ctx); err != nil {
			return err
		}
	}
	if w.fs, err = fsnotify.NewWatcher(); err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.fs.Close()

	changed := []string(nil) // nil: the first cycle
	for {
		interrupted, err := w.cycle(ctx, changed)
		if err != nil {
			return err
		}
		if interrupted {
			return &exitError{code: 130}
		}
		if changed, err = w.wait(ctx); err != nil {
			return err
		}
		if changed == nil {
			return nil // Ctrl-C while waiting: a normal end
		}
	}
}

// cycle builds, deploys and runs the command once, and prints the cycle's
// line. interrupted says Ctrl-C cut it short; only what stops watching
// altogether is an error.
func (w *watcher) cycle(ctx context.Context, changed []string) (interrupted bool, err error) {
	start := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", start.Format("15:04:05"), describeChanges(changed))
	line := func(status string) {
		fmt.Fprintf(w.stderr, "%s · %s\n", b.String(), status)
	}

	// The build's own lines are kept back unless it fails (or -v): a
	// cycle that works is its one line.
	var out bytes.Buffer
	var bw io.Writer = &out
	if w.g.verbose {
		bw = w.stderr
	}
	s, err := openWorkspace(w.g, bw)
	if err != nil {
		w.stderr.Write(out.Bytes())
		line("build failed: " + err.Error())
		return false, nil
	}
	pats, err := s.patterns(w.patterns)
	if err != nil {
		return false, err
	}
	lock, err := s.lock(ctx)
	if err != nil {
		return false, err
	}
	defer lock.Release()
	var plan *engine.Plan
	var quick *hotswapBuild
	var dep *rules.Deployment
	if w.f.deploy && w.hotswap != deploy.HotswapOff {
		plan, dep, quick, err = s.buildForHotswap(ctx, pats, true, bw)
	} else {
		plan, err = s.buildLocked(ctx, pats)
	}
	if plan != nil {
		w.setInputs(plan)
	}
	buildTime := time.Since(start)
	if err != nil {
		w.stderr.Write(out.Bytes())
		var ee *exitError
		switch {
		case ctx.Err() != nil:
			line(fmt.Sprintf("build interrupted (%s)", formatDuration(buildTime)))
			return true, nil
		case errors.As(err, &ee):
			line(fmt.Sprintf("build failed (%s) · waiting for a change", formatDuration(buildTime)))
		default:
			line(fmt.Sprintf("build failed (%s): %v · waiting for a change", formatDuration(buildTime), err))
		}
		return false, nil
	}
	fmt.Fprintf(&b, " · build %s (%s)", formatDuration(buildTime), buildCounts(s.ui))

	if w.f.deploy {
		t0 := time.Now()
		summary, err := w.deploy(ctx, s, plan, dep, quick)
		if ended, interrupted := w.deployed(ctx, &b, line, time.Since(t0), summary, err); ended {
			return interrupted, nil
		}
	}
	lock.Release()
	return w.finish(ctx, &b, line), nil
}

// deployed adds a cycle's deploy to its line b; when the deploy failed or
// was interrupted the cycle ends there (ended), its line printed.
func (w *watcher) deployed(ctx context.Context, b *strings.Builder, line func(string), took time.Duration, summary string, err error) (ended, interrupted bool) {
	d := formatDuration(took)
	switch {
	case err != nil && ctx.Err() != nil:
		line(fmt.Sprintf("deploy interrupted (%s)", d))
		return true, true
	case err != nil:
		if summary == "" {
			fmt.Fprintf(w.stderr, "pipe: %v\n", err)
		}
		line(fmt.Sprintf("deploy failed (%s%s) · waiting for a change", d, prefixed(", ", summary)))
		return true, false
	}
	fmt.Fprintf(b, " · deploy %s (%s)", d, summary)
	return false, false
}

// finish runs the command after --, if any, and prints the cycle's line.
func (w *watcher) finish(ctx context.Context, b *strings.Builder, line func(string)) (interrupted bool) {
	if len(w.command) > 0 {
		t0 := time.Now()
		err := w.run(ctx)
		d := formatDuration(time.Since(t0))
		switch {
		case ctx.Err() != nil:
			line(fmt.Sprintf("%s interrupted (%s)", w.command[0], d))
			return true
		case err != nil:
			line(fmt.Sprintf("%s failed (%s): %v", w.command[0], d, err))
			return false
		}
		fmt.Fprintf(b, " · %s %s", w.command[0], d)
	}
	line("ok")
	return false
}

func prefixed(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}

// describeChanges names the changed files for the cycle's line.
func describeChanges(changed []string) string {
	switch {
	case changed == nil:
		return "start"
	case len(changed) <= 3:
		return strings.Join(changed, ", ") + " changed"
	}
	return fmt.Sprintf("%s and %d more changed", strings.Join(changed[:2], ", "), len(changed)-2)
}

// buildCounts says what the build executed.
func buildCounts(u *ui) string {
	executed, cached := 0, 0
	for _, ev := range u.sortedEvents() {
		switch ev.Status {
		case engine.StatusExecuted:
			executed++
		case engine.StatusCached:
			cached++
		}
	}
	return fmt.Sprintf("%d executed, %d cached", executed, cached)
}

// deploy deploys the cdk_stack targets' stacks of the build; the summary
// counts how the stacks ended. Each stack's progress is printed as pipe
// deploy prints it, stacks without changes left out.
func (w *watcher) deploy(ctx context.Context, s *session, plan *engine.Plan, d *rules.Deployment, quick *hotswapBuild) (string, error) {
	if d == nil {
		var err error
		if d, err = rules.DeploymentOf(s.ws.Root, plan, plan.Targets.Roots); err != nil {
			return "", err
		}
	}
	if len(d.Targets) == 0 {
		return "", fmt.Errorf("no cdk_stack target among %s: nothing to deploy", strings.Join(patternArgs(w.patterns), " "))
	}
	stacks, err := deploy.Select(d.Stacks, w.f.stacks)
	if err != nil {
		return "", fmt.Errorf("--stacks %w", err)
	}
	return w.deployStacks(ctx, &deployInput{stacks: stacks, zips: d.Zips, records: hotswapRecords(s.ws.Root), quick: quick})
}

// deployStacks plans and applies in's stacks quietly (one line per stack
// that changed) and returns the cycle's summary of how they ended.
func (w *watcher) deployStacks(ctx context.Context, in *deployInput) (string, error) {
	rep := newDeployUI(w.stderr, nil, time.Now())
	rep.quiet, rep.driftSaid = true, &w.driftSaid
	po := deploy.PlanOptions{Approval: w.approval, Hotswap: w.hotswap, Records: in.records}
	results, planned, err := planAndApply(ctx, w.cfg, in, &w.f.deployFlags, po, rep, w.stderr)
	if !planned {
		return "", err
	}
	return countResults(results), err
}

// run runs the command after -- in the workspace root, its output going
// straight to the terminal.
func (w *watcher) run(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, w.command[0], w.command[1:]...)
	cmd.Dir = w.root
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, w.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

// setInputs takes the files the plan's build reads as the ones to watch,
// and watches the directories that hold them, and the packages'
// directories, where a new file may be one a glob picks up.
func (w *watcher) setInputs(plan *engine.Plan) {
	w.inputs = watchInputs(plan)
	w.exec = map[string]bool{}
	for f := range w.inputs {
		if fi, err := os.Lstat(filepath.Join(w.root, filepath.FromSlash(f))); err == nil {
			w.exec[f] = fi.Mode()&0o111 != 0
		}
	}
	w.pkgs = w.pkgs[:0]
	for p := range plan.Targets.Packages {
		w.pkgs = append(w.pkgs, p)
	}
	sort.Strings(w.pkgs)
	for f := range w.inputs {
		w.watch(path.Dir(f))
	}
	for _, p := range w.pkgs {
		w.watchTree(p)
	}
}

// watchInputs lists the workspace-relative files a plan's build reads:
// the needed actions' source inputs, what the targets' analysis read, the
// BUILD.star and .star files of their packages, and WORKSPACE.star.
func watchInputs(plan *engine.Plan) map[string]bool {
	in := map[string]bool{engine.WorkspaceFile: true}
	for _, a := range plan.Needed {
		for _, f := range a.Inputs {
			if f.IsSource() {
				in[f.Path] = true
			}
		}
	}
	for l := range plan.Targets.Targets {
		for _, r := range plan.Actions.AnalysisInputs(l) {
			if r.Kind == engine.InputFile || r.Kind == engine.InputStat {
				in[r.Name] = true
			}
		}
	}
	for _, p := range plan.Targets.Packages {
		in[p.File] = true
		for _, l := range p.Loads {
			in[l] = true
		}
	}
	return in
}

// watch adds a workspace-relative directory to the watched ones.
func (w *watcher) watch(rel string) {
	if rel == "." {
		rel = ""
	}
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	if w.watched[abs] {
		return
	}
	if err := w.fs.Add(abs); err == nil {
		w.watched[abs] = true
	}
}

// watchTree watches a package's directory and those below it, but not
// those pipe or tools own (dist/, .pipe/, node_modules…) nor other
// packages (watched when they are part of the build).
func (w *watcher) watchTree(pkg string) {
	top := filepath.Join(w.root, filepath.FromSlash(pkg))
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if p != top {
			if ignoredDir(d.Name()) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, engine.BuildFile)); err == nil {
				return filepath.SkipDir
			}
		}
		rel, _ := filepath.Rel(w.root, p)
		if rel == "dist" || rel == ".pipe" {
			return filepath.SkipDir
		}
		w.watch(filepath.ToSlash(rel))
		return nil
	})
}

// ignoredDir are directories whose files are never sources.
func ignoredDir(name string) bool {
	return strings.HasPrefix(name, ".") || name == "node_modules" || name == "__pycache__" || name == "cdk.out"
}

// editorTemp reports the files editors write beside the ones they save:
// swap and backup files, and the temporary names of atomic saves.
func editorTemp(name string) bool {
	for _, suffix := range []string{".swp", ".swx", ".swo", "~", ".tmp", "___jb_tmp___", "___jb_old___", ".crswap"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return name == "4913" || strings.HasPrefix(name, ".#") || (strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) ||
		strings.HasPrefix(name, ".goutputstream-") || name == ".DS_Store"
}

// wait waits for a change to an input and returns the changed files,
// sorted; nil when ctx ends first.
func (w *watcher) wait(ctx context.Context) ([]string, error) {
	changed := map[string]bool{}
	var maybe []string // new files no input yet: a glob may take them
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil, errors.New("the file watcher stopped")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: any input may have changed, and the
				// build finds out which.
				changed["(file events lost)"] = true
				quiet = time.After(w.f.debounce)
				continue
			}
			fmt.Fprintf(w.stderr, "pipe: warning: watching files: %v\n", err)
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil, errors.New("the file watcher stopped")
			}
			if len(w.apps) > 0 {
				if rel, ok := w.appEvent(ev); ok {
					changed[rel] = true
					quiet = time.After(w.f.debounce)
				}
				continue
			}
			rel, relevant := w.classify(ev)
			if !relevant {
				continue
			}
			if w.inputs[rel] {
				changed[rel] = true
			} else if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) {
				maybe = append(maybe, rel)
				w.newDir(rel)
			} else {
				continue
			}
			quiet = time.After(w.f.debounce)
		case <-quiet:
			quiet = nil
			if len(maybe) > 0 {
				for _, rel := range w.pickedUp(ctx, maybe) {
					changed[rel] = true
				}
				maybe = nil
			}
			if len(changed) > 0 {
				out := make([]string, 0, len(changed))
				for p := range changed {
					out = append(out, p)
				}
				sort.Strings(out)
				return out, nil
			}
		}
	}
}

// classify turns an event into a workspace-relative path, and says
// whether it can matter: not under dist/ or .pipe/, not an editor's temp
// file, not a mere change of mode bits.
func (w *watcher) classify(ev fsnotify.Event) (string, bool) {
	rel, err := filepath.Rel(w.root, ev.Name)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", false
	}
	rel = filepath.ToSlash(rel)
	if rel == "dist" || rel == ".pipe" || strings.HasPrefix(rel, "dist/") || strings.HasPrefix(rel, ".pipe/") || editorTemp(path.Base(rel)) {
		return "", false
	}
	if ev.Op == fsnotify.Chmod {
		// Attribute events come with every touch and many editors'
		// saves; of the attributes, only an input's execute bit is in
		// the build's keys.
		return rel, w.inputs[rel] && w.execChanged(rel)
	}
	return rel, true
}

// execChanged reports whether an input's execute bit differs from when it
// was last seen, and remembers the new one.
func (w *watcher) execChanged(rel string) bool {
	fi, err := os.Lstat(filepath.Join(w.root, filepath.FromSlash(rel)))
	if err != nil {
		return true
	}
	exec := fi.Mode()&0o111 != 0
	old, seen := w.exec[rel]
	w.exec[rel] = exec
	return !seen || old != exec
}

// newDir watches a directory created under a package, and counts the
// files already in it (created before the watch was) as new.
func (w *watcher) newDir(rel string) {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	fi, err := os.Stat(abs)
	if err != nil || !fi.IsDir() || ignoredDir(fi.Name()) {
		return
	}
	for _, p := range w.pkgs {
		if p == "" || rel == p || strings.HasPrefix(rel, p+"/") {
			w.watchTree(rel)
			return
		}
	}
}

// pickedUp plans the build again (loading and analysis, no execution) and
// returns which of the new paths, or the files under new directories, it
// now reads.
func (w *watcher) pickedUp(ctx context.Context, paths []string) []string {
	s, err := openWorkspace(w.g, io.Discard)
	if err != nil {
		return paths // a broken workspace file: let the cycle say so
	}
	pats, err := s.patterns(w.patterns)
	if err != nil {
		return nil
	}
	plan, err := engine.PlanBuild(ctx, s.ws, s.loader, pats)
	if err != nil {
		return paths // analysis fails now: the cycle shows why
	}
	in := watchInputs(plan)
	var out []string
	for _, p := range paths {
		for f := range in {
			if (f == p || strings.HasPrefix(f, p+"/")) && !w.inputs[f] {
				out = append(out, f)
			}
		}
	}
	return out
}
