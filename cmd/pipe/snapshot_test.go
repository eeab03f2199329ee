package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
)

// snapshotFiles is a workspace with every kind of input a build snapshot
// must notice: a glob, a .gitignore, a loaded .star file, an environment
// variable analysis reads (action_env), and packages that depend on each
// other.
var snapshotFiles = map[string]string{
	"WORKSPACE.star": "workspace(name = \"snap\", action_env = [\"GREETING\"])\n",
	".gitignore":     "dist/\n.pipe/\n",
	"tools/defs.star": `SUFFIX = "!"

def shout(name, srcs):
    genrule(
        name = name,
        srcs = srcs,
        outs = [name + ".txt"],
        cmd = "cat $(SRCS) | tr a-z A-Z > $@ && echo '" + SUFFIX + "' >> $@",
    )
`,
	"lib/BUILD.star": `filegroup(
    name = "words",
    srcs = glob(["words/*.txt"]),
)

genrule(
    name = "joined",
    srcs = [":words"],
    outs = ["joined.txt"],
    cmd = "cat $(SRCS) > $@",
)
`,
	"lib/words/a.txt": "alpha\n",
	"lib/words/b.txt": "beta\n",
	"app/BUILD.star": `load("//tools:defs.star", "shout")

shout(name = "loud", srcs = ["//lib:joined"])

genrule(
    name = "hello",
    outs = ["hello.txt"],
    cmd = "echo \"$${GREETING:-unset}\" > $@",
)
`,
	"extra/BUILD.star": `genrule(
    name = "extra",
    outs = ["extra.txt"],
    cmd = "echo extra > $@",
)
`,
}

// settle waits until files written now are older than the racy window,
// so the next build can record (or trust) their stat.
func settle() {
	time.Sleep(time.Duration(engine.RacyWindow) + 50*time.Millisecond)
}

// primeSnapshot builds until a build is answered from the snapshot, so the
// next build consults one; it fails the test if none is.
func primeSnapshot(t *testing.T, ws *workspace, env []string) {
	t.Helper()
	for range 3 {
		settle()
		b := ws.buildEnv(t, env, "-v")
		if b.code != 0 {
			t.Fatalf("build: exit %d\n%s", b.code, b.stderr)
		}
		if strings.Contains(b.stderr, snapshotUsed) {
			if ran := b.labels("executed"); len(ran) > 0 {
				t.Fatalf("a build answered from the snapshot executed %q", ran)
			}
			return
		}
	}
	t.Fatal("no build was answered from the build snapshot")
}

// afterEdit builds once the snapshot is in place and edit has been made,
// and checks that the snapshot did not answer and that exactly want ran.
func afterEdit(t *testing.T, ws *workspace, env []string, edit func(), want ...string) build {
	t.Helper()
	primeSnapshot(t, ws, env)
	edit()
	b := ws.buildEnv(t, env, "-v")
	if b.code != 0 {
		t.Fatalf("build after the edit: exit %d\n%s", b.code, b.stderr)
	}
	if strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("the build snapshot answered a build after an edit:\n%s", b.stderr)
	}
	wantLabels(t, "executed", b.labels("executed"), want...)
	// A build of the changed part reads as the whole build.
	if sum := parseSummary(t, b.stderr); sum.Total != len(b.events) || sum.Executed != len(want) || sum.Cached != len(b.labels("cached")) {
		t.Fatalf("summary %+v, %d events\n%s", sum, len(b.events), b.stderr)
	}
	return b
}

func TestSnapshotAnswersNoop(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	primeSnapshot(t, ws, nil)
	// The answer reports what a no-op build reports.
	b := ws.buildOK(t)
	if len(b.events) != 4 || len(b.labels("cached")) != 4 {
		t.Fatalf("events of a no-op answered from the snapshot: %+v", b.events)
	}
	for _, ev := range b.events {
		if ev.Key == "" || len(ev.Outputs) != 1 {
			t.Errorf("event %+v: want its key and output", ev)
		}
	}
	// Off, the same no-op goes the long way.
	off := ws.buildEnv(t, []string{"PIPE_SNAPSHOT=0"}, "-v")
	if off.code != 0 || strings.Contains(off.stderr, snapshotUsed) || len(off.labels("cached")) != 4 {
		t.Fatalf("PIPE_SNAPSHOT=0: exit %d\n%s", off.code, off.stderr)
	}
	// Flags that ask for more than a no-op reports skip it.
	ex := ws.buildEnv(t, nil, "-v", "--explain")
	if ex.code != 0 || strings.Contains(ex.stderr, snapshotUsed) {
		t.Fatalf("--explain: exit %d\n%s", ex.code, ex.stderr)
	}
}

