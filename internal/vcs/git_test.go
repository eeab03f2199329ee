package vcs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// testRepo is a repository made in a temp directory with go-git. Commits
// carry fixed authors and times a minute apart, so merge-base choices and
// hashes do not depend on the clock.
type testRepo struct {
	t    *testing.T
	dir  string
	r    *git.Repository
	when time.Time
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := t.TempDir()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, r: r, when: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (tr *testRepo) write(rel, content string) {
	tr.t.Helper()
	p := filepath.Join(tr.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testRepo) remove(rel string) {
	tr.t.Helper()
	if err := os.Remove(filepath.Join(tr.dir, filepath.FromSlash(rel))); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testRepo) rename(from, to string) {
	tr.t.Helper()
	dst := filepath.Join(tr.dir, filepath.FromSlash(to))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tr.dir, filepath.FromSlash(from)), dst); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testRepo) worktree() *git.Worktree {
	tr.t.Helper()
	wt, err := tr.r.Worktree()
	if err != nil {
		tr.t.Fatal(err)
	}
	return wt
}

// commit stages everything (git add -A) and commits it.
func (tr *testRepo) commit(msg string) string {
	tr.t.Helper()
	wt := tr.worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		tr.t.Fatal(err)
	}
	tr.when = tr.when.Add(time.Minute)
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: tr.when}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		tr.t.Fatal(err)
	}
	return h.String()
}

// checkout switches to branch, creating it at HEAD when create is set.
func (tr *testRepo) checkout(branch string, create bool) {
	tr.t.Helper()
	if err := tr.worktree().Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch), Create: create}); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testRepo) setRef(name, hash string) {
	tr.t.Helper()
	if err := tr.r.Storer.SetReference(plumbing.NewHashReference(plumbing.ReferenceName(name), plumbing.NewHash(hash))); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *testRepo) diff(base, head string) []Change {
	tr.t.Helper()
	got, err := changedFiles(tr.dir, base, head)
	if err != nil {
		tr.t.Fatalf("diff %q...%q: %v", base, head, err)
	}
	return got
}

// changedFiles is what pipe affected asks of a repository: open the one
// holding dir and diff base...head.
func changedFiles(dir, base, head string) ([]Change, error) {
	r, err := Open(dir)
	if err != nil {
		return nil, err
	}
	d, err := r.Diff(base, head)
	if err != nil {
		return nil, err
	}
	return d.Changes, nil
}

// readFileAt opens the repository holding dir and reads p at rev.
func readFileAt(dir, rev, p string) ([]byte, error) {
	r, err := Open(dir)
	if err != nil {
		return nil, err
	}
	return r.ReadFileAt(rev, p)
}

func wantChanges(t *testing.T, what string, got []Change, want ...Change) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestAffectedVCSCommittedChanges(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("a/one.txt", "one\n")
	tr.write("a/two.txt", "two: a file long enough that an edit keeps it similar\nline 2\nline 3\nline 4\n")
	tr.write("b/three.txt", "three\n")
	tr.write("gone.txt", "soon deleted\n")
	c1 := tr.commit("first")

	tr.write("a/one.txt", "one, edited\n")
	tr.rename("a/two.txt", "c/two.txt")
	tr.remove("gone.txt")
	tr.write("new.txt", "new\n")
	c2 := tr.commit("second")

	wantChanges(t, "c1..c2", tr.diff(c1, c2),
		Change{Path: "a/one.txt", Kind: Modified},
		Change{Path: "c/two.txt", OldPath: "a/two.txt", Kind: Renamed},
		Change{Path: "gone.txt", Kind: Deleted},
		Change{Path: "new.txt", Kind: Added},
	)
	// A rename that also edits the file is still found as one.
	tr.rename("c/two.txt", "d/two.txt")
	tr.write("d/two.txt", "two: a file long enough that an edit keeps it similar\nline 2\nline 3\nline 4, edited\n")
	c3 := tr.commit("third")
	wantChanges(t, "c2..c3", tr.diff(c2, c3), Change{Path: "d/two.txt", OldPath: "c/two.txt", Kind: Renamed})
	// Nothing between a commit and itself.
	wantChanges(t, "c3..c3", tr.diff(c3, c3))

	// The same revision spelled every way ResolveRevision knows.
	tr.setRef("refs/remotes/origin/main", c1)
	if _, err := tr.r.CreateTag("v1", plumbing.NewHash(c1), nil); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{c1, c1[:7], "v1", "origin/main", "HEAD~2", "main~2", "refs/remotes/origin/main"} {
		got := tr.diff(rev, c2)
		if len(got) != 4 {
			t.Errorf("base %q: got %+v, want the 4 changes of c1..c2", rev, got)
		}
	}
	wantChanges(t, "HEAD~1 to HEAD", tr.diff("HEAD~1", "HEAD"), Change{Path: "d/two.txt", OldPath: "c/two.txt", Kind: Renamed})
}

