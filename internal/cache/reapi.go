package cache

// Remote AC values are REAPI v2 ActionResult messages, so the same bucket or
// HTTP cache can also be read by Bazel and REAPI tools, and the gRPC
// backend stores them unchanged through UpdateActionResult.
//
// Mapping of our ActionResult:
//
//   - a file output outside every declared output directory → output_files
//     {path, digest, is_executable};
//   - a symlink outside every output directory → output_symlinks;
//   - each output directory → output_directories{path, tree_digest,
//     root_directory_digest}, where tree_digest names a Tree message stored
//     in the CAS holding the directory's files, subdirectories and symlinks;
//   - DurationMs → execution_metadata.execution_{start,completed}_timestamp
//     (their difference, which is what Bazel shows) and
//     virtual_execution_duration;
//   - execution_metadata.worker = "pipe"; exit_code = 0 (pipe never stores a
//     failed action).
//
// Decoding yields Outputs sorted by path: the executor never depends on
// their order (TreeDigest sorts, resultDigests is a map), and a Tree cannot
// record how files and directories were interleaved.

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// marshalDet serializes deterministically: digests of Directory messages
// and signatures must not depend on map or field ordering.
func marshalDet(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func toPBDigest(d Digest, size int64) *repb.Digest {
	return &repb.Digest{Hash: d.String(), SizeBytes: size}
}

func fromPBDigest(d *repb.Digest) (Digest, int64, error) {
	if d == nil {
		return Digest{}, 0, fmt.Errorf("missing digest")
	}
	// REAPI requires lowercase hex; accepting upper case would let two
	// spellings name one blob.
	if strings.ToLower(d.Hash) != d.Hash {
		return Digest{}, 0, fmt.Errorf("digest %q is not lowercase hex", d.Hash)
	}
	g, err := ParseDigest(d.Hash)
	if err != nil {
		return Digest{}, 0, err
	}
	if d.SizeBytes < 0 {
		return Digest{}, 0, fmt.Errorf("digest %s has negative size %d", d.Hash, d.SizeBytes)
	}
	return g, d.SizeBytes, nil
}

// blob is a CAS blob the encoded result references but which is not an
// output file: a Tree message.
type blob struct {
	digest Digest
	data   []byte
}

// dirOf returns the output directory of r that holds p, preferring the
// deepest when directories nest.
func dirOf(dirs []string, p string) (string, bool) {
	best, ok := "", false
	for _, d := range dirs {
		if strings.HasPrefix(p, d+"/") && len(d) >= len(best) {
			best, ok = d, true
		}
	}
	return best, ok
}

// toREAPI converts r into an REAPI ActionResult plus the Tree blobs its
// output directories refer to.
func toREAPI(r *ActionResult, now time.Time) (*repb.ActionResult, []blob, error) {
	ar := &repb.ActionResult{}
	for _, o := range r.Outputs {
		if _, in := dirOf(r.Dirs, o.Path); in {
			continue
		}
		ar.OutputFiles = append(ar.OutputFiles, &repb.OutputFile{
			Path: o.Path, Digest: toPBDigest(o.Digest, o.Size), IsExecutable: o.Executable,
		})
	}
	links := make([]string, 0, len(r.Symlinks))
	for p := range r.Symlinks {
		links = append(links, p)
	}
	sort.Strings(links)
	for _, p := range links {
		if _, in := dirOf(r.Dirs, p); in {
			continue
		}
		ar.OutputSymlinks = append(ar.OutputSymlinks, &repb.OutputSymlink{Path: p, Target: r.Symlinks[p]})
	}
	var blobs []blob
	for _, dir := range r.Dirs {
		tree, rootDigest, rootSize, err := buildTree(r, dir)
		if err != nil {
			return nil, nil, fmt.Errorf("output directory %s: %w", dir, err)
		}
		data, err := marshalDet(tree)
		if err != nil {
			return nil, nil, fmt.Errorf("output directory %s: %w", dir, err)
		}
		td := Sum(data)
		blobs = append(blobs, blob{td, data})
		ar.OutputDirectories = append(ar.OutputDirectories, &repb.OutputDirectory{
			Path:                dir,
			TreeDigest:          toPBDigest(td, int64(len(data))),
			RootDirectoryDigest: toPBDigest(rootDigest, rootSize),
		})
	}
	now = now.Truncate(time.Millisecond)
	dur := time.Duration(r.DurationMs) * time.Millisecond
	ar.ExecutionMetadata = &repb.ExecutedActionMetadata{
		Worker:                      "pipe",
		ExecutionStartTimestamp:     timestamppb.New(now.Add(-dur)),
		ExecutionCompletedTimestamp: timestamppb.New(now),
		VirtualExecutionDuration:    durationpb.New(dur),
	}
	return ar, blobs, nil
}

// dirNode is a directory being assembled into a Tree.
type dirNode struct {
	files map[string]*repb.FileNode
	dirs  map[string]*dirNode
	links map[string]string
}

func newDirNode() *dirNode {
	return &dirNode{files: map[string]*repb.FileNode{}, dirs: map[string]*dirNode{}, links: map[string]string{}}
}

// walk returns the directory for the slash-separated path components,
// creating it as needed.
func (n *dirNode) walk(parts []string) (*dirNode, error) {
	for _, p := range parts {
		if _, clash := n.files[p]; clash {
			return nil, fmt.Errorf("%q is both a file and a directory", p)
		}
		c := n.dirs[p]
		if c == nil {
			c = newDirNode()
			n.dirs[p] = c
		}
		n = c
	}
	return n, nil
}

// buildTree makes the Tree of output directory dir, returning it and the
// digest and size of its root Directory.
func buildTree(r *ActionResult, dir string) (*repb.Tree, Digest, int64, error) {
	root := newDirNode()
	for _, o := range r.Outputs {
		if d, in := dirOf(r.Dirs, o.Path); !in || (d != dir && !strings.HasPrefix(d, dir+"/")) {
			continue
		}
		rel := strings.Split(strings.TrimPrefix(o.Path, dir+"/"), "/")
		parent, err := root.walk(rel[:len(rel)-1])
		if err != nil {
			return nil, Digest{}, 0, err
		}
		name := rel[len(rel)-1]
		parent.files[name] = &repb.FileNode{Name: name, Digest: toPBDigest(o.Digest, o.Size), IsExecutable: o.Executable}
	}
	for p, target := range r.Symlinks {
		if d, in := dirOf(r.Dirs, p); !in || (d != dir && !strings.HasPrefix(d, dir+"/")) {
			continue
		}
		rel := strings.Split(strings.TrimPrefix(p, dir+"/"), "/")
		parent, err := root.walk(rel[:len(rel)-1])
		if err != nil {
			return nil, Digest{}, 0, err
		}
		parent.links[rel[len(rel)-1]] = target
	}
	tree := &repb.Tree{}
	seen := map[Digest]bool{}
	var encode func(n *dirNode) (*repb.Directory, Digest, int64, error)
	encode = func(n *dirNode) (*repb.Directory, Digest, int64, error) {
		d := &repb.Directory{}
		for _, name := range sortedKeys(n.files) {
			d.Files = append(d.Files, n.files[name])
		}
		for _, name := range sortedKeys(n.dirs) {
			child, cd, cs, err := encode(n.dirs[name])
			if err != nil {
				return nil, Digest{}, 0, err
			}
			if !seen[cd] {
				seen[cd] = true
				tree.Children = append(tree.Children, child)
			}
			d.Directories = append(d.Directories, &repb.DirectoryNode{Name: name, Digest: toPBDigest(cd, cs)})
		}
		for _, name := range sortedKeys(n.links) {
			d.Symlinks = append(d.Symlinks, &repb.SymlinkNode{Name: name, Target: n.links[name]})
		}
		data, err := marshalDet(d)
		if err != nil {
			return nil, Digest{}, 0, err
		}
		return d, Sum(data), int64(len(data)), nil
	}
	rd, rdg, rs, err := encode(root)
	if err != nil {
		return nil, Digest{}, 0, err
	}
	tree.Root = rd
	return tree, rdg, rs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// validRelPath rejects paths a hostile or broken cache entry could use to
// write outside the workspace: absolute, unclean, or climbing with "..".
func validRelPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." ||
		strings.HasPrefix(p, "../") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("unsafe output path %q", p)
	}
	return nil
}

