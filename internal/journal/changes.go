// Package journal keeps a workspace's change journal: a long-lived
// process (`pipe server`) watches the workspace with inotify and tells a
// build which paths changed since a token the previous build was handed.
// A build then re-stats only those paths and the ones the journal cannot
// vouch for, instead of every path its snapshot recorded.
//
// The journal answers nothing it cannot stand behind. A token from another
// server instance, from before a queue overflow or from before the server
// finished watching is answered "incomplete", and the build stats
// everything, as it does with no server at all.
package journal

import (
	"path"
	"sort"
	"strings"
	"unicode/utf8"
)

// Token names a moment in one server instance's journal.
type Token struct {
	// Instance is random per server start (and per restart after a queue
	// overflow): a token of another instance says nothing.
	Instance [16]byte `json:"instance"`
	// Seq counts the events the instance applied.
	Seq uint64 `json:"seq"`
}

// IsZero reports whether t is no token at all.
func (t Token) IsZero() bool { return t == Token{} }

// Changes answers "what changed since a token". All paths are relative to
// the workspace root, slash-separated, "." for the root itself.
type Changes struct {
	// Now is the token a build that starts now hands the next build.
	Now Token `json:"now"`
	// Complete is false when the journal cannot say what changed; Why
	// then says why, and nothing is vouched for.
	Complete bool   `json:"complete"`
	Why      string `json:"why,omitempty"`
	// Paths changed themselves: written, truncated, chmod'ed, or a
	// directory whose entries changed.
	Paths []string `json:"paths,omitempty"`
	// Trees were created, deleted or renamed: they and everything below
	// them may have changed.
	Trees []string `json:"trees,omitempty"`
	// Unwatched are paths the journal never vouches for, nor for what
	// lies below them: directories it does not watch (.git, node_modules,
	// .pipe), symbolic links, whose targets may change elsewhere, and
	// files with other (hard-linked) names, which may be written through
	// a name the watcher does not hear.
	Unwatched []string `json:"unwatched,omitempty"`

	exact, prefix map[string]struct{}
	// first holds the first element of every prefix: most paths share
	// none, and are vouched for after one lookup instead of one per
	// ancestor.
	first map[string]struct{}
}

// Unchanged reports whether the journal vouches that the workspace path p
// (relative, cleaned; "." for the root) has not changed since the token
// the changes were asked for: neither p itself nor, for a path resolved
// through them, any of its ancestors.
func (c *Changes) Unchanged(p string) bool {
	if c == nil {
		return false
	}
	if c.exact == nil {
		c.index()
	}
	if !c.Complete || p == "" || path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
		return false
	}
	if _, ok := c.exact[p]; ok {
		return false
	}
	if len(c.prefix) == 0 {
		return true
	}
	f := p
	if i := strings.IndexByte(p, '/'); i >= 0 {
		f = p[:i]
	}
	if _, ok := c.first[f]; !ok {
		return true
	}
	for q := p; ; {
		if _, ok := c.prefix[q]; ok {
			return false
		}
		i := strings.LastIndexByte(q, '/')
		if i < 0 {
			break
		}
		q = q[:i]
	}
	return true
}

// Empty reports whether the journal vouches for every watched path.
func (c *Changes) Empty() bool {
	return c != nil && c.Complete && len(c.Paths) == 0 && len(c.Trees) == 0
}

func (c *Changes) index() {
	c.exact = make(map[string]struct{}, len(c.Paths))
	for _, p := range c.Paths {
		c.exact[p] = struct{}{}
	}
	c.prefix = make(map[string]struct{}, len(c.Trees)+len(c.Unwatched))
	for _, p := range c.Trees {
		if p == "." {
			// The whole workspace: say so once, not per path.
			c.Complete, c.Why = false, "the whole workspace changed"
		}
		c.prefix[p] = struct{}{}
	}
	for _, p := range c.Unwatched {
		if p == "." {
			c.Complete, c.Why = false, "the workspace root is not watched"
		}
		c.prefix[p] = struct{}{}
	}
	c.first = make(map[string]struct{}, len(c.prefix))
	for p := range c.prefix {
		if i := strings.IndexByte(p, '/'); i >= 0 {
			p = p[:i]
		}
		c.first[p] = struct{}{}
	}
}

// portable returns c as it can cross the wire: JSON carries strings as
// UTF-8 and replaces what is not, so a path that is not valid UTF-8 would
// arrive as another path, and the one that changed would be vouched for.
// Such a path is reported by its nearest ancestor that is valid UTF-8, as
// a tree (or, for one never vouched for, as unwatched); the ancestor "."
// makes the answer incomplete, as it does for any tree ".".
func (c *Changes) portable() *Changes {
	if c == nil {
		return nil
	}
	clean := func(ps []string) (ok, odd []string) {
		for _, p := range ps {
			if utf8.ValidString(p) {
				ok = append(ok, p)
			} else {
				odd = append(odd, validAncestor(p))
			}
		}
		return ok, odd
	}
	out := *c
	out.exact, out.prefix, out.first = nil, nil, nil
	var oddPaths, oddTrees, oddUnwatched []string
	out.Paths, oddPaths = clean(c.Paths)
	out.Trees, oddTrees = clean(c.Trees)
	out.Unwatched, oddUnwatched = clean(c.Unwatched)
	if len(oddPaths)+len(oddTrees)+len(oddUnwatched) == 0 {
		return &out
	}
	out.Trees = dedupe(append(append(append([]string(nil), out.Trees...), oddPaths...), oddTrees...))
	out.Unwatched = dedupe(append(append([]string(nil), out.Unwatched...), oddUnwatched...))
	for _, p := range append(oddPaths, oddTrees...) {
		if p == "." {
			// Every build stats everything: say why rather than leave
			// the client to find the tree ".".
			out.Complete, out.Why = false, "a path at the workspace root is not valid UTF-8"
		}
	}
	return &out
}

// validAncestor is the nearest ancestor of p whose every component is
// valid UTF-8, "." for none.
func validAncestor(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if !utf8.ValidString(s) {
			if i == 0 {
				return "."
			}
			return strings.Join(parts[:i], "/")
		}
	}
	return p
}

func dedupe(ps []string) []string {
	sort.Strings(ps)
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}
