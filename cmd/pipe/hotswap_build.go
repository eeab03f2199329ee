package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules"
)

// hotswapBuild is the build of pipe deploy --hotswap and pipe watch
// --deploy --hotswap: the synth of a cdk_stack whose only changed inputs
// are directories its assembly stages as assets (a python_bundle) does not
// run; the assembly kept from the last synth is deployed with the new
// directories in place (rules.SynthBases). Whatever else changed runs the
// synth, whose assembly is kept for the next time.
type hotswapBuild struct {
	s     *session
	pats  []engine.Pattern
	bases *rules.SynthBases
	// reuse are the kept assemblies deployed instead of a synth, by
	// target; ran the synths that ran (or were cached), to keep.
	reuse map[engine.Label]*rules.Reuse
	ran   map[*engine.Action]*engine.KeyParts
	// skipped are the synths left out for a kept assembly.
	skipped []*engine.Action
	exec    *engine.Executor
	// reused are the stacks read from kept assemblies.
	reused map[*deploy.Stack]bool
}

func synthBases(root string) *rules.SynthBases {
	return &rules.SynthBases{Dir: filepath.Join(root, ".pipe", "hotswap", "synth")}
}

// buildForHotswap builds pats under the lock the caller holds and reads
// the deployment: from the synths' outputs, or, for a synth left out,
// from its kept assembly. reuse false runs every synth.
func (s *session) buildForHotswap(ctx context.Context, pats []engine.Pattern, reuse bool, stderr io.Writer) (*engine.Plan, *rules.Deployment, *hotswapBuild, error) {
	hb := &hotswapBuild{s: s, pats: pats, bases: synthBases(s.ws.Root), reuse: map[engine.Label]*rules.Reuse{}, ran: map[*engine.Action]*engine.KeyParts{}, reused: map[*deploy.Stack]bool{}}
	var all, synths []*engine.Action
	opts := buildOptions{
		needed: func(plan *engine.Plan) []*engine.Action {
			all = withoutTests(plan.Needed)
			synths = rules.SynthActions(plan, plan.Targets.Roots)
			rest := without(all, synths)
			if dependsOn(rest, synths) {
				// Something of the build reads an assembly: it is made.
				synths = nil
				return all
			}
			return rest
		},
		then: func(exec *engine.Executor, plan *engine.Plan) ([]*engine.Action, error) {
			hb.exec = exec
			if len(synths) == 0 {
				return nil, nil
			}
			zips := rules.BundleZips(plan)
			var skip []*engine.Action
			for _, a := range synths {
				key, parts, err := exec.KeyOf(a)
				if err != nil {
					return nil, err
				}
				if _, err := exec.Cache.GetAC(key); err == nil || !reuse {
					// Cached: restoring the result is as quick.
					hb.ran[a] = parts
					continue
				}
				r, why := hb.bases.Reusable(a, parts, zips)
				if r == nil {
					fmt.Fprintf(stderr, "%s: synthesizing: %s\n", a.Owner, why)
					hb.ran[a] = parts
					continue
				}
				hb.reuse[a.Owner] = r
				hb.skipped = append(hb.skipped, a)
				skip = append(skip, a)
				var dirs []string
				for _, d := range r.Changed {
					dirs = append(dirs, d)
				}
				sort.Strings(dirs)
				if len(dirs) > 0 {
					fmt.Fprintf(stderr, "%s: only %s changed: the synth is skipped; the assembly synthesized before is deployed with the new code (pipe deploy without --hotswap synthesizes)\n", a.Owner, strings.Join(dirs, ", "))
				}
			}
			if len(skip) == len(synths) {
				return nil, nil
			}
			return without(all, skip), nil
		},
	}
	plan, err := s.buildLockedWith(ctx, pats, opts)
	if err != nil {
		return plan, nil, nil, err
	}
	for a, parts := range hb.ran {
		r, err := hb.exec.Cache.GetAC(parts.Key())
		if err == nil {
			err = hb.bases.Keep(s.ws.Root, a, parts, r)
		}
		if err != nil {
			// Only the next hotswap's speed depends on it.
			fmt.Fprintf(stderr, "pipe: warning: %s: keeping the assembly for hotswaps: %v\n", a.Owner, err)
			hb.bases.Forget(a)
		}
	}
	dirs := map[engine.Label]string{}
	for l, r := range hb.reuse {
		dirs[l] = r.Dir
	}
	d, err := rules.DeploymentFrom(s.ws.Root, plan, plan.Targets.Roots, dirs)
	if err == nil {
		for _, r := range hb.reuse {
			if err = r.Apply(s.ws.Root, d.Stacks); err != nil {
				break
			}
		}
	}
	if err != nil && len(hb.reuse) > 0 {
		fmt.Fprintf(stderr, "the assembly kept for hotswaps cannot be used (%v): synthesizing\n", err)
		for _, a := range hb.skipped {
			hb.bases.Forget(a)
		}
		return s.buildForHotswap(ctx, pats, false, stderr)
	}
	if err != nil {
		return plan, nil, nil, err
	}
	for _, r := range hb.reuse {
		for _, st := range d.Stacks {
			if st.AssemblyDir == r.Dir || strings.HasPrefix(st.AssemblyDir, r.Dir+string(filepath.Separator)) {
				hb.reused[st] = true
			}
		}
	}
	return plan, d, hb, nil
}