// snapshotEdit is an edit a build snapshot must notice: the actions that
// must run after it, and what the outputs must then hold.
type snapshotEdit struct {
	name  string
	edit  func(t *testing.T, ws *workspace)
	want  []string
	check func(t *testing.T, ws *workspace, b build)
}

// wantFile checks a workspace file's content.
func wantFile(rel, want string) func(t *testing.T, ws *workspace, b build) {
	return func(t *testing.T, ws *workspace, b build) {
		t.Helper()
		if got := ws.read(t, rel); got != want {
			t.Errorf("%s = %q, want %q", rel, got, want)
		}
	}
}

var snapshotEdits = []snapshotEdit{
	{
		name: "BUILD.star",
		edit: func(t *testing.T, ws *workspace) {
			ws.write(t, "extra/BUILD.star", strings.Replace(snapshotFiles["extra/BUILD.star"], "echo extra", "echo more", 1))
		},
		want:  []string{"//extra:extra"},
		check: wantFile("dist/extra/extra/extra.txt", "more\n"),
	},
	{
		name:  "new glob match",
		edit:  func(t *testing.T, ws *workspace) { ws.write(t, "lib/words/c.txt", "gamma\n") },
		want:  []string{"//lib:joined", "//app:loud"},
		check: wantFile("dist/app/loud/loud.txt", "ALPHA\nBETA\nGAMMA\n!\n"),
	},
	{
		name: "deleted package",
		edit: func(t *testing.T, ws *workspace) {
			if err := os.RemoveAll(ws.path("extra")); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, ws *workspace, b build) {
			if len(b.events) != 3 || ws.exists("dist/extra/extra/extra.txt") {
				t.Errorf("after deleting //extra: %d actions, extra.txt left: %t\n%s", len(b.events), ws.exists("dist/extra/extra/extra.txt"), b.stderr)
			}
		},
	},
	{
		name:  ".gitignore",
		edit:  func(t *testing.T, ws *workspace) { ws.write(t, ".gitignore", "dist/\n.pipe/\nb.txt\n") },
		want:  []string{"//lib:joined", "//app:loud"},
		check: wantFile("dist/lib/joined/joined.txt", "alpha\n"),
	},
	{
		name: "loaded .star",
		edit: func(t *testing.T, ws *workspace) {
			ws.write(t, "tools/defs.star", strings.Replace(snapshotFiles["tools/defs.star"], `SUFFIX = "!"`, `SUFFIX = "?"`, 1))
		},
		want:  []string{"//app:loud"},
		check: wantFile("dist/app/loud/loud.txt", "ALPHA\nBETA\n?\n"),
	},
	{
		// An edit that keeps the size and puts the old mtime back, as an
		// edit within the same clock tick would leave it, still changes
		// the ctime.
		name: "same-second edit",
		edit: func(t *testing.T, ws *workspace) {
			p := ws.path("lib/words/a.txt")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			ws.write(t, "lib/words/a.txt", "ALPHA\n")
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		},
		want:  []string{"//lib:joined", "//app:loud"},
		check: wantFile("dist/lib/joined/joined.txt", "ALPHA\nbeta\n"),
	},
	{
		name: "new package",
		edit: func(t *testing.T, ws *workspace) {
			ws.write(t, "more/deep/BUILD.star", strings.ReplaceAll(snapshotFiles["extra/BUILD.star"], "extra", "deep"))
		},
		want:  []string{"//more/deep:deep"},
		check: wantFile("dist/more/deep/deep/deep.txt", "deep\n"),
	},
	{
		// An output edited in place in dist/ is restored, not vouched for.
		name:  "output edited",
		edit:  func(t *testing.T, ws *workspace) { ws.write(t, "dist/lib/joined/joined.txt", "tampered\n") },
		check: wantFile("dist/lib/joined/joined.txt", "alpha\nbeta\n"),
	},
	{
		// A stray file in a target's dist/ directory goes, as on the long
		// way.
		name: "stray output",
		edit: func(t *testing.T, ws *workspace) { ws.write(t, "dist/app/loud/stray.txt", "stray\n") },
		check: func(t *testing.T, ws *workspace, b build) {
			if ws.exists("dist/app/loud/stray.txt") {
				t.Error("the stray file was kept")
			}
		},
	},
}

