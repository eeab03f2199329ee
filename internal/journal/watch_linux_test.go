//go:build linux

package journal

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// watch starts a watcher on a fresh workspace that setup filled first.
func watch(t *testing.T, setup func(root string)) (*Watcher, string) {
	t.Helper()
	root := t.TempDir()
	if setup != nil {
		setup(root)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := Watch(ctx, root)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return w, root
}

// since asks the watcher and insists the answer is complete.
func since(t *testing.T, w *Watcher, tok Token) *Changes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := w.Since(ctx, tok)
	if c.Now.IsZero() {
		t.Fatalf("Since: no token: %s", c.Why)
	}
	if !tok.IsZero() && !c.Complete {
		t.Fatalf("Since: incomplete: %s", c.Why)
	}
	return c
}

// answer asks the watcher until it hands out a token (a restart answers
// none while it walks the workspace); the answer may be incomplete.
func answer(t *testing.T, w *Watcher, tok Token) *Changes {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c := w.Since(context.Background(), tok)
		if !c.Now.IsZero() {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token within a minute: %s", c.Why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// now is a token for this moment.
func now(t *testing.T, w *Watcher) Token {
	t.Helper()
	return answer(t, w, Token{}).Now
}

// stat is what a build would see of one path.
type stat struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	ino   uint64
	// target is what a symbolic link resolves to (stat through it).
	target string
}

// tree takes the Lstat of every path below root (and a Stat through each
// symbolic link), by workspace path.
func tree(t *testing.T, root string) map[string]stat {
	t.Helper()
	m := map[string]stat{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := stat{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime(), ino: st.Ino}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if ti, err := os.Stat(p); err == nil {
				s.target = ti.Mode().String() + "/" + ti.ModTime().String() + "/" + strings.Repeat("x", int(ti.Size()%7))
				s.size = ti.Size()
			}
		}
		m[filepath.ToSlash(rel)] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkModel holds the journal to its guarantee: every path whose stat
// differs between before and after (or that appeared or disappeared) is
// not vouched for. It returns the paths that changed.
func checkModel(t *testing.T, before, after map[string]stat, c *Changes) []string {
	t.Helper()
	var changed []string
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			changed = append(changed, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			changed = append(changed, p)
		}
	}
	sort.Strings(changed)
	for _, p := range changed {
		if c.Unchanged(p) {
			t.Errorf("the journal vouches for %q, whose stat changed (%+v -> %+v); changes: paths %q trees %q unwatched %q",
				p, before[p], after[p], c.Paths, c.Trees, c.Unwatched)
		}
	}
	return changed
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatchChangeKinds makes each kind of change after a token and checks
// that the answer to that token vouches for nothing whose stat changed,
// names the paths the change is about, and still vouches for an untouched
// sibling.
func TestWatchChangeKinds(t *testing.T) {
	base := func(root string) {
		for _, p := range []string{"a/f", "a/g", "a/sib", "b/h", "d/x/y", "d/x/z/w", "keep/k"} {
			os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
			os.WriteFile(filepath.Join(root, p), []byte(p), 0o644)
		}
	}
	outside := t.TempDir()
	cases := []struct {
		name    string
		setup   func(t *testing.T, root string)
		change  func(t *testing.T, root string)
		changed []string // must not be vouched for
		kept    []string // must be vouched for
	}{
		{name: "write", change: func(t *testing.T, r string) { write(t, r+"/a/f", "new content") },
			changed: []string{"a/f"}, kept: []string{"a/g", "a", "keep/k"}},
		{name: "truncate", change: func(t *testing.T, r string) { must(t, os.Truncate(r+"/a/f", 0)) },
			changed: []string{"a/f"}, kept: []string{"a/g"}},
		{name: "chmod", change: func(t *testing.T, r string) { must(t, os.Chmod(r+"/a/f", 0o600)) },
			changed: []string{"a/f"}, kept: []string{"a/g"}},
		{name: "chmod dir", change: func(t *testing.T, r string) { must(t, os.Chmod(r+"/a", 0o700)) },
			changed: []string{"a"}, kept: []string{"b"}},
		{name: "create", change: func(t *testing.T, r string) { write(t, r+"/a/new", "n") },
			changed: []string{"a", "a/new"}, kept: []string{"a/f"}},
		{name: "delete", change: func(t *testing.T, r string) { must(t, os.Remove(r+"/a/f")) },
			changed: []string{"a", "a/f"}, kept: []string{"a/g"}},
		{name: "rename within dir", change: func(t *testing.T, r string) { must(t, os.Rename(r+"/a/f", r+"/a/f2")) },
			changed: []string{"a", "a/f", "a/f2"}, kept: []string{"a/g", "b/h"}},
		{name: "rename across dirs", change: func(t *testing.T, r string) { must(t, os.Rename(r+"/a/f", r+"/b/f")) },
			changed: []string{"a", "a/f", "b", "b/f"}, kept: []string{"a/g", "b/h"}},
		{name: "rename over a file", change: func(t *testing.T, r string) { must(t, os.Rename(r+"/a/f", r+"/a/g")) },
			changed: []string{"a", "a/f", "a/g"}, kept: []string{"a/sib"}},
		{name: "mkdir -p and a file inside", change: func(t *testing.T, r string) {
			must(t, os.MkdirAll(r+"/a/n1/n2/n3", 0o755))
			write(t, r+"/a/n1/n2/n3/f", "\n")
		}, changed: []string{"a", "a/n1", "a/n1/n2", "a/n1/n2/n3", "a/n1/n2/n3/f"}, kept: []string{"a/f"}},
		{name: "rename dir then edit at the new path", change: func(t *testing.T, r string) {
			must(t, os.Rename(r+"/d/x", r+"/b/x2"))
			// Let the watcher see the rename before the edits.
			time.Sleep(20 * time.Millisecond)
			write(t, r+"/b/x2/y", "edited")
			write(t, r+"/b/x2/z/w", "edited")
		}, changed: []string{"d", "d/x", "d/x/y", "b", "b/x2", "b/x2/y", "b/x2/z/w"}, kept: []string{"b/h", "keep/k"}},
		{name: "dir out of the workspace and back", change: func(t *testing.T, r string) {
			must(t, os.Rename(r+"/d/x", outside+"/x"))
			write(t, outside+"/x/y", "edited outside")
			write(t, outside+"/x/z/w", "edited outside")
			must(t, os.Rename(outside+"/x", r+"/d/x"))
		}, changed: []string{"d/x/y", "d/x/z/w"}, kept: []string{"b/h"}},
		{name: "remove a tree", change: func(t *testing.T, r string) { must(t, os.RemoveAll(r+"/d")) },
			changed: []string{"d", "d/x", "d/x/y", "d/x/z", "d/x/z/w"}, kept: []string{"a/f"}},
		{name: "symlink to a file outside", setup: func(t *testing.T, r string) {
			write(t, outside+"/target", "t")
			must(t, os.Symlink(outside+"/target", r+"/a/link"))
		}, change: func(t *testing.T, r string) { write(t, outside+"/target", "edited target") },
			changed: []string{"a/link"}, kept: []string{"a/f"}},
		{name: "symlink to a dir outside", setup: func(t *testing.T, r string) {
			write(t, outside+"/tdir/f", "t")
			must(t, os.Symlink(outside+"/tdir", r+"/a/dlink"))
		}, change: func(t *testing.T, r string) { write(t, outside+"/tdir/f", "edited target") },
			changed: []string{"a/dlink", "a/dlink/f"}, kept: []string{"a/f"}},
		{name: "skipped dirs", setup: func(t *testing.T, r string) {
			for _, d := range []string{".git", "node_modules", "a/node_modules", ".venv"} {
				write(t, r+"/"+d+"/f", "s")
			}
		}, change: func(t *testing.T, r string) {
			for _, d := range []string{".git", "node_modules", "a/node_modules", ".venv"} {
				write(t, r+"/"+d+"/f", "changed")
			}
		}, changed: []string{".git/f", "node_modules/f", "a/node_modules/f", ".venv/f", ".pipe/journal"}, kept: []string{"a/f"}},
		{name: "skipped name made later", change: func(t *testing.T, r string) {
			write(t, r+"/b/node_modules/p/f", "x")
			time.Sleep(20 * time.Millisecond)
			write(t, r+"/b/node_modules/p/f", "xy")
		}, changed: []string{"b/node_modules/p/f"}, kept: []string{"b/h"}},
		{name: "file replaced by a dir", change: func(t *testing.T, r string) {
			must(t, os.Remove(r+"/a/f"))
			write(t, r+"/a/f/inner", "i")
		}, changed: []string{"a/f", "a/f/inner"}, kept: []string{"a/g"}},
		{name: "dir replaced by a file", change: func(t *testing.T, r string) {
			must(t, os.RemoveAll(r+"/d/x"))
			write(t, r+"/d/x", "file now")
		}, changed: []string{"d/x", "d/x/y"}, kept: []string{"a/g"}},
		{name: "hard link written through another name", setup: func(t *testing.T, r string) {
			must(t, os.Link(r+"/a/f", r+"/b/hl"))
		}, change: func(t *testing.T, r string) { write(t, r+"/b/hl", "written via the other name") },
			changed: []string{"a/f", "b/hl"}, kept: []string{}},
		{name: "hard link chmod'ed through another name", setup: func(t *testing.T, r string) {
			must(t, os.Link(r+"/a/f", r+"/b/hl"))
		}, change: func(t *testing.T, r string) { must(t, os.Chmod(r+"/b/hl", 0o600)) },
			changed: []string{"a/f", "b/hl"}, kept: []string{}},
		{name: "hard link made after the token, then written", change: func(t *testing.T, r string) {
			must(t, os.Link(r+"/a/f", r+"/b/hl"))
			time.Sleep(20 * time.Millisecond)
			write(t, r+"/b/hl", "written via the other name")
		}, changed: []string{"a/f", "b/hl"}, kept: []string{}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			w, root := watch(t, base)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			tok := now(t, w)
			before := tree(t, root)
			// mtimes have a coarse clock: make sure a write changes them.
			time.Sleep(10 * time.Millisecond)
			tc.change(t, root)
			c := answer(t, w, tok)
			checkModel(t, before, tree(t, root), c)
			for _, p := range tc.changed {
				if c.Unchanged(p) {
					t.Errorf("%s: vouched for, but it changed; paths %q trees %q unwatched %q", p, c.Paths, c.Trees, c.Unwatched)
				}
			}
			for _, p := range tc.kept {
				if !c.Unchanged(p) {
					t.Errorf("%s: untouched but not vouched for; paths %q trees %q unwatched %q", p, c.Paths, c.Trees, c.Unwatched)
				}
			}
			// The next token vouches for everything watched again.
			c2 := answer(t, w, c.Now)
			for _, p := range tc.kept {
				if !c2.Unchanged(p) {
					t.Errorf("%s: not vouched for after the next token; paths %q trees %q", p, c2.Paths, c2.Trees)
				}
			}
		})
	}
}

// TestWatchRenamedDirEditsAtNewPath: edits inside a renamed directory are
// reported at its new path, not only at the old one.
func TestWatchRenamedDirEditsAtNewPath(t *testing.T) {
	w, root := watch(t, func(r string) {
		os.MkdirAll(r+"/old/sub", 0o755)
		os.WriteFile(r+"/old/sub/f", []byte("1"), 0o644)
	})
	must(t, os.Rename(root+"/old", root+"/new"))
	tok := since(t, w, Token{}).Now // the rename is before the token
	time.Sleep(10 * time.Millisecond)
	write(t, root+"/new/sub/f", "edited at the new path")
	c := since(t, w, tok)
	if c.Unchanged("new/sub/f") {
		t.Fatalf("an edit at the new path of a renamed dir is vouched for; paths %q trees %q", c.Paths, c.Trees)
	}
	for _, p := range c.Paths {
		if strings.HasPrefix(p, "old/") {
			t.Errorf("an edit at the new path is reported at the old path %q", p)
		}
	}
}

// TestWatchSameInodeTwoPaths: a directory the watcher found at one path,
// then at another before it saw the rename (two listings of one walk),
// stays watched at its new path after the rename's event.
func TestWatchSameInodeTwoPaths(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(root+"/a/X", 0o755))
	must(t, os.MkdirAll(root+"/b", 0o755))
	w, err := newWatcher(root)
	must(t, err)
	// The walk the watcher does, with the rename in the middle: a/X is
	// watched, then moved to b/X, then b is listed.
	must(t, w.start())
	// b was not watched yet when X moved into it: no event there.
	w.unwatchTree("b")
	must(t, os.Rename(root+"/a/X", root+"/b/X"))
	must(t, w.watchTree("b"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.loop(ctx)
	tok := now(t, w) // the loop applied the rename's events by now
	write(t, root+"/b/X/f", "made after the token")
	c := since(t, w, tok)
	if c.Unchanged("b/X/f") {
		t.Fatalf("b/X/f, made after the token, is vouched for; paths %q trees %q", c.Paths, c.Trees)
	}
}

// TestWatchSync: a change made just before a question is always in its
// answer (the cookie guarantee).
func TestWatchSync(t *testing.T) {
	w, root := watch(t, func(r string) { os.WriteFile(r+"/f", nil, 0o644) })
	n := 300
	if testing.Short() {
		n = 50
	}
	tok := now(t, w)
	for i := 0; i < n; i++ {
		f := filepath.Join(root, "f")
		done := make(chan *Changes)
		must(t, os.WriteFile(f, []byte(strings.Repeat("x", i)), 0o644))
		// Ask from another goroutine, right after the write.
		go func() { done <- w.Since(context.Background(), tok) }()
		c := <-done
		if !c.Complete {
			t.Fatalf("round %d: incomplete: %s", i, c.Why)
		}
		if c.Unchanged("f") {
			t.Fatalf("round %d: a write just before the question is not in its answer", i)
		}
		tok = c.Now
	}
}

// TestWatchOverflow: a queue overflow voids every token handed out before
// it, and the watcher works afterwards. The overflow event is synthetic
// (the kernel overflows only past a sysctl'ed queue size); what follows it
// is the watcher's own restart.
func TestWatchOverflow(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(root+"/a", 0o755))
	w, err := newWatcher(root)
	must(t, err)
	must(t, w.start())
	before := w.j.since(Token{}).Now
	if before.IsZero() {
		t.Fatal("no token after start")
	}
	// A question waiting when the queue overflows is answered at once.
	w.mu.Lock()
	waiter := make(chan struct{})
	w.waiters["cookie-waiting"] = waiter
	old := w.file
	w.mu.Unlock()

	// An ordinary event, then the overflow, in one buffer.
	buf := inotifyEvent(1, 0x2 /* IN_MODIFY */, "x")
	buf = append(buf, inotifyEvent(-1, 0x4000 /* IN_Q_OVERFLOW */, "")...)
	if w.apply(buf) {
		t.Fatal("apply did not report the overflow")
	}
	must(t, w.restart(old))
	select {
	case <-waiter:
	default:
		t.Error("a question waiting at the overflow was not answered")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.loop(ctx)
	c := w.Since(ctx, before)
	if c.Complete {
		t.Fatalf("a token from before the overflow is answered complete")
	}
	if c.Now.Instance == before.Instance {
		t.Fatal("the restart kept the instance")
	}
	// It keeps working.
	tok := c.Now
	write(t, root+"/a/f", "after the overflow")
	c = since(t, w, tok)
	if c.Unchanged("a/f") || c.Unchanged("a") || !c.Unchanged("b") {
		t.Fatalf("after the restart: paths %q trees %q", c.Paths, c.Trees)
	}
	if w.Watched() != 2 {
		t.Errorf("watched %d directories after the restart, want 2 (the root and a)", w.Watched())
	}
}

// inotifyEvent encodes one event as the kernel does, with the name padded
// by NULs to a multiple of 16 bytes.
func inotifyEvent(wd int32, mask uint32, name string) []byte {
	n := 0
	if name != "" {
		n = (len(name) + 1 + 15) / 16 * 16
	}
	b := make([]byte, 16+n)
	le := func(off int, v uint32) {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	le(0, uint32(wd))
	le(4, mask)
	le(12, uint32(n))
	copy(b[16:], name)
	return b
}

// TestWatchApplyPadding: names padded with NULs (as the kernel pads them)
// are read up to the first NUL.
func TestWatchApplyPadding(t *testing.T) {
	w, _ := watch(t, nil)
	tok := now(t, w)
	w.mu.Lock()
	rootWD := w.byPath["."]
	w.mu.Unlock()
	for _, name := range []string{"a", "exactly16bytes!!", "fifteen-bytes-x"} {
		if !w.apply(inotifyEvent(rootWD, 0x2, name)) {
			t.Fatal("apply reported an overflow")
		}
	}
	c := w.j.since(tok)
	want := []string{"a", "exactly16bytes!!", "fifteen-bytes-x"}
	if strings.Join(c.Paths, ",") != strings.Join(want, ",") {
		t.Fatalf("paths %q, want %q", c.Paths, want)
	}
}

// TestWatchCookieDirRemoved: the journal's cookie directory removed (as by
// rm -rf .pipe) is made again by the next question, which is answered.
func TestWatchCookieDirRemoved(t *testing.T) {
	w, root := watch(t, nil)
	tok := now(t, w)
	must(t, os.RemoveAll(filepath.Join(root, ".pipe")))
	// The watcher hears that the cookie watch is gone; ask until the
	// question is answered through a new one.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := w.Since(context.Background(), tok)
		if c.Complete {
			write(t, root+"/f", "x")
			if c := since(t, w, c.Now); c.Unchanged("f") {
				t.Fatal("a change after the cookie directory came back is vouched for")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete answer after the cookie directory was removed: %s", c.Why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchRootRemoved: the workspace root going away is fatal.
func TestWatchRootRemoved(t *testing.T) {
	w, root := watch(t, nil)
	must(t, os.RemoveAll(root))
	select {
	case why := <-w.Fatal():
		if !strings.Contains(why, "root") {
			t.Errorf("fatal: %s", why)
		}
	case <-time.After(time.Minute):
		t.Fatal("the watcher did not fail when the workspace root was removed")
	}
}

// TestWatchSymlinkRoot: a workspace named through a symbolic link is
// watched (inotify does not follow the link itself).
func TestWatchSymlinkRoot(t *testing.T) {
	d := t.TempDir()
	must(t, os.MkdirAll(d+"/real/a", 0o755))
	must(t, os.Symlink(d+"/real", d+"/link"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Watch(ctx, d+"/link")
	must(t, err)
	tok := now(t, w)
	write(t, d+"/link/a/f", "x")
	c := since(t, w, tok)
	if c.Unchanged("a/f") || c.Unchanged("a") {
		t.Fatalf("a change below a symlinked root is vouched for; %d watched, paths %q trees %q", w.Watched(), c.Paths, c.Trees)
	}
}

// TestWatchRootReplaced: a root removed while a file below it is open (no
// deletion event then) and made again at the same path, or moved away
// with an ancestor, or named through a symbolic link that is re-pointed,
// is no longer vouched for.
func TestWatchRootReplaced(t *testing.T) {
	for _, how := range []string{"removed and made again", "ancestor renamed", "link re-pointed"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "parent")
			root := filepath.Join(parent, "ws")
			must(t, os.MkdirAll(root+"/a", 0o755))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			given := root
			if how == "link re-pointed" {
				given = filepath.Join(parent, "current")
				must(t, os.Symlink("ws", given))
			}
			w, err := Watch(ctx, given)
			must(t, err)
			// An open file below the root, as the server's lock is.
			f, err := os.Create(root + "/a/open")
			must(t, err)
			defer f.Close()
			tok := now(t, w)
			if how == "link re-pointed" {
				must(t, os.MkdirAll(parent+"/ws2/a", 0o755))
				must(t, os.Remove(given))
				must(t, os.Symlink("ws2", given))
				write(t, parent+"/ws2/a/g", "x")
			} else if how == "ancestor renamed" {
				must(t, os.Rename(parent, parent+"2"))
				write(t, parent+"2/ws/a/g", "x")
			} else {
				must(t, os.RemoveAll(root))
				write(t, root+"/a/g", "x")
			}
			c := w.Since(ctx, tok)
			if c.Complete && c.Unchanged("a/g") {
				t.Fatalf("a/g is vouched for after the root was %s", how)
			}
			select {
			case <-w.Fatal():
			default:
				t.Error("the watcher goes on after its root was " + how)
			}
		})
	}
}

// TestWatchOverflowWakesAfterReset: the questions waiting at an overflow
// are woken only once the journal that lost events is voided, so none is
// answered from it.
func TestWatchOverflowWakesAfterReset(t *testing.T) {
	root := t.TempDir()
	w, err := newWatcher(root)
	must(t, err)
	must(t, w.start())
	before := w.j.since(Token{}).Now
	w.mu.Lock()
	waiter := make(chan struct{})
	w.waiters["cookie-waiting"] = waiter
	old := w.file
	w.mu.Unlock()

	// Hold the journal as a woken question would take it, and see
	// whether the restart wakes the question before it voids the
	// journal.
	w.j.mu.Lock()
	restarted := make(chan error, 1)
	go func() { restarted <- w.restart(old) }()
	select {
	case <-waiter:
		inst := w.j.inst
		w.j.mu.Unlock()
		if inst == before.Instance {
			t.Fatal("a question waiting at the overflow was woken while the journal that lost events still answered")
		}
	case <-time.After(500 * time.Millisecond):
		// The restart waits for the journal before it wakes anyone.
		w.j.mu.Unlock()
		<-waiter
	}
	must(t, <-restarted)
	if c := w.j.since(before); c.Complete {
		t.Fatal("a token from before the overflow is answered complete")
	}
}

// TestWatchHardLinkUnwatchedName: a file with another name where the
// watcher does not look (node_modules here; outside the workspace alike)
// is never vouched for, whether the link was there when the watcher
// started or was made inside the workspace later.
func TestWatchHardLinkUnwatchedName(t *testing.T) {
	w, root := watch(t, func(r string) {
		os.MkdirAll(r+"/node_modules", 0o755)
		os.MkdirAll(r+"/a", 0o755)
		os.WriteFile(r+"/node_modules/x", []byte("x"), 0o644)
		os.Link(r+"/node_modules/x", r+"/a/early")
		os.WriteFile(r+"/a/sib", []byte("s"), 0o644)
	})
	tok := now(t, w)
	must(t, os.Link(root+"/node_modules/x", root+"/a/late"))
	c := answer(t, w, tok)
	if c.Unchanged("a/late") || c.Unchanged("a/early") {
		t.Fatalf("a new link is vouched for: complete %v, paths %q trees %q unwatched %q", c.Complete, c.Paths, c.Trees, c.Unwatched)
	}
	tok = c.Now
	write(t, root+"/node_modules/x", "written through the unwatched name")
	c = answer(t, w, tok)
	for _, p := range []string{"a/early", "a/late"} {
		if c.Unchanged(p) {
			t.Errorf("%s, written through its name in node_modules, is vouched for; unwatched %q", p, c.Unwatched)
		}
	}
	if !c.Unchanged("a/sib") {
		t.Errorf("a/sib is not vouched for: complete %v (%s)", c.Complete, c.Why)
	}
}

// TestWatchRestartWakesLateQuestion: a question that registered while a
// restart was under way (after the waiting ones were woken) is woken when
// the start completes, rather than left to wait for a cookie the new
// descriptor may never see.
func TestWatchRestartWakesLateQuestion(t *testing.T) {
	root := t.TempDir()
	w, err := newWatcher(root)
	must(t, err)
	must(t, w.start())
	tok := w.j.since(Token{}).Now
	// The restart's first half: journal voided, descriptor closed,
	// waiting questions woken.
	w.j.mu.Lock()
	w.j.reset()
	w.j.mu.Unlock()
	w.file.Close()
	// A question registers now.
	w.mu.Lock()
	late := make(chan struct{})
	w.waiters["cookie-late"] = late
	w.mu.Unlock()
	must(t, w.start())
	select {
	case <-late:
	default:
		t.Fatal("a question that came during the restart is left waiting")
	}
	if c := w.j.since(tok); c.Complete {
		t.Fatal("a token from before the restart is answered complete")
	}
}

// TestWatchLinkFromOutsideKeepsTokens: a file linked into the workspace
// from outside it is held unwatched, and no token is voided. Two names of
// one file, both in the workspace, as a Python bundle's bundle/ and
// bundle.layers/ are, are vouched for (or a bundle of 30,000 files would
// be stat'ed, and sent in every answer, at every build), and a write
// through one is reported under both. When one of them is renamed away
// with its directory, the other is held unwatched.
func TestWatchLinkFromOutsideKeepsTokens(t *testing.T) {
	store := t.TempDir()
	write(t, store+"/blob", "from the store")
	w, root := watch(t, func(r string) {
		os.MkdirAll(r+"/dist/bundle", 0o755)
		os.MkdirAll(r+"/dist/layers", 0o755)
		os.MkdirAll(r+"/src", 0o755)
		os.WriteFile(r+"/src/a", []byte("a"), 0o644)
		os.WriteFile(r+"/src/sib", []byte("s"), 0o644)
		os.WriteFile(r+"/dist/bundle/x", []byte("x"), 0o644)
		os.Link(r+"/dist/bundle/x", r+"/dist/layers/x")
	})
	tok := now(t, w)
	must(t, os.Link(store+"/blob", root+"/dist/out"))
	c := since(t, w, tok)
	if c.Unchanged("dist/out") || !c.Unchanged("src/sib") || !c.Unchanged("src/a") {
		t.Fatalf("after a link from outside: dist/out vouched %v, src/sib %v, src/a %v; unwatched %q",
			c.Unchanged("dist/out"), c.Unchanged("src/sib"), c.Unchanged("src/a"), c.Unwatched)
	}
	if !c.Unchanged("dist/bundle/x") || !c.Unchanged("dist/layers/x") {
		t.Fatalf("two workspace names of one file, untouched: vouched %v and %v; unwatched %q",
			c.Unchanged("dist/bundle/x"), c.Unchanged("dist/layers/x"), c.Unwatched)
	}
	tok = c.Now
	write(t, store+"/blob", "written through the store's name")
	if c := since(t, w, tok); c.Unchanged("dist/out") {
		t.Errorf("dist/out, written through its name outside, is vouched for")
	}

	tok = now(t, w)
	write(t, root+"/dist/layers/x", "written through layers")
	c = since(t, w, tok)
	for _, p := range []string{"dist/bundle/x", "dist/layers/x"} {
		if c.Unchanged(p) {
			t.Errorf("%s is vouched for after a write through dist/layers/x; changed %q", p, c.Paths)
		}
	}
	if !c.Unchanged("src/sib") {
		t.Errorf("src/sib is not vouched for: %s", c.Why)
	}

	// The layers directory goes elsewhere, its name of the file with it.
	tok = now(t, w)
	must(t, os.Rename(root+"/dist/layers", store+"/layers"))
	c = since(t, w, tok)
	tok = c.Now
	write(t, store+"/layers/x", "written through the name outside")
	if c := since(t, w, tok); c.Unchanged("dist/bundle/x") {
		t.Errorf("dist/bundle/x, written through its name renamed out of the workspace, is vouched for; unwatched %q", c.Unwatched)
	}

	tok = now(t, w)
	must(t, os.Link(root+"/src/a", root+"/src/b"))
	c = since(t, w, tok)
	tok = c.Now
	write(t, root+"/src/b", "written through the second name")
	c = since(t, w, tok)
	for _, p := range []string{"src/a", "src/b"} {
		if c.Unchanged(p) {
			t.Errorf("%s is vouched for after a write through src/b; unwatched %q", p, c.Unwatched)
		}
	}
}

// TestWatchLinkNameMovedUnheard: of a file's two workspace names, one is
// renamed below node_modules, where the watcher does not hear it: a write
// through it must leave the other name unvouched.
func TestWatchLinkNameMovedUnheard(t *testing.T) {
	w, root := watch(t, func(r string) {
		os.MkdirAll(r+"/a", 0o755)
		os.MkdirAll(r+"/c", 0o755)
		os.MkdirAll(r+"/node_modules", 0o755)
		os.WriteFile(r+"/c/e", []byte("e"), 0o644)
		os.Link(r+"/c/e", r+"/a/x")
	})
	tok := now(t, w)
	if c := since(t, w, tok); !c.Unchanged("c/e") {
		t.Fatalf("c/e, with both its names heard, is not vouched for; unwatched %q", c.Unwatched)
	}
	must(t, os.Rename(root+"/a/x", root+"/node_modules/x"))
	tok = since(t, w, tok).Now
	write(t, root+"/node_modules/x", "written where no one hears")
	if c := since(t, w, tok); c.Unchanged("c/e") {
		t.Errorf("c/e, written through its name below node_modules, is vouched for; unwatched %q", c.Unwatched)
	}
}
