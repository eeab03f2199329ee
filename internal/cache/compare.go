package cache

import (
	"fmt"
	"sort"
)

// ResultDiff names the first output in which two results of one action
// differ, with what each holds there.
type ResultDiff struct {
	Path     string
	Old, New string // "sha256 <hex>", "sha256 <hex> (executable)", "-> target", "absent"
}

func (d *ResultDiff) String() string {
	return fmt.Sprintf("%s: %s, then %s", d.Path, d.Old, d.New)
}

// CompareResults returns where a and b differ (outputs, their exec bits,
// symlinks and declared directories), or nil when they hold the same
// bytes. Durations are not compared.
func CompareResults(a, b *ActionResult) *ResultDiff {
	describe := func(r *ActionResult) map[string]string {
		m := map[string]string{}
		for _, o := range r.Outputs {
			s := "sha256 " + o.Digest.String()
			if o.Executable {
				s += " (executable)"
			}
			m[o.Path] = s
		}
		for p, t := range r.Symlinks {
			m[p] = "-> " + t
		}
		for _, d := range r.Dirs {
			m[d+"/"] = "directory"
		}
		return m
	}
	ma, mb := describe(a), describe(b)
	var paths []string
	for p := range ma {
		paths = append(paths, p)
	}
	for p := range mb {
		if _, ok := ma[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		va, oka := ma[p]
		vb, okb := mb[p]
		if !oka {
			va = "absent"
		}
		if !okb {
			vb = "absent"
		}
		if va != vb {
			return &ResultDiff{Path: p, Old: va, New: vb}
		}
	}
	return nil
}

// ReplacedError reports that PutAC replaced an entry holding a different
// result for the same key: the action gave two different outputs for the
// same inputs, so it is not deterministic. The new result is stored; the
// error is for the user to hear about it.
type ReplacedError struct {
	Key  ActionKey
	Diff *ResultDiff
}

func (e *ReplacedError) Error() string {
	return fmt.Sprintf("action cache entry %s replaced by a different result (%s)", e.Key, e.Diff)
}