// blocked says why the plans of stacks from a kept assembly need a real
// synth: a stack that would deploy with a change set (or be refused by
// --hotswap-fallback=never) deploys what the app synthesizes, never a
// kept assembly with new code put in; "" when none.
func (hb *hotswapBuild) blocked(plans []*deploy.StackPlan) string {
	if hb == nil {
		return ""
	}
	for _, p := range plans {
		if !hb.reused[p.Stack] || p.Err != nil || p.UpToDate() {
			continue
		}
		if h := p.Hotswap; h == nil || (h.Refused == nil && !h.Hotswappable()) {
			return fmt.Sprintf("stack %s cannot be hotswapped", p.Stack.Name())
		}
	}
	return ""
}

// resynth builds again with every synth, for a stack that needs the
// app's own assembly, and returns the stacks --stacks selects and the zips.
func (hb *hotswapBuild) resynth(ctx context.Context, globs []string, stderr io.Writer) ([]*deploy.Stack, []deploy.PrebuiltZip, error) {
	first := hb.s.ui
	_, d, _, err := hb.s.buildForHotswap(ctx, hb.pats, false, stderr)
	if first != nil && hb.s.ui != first {
		// --events holds both builds: the deployment reports to the first.
		again := hb.s.ui
		again.mu.Lock()
		evs := again.events
		again.mu.Unlock()
		first.mu.Lock()
		first.events = append(first.events, evs...)
		first.mu.Unlock()
		hb.s.ui = first
	}
	if err != nil {
		return nil, nil, err
	}
	stacks, err := deploy.Select(d.Stacks, globs)
	if err != nil {
		return nil, nil, fmt.Errorf("--stacks %w", err)
	}
	return stacks, d.Zips, nil
}

// without returns actions less drop, in order.
func without(actions, drop []*engine.Action) []*engine.Action {
	gone := map[*engine.Action]bool{}
	for _, a := range drop {
		gone[a] = true
	}
	var out []*engine.Action
	for _, a := range actions {
		if !gone[a] {
			out = append(out, a)
		}
	}
	return out
}

// dependsOn reports whether an action of actions needs one of those.
func dependsOn(actions, those []*engine.Action) bool {
	set := map[*engine.Action]bool{}
	for _, a := range those {
		set[a] = true
	}
	for _, a := range actions {
		for _, d := range a.Deps() {
			if set[d] {
				return true
			}
		}
	}
	return false
}
