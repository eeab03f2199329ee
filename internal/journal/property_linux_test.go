//go:build linux

package journal

import (
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestWatchProperty runs seeded random operations on a workspace,
// interleaved with questions, and holds every answer to the model: a path
// whose Lstat differs between the token and now, or that appeared or
// disappeared, is never vouched for. PIPE_JOURNAL_OPS sets how many
// operations (1000 by default), PIPE_JOURNAL_SEED the seed.
func TestWatchProperty(t *testing.T) {
	ops := 1000
	if s := os.Getenv("PIPE_JOURNAL_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PIPE_JOURNAL_OPS=%q: %v", s, err)
		}
		ops = n
	}
	seed := int64(1)
	if s := os.Getenv("PIPE_JOURNAL_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PIPE_JOURNAL_SEED=%q: %v", s, err)
		}
		seed = n
	}
	rng := rand.New(rand.NewSource(seed))
	outside := t.TempDir()
	w, root := watch(t, func(r string) {
		for _, p := range []string{"a/f", "a/b/g", "c/h", "node_modules/m/i"} {
			os.MkdirAll(filepath.Join(r, filepath.Dir(p)), 0o755)
			os.WriteFile(filepath.Join(r, p), []byte(p), 0o644)
		}
		os.WriteFile(filepath.Join(outside, "t"), []byte("t"), 0o644)
	})

	// Tokens kept, with the tree as it was when each was handed out.
	type kept struct {
		tok  Token
		tree map[string]stat
	}
	var toks []kept
	c := since(t, w, Token{})
	toks = append(toks, kept{c.Now, tree(t, root)})

	names := []string{"a", "b", "c", "d", "e", "f", "node_modules", "x y", "\n", "é"}
	// Files of a store outside the workspace, linked into it as pipe
	// links its store's files into dist/.
	var store []string
	var log []string
	for i := 0; i < ops; i++ {
		all := paths(t, root)
		pick := func() string { return all[rng.Intn(len(all))] }
		fresh := func() string {
			dirs := []string{"."}
			for _, p := range all {
				if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && fi.IsDir() {
					dirs = append(dirs, p)
				}
			}
			d := dirs[rng.Intn(len(dirs))]
			return filepath.Join(d, names[rng.Intn(len(names))]+strconv.Itoa(rng.Intn(3)))
		}
		abs := func(p string) string { return filepath.Join(root, p) }
		var op string
		switch k := rng.Intn(16); k {
		case 0:
			p := pick()
			op = "write " + p
			os.WriteFile(abs(p), []byte(strconv.Itoa(i)), 0o644)
		case 1:
			p := pick()
			op = "truncate " + p
			os.Truncate(abs(p), int64(rng.Intn(3)))
		case 2:
			p := pick()
			op = "chmod " + p
			os.Chmod(abs(p), os.FileMode(0o600|rng.Intn(2)*0o155))
		case 3:
			p := fresh()
			op = "create " + p
			os.WriteFile(abs(p), []byte("new"), 0o644)
		case 4:
			p := pick()
			op = "remove " + p
			os.Remove(abs(p))
		case 5, 6:
			p, q := pick(), fresh()
			op = "rename " + p + " " + q
			os.Rename(abs(p), abs(q))
		case 7:
			p := fresh()
			op = "mkdir -p " + p + "/n/m and a file"
			os.MkdirAll(abs(p+"/n/m"), 0o755)
			os.WriteFile(abs(p+"/n/m/f"), nil, 0o644)
		case 8:
			p := pick()
			op = "remove tree " + p
			os.RemoveAll(abs(p))
		case 9:
			p := fresh()
			op = "symlink " + p
			if rng.Intn(2) == 0 {
				os.Symlink(filepath.Join(outside, "t"), abs(p))
			} else {
				os.Symlink(outside, abs(p))
			}
		case 10:
			op = "write outside"
			os.WriteFile(filepath.Join(outside, "t"), []byte(strconv.Itoa(i)), 0o644)
		case 11:
			p, q := pick(), fresh()
			op = "link " + p + " " + q
			// A link made where the watcher does not look is no event,
			// and the name it links to changes unheard from then on (a
			// limit of inotify): links are made in watched directories.
			if !belowSkipped(q) {
				os.Link(abs(p), abs(q))
			}
		case 12:
			p := pick()
			op = "replace " + p + " by a dir or a file"
			fi, err := os.Lstat(abs(p))
			if err == nil && p != "." {
				os.RemoveAll(abs(p))
				if fi.IsDir() {
					os.WriteFile(abs(p), []byte("was a dir"), 0o644)
				} else {
					os.MkdirAll(abs(p+"/inner"), 0o755)
					os.WriteFile(abs(p+"/inner/f"), nil, 0o644)
				}
			}
		case 14:
			q := fresh()
			op = "link in from outside " + q
			if !belowSkipped(q) {
				src := filepath.Join(outside, "store-"+strconv.Itoa(i))
				os.WriteFile(src, []byte("stored"), 0o644)
				if os.Link(src, abs(q)) == nil {
					store = append(store, src)
				}
			}
		case 15:
			op = "write through a store's name"
			if len(store) > 0 {
				src := store[rng.Intn(len(store))]
				op += " " + src
				os.WriteFile(src, []byte("rewritten "+strconv.Itoa(i)), 0o644)
			}
		case 13:
			p := pick()
			op = "rename out and back " + p
			if p != "." {
				if os.Rename(abs(p), filepath.Join(outside, "away")) == nil {
					os.WriteFile(filepath.Join(outside, "away", "f"), []byte(strconv.Itoa(i)), 0o644)
					os.Rename(filepath.Join(outside, "away"), abs(p))
					os.RemoveAll(filepath.Join(outside, "away"))
				}
			}
		}
		log = append(log, op)
		if rng.Intn(4) != 0 {
			continue
		}
		// A question with a token picked from those kept.
		k := toks[rng.Intn(len(toks))]
		c := answer(t, w, k.tok)
		after := tree(t, root)
		before := len(log)
		checkModel(t, k.tree, after, c)
		if t.Failed() {
			t.Fatalf("seed %d, after op %d; the operations:\n%s", seed, before, strings.Join(log, "\n"))
		}
		toks = append(toks, kept{c.Now, after})
	}
}

// belowSkipped reports whether p is at or below a directory the watcher
// skips.
func belowSkipped(p string) bool {
	for _, s := range strings.Split(filepath.ToSlash(p), "/") {
		if skipped[s] {
			return true
		}
	}
	return false
}

// paths lists the workspace's paths (not below .pipe), sorted.
func paths(t *testing.T, root string) []string {
	t.Helper()
	var all []string
	for p := range tree(t, root) {
		if p == "." || p == ".pipe" || strings.HasPrefix(p, ".pipe/") {
			continue
		}
		all = append(all, p)
	}
	sort.Strings(all)
	if len(all) == 0 {
		return []string{"a"}
	}
	return all
}
