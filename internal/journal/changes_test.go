package journal

import "testing"

func TestChangesUnchanged(t *testing.T) {
	c := &Changes{
		Complete:  true,
		Paths:     []string{"src/edited.py", "."},
		Trees:     []string{"pkg/new"},
		Unwatched: []string{"lib/link", "node_modules"},
	}
	for p, want := range map[string]bool{
		"src/edited.py":       false, // changed itself
		".":                   false, // the root's entries changed
		"src/other.py":        true,
		"src":                 true,
		"pkg/new":             false, // a new tree, and all below it
		"pkg/new/deep/x":      false,
		"pkg/newer":           true, // a prefix of a name is not an ancestor
		"pkg":                 true,
		"lib/link":            false, // a symbolic link: its target may change anywhere
		"lib/link/through":    false,
		"lib/linked":          true,
		"node_modules/x/y.js": false,
		"nodes/x":             true,
		"":                    false,
		"/abs/path":           false,
		"..":                  false,
		"../up":               false,
	} {
		if got := c.Unchanged(p); got != want {
			t.Errorf("Unchanged(%q) = %v, want %v", p, got, want)
		}
	}
	for _, c := range []*Changes{
		nil,
		{Complete: false, Why: "no token"},
		{Complete: true, Trees: []string{"."}},
		{Complete: true, Unwatched: []string{"."}},
	} {
		if c.Unchanged("src/other.py") {
			t.Errorf("%+v vouches for a path", c)
		}
	}
}
