package deploy

import (
	"slices"
	"testing"
)

// A stack waits for the changing stacks it depends on, looking through
// those that are up to date; an up-to-date stack waits for nothing.
func TestApplyGraph(t *testing.T) {
	c := &Stack{ID: "C"}
	b := &Stack{ID: "B", Deps: []*Stack{c}}
	d := &Stack{ID: "D"}
	a := &Stack{ID: "A", Deps: []*Stack{b, d}}
	outside := &Stack{ID: "Outside"}
	e := &Stack{ID: "E", Deps: []*Stack{outside, c}}
	plans := []*StackPlan{
		{Stack: c, State: StateUpdate},
		{Stack: b, State: StateUpToDate},
		{Stack: d, State: StateUpToDate},
		{Stack: a, State: StateNew},
		{Stack: e, State: StateUnknown},
	}
	g, err := applyGraph(plans)
	if err != nil {
		t.Fatal(err)
	}
	adj, err := g.AdjacencyMap()
	if err != nil {
		t.Fatal(err)
	}
	deps := func(i int) []string {
		var out []string
		for j := range adj[i] {
			out = append(out, plans[j].Stack.ID)
		}
		slices.Sort(out)
		return out
	}
	for i, want := range [][]string{nil, nil, nil, {"C"}, {"C"}} {
		if got := deps(i); !slices.Equal(got, want) {
			t.Errorf("%s waits for %v, want %v", plans[i].Stack.ID, got, want)
		}
	}
}
