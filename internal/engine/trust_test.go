package engine

import (
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
)

func TestCheckResult(t *testing.T) {
	a := &Action{Outputs: []*File{{Path: "dist/p/g/out.txt"}, {Path: "dist/p/g/tree", Dir: true}}}
	ok := func() *cache.ActionResult {
		return &cache.ActionResult{
			Outputs:  []cache.OutputFile{{Path: "dist/p/g/out.txt"}, {Path: "dist/p/g/tree/a/b.txt"}},
			Dirs:     []string{"dist/p/g/tree"},
			Symlinks: map[string]string{"dist/p/g/tree/link": "a/b.txt"},
		}
	}
	if err := checkResult(a, ok()); err != nil {
		t.Fatalf("a faithful result: %v", err)
	}
	cases := map[string]struct {
		edit func(r *cache.ActionResult)
		want string
	}{
		"extra file": {func(r *cache.ActionResult) {
			r.Outputs = append(r.Outputs, cache.OutputFile{Path: ".git/hooks/pre-commit"})
		}, "does not declare"},
		"source overwrite": {func(r *cache.ActionResult) {
			r.Outputs = append(r.Outputs, cache.OutputFile{Path: "p/BUILD.star"})
		}, "does not declare"},
		"missing file": {func(r *cache.ActionResult) { r.Outputs = r.Outputs[1:] }, "lacks the declared output dist/p/g/out.txt"},
		"missing dir":  {func(r *cache.ActionResult) { r.Dirs = nil }, "lacks the declared output directory"},
		"extra dir":    {func(r *cache.ActionResult) { r.Dirs = append(r.Dirs, "dist/q") }, "directory dist/q"},
		"symlink outside the dirs": {func(r *cache.ActionResult) {
			r.Symlinks["dist/p/g/link"] = "/etc"
		}, "outside the action's output directories"},
		"file under a symlink": {func(r *cache.ActionResult) {
			r.Symlinks["dist/p/g/tree/up"] = "/tmp"
			r.Outputs = append(r.Outputs, cache.OutputFile{Path: "dist/p/g/tree/up/x"})
		}, "lies under its symbolic link"},
		"symlink under a symlink": {func(r *cache.ActionResult) {
			r.Symlinks["dist/p/g/tree/up"] = "/tmp"
			r.Symlinks["dist/p/g/tree/up/x"] = "y"
		}, "lies under its symbolic link"},
	}
	for name, c := range cases {
		r := ok()
		c.edit(r)
		err := checkResult(a, r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, c.want)
		}
	}
}
