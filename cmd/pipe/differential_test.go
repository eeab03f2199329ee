package main

// The differential test: random edits of every kind pipe must notice
// (content, new and deleted glob matches, the exec bit, renamed targets,
// macro edits, .gitignore, moved source-tree outputs, content-preserving
// rewrites), and after each one the incremental build must leave exactly
// what a clean build leaves — dist/ and the source tree, byte for byte,
// modes included — as must a fresh checkout built on the warm cache, and a
// repeat build must execute nothing.
//
// CI runs a few dozen steps with a fixed seed. A longer run, for hunting:
//
//	PIPE_DIFF_SEED=$RANDOM PIPE_DIFF_STEPS=500 go test ./cmd/pipe -run TestDifferential -v

import (
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
)

// diffEdit is one random change, applied alike to the model source tree and
// to the incrementally built workspace, or, for a change to pipe's outputs
// (a stray file in dist/, a deleted or edited output), to the workspace
// alone.
type diffEdit struct {
	what          string
	apply         func(dir string) error
	workspaceOnly bool
}

// diffSubject is a workspace the differential test edits: its sources, the
// patterns it builds, and a generator of random edits that reads the
// current source tree (the model) to choose one.
type diffSubject struct {
	files    map[string]string
	exec     []string // files created executable
	patterns []string
	env      []string
	next     func(rng *rand.Rand, model string) diffEdit
}

// diffSteps and diffSeed come from PIPE_DIFF_STEPS and PIPE_DIFF_SEED.
func diffParams(t *testing.T, defSteps int) (steps int, seed int64) {
	steps, seed = defSteps, 1
	if s := os.Getenv("PIPE_DIFF_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PIPE_DIFF_STEPS=%q: %v", s, err)
		}
		steps = n
	}
	if s := os.Getenv("PIPE_DIFF_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PIPE_DIFF_SEED=%q: %v", s, err)
		}
		seed = n
	}
	return steps, seed
}

