package engine

import (
	"fmt"
	"testing"
)

func TestParseShard(t *testing.T) {
	for in, want := range map[string]Shard{"1/1": {1, 1}, "2/5": {2, 5}, "5/5": {5, 5}, "10000/10000": {10000, 10000}} {
		if got, err := ParseShard(in); err != nil || got != want {
			t.Errorf("ParseShard(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1", "0/3", "4/3", "1/0", "-1/3", "a/b", "1/3/4", " 1/3", "+1/3", "1/10001", "1/99999999999999999999"} {
		if _, err := ParseShard(bad); err == nil || !IsUserError(err) {
			t.Errorf("ParseShard(%q) = %v, want a usage error", bad, err)
		}
	}
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"1/2", "0/0", "3/2", "01/02", "1/-1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			return
		}
		if sh.Index < 1 || sh.Index > sh.Count || sh.Count > maxShards {
			t.Fatalf("%q accepted as %v", s, sh)
		}
		if again, err := ParseShard(sh.String()); err != nil || again != sh {
			t.Fatalf("%q: %v reads back as %v, %v", s, sh, again, err)
		}
	})
}

func labels(n int) []Label {
	var ls []Label
	for i := range n {
		ls = append(ls, Label{Pkg: fmt.Sprintf("p%03d", i), Name: "t"})
	}
	return ls
}

// Every target lands in exactly one shard; equal targets split evenly;
// the split does not depend on anything but its inputs.
func TestAssignShards(t *testing.T) {
	for _, tc := range []struct{ targets, shards int }{{10, 3}, {3, 5}, {100, 7}, {1, 1}, {0, 4}} {
		ls := labels(tc.targets)
		w := make([]int, len(ls))
		for i := range w {
			w[i] = 1
		}
		parts := assignShards(ls, w, tc.shards)
		seen := map[Label]int{}
		for _, p := range parts {
			if len(p) > tc.targets/tc.shards+1 || len(p) < tc.targets/tc.shards {
				t.Errorf("%d targets in %d shards: a shard of %d", tc.targets, tc.shards, len(p))
			}
			for _, l := range p {
				seen[l]++
			}
		}
		for _, l := range ls {
			if seen[l] != 1 {
				t.Errorf("%s in %d shards", l, seen[l])
			}
		}
		if again := assignShards(ls, w, tc.shards); fmt.Sprint(again) != fmt.Sprint(parts) {
			t.Errorf("not deterministic: %v then %v", parts, again)
		}
	}
	// Balanced by work: one heavy target alone against many light ones.
	ls := labels(5)
	parts := assignShards(ls, []int{1, 1, 40, 1, 1}, 2)
	if len(parts[0]) != 1 || parts[0][0] != ls[2] || len(parts[1]) != 4 {
		t.Errorf("heavy target not alone: %v", parts)
	}
	// Weightless targets (filegroups) spread as well.
	parts = assignShards(labels(6), make([]int, 6), 3)
	for _, p := range parts {
		if len(p) != 2 {
			t.Errorf("weightless targets: %v", parts)
		}
	}
}