func TestAffectedVCSMergeBase(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("shared.txt", "v1\n")
	tr.write("main-only.txt", "v1\n")
	root := tr.commit("root")

	tr.checkout("feature", true)
	tr.write("shared.txt", "feature edit\n")
	tr.write("feature.txt", "new on feature\n")
	feature := tr.commit("feature work")

	tr.checkout("main", false)
	tr.write("main-only.txt", "v2, landed on main after feature branched\n")
	mainHead := tr.commit("main moves on")

	// Like `git diff main...feature`: what feature did since it branched,
	// not main's later commit undone.
	wantChanges(t, "main...feature", tr.diff("main", "feature"),
		Change{Path: "feature.txt", Kind: Added},
		Change{Path: "shared.txt", Kind: Modified},
	)
	wantChanges(t, "feature...main", tr.diff("feature", "main"), Change{Path: "main-only.txt", Kind: Modified})

	r, err := Open(tr.dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Diff("main", "feature")
	if err != nil {
		t.Fatal(err)
	}
	if d.MergeBase != root || d.Head != feature {
		t.Errorf("Diff: merge base %s, head %s; want %s, %s", d.MergeBase, d.Head, root, feature)
	}
	// Content at the merge base, which is what a base analysis must see.
	b, err := r.ReadFileAt(d.MergeBase, "main-only.txt")
	if err != nil || string(b) != "v1\n" {
		t.Errorf("main-only.txt at the merge base: %q, %v; want v1", b, err)
	}
	b, err = readFileAt(tr.dir, mainHead, "main-only.txt")
	if err != nil || !strings.HasPrefix(string(b), "v2") {
		t.Errorf("main-only.txt at main: %q, %v; want v2", b, err)
	}
	_, err = r.ReadFileAt(root, "feature.txt")
	if !errors.Is(err, fs.ErrNotExist) || !os.IsNotExist(err) {
		t.Errorf("feature.txt at the root commit: err %v, want one wrapping fs.ErrNotExist", err)
	}
}

func TestAffectedVCSWorkingTree(t *testing.T) {
	tr := newTestRepo(t)
	tr.write(".gitignore", "*.log\nbuild/\n")
	tr.write("src/a.txt", "a\n")
	tr.write("src/b.txt", "b\n")
	tr.write("src/moved.txt", "content that moves without a commit\n")
	tr.write("src/unchanged.txt", "same\n")
	tr.write("src/reverted.txt", "original\n")
	base := tr.commit("base")

	tr.write("src/committed.txt", "committed on the branch\n")
	tr.write("src/reverted.txt", "changed in a commit\n")
	tr.write("src/temp.txt", "added in a commit\n")
	tr.commit("branch work")

	// Uncommitted: an edit, a deletion, an untracked file, ignored files, a
	// staged file, an edit that undoes the commit, a file the commit added
	// removed again, and a rename made with mv.
	tr.write("src/a.txt", "a, edited but not committed\n")
	tr.remove("src/b.txt")
	tr.write("src/untracked.txt", "not added\n")
	tr.write("src/debug.log", "ignored\n")
	tr.write("build/out.bin", "ignored directory\n")
	tr.write("src/staged.txt", "staged\n")
	if _, err := tr.worktree().Add("src/staged.txt"); err != nil {
		t.Fatal(err)
	}
	tr.write("src/reverted.txt", "original\n")
	tr.remove("src/temp.txt")
	tr.rename("src/moved.txt", "dst/moved.txt")

	wantChanges(t, "base to the working tree", tr.diff(base, ""),
		Change{Path: "dst/moved.txt", OldPath: "src/moved.txt", Kind: Renamed},
		Change{Path: "src/a.txt", Kind: Modified},
		Change{Path: "src/b.txt", Kind: Deleted},
		Change{Path: "src/committed.txt", Kind: Added},
		Change{Path: "src/staged.txt", Kind: Added},
		Change{Path: "src/untracked.txt", Kind: Added},
	)
	// With head given, only commits count.
	wantChanges(t, "base...HEAD", tr.diff(base, "HEAD"),
		Change{Path: "src/committed.txt", Kind: Added},
		Change{Path: "src/reverted.txt", Kind: Modified},
		Change{Path: "src/temp.txt", Kind: Added},
	)
	// The executable bit is a change: a build may depend on it.
	if err := os.Chmod(filepath.Join(tr.dir, "src", "unchanged.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := tr.diff(base, "")
	found := false
	for _, c := range got {
		if c.Path == "src/unchanged.txt" && c.Kind == Modified {
			found = true
		}
	}
	if !found {
		t.Errorf("chmod +x src/unchanged.txt: not reported as modified in %+v", got)
	}
}

func TestAffectedVCSOpenFromSubdirectory(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("ws/sub/file.txt", "x\n")
	c := tr.commit("one")
	r, err := Open(filepath.Join(tr.dir, "ws", "sub"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(tr.dir)
	if r.Root() != want {
		t.Errorf("Root() = %s, want %s", r.Root(), want)
	}
	// Paths stay relative to the repository root, not the directory given.
	b, err := readFileAt(filepath.Join(tr.dir, "ws"), c, "ws/sub/file.txt")
	if err != nil || string(b) != "x\n" {
		t.Errorf("ReadFileAt from a subdirectory: %q, %v", b, err)
	}
}

func TestAffectedVCSErrors(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("a.txt", "a\n")
	tr.commit("one")

	_, err := changedFiles(tr.dir, "no-such-branch", "")
	if !errors.Is(err, ErrUnknownRevision) {
		t.Fatalf("unknown base: err %v, want ErrUnknownRevision", err)
	}
	for _, want := range []string{`"no-such-branch"`, "origin/main"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("unknown base: %q does not mention %s", err, want)
		}
	}
	if _, err := changedFiles(tr.dir, "HEAD", "deadbeef"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("unknown head: err %v, want ErrUnknownRevision", err)
	}
	if _, err := changedFiles(tr.dir, "HEAD~5", ""); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("HEAD~5 of a one-commit history: err %v, want ErrUnknownRevision", err)
	}
	if _, err := readFileAt(tr.dir, "nope", "a.txt"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("ReadFileAt at an unknown revision: err %v, want ErrUnknownRevision", err)
	}

	notRepo := t.TempDir()
	_, err = changedFiles(notRepo, "main", "")
	if !errors.Is(err, ErrNotRepository) {
		t.Fatalf("outside a repository: err %v, want ErrNotRepository", err)
	}
	if !strings.Contains(err.Error(), notRepo) {
		t.Errorf("outside a repository: %q does not name the directory", err)
	}

	// Unrelated histories have no merge base.
	tr.setRef("refs/heads/orphan", orphanCommit(t, tr))
	if _, err := changedFiles(tr.dir, "orphan", "main"); err == nil || !strings.Contains(err.Error(), "no common ancestor") {
		t.Errorf("unrelated histories: err %v, want no common ancestor", err)
	}
}

// orphanCommit makes a root commit unrelated to main, without touching the
// working tree.
func orphanCommit(t *testing.T, tr *testRepo) string {
	t.Helper()
	tr.when = tr.when.Add(time.Minute)
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: tr.when}
	// A commit with an explicit empty parent list would take HEAD; build
	// the object by hand instead.
	head, err := tr.r.Head()
	if err != nil {
		t.Fatal(err)
	}
	hc, err := tr.r.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	c := &object.Commit{Author: *sig, Committer: *sig, Message: "orphan", TreeHash: hc.TreeHash}
	obj := tr.r.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := tr.r.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}
