package engine

import (
	"slices"
	"testing"
)

// TestInputMounts: inputs are mounted in path order, and an input inside
// an input directory is not mounted again (its mount point would be made
// in the directory's source).
func TestInputMounts(t *testing.T) {
	in := []*File{
		{Path: "dist/a/tree/x.txt"},
		{Path: "dist/a/tree.txt"},
		{Path: "dist/a/tree", Dir: true},
		{Path: "a/src.txt"},
		{Path: "dist/a/tree/sub", Dir: true},
		{Path: "dist/b/out.txt"},
	}
	var got []string
	for _, f := range inputMounts(in) {
		got = append(got, f.Path)
	}
	want := []string{"a/src.txt", "dist/a/tree", "dist/a/tree.txt", "dist/b/out.txt"}
	if !slices.Equal(got, want) {
		t.Errorf("mounts %q, want %q", got, want)
	}
	if in[0].Path != "dist/a/tree/x.txt" {
		t.Errorf("the action's input list was reordered")
	}
}
