package engine

// Sharding splits one build among N CI jobs that share a remote cache
// (pipe build --shard K/N). What is split is the set of top-level targets:
// the selected targets that no other selected target depends on. (A
// selected library that a selected app uses is built by the app's shard;
// giving it a shard of its own would only build it twice.) Each top-level
// target goes to exactly one shard, with everything it needs, so the N
// shards together build the whole selection.
//
// The split is deterministic, so N jobs on N machines agree on it without
// talking, and balanced by work rather than by count: a target weighs the
// number of actions it needs, and targets are dealt heaviest first, each to
// the shard with the least work so far (ties: the lower label, the lower
// shard). Dependencies that several shards' targets share are built by
// each of them or, once one has uploaded them, fetched from the remote
// cache; the weights count them in full, which is what a shard pays when it
// starts cold.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Shard is the part K of N (--shard K/N), 1 ≤ K ≤ N.
type Shard struct {
	Index, Count int
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// maxShards bounds N: more CI jobs than this is a typo.
const maxShards = 10000

// ParseShard parses "K/N".
func ParseShard(s string) (Shard, error) {
	ks, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, Usagef("--shard %q: want K/N, such as 2/5 for the second of five shards", s)
	}
	k, err1 := strconv.Atoi(ks)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || strings.HasPrefix(ks, "+") || strings.HasPrefix(ns, "+") {
		return Shard{}, Usagef("--shard %q: K and N are whole numbers, as in 2/5", s)
	}
	if n < 1 || n > maxShards {
		return Shard{}, Usagef("--shard %q: N is between 1 and %d", s, maxShards)
	}
	if k < 1 || k > n {
		return Shard{}, Usagef("--shard %q: K counts from 1 to N (%d)", s, n)
	}
	return Shard{Index: k, Count: n}, nil
}

// ApplyShard narrows p to shard s: Needed becomes what the shard's
// top-level targets need. It returns those targets, sorted, and how many
// top-level targets the whole selection has.
func (p *Plan) ApplyShard(s Shard) (mine []Label, total int) {
	top := p.Targets.TopLevel()
	weights := p.Actions.closureSizes(top)
	parts := assignShards(top, weights, s.Count)
	mine = parts[s.Index-1]
	p.Needed = p.Actions.Closure(mine)
	return mine, len(top)
}

// TopLevel returns the roots no other root depends on, sorted.
func (tg *TargetGraph) TopLevel() []Label {
	covered := map[Label]bool{}
	var visit func(l Label)
	visit = func(l Label) {
		for _, d := range tg.DirectDeps(l) {
			if !covered[d] {
				covered[d] = true
				visit(d)
			}
		}
	}
	for _, r := range tg.Roots {
		visit(r)
	}
	var top []Label
	for _, r := range tg.Roots {
		if !covered[r] {
			top = append(top, r)
		}
	}
	return top
}

// closureSizes returns, for each target, how many actions Closure of it
// alone would return.
func (ag *ActionGraph) closureSizes(targets []Label) []int {
	owned := map[Label][]*Action{}
	for _, a := range ag.Actions {
		owned[a.Owner] = append(owned[a.Owner], a)
	}
	// One stamp array for every walk: a walk's own number marks what it
	// has counted, so nothing is cleared between targets.
	stamp := make([]int, len(ag.Actions))
	sizes := make([]int, len(targets))
	for i, l := range targets {
		gen, n := i+1, 0
		var visit func(a *Action)
		visit = func(a *Action) {
			if stamp[a.id] == gen {
				return
			}
			stamp[a.id] = gen
			n++
			for _, d := range a.deps {
				visit(d)
			}
		}
		for _, f := range ag.results[l].files {
			if f.Generator != nil {
				visit(f.Generator)
			}
		}
		for _, a := range owned[l] {
			visit(a)
		}
		sizes[i] = n
	}
	return sizes
}

// assignShards deals targets (sorted) to n shards: heaviest first, each to
// the shard with the least weight so far. Every target lands in exactly
// one shard; each shard's list comes back sorted.
func assignShards(targets []Label, weights []int, n int) [][]Label {
	order := make([]int, len(targets))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return weights[order[a]] > weights[order[b]] })
	load := make([]int, n)
	count := make([]int, n)
	parts := make([][]Label, n)
	for _, i := range order {
		best := 0
		for s := 1; s < n; s++ {
			// Least work; then fewest targets, so weightless targets
			// spread too; then the lower shard.
			if load[s] < load[best] || load[s] == load[best] && count[s] < count[best] {
				best = s
			}
		}
		parts[best] = append(parts[best], targets[i])
		load[best] += weights[i]
		count[best]++
	}
	for _, p := range parts {
		sortLabels(p)
	}
	return parts
}