// runDifferential applies steps random edits to subject and checks the
// three builds after each. It returns the number of mismatching steps.
//
// With snapshots on, every incremental build starts after its edits have
// settled (RacyWindow), and so does the repeat build before it, which
// records a build snapshot: each incremental build then consults a snapshot
// the edit must invalidate. Off, every build runs with PIPE_SNAPSHOT=0.
//
// With a server, the incremental workspace's builds also ask a pipe
// server's change journal what changed, and stat only that.
func runDifferential(t *testing.T, subj diffSubject, steps int, seed int64, mode diffMode) {
	t.Helper()
	snapshots := mode != diffPlain
	rng := rand.New(rand.NewSource(seed))
	model := t.TempDir()
	writeTree(t, model, subj.files, subj.exec)
	inc := &workspace{Root: t.TempDir(), Cache: t.TempDir()}
	copyTree(t, model, inc.Root)

	env := subj.env
	if !snapshots {
		env = append(append([]string(nil), env...), "PIPE_SNAPSHOT=0")
	}
	incEnv, incArgs := env, subj.patterns
	if mode == diffServer {
		_, senv := startServer(t, inc)
		// A server the harness's own restarts leave behind stops soon.
		incEnv = append(append(append([]string(nil), env...), senv...), "PIPE_SERVER_IDLE=1m")
		incArgs = append([]string{"-v"}, subj.patterns...)
		t.Cleanup(func() { pipeCmd(inc, "shutdown").Run() })
	}
	journalSteps := 0
	build := func(ws *workspace) build {
		if ws == inc {
			b := ws.buildEnv(t, incEnv, incArgs...)
			if used, _ := journalUsed(t, b); used {
				journalSteps++
			}
			return b
		}
		return ws.buildEnv(t, env, subj.patterns...)
	}
	settle := func() {
		if snapshots {
			time.Sleep(time.Duration(engine.RacyWindow) + 50*time.Millisecond)
		}
	}
	fromSnapshot := 0
	first := build(inc)
	if first.code != 0 {
		t.Fatalf("first build: exit %d\n%s", first.code, first.stderr)
	}
	mismatches := 0
	var log []string
	for step := 1; step <= steps; step++ {
		var e diffEdit
		if rng.Intn(5) == 0 {
			e = outputEdit(rng, model, inc.Root, step)
		} else {
			e = subj.next(rng, model)
		}
		log = append(log, e.what)
		if !e.workspaceOnly {
			if err := e.apply(model); err != nil {
				t.Fatalf("step %d (%s) on the model: %v", step, e.what, err)
			}
		}
		if err := e.apply(inc.Root); err != nil {
			t.Fatalf("step %d (%s) on the workspace: %v", step, e.what, err)
		}
		settle()
		incB := build(inc)

		clean := &workspace{Root: t.TempDir(), Cache: t.TempDir()}
		copyTree(t, model, clean.Root)
		cleanB := build(clean)

		// A fresh checkout that shares the incremental workspace's cache,
		// as a second clone (or CI machine) would.
		fresh := &workspace{Root: t.TempDir(), Cache: inc.Cache}
		copyTree(t, model, fresh.Root)
		freshB := build(fresh)

		if os.Getenv("PIPE_DIFF_TRACE") != "" {
			t.Logf("step %d %s: incremental %d, clean %d, fresh %d", step, e.what, incB.code, cleanB.code, freshB.code)
		}
		if cleanB.code == 2 {
			// Every edit keeps BUILD files valid; a usage error means the
			// edit generator, not pipe, went wrong.
			t.Fatalf("step %d (%s): the clean build says the workspace is invalid:\n%s", step, e.what, cleanB.stderr)
		}
		var bad []string
		if incB.code != cleanB.code {
			bad = append(bad, fmt.Sprintf("incremental build exit %d, clean build exit %d\nincremental:\n%s\nclean:\n%s", incB.code, cleanB.code, incB.stderr, cleanB.stderr))
		}
		if freshB.code != cleanB.code {
			bad = append(bad, fmt.Sprintf("fresh checkout on the warm cache exit %d, clean build exit %d\nfresh:\n%s", freshB.code, cleanB.code, freshB.stderr))
		}
		if cleanB.code == 0 {
			want := snapshot(t, clean.Root)
			if d := diffSnapshots(snapshot(t, inc.Root), want); d != "" {
				bad = append(bad, "incremental tree differs from a clean build's:\n"+d)
			}
			if d := diffSnapshots(snapshot(t, fresh.Root), want); d != "" {
				bad = append(bad, "fresh checkout on the warm cache differs from a clean build:\n"+d)
			}
			if incB.code == 0 {
				settle()
				again := build(inc)
				if ran := again.labels("executed"); again.code != 0 || len(ran) > 0 {
					bad = append(bad, fmt.Sprintf("repeat build: exit %d, executed %q; want exit 0 and nothing executed", again.code, ran))
				}
				if snapshots {
					// The repeat build records a snapshot that the next
					// step's edit must invalidate; a third build shows it
					// was recorded.
					settle()
					third := inc.buildEnv(t, incEnv, append([]string{"-v"}, subj.patterns...)...)
					if third.code != 0 || len(third.labels("executed")) > 0 {
						bad = append(bad, fmt.Sprintf("build after the repeat build: exit %d, executed %q", third.code, third.labels("executed")))
					}
					if strings.Contains(third.stderr, snapshotUsed) {
						fromSnapshot++
					}
				}
			}
		}
		if len(bad) > 0 {
			mismatches++
			t.Errorf("step %d after edits %s:\n%s", step, strings.Join(log, "; "), strings.Join(bad, "\n"))
			if mismatches >= 3 {
				t.Fatalf("stopping after %d mismatching steps (seed %d)", mismatches, seed)
			}
			// Start the next step from a state both builds agree on.
			os.RemoveAll(inc.Root)
			copyTree(t, model, inc.Root)
			build(inc)
		}
	}
	kinds := map[string]int{}
	for _, what := range log {
		kinds[strings.Fields(what)[0]]++
	}
	t.Logf("seed %d: %d steps, %d mismatches; edits by first word: %v", seed, steps, mismatches, kinds)
	if snapshots {
		t.Logf("%d of %d steps answered a no-op from a build snapshot", fromSnapshot, steps)
	}
	if snapshots && fromSnapshot == 0 {
		t.Errorf("no step recorded a build snapshot: the run did not test them")
	}
	if mode == diffServer {
		t.Logf("%d builds of the incremental workspace used the change journal", journalSteps)
		// A build finds no snapshot to check after the edits that void
		// it; most steps still have builds that consult it.
		if journalSteps < steps/4 {
			t.Errorf("only %d builds of the incremental workspace used the change journal in %d steps: the run did not test it", journalSteps, steps)
		}
	}
}

// diffMode is how the differential test's builds find what changed.
type diffMode int

const (
	// diffPlain builds with PIPE_SNAPSHOT=0: loading, analysis and a
	// cache lookup per action.
	diffPlain diffMode = iota
	// diffSnapshot consults the build snapshot, stat'ing every path.
	diffSnapshot
	// diffServer consults the snapshot through a pipe server's change
	// journal.
	diffServer
)

