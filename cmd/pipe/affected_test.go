package main

// Tests of `pipe affected`: git histories made with go-git in the test's
// workspace, changed the ways a pull request changes a tree.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// affectedWorkspace is three packages: //lib's filegroup globs data/,
// //app and //site call a macro from macros/defs.star, and the dependency
// chain runs //lib:joined -> //app:loud -> //site:page.
var affectedWorkspace = map[string]string{
	"WORKSPACE.star": "workspace(name = \"affected\")\n",
	".gitignore":     "dist/\n.pipe/\n*.log\ndebug.txt\n",
	"macros/defs.star": `def upper(name, src):
    genrule(
        name = name,
        srcs = [src],
        outs = [name + ".txt"],
        cmd = "tr a-z A-Z < $(SRCS) > $@",
    )
`,
	"lib/BUILD.star": `filegroup(
    name = "data",
    srcs = glob(["data/*.txt"]),
)

genrule(
    name = "joined",
    srcs = [":data"],
    outs = ["joined.txt"],
    cmd = "cat $(SRCS) > $@",
)

genrule(
    name = "solo",
    srcs = ["solo.txt"],
    outs = ["solo.out"],
    cmd = "cp $< $@",
)
`,
	"lib/data/a.txt": "a\n",
	"lib/data/b.txt": "b\n",
	"lib/solo.txt":   "solo\n",
	"lib/README.md":  "read me\n",
	"app/BUILD.star": `load("//macros:defs.star", "upper")

upper(name = "loud", src = "//lib:joined")

genrule(
    name = "other",
    srcs = ["other.txt"],
    outs = ["other.out"],
    cmd = "cp $< $@",
)
`,
	"app/other.txt": "other\n",
	"site/BUILD.star": `load("//macros:defs.star", "upper")

upper(name = "shout", src = "site.txt")

genrule(
    name = "page",
    srcs = ["//app:loud", "//lib:solo"],
    outs = ["page.html"],
    cmd = "cat $(SRCS) > $@",
)
`,
	"site/site.txt": "site\n",
	"docs/notes.md": "in no package\n",
}

// gitRepo drives a go-git repository in a test directory. Commits carry
// fixed authors and times a minute apart.
type gitRepo struct {
	t    *testing.T
	dir  string
	r    *git.Repository
	when time.Time
}

func initGit(t *testing.T, dir string) *gitRepo {
	t.Helper()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	return &gitRepo{t: t, dir: dir, r: r, when: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (g *gitRepo) worktree() *git.Worktree {
	g.t.Helper()
	wt, err := g.r.Worktree()
	if err != nil {
		g.t.Fatal(err)
	}
	return wt
}

// commit stages everything (git add -A) and commits it.
func (g *gitRepo) commit(msg string) string {
	g.t.Helper()
	wt := g.worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		g.t.Fatal(err)
	}
	g.when = g.when.Add(time.Minute)
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: g.when}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		g.t.Fatal(err)
	}
	return h.String()
}

func (g *gitRepo) checkout(branch string, create bool) {
	g.t.Helper()
	if err := g.worktree().Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch), Create: create}); err != nil {
		g.t.Fatal(err)
	}
}

// remove deletes a workspace file.
func (ws *workspace) remove(t *testing.T, rel string) {
	t.Helper()
	if err := os.Remove(ws.path(rel)); err != nil {
		t.Fatal(err)
	}
}

func (ws *workspace) rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(ws.path(to)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ws.path(from), ws.path(to)); err != nil {
		t.Fatal(err)
	}
}

// newAffectedRepo writes files into a workspace, makes it a repository
// and commits them on main.
func newAffectedRepo(t *testing.T, files map[string]string) (*workspace, *gitRepo) {
	t.Helper()
	ws := newWorkspace(t, files)
	g := initGit(t, ws.Root)
	g.commit("base")
	return ws, g
}

// runAffected runs `pipe affected args...` in the workspace.
func runAffected(t *testing.T, ws *workspace, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runPipe(t, ws, append([]string{"affected"}, args...)...)
}