func validName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") {
		return fmt.Errorf("unsafe name %q in tree", n)
	}
	return nil
}

// treeDigests lists the Tree blobs ar refers to, so they can be fetched
// before fromREAPI.
func treeDigests(ar *repb.ActionResult) ([]SizedDigest, error) {
	var out []SizedDigest
	for _, od := range ar.OutputDirectories {
		d, s, err := fromPBDigest(od.TreeDigest)
		if err != nil {
			return nil, fmt.Errorf("output directory %s: %w", od.Path, err)
		}
		out = append(out, SizedDigest{d, s})
	}
	return out, nil
}

// maxTreeDepth and maxTreeEntries bound what a hostile Tree can make us
// allocate.
const (
	maxTreeDepth   = 256
	maxTreeEntries = 1 << 20
)

// fromREAPI converts ar back, with trees holding the verified bytes of the
// Tree blobs it refers to.
func fromREAPI(ar *repb.ActionResult, trees map[Digest][]byte) (*ActionResult, error) {
	r := &ActionResult{}
	// Nested output directories list their common files in both trees;
	// the same entry twice is fine, two different ones are not.
	seen := map[string]any{}
	addFile := func(p string, d *repb.Digest, exec bool) error {
		if err := validRelPath(p); err != nil {
			return err
		}
		g, size, err := fromPBDigest(d)
		if err != nil {
			return fmt.Errorf("output %s: %w", p, err)
		}
		f := OutputFile{Path: p, Digest: g, Size: size, Executable: exec}
		if prev, dup := seen[p]; dup {
			if prev == any(f) {
				return nil
			}
			return fmt.Errorf("output %s listed twice, differently", p)
		}
		seen[p] = f
		r.Outputs = append(r.Outputs, f)
		return nil
	}
	addLink := func(p, target string) error {
		if err := validRelPath(p); err != nil {
			return err
		}
		if prev, dup := seen[p]; dup {
			if prev == any(target) {
				return nil
			}
			return fmt.Errorf("output %s listed twice, differently", p)
		}
		seen[p] = target
		if r.Symlinks == nil {
			r.Symlinks = map[string]string{}
		}
		r.Symlinks[p] = target
		return nil
	}
	for _, f := range ar.OutputFiles {
		if err := addFile(f.Path, f.Digest, f.IsExecutable); err != nil {
			return nil, err
		}
	}
	// output_file_symlinks and output_directory_symlinks are the deprecated
	// spellings of output_symlinks that older writers use.
	for _, group := range [][]*repb.OutputSymlink{ar.OutputSymlinks, ar.OutputFileSymlinks, ar.OutputDirectorySymlinks} {
		for _, s := range group {
			if err := addLink(s.Path, s.Target); err != nil {
				return nil, err
			}
		}
	}
	for _, od := range ar.OutputDirectories {
		if err := validRelPath(od.Path); err != nil {
			return nil, err
		}
		td, _, err := fromPBDigest(od.TreeDigest)
		if err != nil {
			return nil, fmt.Errorf("output directory %s: %w", od.Path, err)
		}
		data, ok := trees[td]
		if !ok {
			return nil, fmt.Errorf("output directory %s: tree %s not fetched", od.Path, td)
		}
		tree := &repb.Tree{}
		if err := proto.Unmarshal(data, tree); err != nil {
			return nil, fmt.Errorf("output directory %s: decode tree: %w", od.Path, err)
		}
		children := map[Digest]*repb.Directory{}
		for _, c := range tree.Children {
			b, err := marshalDet(c)
			if err != nil {
				return nil, fmt.Errorf("output directory %s: %w", od.Path, err)
			}
			children[Sum(b)] = c
		}
		entries := 0
		var walk func(d *repb.Directory, prefix string, depth int) error
		walk = func(d *repb.Directory, prefix string, depth int) error {
			if depth > maxTreeDepth {
				return fmt.Errorf("output directory %s: tree deeper than %d", od.Path, maxTreeDepth)
			}
			entries += len(d.Files) + len(d.Directories) + len(d.Symlinks)
			if entries > maxTreeEntries {
				return fmt.Errorf("output directory %s: tree has more than %d entries", od.Path, maxTreeEntries)
			}
			for _, f := range d.Files {
				if err := validName(f.Name); err != nil {
					return err
				}
				if err := addFile(prefix+"/"+f.Name, f.Digest, f.IsExecutable); err != nil {
					return err
				}
			}
			for _, s := range d.Symlinks {
				if err := validName(s.Name); err != nil {
					return err
				}
				if err := addLink(prefix+"/"+s.Name, s.Target); err != nil {
					return err
				}
			}
			for _, sub := range d.Directories {
				if err := validName(sub.Name); err != nil {
					return err
				}
				cd, _, err := fromPBDigest(sub.Digest)
				if err != nil {
					return fmt.Errorf("directory %s/%s: %w", prefix, sub.Name, err)
				}
				c, ok := children[cd]
				if !ok {
					return fmt.Errorf("directory %s/%s: tree lacks child %s", prefix, sub.Name, cd)
				}
				if err := walk(c, prefix+"/"+sub.Name, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if tree.Root == nil {
			return nil, fmt.Errorf("output directory %s: tree has no root", od.Path)
		}
		if err := walk(tree.Root, od.Path, 0); err != nil {
			return nil, err
		}
		r.Dirs = append(r.Dirs, od.Path)
	}
	// A file "beneath" a symlink would be written wherever the link
	// points once the link is restored: outside the workspace, if an
	// attacker chose the target. pipe's own results never nest like that.
	for p := range seen {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, isLink := seen[dir].(string); isLink {
				return nil, fmt.Errorf("output %s lies beneath symlink %s", p, dir)
			}
		}
	}
	sort.Slice(r.Outputs, func(i, j int) bool { return r.Outputs[i].Path < r.Outputs[j].Path })
	if m := ar.ExecutionMetadata; m != nil {
		switch {
		case m.ExecutionStartTimestamp != nil && m.ExecutionCompletedTimestamp != nil:
			r.DurationMs = m.ExecutionCompletedTimestamp.AsTime().Sub(m.ExecutionStartTimestamp.AsTime()).Milliseconds()
		case m.VirtualExecutionDuration != nil:
			r.DurationMs = m.VirtualExecutionDuration.AsDuration().Milliseconds()
		}
		if r.DurationMs < 0 {
			r.DurationMs = 0
		}
	}
	return r, nil
}