// writeTree writes files into dir; the paths in exec get mode 0755.
func writeTree(t *testing.T, dir string, files map[string]string, exec []string) {
	t.Helper()
	x := map[string]bool{}
	for _, p := range exec {
		x[p] = true
	}
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if x[rel] {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTree copies src into dst (which may exist): files with their modes,
// symlinks as symlinks.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, fi.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// snapshot describes every file and symlink under root but .pipe/: its
// mode and content, or its link target.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".pipe" {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%v %q", fi.Mode().Perm(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(got, want map[string]string) string {
	var lines []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			lines = append(lines, "  missing "+p)
		} else if g != w {
			lines = append(lines, fmt.Sprintf("  %s: %.200s, want %.200s", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, "  extra "+p+" (a clean build has no such file)")
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// outputEdit changes what pipe wrote, as a user or a stray tool might: a
// stray file in a target's output directory, a deleted or edited output in
// dist/ or in the source tree. The next build must put things back.
func outputEdit(rng *rand.Rand, model, ws string, step int) diffEdit {
	var files []string
	filepath.WalkDir(ws, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(ws, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel == ".pipe" {
			return fs.SkipDir
		}
		if d.Type().IsRegular() && (strings.HasPrefix(rel, "dist/") || strings.HasSuffix(rel, ".gen.ts")) {
			files = append(files, rel)
		}
		return nil
	})
	noop := diffEdit{what: "no output to change", apply: func(string) error { return nil }, workspaceOnly: true}
	if len(files) == 0 {
		return noop
	}
	sort.Strings(files)
	f := files[rng.Intn(len(files))]
	switch rng.Intn(3) {
	case 0:
		dir := path.Dir(f)
		// A package's own dist/ directory holds its targets' directories,
		// not outputs: a file put there belongs to no target.
		if !strings.HasPrefix(f, "dist/") {
			return noop
		}
		if _, err := os.Stat(filepath.Join(model, filepath.FromSlash(strings.TrimPrefix(dir, "dist/")), "BUILD.star")); err == nil {
			return noop
		}
		stray := fmt.Sprintf("%s/stray%d.txt", dir, step)
		e := editWrite("put a stray "+stray, stray, "stray\n")
		e.workspaceOnly = true
		return e
	case 1:
		e := editRemove("delete the output "+f, f)
		e.workspaceOnly = true
		return e
	}
	e := editWrite("edit the output "+f, f, "edited by hand\n")
	e.workspaceOnly = true
	return e
}

// Edit helpers: each works on whichever tree it is applied to.

func editWrite(what, rel, content string) diffEdit {
	return diffEdit{what: what, apply: func(dir string) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		mode := os.FileMode(0o644)
		if fi, err := os.Stat(p); err == nil {
			mode = fi.Mode().Perm()
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// Remove first so the mode of an existing file is kept explicitly,
		// not by the open of an existing file.
		os.Remove(p)
		return os.WriteFile(p, []byte(content), mode)
	}}
}

func editRemove(what, rel string) diffEdit {
	return diffEdit{what: what, apply: func(dir string) error {
		return os.Remove(filepath.Join(dir, filepath.FromSlash(rel)))
	}}
}

func editChmod(what, rel string, mode os.FileMode) diffEdit {
	return diffEdit{what: what, apply: func(dir string) error {
		return os.Chmod(filepath.Join(dir, filepath.FromSlash(rel)), mode)
	}}
}

func editReplace(what, rel string, re *regexp.Regexp, repl string) diffEdit {
	return diffEdit{what: what, apply: func(dir string) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		return os.WriteFile(p, re.ReplaceAllLiteral(b, []byte(repl)), fi.Mode().Perm())
	}}
}

// editMany applies several edits as one step (a rename touches every
// user of the renamed target).
func editMany(what string, edits ...diffEdit) diffEdit {
	return diffEdit{what: what, apply: func(dir string) error {
		for _, e := range edits {
			if err := e.apply(dir); err != nil {
				return err
			}
		}
		return nil
	}}
}

func readModel(model, rel string) string {
	b, _ := os.ReadFile(filepath.Join(model, filepath.FromSlash(rel)))
	return string(b)
}

func modelMode(model, rel string) os.FileMode {
	fi, err := os.Stat(filepath.Join(model, filepath.FromSlash(rel)))
	if err != nil {
		return 0
	}
	return fi.Mode().Perm()
}

func modelGlob(model, pattern string) []string {
	m, _ := filepath.Glob(filepath.Join(model, filepath.FromSlash(pattern)))
	var out []string
	for _, p := range m {
		rel, _ := filepath.Rel(model, p)
		out = append(out, filepath.ToSlash(rel))
	}
	sort.Strings(out)
	return out
}

var words = []string{"ada", "grace", "linus", "ken", "barbara", "edsger", "margaret", "dennis"}

// helloSubject is examples/hello: genrules, a macro, a tool script.
func helloSubject(t *testing.T) diffSubject {
	src := filepath.Join("..", "..", "examples", "hello")
	files := map[string]string{}
	var exec []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "dist" || rel == ".pipe" {
				return fs.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		if fi, err := d.Info(); err == nil && fi.Mode()&0o111 != 0 {
			exec = append(exec, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	louder := regexp.MustCompile(`louder[0-9]*`)
	suffix := regexp.MustCompile(`suffix = "[^"]*"`)
	sedExpr := regexp.MustCompile(`sed 's/\$\$/[^/]*/'`)
	title := regexp.MustCompile(`<title>[^<]*</title>|<h1>[^<]*</h1>`)
	n := 0
	return diffSubject{
		files:    files,
		exec:     exec,
		patterns: []string{"//..."},
		next: func(rng *rand.Rand, model string) diffEdit {
			n++
			w := words[rng.Intn(len(words))]
			names := modelGlob(model, "greeting/names/*.txt")
			switch rng.Intn(10) {
			case 0:
				if len(names) == 0 {
					break
				}
				f := names[rng.Intn(len(names))]
				return editWrite("edit "+f, f, w+"\n")
			case 1:
				f := fmt.Sprintf("greeting/names/n%d.txt", n)
				return editWrite("add "+f, f, w+"\n")
			case 2:
				if len(names) < 2 {
					break
				}
				f := names[rng.Intn(len(names))]
				return editRemove("delete "+f, f)
			case 3:
				mode := modelMode(model, "tools/frame.sh") ^ 0o111
				return editChmod(fmt.Sprintf("chmod %o tools/frame.sh", mode), "tools/frame.sh", mode)
			case 4:
				body := readModel(model, "tools/frame.sh")
				return editWrite("edit tools/frame.sh", "tools/frame.sh", title.ReplaceAllString(body, "<h1>"+w+"</h1>")+"# "+w+"\n")
			case 5:
				to := fmt.Sprintf("louder%d", n)
				return editMany("rename //shout:louder to "+to,
					editReplace("", "shout/BUILD.star", louder, to),
					editReplace("", "site/BUILD.star", louder, to))
			case 6:
				return editReplace("edit the shout macro", "tools/defs.star", sedExpr, "sed 's/$$/"+w+"%s/'")
			case 7:
				return editReplace("edit a suffix", "shout/BUILD.star", suffix, `suffix = "`+strings.Repeat("!", 1+rng.Intn(3))+w+`"`)
			case 8:
				if len(names) == 0 {
					break
				}
				f := names[rng.Intn(len(names))]
				if rng.Intn(2) == 0 {
					return editWrite("ignore "+f, "greeting/names/.gitignore", filepath.Base(f)+"\n")
				}
				return editWrite("ignore nothing", "greeting/names/.gitignore", "")
			}
			f := "greeting/BUILD.star"
			return editWrite("rewrite "+f+" unchanged", f, readModel(model, f))
		},
	}
}

// metadataSubject is a Python service: a python_bundle from a uv.lock and
// an api_metadata module written into the source tree.
func metadataSubject(t *testing.T) diffSubject {
	w := tinyWheel(t)
	m := newWheelMirror(t)
	m.serve(w, w.Data)
	app := pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(w)}}
	spec := func(ops []string) string {
		var paths []string
		for _, op := range ops {
			paths = append(paths, fmt.Sprintf(`"/%s": {"get": {"operationId": %q, "responses": {}}}`, op, op))
		}
		return `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {` + strings.Join(paths, ", ") + "}}\n"
	}
	files := map[string]string{
		"WORKSPACE.star":                     "workspace(name = \"t\")\n",
		"pyproject.toml":                     "[tool.uv.workspace]\nmembers = [\"packages/my-api\"]\n",
		"uv.lock":                            writeLock(app),
		"packages/my-api/pyproject.toml":     pyprojectOf(app.Deps),
		"packages/my-api/my_api/__init__.py": "",
		"packages/my-api/my_api/main.py":     "app = None\n",
		"packages/my-api/BUILD.star": `python_bundle(
    name = "bundle",
    module = "my_api",
    python_version = "3.11",
    architecture = "x86_64",
)
`,
		"packages/meta/openapi.json": spec([]string{"listItems"}),
		"packages/meta/BUILD.star":   "api_metadata(\n    name = \"meta\",\n    spec = \"openapi.json\",\n    out = \"src/generated/metadata.gen.ts\",\n)\n",
		".gitignore":                 "dist/\n.pipe/\npackages/meta/src/generated/\n",
	}
	out := regexp.MustCompile(`out = "[^"]*"`)
	n := 0
	return diffSubject{
		files:    files,
		patterns: []string{"//packages/my-api:bundle", "//packages/meta"},
		env:      []string{"PIPE_PYTHON_INDEX=" + m.srv.URL},
		next: func(rng *rand.Rand, model string) diffEdit {
			n++
			wd := words[rng.Intn(len(words))]
			mods := modelGlob(model, "packages/my-api/my_api/*.py")
			switch rng.Intn(7) {
			case 0:
				f := mods[rng.Intn(len(mods))]
				return editWrite("edit "+f, f, fmt.Sprintf("NAME = %q\n", wd))
			case 1:
				f := mods[rng.Intn(len(mods))]
				mode := modelMode(model, f) ^ 0o111
				return editChmod(fmt.Sprintf("chmod %o %s", mode, f), f, mode)
			case 2:
				f := fmt.Sprintf("packages/my-api/my_api/m%d.py", n)
				return editWrite("add "+f, f, "X = 1\n")
			case 3:
				if len(mods) < 3 {
					break
				}
				f := mods[rng.Intn(len(mods))]
				if strings.HasSuffix(f, "/main.py") || strings.HasSuffix(f, "/__init__.py") {
					break
				}
				return editRemove("delete "+f, f)
			case 4:
				to := fmt.Sprintf("src/generated/v%d/metadata.gen.ts", n)
				return editReplace("move api_metadata's out to "+to, "packages/meta/BUILD.star", out, `out = "`+to+`"`)
			case 5:
				ops := []string{"listItems"}
				for i := 0; i < 1+rng.Intn(3); i++ {
					ops = append(ops, words[rng.Intn(len(words))]+"Op")
				}
				return editWrite("edit the spec", "packages/meta/openapi.json", spec(ops))
			}
			f := "packages/my-api/my_api/main.py"
			return editWrite("rewrite "+f+" unchanged", f, readModel(model, f))
		},
	}
}

func TestDifferential(t *testing.T) {
	t.Run("hello", func(t *testing.T) {
		t.Parallel()
		steps, seed := diffParams(t, 40)
		runDifferential(t, helloSubject(t), steps, seed, diffPlain)
	})
	// The same edits with build snapshots consulted before every build.
	t.Run("hello-snapshot", func(t *testing.T) {
		t.Parallel()
		steps, seed := diffParams(t, 40)
		runDifferential(t, helloSubject(t), steps, seed, diffSnapshot)
	})
	// And through a server's change journal.
	t.Run("hello-server", func(t *testing.T) {
		t.Parallel()
		steps, seed := diffParams(t, 40)
		runDifferential(t, helloSubject(t), steps, seed, diffServer)
	})
	t.Run("python", func(t *testing.T) {
		t.Parallel()
		steps, seed := diffParams(t, 25)
		runDifferential(t, metadataSubject(t), steps, seed, diffPlain)
	})
}

// The helpers above must tell trees apart by mode and by stray files, or
// the differential test could not fail.
func TestSnapshotSeesModesAndStrays(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, map[string]string{"x.sh": "echo\n"}, []string{"x.sh"})
	writeTree(t, b, map[string]string{"x.sh": "echo\n"}, nil)
	if d := diffSnapshots(snapshot(t, a), snapshot(t, b)); !strings.Contains(d, "x.sh") {
		t.Errorf("a mode difference went unnoticed: %q", d)
	}
	writeTree(t, a, map[string]string{"dist/stale.txt": ""}, nil)
	if d := diffSnapshots(snapshot(t, a), snapshot(t, b)); !strings.Contains(d, "extra dist/stale.txt") {
		t.Errorf("a stray file went unnoticed: %q", d)
	}
	if err := os.MkdirAll(filepath.Join(b, ".pipe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, ".pipe", "state"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := snapshot(t, b)[".pipe/state"]; ok {
		t.Error(".pipe/ belongs to pipe's own state and must not be compared")
	}
}