func TestSnapshotEdits(t *testing.T) {
	for _, e := range snapshotEdits {
		t.Run(e.name, func(t *testing.T) {
			ws := newWorkspace(t, snapshotFiles)
			ws.buildOK(t)
			b := afterEdit(t, ws, nil, func() { e.edit(t, ws) }, e.want...)
			e.check(t, ws, b)
		})
	}
}

func TestSnapshotEnvRead(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildEnvOK(t, []string{"GREETING=hi"})
	primeSnapshot(t, ws, []string{"GREETING=hi"})
	b := ws.buildEnv(t, []string{"GREETING=ho"}, "-v")
	if b.code != 0 || strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("GREETING changed: exit %d\n%s", b.code, b.stderr)
	}
	// action_env reaches every genrule's key.
	wantLabels(t, "executed", b.labels("executed"), "//app:hello", "//app:loud", "//extra:extra", "//lib:joined")
	if got := ws.read(t, "dist/app/hello/hello.txt"); got != "ho\n" {
		t.Errorf("hello.txt = %q", got)
	}
	// Unset is not the same as set.
	primeSnapshot(t, ws, []string{"GREETING=ho"})
	b = ws.buildEnv(t, nil, "-v")
	if b.code != 0 || strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("GREETING unset: exit %d\n%s", b.code, b.stderr)
	}
	if got := ws.read(t, "dist/app/hello/hello.txt"); got != "unset\n" {
		t.Errorf("hello.txt = %q", got)
	}
}

// An edit that keeps the size and puts the old mtime back, as an edit
// within the same clock tick would leave it, still changes the ctime.
func TestSnapshotSameSecondEdit(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	afterEdit(t, ws, nil, func() {
		p := ws.path("lib/words/a.txt")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		ws.write(t, "lib/words/a.txt", "ALPHA\n")
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}, "//lib:joined", "//app:loud")
	if got := ws.read(t, "dist/lib/joined/joined.txt"); got != "ALPHA\nbeta\n" {
		t.Errorf("joined.txt = %q", got)
	}
}

// A file that changed just before a build started is not trusted by its
// stat. A BUILD file (a graph input) so changed keeps that build from
// recording a snapshot; an action's source is recorded as untrusted, so the
// next build checks that action the long way (a cache hit) instead of
// answering from the snapshot.
func TestSnapshotRacyFile(t *testing.T) {
	t.Run("BUILD.star", func(t *testing.T) {
		ws := newWorkspace(t, snapshotFiles)
		ws.buildOK(t)
		primeSnapshot(t, ws, nil)
		ws.write(t, "extra/BUILD.star", snapshotFiles["extra/BUILD.star"]+"\n")
		b := ws.buildEnv(t, nil, "-v")
		if b.code != 0 || !strings.Contains(b.stderr, "no build snapshot") {
			t.Fatalf("a build right after an edit: exit %d, want it to record no snapshot\n%s", b.code, b.stderr)
		}
		if _, err := os.Stat(filepath.Join(ws.Root, ".pipe", "snapshot")); err == nil {
			t.Fatal("a snapshot was recorded over a racy BUILD file")
		}
	})
	t.Run("source", func(t *testing.T) {
		ws := newWorkspace(t, snapshotFiles)
		ws.buildOK(t)
		primeSnapshot(t, ws, nil)
		ws.write(t, "lib/words/a.txt", "alpha2\n")
		if b := ws.buildEnv(t, nil, "-v"); b.code != 0 {
			t.Fatalf("exit %d\n%s", b.code, b.stderr)
		}
		b := ws.buildEnv(t, nil, "-v")
		if b.code != 0 || strings.Contains(b.stderr, snapshotUsed) || !strings.Contains(b.stderr, "downstream of a change") {
			t.Fatalf("the build after one that read a racy source: exit %d, want the long way for its action\n%s", b.code, b.stderr)
		}
		wantLabels(t, "executed", b.labels("executed"))
		wantLabels(t, "cached", b.labels("cached"), "//app:hello", "//app:loud", "//extra:extra", "//lib:joined")
	})
}

// A damaged snapshot is no snapshot.
func TestSnapshotDamaged(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	primeSnapshot(t, ws, nil)
	p := filepath.Join(ws.Root, ".pipe", "snapshot")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got := ws.buildEnv(t, nil, "-v")
	if got.code != 0 || strings.Contains(got.stderr, snapshotUsed) || len(got.labels("cached")) != 4 {
		t.Fatalf("exit %d\n%s", got.code, got.stderr)
	}
}
