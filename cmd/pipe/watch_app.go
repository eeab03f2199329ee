package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
)

// pipe watch --deploy --app DIR: no build; each time a tool writes the
// cloud assembly again (cdk synth, pipe build), its stacks are deployed
// as pipe deploy --app does.

// appDirs resolves --app against -C, as pipe deploy does.
func (w *watcher) appDirs() []string {
	base := w.g.dir
	if base == "" {
		base = "."
	}
	var dirs []string
	for _, a := range w.f.apps {
		if !filepath.IsAbs(a) {
			a = filepath.Join(base, a)
		}
		if abs, err := filepath.Abs(a); err == nil {
			a = abs
		}
		dirs = append(dirs, a)
	}
	return dirs
}

// watchApps watches the assemblies' directories, their nested assemblies,
// and their parents: a tool may replace the whole directory.
func (w *watcher) watchApps() {
	for _, d := range w.apps {
		for _, p := range []string{filepath.Dir(d), d} {
			if !w.watched[p] && w.fs.Add(p) == nil {
				w.watched[p] = true
			}
		}
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "assembly-") {
				p := filepath.Join(d, e.Name())
				if !w.watched[p] && w.fs.Add(p) == nil {
					w.watched[p] = true
				}
			}
		}
	}
}

// appEvent says whether a file event is a change to an assembly, and
// names it for the cycle's line; a directory re-created is watched again.
func (w *watcher) appEvent(ev fsnotify.Event) (string, bool) {
	if ev.Op == fsnotify.Chmod {
		return "", false
	}
	for _, d := range w.apps {
		if ev.Name != d && !strings.HasPrefix(ev.Name, d+string(filepath.Separator)) {
			continue
		}
		rel, err := filepath.Rel(filepath.Dir(d), ev.Name)
		if err != nil {
			rel = ev.Name
		}
		if first, _, _ := strings.Cut(strings.TrimPrefix(ev.Name, d+string(filepath.Separator)), string(filepath.Separator)); strings.HasPrefix(first, "asset.") {
			return "", false // the staged assets: the manifest names them
		}
		if ev.Name == d || ev.Has(fsnotify.Create) {
			if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
				delete(w.watched, ev.Name)
				w.watchApps()
			}
		}
		return filepath.ToSlash(rel), true
	}
	return "", false
}

// appCycle deploys the assemblies once and prints the cycle's line.
func (w *watcher) appCycle(ctx context.Context, changed []string) (interrupted bool) {
	start := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", start.Format("15:04:05"), describeChanges(changed))
	line := func(status string) { fmt.Fprintf(w.stderr, "%s · %s\n", b.String(), status) }
	summary, err := w.deployApps(ctx)
	if ended, interrupted := w.deployed(ctx, &b, line, time.Since(start), summary, err); ended {
		return interrupted
	}
	w.watchApps() // nested assemblies the app has now
	return w.finish(ctx, &b, line)
}

// deployApps reads the assemblies and deploys their stacks.
func (w *watcher) deployApps(ctx context.Context) (string, error) {
	stacks, err := deploy.LoadAssemblies(w.apps)
	if err != nil {
		return "", err
	}
	if stacks, err = deploy.Select(stacks, w.f.stacks); err != nil {
		return "", fmt.Errorf("--stacks %w", err)
	}
	in := &deployInput{stacks: stacks}
	if w.root != "" {
		in.records = hotswapRecords(w.root)
	}
	return w.deployStacks(ctx, in)
}

// runApps is pipe watch --app: deploy, then again after each change.
func (w *watcher) runApps(ctx context.Context) error {
	if err := w.checkAppFlags(); err != nil {
		return err
	}
	var err error
	if w.cfg, err = deploy.LoadConfig(ctx); err != nil {
		return err
	}
	if w.fs, err = fsnotify.NewWatcher(); err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.fs.Close()
	w.watchApps()
	changed := []string(nil)
	for {
		if w.appCycle(ctx, changed) {
			return &exitError{code: 130}
		}
		if changed, err = w.wait(ctx); err != nil {
			return err
		}
		if changed == nil {
			return nil
		}
	}
}

// checkAppFlags checks --app for pipe watch, as pipe deploy does, and
// finds the workspace the hotswap records go to.
func (w *watcher) checkAppFlags() error {
	switch {
	case !w.f.deploy:
		return engine.Usagef("--app needs --deploy: pipe watch builds nothing from an assembly")
	case len(w.patterns) > 0:
		return engine.Usagef("give patterns or --app, not both")
	}
	w.apps = w.appDirs()
	base := w.g.dir
	if base == "" {
		base = "."
	}
	if root, err := engine.FindWorkspace(base); err == nil {
		w.root = root
	}
	if w.hotswap != deploy.HotswapOff && w.root == "" {
		return engine.Usagef("--hotswap records what it changed in the workspace's .pipe/hotswap, and --app %s is outside any workspace: run it inside one", strings.Join(w.f.apps, " "))
	}
	return nil
}