// affectedOK runs pipe affected and returns the labels it printed.
func affectedOK(t *testing.T, ws *workspace, args ...string) []string {
	t.Helper()
	stdout, stderr, code := runAffected(t, ws, args...)
	if code != 0 {
		t.Fatalf("pipe affected %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return lines(stdout)
}

var (
	libAll   = []string{"//lib:data", "//lib:joined", "//lib:solo"}
	libChain = []string{"//app:loud", "//site:page"} // rdeps of //lib:joined
)

func TestAffectedCommittedChanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(t *testing.T, ws *workspace)
		want   []string
	}{
		{"edit a source: its genrule and rdeps", func(t *testing.T, ws *workspace) {
			ws.write(t, "lib/data/a.txt", "a, edited\n")
		}, append([]string{"//lib:data", "//lib:joined"}, libChain...)},
		{"edit a named source", func(t *testing.T, ws *workspace) {
			ws.write(t, "lib/solo.txt", "solo, edited\n")
		}, []string{"//lib:solo", "//site:page"}},
		// The old path is in no input any more, and a glob of //lib may
		// have matched it: the whole package counts.
		{"rename a file", func(t *testing.T, ws *workspace) {
			ws.rename(t, "lib/data/b.txt", "lib/data/c.txt")
		}, append(append([]string{}, libAll...), libChain...)},
		{"delete a file", func(t *testing.T, ws *workspace) {
			ws.remove(t, "lib/data/b.txt")
		}, append(append([]string{}, libAll...), libChain...)},
		{"edit a BUILD.star: that package and rdeps", func(t *testing.T, ws *workspace) {
			ws.write(t, "app/BUILD.star", strings.Replace(affectedWorkspace["app/BUILD.star"], "cp $< $@", "cp $< $@ && true", 1))
		}, []string{"//app:loud", "//app:other", "//site:page"}},
		{"edit a macro two packages load", func(t *testing.T, ws *workspace) {
			ws.write(t, "macros/defs.star", strings.Replace(affectedWorkspace["macros/defs.star"], "a-z A-Z", "a-z A-Z | cat", 1))
		}, []string{"//app:loud", "//app:other", "//site:page", "//site:shout"}},
		{"edit files no target uses", func(t *testing.T, ws *workspace) {
			ws.write(t, "lib/README.md", "read me, edited\n")
			ws.write(t, "docs/notes.md", "edited\n")
			ws.write(t, "docs/new.md", "new\n")
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ws, g := newAffectedRepo(t, affectedWorkspace)
			c.change(t, ws)
			g.commit(c.name)
			got := affectedOK(t, ws, "--base", "HEAD~1", "--head", "HEAD")
			wantLabels(t, c.name, got, c.want...)
			// The working tree is HEAD here, so omitting --head agrees.
			wantLabels(t, c.name+" (working tree)", affectedOK(t, ws, "--base", "main~1"), c.want...)
		})
	}
}

func TestAffectedWorkingTree(t *testing.T) {
	t.Parallel()
	ws, _ := newAffectedRepo(t, affectedWorkspace)
	// Uncommitted: an edit, an untracked file a glob matches, and ignored
	// files (debug.txt would match the glob if .gitignore did not hide it
	// from git and from glob alike).
	ws.write(t, "app/other.txt", "other, not committed\n")
	ws.write(t, "lib/data/new.txt", "untracked\n")
	ws.write(t, "lib/data/debug.txt", "ignored\n")
	ws.write(t, "site/build.log", "ignored\n")

	want := append([]string{"//app:other", "//lib:data", "//lib:joined"}, libChain...)
	wantLabels(t, "working tree", affectedOK(t, ws, "--base", "main"), want...)
	// --head names a commit: uncommitted files do not count.
	wantLabels(t, "--head HEAD", affectedOK(t, ws, "--base", "main", "--head", "HEAD"))

	// Undoing the edit on disk undoes its effect.
	ws.write(t, "app/other.txt", affectedWorkspace["app/other.txt"])
	ws.remove(t, "lib/data/new.txt")
	wantLabels(t, "after undoing", affectedOK(t, ws, "--base", "main"))
}

// TestAffectedMergeBase: commits that land on the base branch after the
// head branched off are not the head's changes (git diff base...head).
func TestAffectedMergeBase(t *testing.T) {
	t.Parallel()
	ws, g := newAffectedRepo(t, affectedWorkspace)
	g.checkout("feature", true)
	ws.write(t, "app/other.txt", "feature work\n")
	g.commit("feature work")
	g.checkout("main", false)
	ws.write(t, "site/site.txt", "main moved on\n")
	g.commit("main moves on")
	g.checkout("feature", false)

	wantLabels(t, "main...feature", affectedOK(t, ws, "--base", "main"), "//app:other")
	wantLabels(t, "main...feature (head given)", affectedOK(t, ws, "--base", "main", "--head", "feature"), "//app:other")
}

