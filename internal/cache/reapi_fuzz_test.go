package cache

import (
	"path"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeActionResult: any bytes a remote returns as an action result,
// with any tree blobs, decode into a result whose every path is clean and
// relative (never absolute, never climbing out with ".."), or fail; no
// panic.
func FuzzDecodeActionResult(f *testing.F) {
	good := &ActionResult{
		Outputs: []OutputFile{{Path: "dist/p/a.txt", Digest: Sum([]byte("a")), Size: 1}, {Path: "dist/p/d/b.txt", Digest: Sum([]byte("b")), Size: 1, Executable: true}},
		Dirs:    []string{"dist/p/d"},
	}
	ar, blobs, err := toREAPI(good, time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(ar)
	var tree []byte
	for _, bl := range blobs {
		tree = bl.data
	}
	f.Add(b, tree)
	f.Add([]byte{}, []byte{})
	bad, _ := proto.Marshal(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../etc/passwd", Digest: &repb.Digest{Hash: Sum(nil).String(), SizeBytes: 0}}}})
	f.Add(bad, []byte{})
	f.Fuzz(func(t *testing.T, acBytes, treeBytes []byte) {
		var ar repb.ActionResult
		if proto.Unmarshal(acBytes, &ar) != nil {
			return
		}
		trees := map[Digest][]byte{}
		if ds, err := treeDigests(&ar); err == nil {
			for _, d := range ds {
				trees[d.Digest] = treeBytes
			}
		}
		r, err := fromREAPI(&ar, trees)
		if err != nil {
			return
		}
		check := func(p string) {
			if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
				t.Fatalf("decoded result names the path %q", p)
			}
		}
		for _, o := range r.Outputs {
			check(o.Path)
		}
		for _, d := range r.Dirs {
			check(d)
		}
		for p := range r.Symlinks {
			check(p)
		}
	})
}
