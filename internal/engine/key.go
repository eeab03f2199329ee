package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
)

// resultDigests indexes a result by path, adding a tree digest for each
// output directory.
// Files carry their exec bit; a directory's tree digest covers its files'.
func resultDigests(r *cache.ActionResult) map[string]KeyInput {
	m := make(map[string]KeyInput, len(r.Outputs)+len(r.Dirs))
	for _, o := range r.Outputs {
		m[o.Path] = KeyInput{Path: o.Path, Digest: o.Digest, Executable: o.Executable}
	}
	for _, d := range r.Dirs {
		m[d] = KeyInput{Path: d, Digest: TreeDigest(r, d)}
	}
	return m
}

// TreeDigest is the digest of the output directory dir of r: its files'
// relative paths, modes and digests, and its symlinks, in sorted order.
// Each entry is the line "f <path> <sha256 hex> <exec>" or "l <path>
// <target>", and the digest is sha256 over the sorted lines, each followed
// by a NUL. The lines are built in one buffer, not a string each: a bundle
// directory has tens of thousands of files, and every build that finds the
// result cached computes this for the actions that read the directory.
func TreeDigest(r *cache.ActionResult, dir string) cache.Digest {
	prefix := dir + "/"
	size := 0
	for _, o := range r.Outputs {
		size += len(o.Path) + 2*len(o.Digest) + 10
	}
	buf := make([]byte, 0, size)
	var offs []int // line i, with its NUL, is buf[offs[i]:offs[i+1]]
	for _, o := range r.Outputs {
		if rel, ok := strings.CutPrefix(o.Path, prefix); ok {
			offs = append(offs, len(buf))
			buf = append(buf, "f "...)
			buf = append(buf, rel...)
			buf = append(buf, ' ')
			buf = hex.AppendEncode(buf, o.Digest[:])
			buf = append(buf, ' ')
			buf = strconv.AppendBool(buf, o.Executable)
			buf = append(buf, 0)
		}
	}
	for p, t := range r.Symlinks {
		if rel, ok := strings.CutPrefix(p, prefix); ok {
			offs = append(offs, len(buf))
			buf = append(buf, "l "...)
			buf = append(buf, rel...)
			buf = append(buf, ' ')
			buf = append(buf, t...)
			buf = append(buf, 0)
		}
	}
	n := len(offs)
	offs = append(offs, len(buf))
	// No path or link target holds a NUL, so comparing lines with their
	// NUL orders them as the lines alone.
	cmp := func(a, b int) int { return bytes.Compare(buf[offs[a]:offs[a+1]], buf[offs[b]:offs[b+1]]) }
	h := sha256.New()
	sorted := true
	for i := 1; i < n && sorted; i++ {
		sorted = cmp(i-1, i) <= 0
	}
	if sorted {
		// Results list their files in walk order, which is usually
		// the lines' order too.
		h.Write(buf)
	} else {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, cmp)
		for _, i := range order {
			h.Write(buf[offs[i]:offs[i+1]])
		}
	}
	var d cache.Digest
	h.Sum(d[:0])
	return d
}

func writeField(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	io.WriteString(h, s)
}

// staticKeyParts is the part of a's key that analysis decides: every field
// of KeyParts but the input digests, which are left zero. It returns the
// inputs in the order of parts.Inputs (sorted by path), for the caller
// that fills in the digests. The action key (actionKey), --explain (which
// compares the parts actionKey recorded) and pipe affected (which compares
// a target's actions between two analyses) all start here, so they cannot
// disagree on what identifies an action. pipeVersion enters only the
// parts of in-process steps, which are pipe's own code.
func staticKeyParts(a *Action, pipeVersion string) (*KeyParts, []*File) {
	parts := &KeyParts{
		Rule:     a.RuleKind + " " + a.RuleVersion,
		Mnemonic: a.Mnemonic,
		Identity: a.Identity,
		Argv:     a.Argv,
		Env:      a.Env,
		Tools:    append([]string(nil), a.Tools...),
		Sandbox:  a.Sandbox,
		Inputs:   make([]KeyInput, len(a.Inputs)),
	}
	if a.Argv == nil {
		parts.Pipe = pipeVersion
	}
	sort.Strings(parts.Tools)
	inputs := append([]*File(nil), a.Inputs...)
	sort.SliceStable(inputs, func(i, j int) bool { return inputs[i].Path < inputs[j].Path })
	for i, in := range inputs {
		parts.Inputs[i] = KeyInput{Path: in.Path}
	}
	for _, o := range a.Outputs {
		p := o.Path
		if o.Dir {
			p += "/"
		}
		parts.Outputs = append(parts.Outputs, p)
	}
	return parts, inputs
}

// actionKey is the sha256 over everything that can change the action's
// outputs (see KeyParts): the static parts, and the digest and exec bit of
// each input.
func (e *Executor) actionKey(a *Action, states map[*Action]*actionState) (cache.ActionKey, *KeyParts, error) {
	parts, inputs := staticKeyParts(a, e.PipeVersion)
	for i, in := range inputs {
		if in.Generator != nil {
			ki := states[in.Generator].outDigests[in.Path]
			ki.Path = in.Path
			parts.Inputs[i] = ki
			continue
		}
		d, fi, err := e.Digests.SourceDigest(in.Path, e.WS.Abs(in.Path))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return cache.ActionKey{}, nil, fmt.Errorf("input %s does not exist (declared by %s): create it or remove it from the target's attributes", in.Path, in.Owner)
			}
			return cache.ActionKey{}, nil, fmt.Errorf("input %s: %w", in.Path, err)
		}
		parts.Inputs[i] = KeyInput{Path: in.Path, Digest: d, Executable: fi.Mode()&0o111 != 0}
	}
	return parts.Key(), parts, nil
}