type affectedJSONTest struct {
	Label   string   `json:"label"`
	Kind    string   `json:"kind"`
	Reasons []string `json:"reasons"`
}

func TestAffectedJSON(t *testing.T) {
	t.Parallel()
	ws, g := newAffectedRepo(t, affectedWorkspace)
	ws.write(t, "lib/solo.txt", "solo, edited\n")
	g.commit("edit")
	stdout, stderr, code := runAffected(t, ws, "--base", "HEAD~1", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var got []affectedJSONTest
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	want := []affectedJSONTest{
		{Label: "//lib:solo", Kind: "genrule", Reasons: []string{"its Genrule action reads lib/solo.txt (modified)", "names lib/solo.txt (modified) in srcs"}},
		{Label: "//site:page", Kind: "genrule", Reasons: []string{"depends on //lib:solo"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if !strings.Contains(stderr, "1 changed file") || !strings.Contains(stderr, "2 targets affected") {
		t.Errorf("stderr does not summarize the comparison:\n%s", stderr)
	}

	// Nothing affected is an empty list, not null.
	stdout, _, _ = runAffected(t, ws, "--base", "HEAD", "--output", "json")
	if strings.TrimSpace(stdout) != "[]" {
		t.Errorf("no changes: got %q, want []", stdout)
	}
}

// TestAffectedWorkspaceInSubdirectory: the repository holds more than the
// workspace; paths are mapped into it and changes outside are skipped.
func TestAffectedWorkspaceInSubdirectory(t *testing.T) {
	t.Parallel()
	repoDir := t.TempDir()
	files := map[string]string{"README.md": "repo\n", "other/BUILD.star": "not our workspace\n"}
	for k, v := range affectedWorkspace {
		files["build/"+k] = v
	}
	for k, v := range files {
		p := filepath.Join(repoDir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := initGit(t, repoDir)
	g.commit("base")
	ws := &workspace{Root: filepath.Join(repoDir, "build"), Cache: t.TempDir()}
	ws.write(t, "app/other.txt", "edited\n")
	if err := os.WriteFile(filepath.Join(repoDir, "README.md"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repoDir, "other", "BUILD.star"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.commit("edit")
	wantLabels(t, "workspace in build/", affectedOK(t, ws, "--base", "HEAD~1"), "//app:other")
}

func TestAffectedErrors(t *testing.T) {
	t.Parallel()
	ws, _ := newAffectedRepo(t, affectedWorkspace)
	cases := []struct {
		args []string
		want []string
	}{
		{nil, []string{"--base is required", "origin/main"}},
		{[]string{"--base", "no-such-branch"}, []string{`unknown revision "no-such-branch"`, "origin/main"}},
		{[]string{"--base", "main", "--head", "nope"}, []string{`unknown revision "nope"`}},
		{[]string{"--base", "main", "--output", "xml"}, []string{`--output "xml"`}},
	}
	for _, c := range cases {
		_, stderr, code := runAffected(t, ws, c.args...)
		if code != 2 {
			t.Errorf("affected %q: exit %d, want 2\n%s", c.args, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("affected %q: stderr lacks %q:\n%s", c.args, w, stderr)
			}
		}
	}

	notRepo := newWorkspace(t, affectedWorkspace)
	_, stderr, code := runAffected(t, notRepo, "--base", "main")
	if code != 2 || !strings.Contains(stderr, "not inside a git repository") {
		t.Errorf("outside a repository: exit %d, want 2 and a clear message\n%s", code, stderr)
	}
}

// TestAffectedUVLock: a uv.lock change affects only the bundles whose
// resolved wheel set changed. The lock is read at analysis time, so this
// needs the base analysis to see the base revision's uv.lock.
func TestAffectedUVLock(t *testing.T) {
	t.Parallel()
	sum := func(c byte) string { return strings.Repeat(string(c), 64) }
	native := func(armHash string) lockEntry {
		return lockEntry{Name: "native", Version: "1.0", Wheels: []lockFile{
			{URL: "https://files.pythonhosted.org/packages/aa/native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", SHA256: sum('a'), Size: 100},
			{URL: "https://files.pythonhosted.org/packages/bb/native-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", SHA256: armHash, Size: 100},
		}}
	}
	pure := func(version string, hash string) lockEntry {
		return lockEntry{Name: "pure", Version: version, Wheels: []lockFile{
			{URL: "https://files.pythonhosted.org/packages/cc/pure-" + version + "-py3-none-any.whl", SHA256: hash, Size: 100},
		}}
	}
	app := pyApp{Deps: []string{"native", "pure"}, Packages: []lockEntry{native(sum('b')), pure("1.0", sum('c'))}}
	ws, g := newAffectedRepo(t, map[string]string{
		".gitignore":                         "dist/\n.pipe/\n",
		"pyproject.toml":                     "[tool.uv.workspace]\nmembers = [\"packages/my-api\"]\n",
		"uv.lock":                            writeLock(app),
		"packages/my-api/pyproject.toml":     pyprojectOf(app.Deps),
		"packages/my-api/my_api/__init__.py": "",
		"packages/my-api/my_api/main.py":     "app = None\n",
		"packages/my-api/BUILD.star": `[python_bundle(
    name = "bundle_" + arch,
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
    python_version = "3.11",
    architecture = arch,
) for arch in ["x86_64", "arm64"]]
`,
		"deploy/BUILD.star": `genrule(
    name = "arm",
    srcs = ["//packages/my-api:bundle_arm64"],
    outs = ["arm.txt"],
    cmd = "echo > $@",
)

genrule(
    name = "unrelated",
    srcs = ["notes.txt"],
    outs = ["n.txt"],
    cmd = "cp $< $@",
)
`,
		"deploy/notes.txt": "notes\n",
	})

	// A new arm64 wheel of native: only the arm64 bundle's wheels change.
	app.Packages[0] = native(sum('d'))
	ws.write(t, "uv.lock", writeLock(app))
	g.commit("rebuild native for arm64")
	wantLabels(t, "arm64 wheel changed", affectedOK(t, ws, "--base", "HEAD~1"), "//deploy:arm", "//packages/my-api:bundle_arm64")

	// A new version of a pure-Python dependency: both bundles.
	app.Packages[1] = pure("1.1", sum('e'))
	ws.write(t, "uv.lock", writeLock(app))
	g.commit("bump pure")
	wantLabels(t, "pure dependency bumped", affectedOK(t, ws, "--base", "HEAD~1"), "//deploy:arm", "//packages/my-api:bundle_arm64", "//packages/my-api:bundle_x86_64")

	// Reformatting the lock without changing a resolution: nothing.
	ws.write(t, "uv.lock", writeLock(app)+"\n# trailing comment\n")
	g.commit("touch the lock")
	wantLabels(t, "lock touched, same wheels", affectedOK(t, ws, "--base", "HEAD~1"))
}

// TestBuildAffected: pipe build --affected builds exactly the affected
// targets (and what they need), patterns narrow the set, and a change that
// affects nothing builds nothing.
func TestBuildAffected(t *testing.T) {
	t.Parallel()
	ws, g := newAffectedRepo(t, affectedWorkspace)
	head, err := g.r.Head()
	if err != nil {
		t.Fatal(err)
	}
	base := head.Hash().String()
	ws.write(t, "lib/solo.txt", "solo edited\n")

	b := ws.buildOK(t, "--affected", "--base", base)
	var roots []string
	for _, ev := range b.events {
		roots = append(roots, ev.Label)
	}
	sort.Strings(roots)
	// //site:page needs //app:loud and //lib:joined built too.
	if got, want := strings.Join(roots, " "), "//app:loud //lib:joined //lib:solo //site:page"; got != want {
		t.Errorf("built %s, want %s", got, want)
	}
	if ws.exists("dist/app/other/other.out") || ws.exists("dist/site/shout/shout.txt") {
		t.Errorf("unaffected targets were built")
	}

	b = ws.buildOK(t, "--affected", "--base", base, "//lib/...")
	if got := strings.Join(b.labels("cached"), " "); got != "//lib:solo" {
		t.Errorf("narrowed to //lib/...: got %q, want //lib:solo", got)
	}

	ws.write(t, "lib/solo.txt", "solo\n")
	b = ws.buildOK(t, "--affected", "--base", base)
	if len(b.events) != 0 {
		t.Errorf("no change affects nothing, but %d actions ran", len(b.events))
	}

	if _, stderr, code := runPipe(t, ws, "build", "--affected"); code != 2 || !strings.Contains(stderr, "--affected needs --base REV") {
		t.Errorf("--affected without --base: exit %d\n%s", code, stderr)
	}
}
