package engine_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

// referenceTreeDigest is the tree digest as its definition states it, one
// formatted line per entry: TreeDigest must agree with it, since action
// keys already in caches were made from it.
func referenceTreeDigest(r *cache.ActionResult, dir string) cache.Digest {
	h := sha256.New()
	prefix := dir + "/"
	var lines []string
	for _, o := range r.Outputs {
		if rel, ok := strings.CutPrefix(o.Path, prefix); ok {
			lines = append(lines, fmt.Sprintf("f %s %s %t", rel, o.Digest, o.Executable))
		}
	}
	for p, t := range r.Symlinks {
		if rel, ok := strings.CutPrefix(p, prefix); ok {
			lines = append(lines, "l "+rel+" "+t)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(h, l)
		h.Write([]byte{0})
	}
	var d cache.Digest
	h.Sum(d[:0])
	return d
}

// TestTreeDigest: names that sort differently as paths and as lines (a
// directory "a" and a file "a!"; spaces), exec bits, symlinks, entries of
// another directory, an empty tree, and the walk order results have.
func TestTreeDigest(t *testing.T) {
	out := func(p string, x bool) cache.OutputFile {
		return cache.OutputFile{Path: p, Digest: cache.Sum([]byte(p)), Size: int64(len(p)), Executable: x}
	}
	r := &cache.ActionResult{
		Outputs: []cache.OutputFile{
			out("d/a/x.py", false), out("d/a!", true), out("d/a b", false), out("d/ab", false),
			out("d/z/y", true), out("other/f", false), out("d2/f", false),
		},
		Symlinks: map[string]string{"d/link": "a/x.py", "d/a/l": "../ab", "e/l": "x"},
		Dirs:     []string{"d", "d2"},
	}
	for _, dir := range []string{"d", "d2", "empty"} {
		if got, want := engine.TreeDigest(r, dir), referenceTreeDigest(r, dir); got != want {
			t.Errorf("TreeDigest(%s) = %s, want %s", dir, got, want)
		}
	}
	big := bigResult(3000)
	if got, want := engine.TreeDigest(big, "out"), referenceTreeDigest(big, "out"); got != want {
		t.Errorf("TreeDigest of 3000 files = %s, want %s", got, want)
	}
	// Any change to an entry changes the digest.
	before := engine.TreeDigest(r, "d")
	r.Outputs[1].Executable = false
	if engine.TreeDigest(r, "d") == before {
		t.Errorf("the exec bit of d/a! does not enter the tree digest")
	}
}

// bigResult is a directory output of n files in walk order, as a wheel's
// extraction makes it.
func bigResult(n int) *cache.ActionResult {
	r := &cache.ActionResult{Dirs: []string{"out"}}
	for i := range n {
		p := fmt.Sprintf("out/pkg/p%03d/m%05d.py", i/100, i)
		r.Outputs = append(r.Outputs, cache.OutputFile{Path: p, Digest: cache.Sum([]byte(p)), Size: 40})
	}
	return r
}

// BenchmarkTreeDigest: the tree digest of a 30,000-file directory, which a
// build that finds the result cached computes for the actions reading it.
func BenchmarkTreeDigest(b *testing.B) {
	r := bigResult(30000)
	b.Run("TreeDigest", func(b *testing.B) {
		for b.Loop() {
			engine.TreeDigest(r, "out")
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			referenceTreeDigest(r, "out")
		}
	})
}
