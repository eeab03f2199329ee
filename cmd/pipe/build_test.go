package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chainFiles is a workspace with two chains that meet:
//
//	a/in.txt -> //a:upper -> //a:first --\
//	                                      >-> //b:both
//	b/b.txt  -> //b:other ---------------/
//
// //a:first keeps only the first line of //a:upper, so editing the second
// line of a/in.txt changes //a:upper's output but not //a:first's.
var chainFiles = map[string]string{
	"a/in.txt": "alpha\nbeta\n",
	"a/BUILD.star": `genrule(
    name = "upper",
    srcs = ["in.txt"],
    outs = ["upper.txt"],
    cmd = "tr a-z A-Z < $< > $@",
)

genrule(
    name = "first",
    srcs = [":upper"],
    outs = ["first.txt"],
    cmd = "head -n 1 $< > $@",
)
`,
	"b/b.txt": "bee\n",
	"b/BUILD.star": `genrule(
    name = "other",
    srcs = ["b.txt"],
    outs = ["other.txt"],
    cmd = "cat $< > $@",
)

genrule(
    name = "both",
    srcs = ["//a:first", ":other"],
    outs = ["both.txt"],
    cmd = "cat $(SRCS) > $@",
)
`,
}

var chainLabels = []string{"//a:first", "//a:upper", "//b:both", "//b:other"}

func checkChainOutputs(t *testing.T, ws *workspace, upper, first string) {
	t.Helper()
	for path, want := range map[string]string{
		"dist/a/upper/upper.txt": upper,
		"dist/a/first/first.txt": first,
		"dist/b/other/other.txt": "bee\n",
		"dist/b/both/both.txt":   first + "bee\n",
	} {
		if got := ws.read(t, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}

func TestNoOpBuildExecutesNothing(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)

	b := ws.buildOK(t)
	wantLabels(t, "first build: executed", b.labels("executed"), chainLabels...)
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")

	for i := range 2 {
		b = ws.buildOK(t)
		wantLabels(t, fmt.Sprintf("no-op build %d: executed", i+1), b.labels("executed"))
		wantLabels(t, fmt.Sprintf("no-op build %d: cached", i+1), b.labels("cached"), chainLabels...)
		if s := parseSummary(t, b.stderr); s != (summary{Total: 4, Executed: 0, Cached: 4, Failed: 0}) {
			t.Errorf("no-op build %d: summary %+v, want 4 actions: 0 executed, 4 cached, 0 failed", i+1, s)
		}
		for _, ev := range b.events {
			if ev.Restored != 0 {
				t.Errorf("no-op build %d: %s restored %d outputs; nothing changed", i+1, ev.Label, ev.Restored)
			}
			if len(ev.Key) != 64 {
				t.Errorf("no-op build %d: %s has key %q, want a sha256", i+1, ev.Label, ev.Key)
			}
		}
	}
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
}

func TestEditRebuildsExactlyDownstream(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	first := ws.buildOK(t)
	keys := map[string]string{}
	for _, ev := range first.events {
		keys[ev.Label] = ev.Key
	}

	// Editing the first line changes every output downstream of a/in.txt.
	ws.write(t, "a/in.txt", "gamma\nbeta\n")
	b := ws.buildOK(t)
	wantLabels(t, "after edit: executed", b.labels("executed"), "//a:upper", "//a:first", "//b:both")
	wantLabels(t, "after edit: cached", b.labels("cached"), "//b:other")
	checkChainOutputs(t, ws, "GAMMA\nBETA\n", "GAMMA\n")

	// Reverting is a pure cache hit: the old keys come back.
	ws.write(t, "a/in.txt", "alpha\nbeta\n")
	b = ws.buildOK(t)
	wantLabels(t, "after revert: executed", b.labels("executed"))
	wantLabels(t, "after revert: cached", b.labels("cached"), chainLabels...)
	for _, ev := range b.events {
		if ev.Key != keys[ev.Label] {
			t.Errorf("after revert: %s has key %s, want the first build's %s", ev.Label, ev.Key, keys[ev.Label])
		}
	}
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
}

// An action whose inputs' contents did not change is not re-run, even when
// the action producing them re-ran (early cutoff).
func TestUnchangedIntermediateOutputStopsRebuild(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	ws.buildOK(t)

	ws.write(t, "a/in.txt", "alpha\ndelta\n")
	b := ws.buildOK(t)
	wantLabels(t, "executed", b.labels("executed"), "//a:upper", "//a:first")
	wantLabels(t, "cached", b.labels("cached"), "//b:both", "//b:other")
	checkChainOutputs(t, ws, "ALPHA\nDELTA\n", "ALPHA\n")
}

// A source edit that keeps the file's size is still seen: pipe must hash,
// not trust size and mtime alone.
func TestSameSizeEditIsSeen(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	ws.buildOK(t)
	ws.write(t, "b/b.txt", "bea\n")
	b := ws.buildOK(t)
	wantLabels(t, "executed", b.labels("executed"), "//b:other", "//b:both")
	if got := ws.read(t, "dist/b/both/both.txt"); got != "ALPHA\nbea\n" {
		t.Errorf("both.txt = %q", got)
	}
}

func TestEditedOrDeletedOutputIsRestored(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	ws.buildOK(t)

	cases := []struct {
		name   string
		change func(p string) error
	}{
		{"edited", func(p string) error { return os.WriteFile(p, []byte("hand-edited\n"), 0o644) }},
		{"edited, same size", func(p string) error { return os.WriteFile(p, []byte("ALPHA\nBETx\n"), 0o644) }},
		{"deleted", os.Remove},
	}
	for _, c := range cases {
		if err := c.change(ws.path("dist/a/upper/upper.txt")); err != nil {
			t.Fatal(err)
		}
		b := ws.buildOK(t)
		wantLabels(t, c.name+": executed", b.labels("executed"))
		ev := b.event(t, "//a:upper")
		if ev.Status != "cached" || ev.Restored != 1 {
			t.Errorf("%s: //a:upper status %s restored %d, want cached with 1 restored", c.name, ev.Status, ev.Restored)
		}
		for _, other := range []string{"//a:first", "//b:both", "//b:other"} {
			if ev := b.event(t, other); ev.Restored != 0 {
				t.Errorf("%s: %s restored %d outputs, want 0", c.name, other, ev.Restored)
			}
		}
		checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
	}
}

func blobPath(ws *workspace, content string) string {
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(ws.Cache, "cas", h[:2], h)
}

func TestCorruptBlobIsDetectedAndRebuilt(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	ws.buildOK(t)

	blob := blobPath(ws, "ALPHA\nBETA\n")
	fi, err := os.Stat(blob)
	if err != nil {
		t.Fatalf("the output of //a:upper is not in the CAS: %v", err)
	}
	if fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("CAS blob mode %v, want read-only", fi.Mode().Perm())
	}
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20 // "ALPHA" -> "aLPHA": same size, wrong content
	if err := os.WriteFile(blob, b, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ws.path("dist/a/upper/upper.txt")); err != nil {
		t.Fatal(err)
	}

	res := ws.buildOK(t)
	if ev := res.event(t, "//a:upper"); ev.Status != "executed" {
		t.Errorf("//a:upper status %s, want executed: its cached output is corrupt", ev.Status)
	}
	wantLabels(t, "executed", res.labels("executed"), "//a:upper")
	wantLabels(t, "cached", res.labels("cached"), "//a:first", "//b:both", "//b:other")
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
	if !strings.Contains(res.stderr, "WARNING: //a:upper: the cache held a corrupt copy of an output") {
		t.Errorf("no warning about the corrupt blob in:\n%s", res.stderr)
	}

	// The CAS holds the right bytes again: deleting the output once more is
	// a plain restore.
	if got, err := os.ReadFile(blob); err != nil || string(got) != "ALPHA\nBETA\n" {
		t.Errorf("blob after rebuild = %q, %v; want the correct content", got, err)
	}
	if err := os.Remove(ws.path("dist/a/upper/upper.txt")); err != nil {
		t.Fatal(err)
	}
	res = ws.buildOK(t)
	if ev := res.event(t, "//a:upper"); ev.Status != "cached" || ev.Restored != 1 {
		t.Errorf("//a:upper status %s restored %d, want cached with 1 restored", ev.Status, ev.Restored)
	}
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
}

func TestCorruptActionCacheEntryIsAMiss(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, chainFiles)
	first := ws.buildOK(t)
	key := first.event(t, "//b:other").Key
	entry := filepath.Join(ws.Cache, "ac", key[:2], key)
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatalf("no action cache entry for //b:other: %v", err)
	}
	os.Chmod(entry, 0o644)
	if err := os.WriteFile(entry, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	res := ws.buildOK(t)
	wantLabels(t, "executed", res.labels("executed"), "//b:other")
	checkChainOutputs(t, ws, "ALPHA\nBETA\n", "ALPHA\n")
}

func TestKillDuringBuildLeavesNoDebris(t *testing.T) {
	t.Parallel()
	// Outside the workspace: the test talks to the action through it, which
	// only --sandbox=none allows (sandbox_test.go kills pipe in the sandbox).
	ctl := t.TempDir()
	pidFile := filepath.Join(ctl, "pid")
	gate := filepath.Join(ctl, "gate")
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": fmt.Sprintf(`genrule(
    name = "fast",
    outs = ["fast.txt"],
    cmd = "echo fast > $@",
)

genrule(
    name = "slow",
    srcs = [":fast"],
    outs = ["slow.txt"],
    # Writes a partial output, then waits (at most 3s) for the test.
    cmd = "echo partial > $@; echo $$$$ > %s; i=0; while [ ! -e %s ] && [ $$i -lt 30 ]; do sleep 0.1; i=$$((i+1)); done; cat $< > $@; echo slow >> $@",
)
`, pidFile, gate),
	})

	cmd := pipeCmd(ws, "build", "--sandbox=none")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until //a:slow is running.
	var actionPid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			actionPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("//a:slow never started\nstderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The action's process group outlives pipe; end it.
	if actionPid > 0 {
		syscall.Kill(-actionPid, syscall.SIGKILL)
	}

	if got := listFiles(t, ws.path("dist")); !equalStrings(got, []string{"a/fast/fast.txt"}) {
		t.Errorf("dist/ after kill holds %q, want only a/fast/fast.txt (no partial output)", got)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := ws.buildOK(t, "--sandbox=none")
	wantLabels(t, "executed", b.labels("executed"), "//a:slow")
	wantLabels(t, "cached", b.labels("cached"), "//a:fast")
	if got := ws.read(t, "dist/a/slow/slow.txt"); got != "fast\nslow\n" {
		t.Errorf("slow.txt = %q, want %q", got, "fast\nslow\n")
	}
	if got := listFiles(t, ws.path("dist")); !equalStrings(got, []string{"a/fast/fast.txt", "a/slow/slow.txt"}) {
		t.Errorf("dist/ holds %q, want exactly the two outputs", got)
	}
	if got := listFiles(t, ws.path(".pipe/sandbox")); len(got) != 0 {
		t.Errorf(".pipe/sandbox holds %q after a successful build", got)
	}
	if got := listFiles(t, filepath.Join(ws.Cache, "tmp")); len(got) != 0 {
		t.Errorf("cache tmp/ holds %q", got)
	}
}

func TestConcurrentBuildsSerialize(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": `genrule(
    name = "one",
    outs = ["one.txt"],
    cmd = "sleep 0.3; echo one > $@",
)

genrule(
    name = "two",
    outs = ["two.txt"],
    cmd = "sleep 0.3; echo two > $@",
)

genrule(
    name = "both",
    srcs = [":one", ":two"],
    outs = ["both.txt"],
    cmd = "cat $(SRCS) > $@",
)
`,
	})
	evFiles := []string{filepath.Join(t.TempDir(), "events.jsonl"), filepath.Join(t.TempDir(), "events.jsonl")}
	stderrs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	done := make(chan int, 2)
	for i := range 2 {
		go func() {
			cmd := pipeCmd(ws, "build", "--events", evFiles[i])
			cmd.Stderr = &stderrs[i]
			errs[i] = cmd.Run()
			done <- i
		}()
	}
	<-done
	<-done
	executed, cached := 0, 0
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("pipe build: %v\nstderr:\n%s", errs[i], stderrs[i].String())
			continue
		}
		evs := readEvents(t, evFiles[i])
		s := parseSummary(t, stderrs[i].String())
		if s.Total != 3 || s.Failed != 0 || len(evs) != 3 {
			t.Errorf("summary %+v with %d events, want 3 actions, none failed", s, len(evs))
		}
		executed += s.Executed
		cached += s.Cached
		t.Logf("build %d stderr:\n%s", i, stderrs[i].String())
	}
	// One process ran everything, the other, after waiting for the lock,
	// found everything cached. Without the lock both would execute.
	if executed != 3 || cached != 3 {
		t.Errorf("the two builds executed %d and cached %d actions, want 3 and 3", executed, cached)
	}
	if got := ws.read(t, "dist/a/both/both.txt"); got != "one\ntwo\n" {
		t.Errorf("both.txt = %q", got)
	}
	if got := listFiles(t, ws.path("dist")); !equalStrings(got, []string{"a/both/both.txt", "a/one/one.txt", "a/two/two.txt"}) {
		t.Errorf("dist/ holds %q", got)
	}
}

func TestUndeclaredInputFails(t *testing.T) {
	t.Parallel()
	run := func(srcs string) (*workspace, build) {
		ws := newWorkspace(t, map[string]string{
			"a/other.txt": "secret\n",
			"a/in.txt":    "in\n",
			"a/BUILD.star": fmt.Sprintf(`genrule(
    name = "g",
    srcs = [%s],
    outs = ["o.txt"],
    cmd = "cat a/in.txt a/other.txt > $@",
)
`, srcs),
		})
		return ws, ws.build(t)
	}

	// Declared, the command sees the file.
	ws, b := run(`"in.txt", "other.txt"`)
	if b.code != 0 {
		t.Fatalf("with other.txt declared: exit %d\n%s", b.code, b.stderr)
	}
	if got := ws.read(t, "dist/a/g/o.txt"); got != "in\nsecret\n" {
		t.Errorf("o.txt = %q", got)
	}

	// Undeclared, it does not, though it is in the package.
	ws, b = run(`"in.txt"`)
	if b.code != 1 {
		t.Errorf("with other.txt undeclared: exit %d, want 1\n%s", b.code, b.stderr)
	}
	for _, want := range []string{
		"FAIL //a:g (Genrule): command exited with status 1\n",
		"a/other.txt: No such file or directory\n",
		"failed: //a:g\n",
	} {
		if !strings.Contains(b.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
		}
	}
	if s := parseSummary(t, b.stderr); s != (summary{Total: 1, Failed: 1}) {
		t.Errorf("summary %+v, want 1 failed", s)
	}
	if ev := b.event(t, "//a:g"); ev.Status != "failed" || ev.Error != "command exited with status 1" {
		t.Errorf("event %+v, want failed with its error", ev)
	}
	if got := listFiles(t, ws.path("dist")); len(got) != 0 {
		t.Errorf("a failed build left %q in dist/", got)
	}
}

// keepGoingFiles has a failing genrule and an independent slow good one,
// each with a dependent.
var keepGoingFiles = map[string]string{
	"a/BUILD.star": `genrule(
    name = "bad",
    outs = ["bad.txt"],
    cmd = "echo broken >&2; exit 3",
)

genrule(
    name = "after_bad",
    srcs = [":bad"],
    outs = ["after_bad.txt"],
    cmd = "cat $< > $@",
)

genrule(
    name = "good",
    outs = ["good.txt"],
    cmd = "sleep 0.5; echo good > $@",
)

genrule(
    name = "after_good",
    srcs = [":good"],
    outs = ["after_good.txt"],
    cmd = "cat $< > $@",
)
`,
}

func TestKeepGoing(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, keepGoingFiles)
	b := ws.build(t, "--keep-going", "-j", "2")
	if b.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", b.code, b.stderr)
	}
	wantLabels(t, "failed", b.labels("failed"), "//a:bad")
	wantLabels(t, "executed", b.labels("executed"), "//a:good", "//a:after_good")
	wantLabels(t, "skipped", b.labels("skipped"), "//a:after_bad")
	if s := parseSummary(t, b.stderr); s != (summary{Total: 4, Executed: 2, Failed: 1}) {
		t.Errorf("summary %+v", s)
	}
	for _, want := range []string{"FAIL //a:bad (Genrule): command exited with status 3\n  $ echo broken >&2; exit 3\n  broken\n", "failed: //a:bad\n"} {
		if !strings.Contains(b.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
		}
	}
	if got := ws.read(t, "dist/a/after_good/after_good.txt"); got != "good\n" {
		t.Errorf("after_good.txt = %q", got)
	}
	if ws.exists("dist/a/bad") || ws.exists("dist/a/after_bad") {
		t.Errorf("dist/ holds outputs of failed or skipped targets: %q", listFiles(t, ws.path("dist")))
	}
}

func TestStopsAtFirstFailure(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, keepGoingFiles)
	b := ws.build(t, "-j", "2")
	if b.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", b.code, b.stderr)
	}
	wantLabels(t, "failed", b.labels("failed"), "//a:bad")
	// //a:good was already running when //a:bad failed; it may finish, but
	// nothing starts after the failure.
	skipped := b.labels("skipped")
	if st := b.event(t, "//a:good").Status; st == "skipped" {
		wantLabels(t, "skipped", skipped, "//a:after_bad", "//a:after_good", "//a:good")
	} else {
		wantLabels(t, "skipped", skipped, "//a:after_bad", "//a:after_good")
	}
	if ws.exists("dist/a/after_good") {
		t.Errorf("the build went on after a failure without --keep-going: %q", listFiles(t, ws.path("dist")))
	}
	if want := fmt.Sprintf("%d actions not run: a dependency failed or the build stopped\n", len(skipped)); !strings.Contains(b.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
	}
	if s := parseSummary(t, b.stderr); s.Failed != 1 || s.Total != 4 {
		t.Errorf("summary %+v, want 4 actions, 1 failed", s)
	}
}

func TestHelloExample(t *testing.T) {
	t.Parallel()
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	b := ws.buildOK(t)
	wantLabels(t, "executed", b.labels("executed"), "//greeting:greeting", "//shout:loud", "//shout:louder", "//site:site")
	want := `<!doctype html>
<title>hello</title>
<pre>
hello, world
hello, pipe
HELLO, WORLD!!!
HELLO, PIPE!!!
</pre>
`
	if got := ws.read(t, "dist/site/site/index.html"); got != want {
		t.Errorf("index.html =\n%s\nwant\n%s", got, want)
	}
	if got := ws.read(t, "dist/shout/louder/louder.txt"); got != "HELLO, WORLD!!!\nHELLO, PIPE!!!\n" {
		t.Errorf("louder.txt = %q", got)
	}
	b = ws.buildOK(t)
	wantLabels(t, "second build: executed", b.labels("executed"))

	// Changing the tool re-runs only the target that uses it.
	frame := ws.read(t, "tools/frame.sh")
	ws.write(t, "tools/frame.sh", strings.Replace(frame, "<pre>", "<pre class=x>", 1))
	b = ws.buildOK(t)
	wantLabels(t, "after tool edit: executed", b.labels("executed"), "//site:site")
	if got := ws.read(t, "dist/site/site/index.html"); !strings.Contains(got, "<pre class=x>\nhello, world\n") {
		t.Errorf("index.html after tool edit =\n%s", got)
	}
}

// TestPackageCacheSeesChanges: pipe skips evaluating a BUILD.star whose
// inputs did not change (.pipe/packages). Each step arms that cache (waits
// out its 200ms racy window, then checks a build evaluates nothing), makes
// one change a stale cache would miss, and checks the next build sees it.
// print() in BUILD.star shows when the package is evaluated.
func TestPackageCacheSeesChanges(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"tools/BUILD.star":   "",
		"tools/defs.star":    "load(\"//tools:consts.star\", \"END\")\n\nSUFFIX = END\n",
		"tools/consts.star":  "END = \"\"\n",
		"a/names/.gitignore": "# nothing yet\n",
		"a/BUILD.star": `load("//tools:defs.star", "SUFFIX")

print("evaluating //a")

filegroup(
    name = "names",
    srcs = glob(["names/**/*.txt"]),
)

genrule(
    name = "g",
    srcs = [":names"],
    outs = ["o.txt"],
    cmd = "cat $(SRCS) > $@" + SUFFIX,
)
`,
		"a/names/x.txt": "x\n",
	})

	const evaluated = "DEBUG a/BUILD.star:3:6: evaluating //a\n"
	arm := func(step string) {
		t.Helper()
		time.Sleep(250 * time.Millisecond)
		ws.buildOK(t)
		if b := ws.buildOK(t); strings.Contains(b.stderr, evaluated) {
			t.Fatalf("before %s: a build of an unchanged workspace evaluated //a again; is the package cache in use?\n%s", step, b.stderr)
		}
	}
	check := func(step, want string) {
		t.Helper()
		b := ws.buildOK(t)
		if !strings.Contains(b.stderr, evaluated) {
			t.Errorf("%s: //a was not re-evaluated\n%s", step, b.stderr)
		}
		if got := ws.read(t, "dist/a/g/o.txt"); got != want {
			t.Errorf("%s: o.txt = %q, want %q", step, got, want)
		}
	}
	steps := []struct {
		name   string
		change func()
		want   string
	}{
		{"new file in a new globbed directory", func() { ws.write(t, "a/names/sub/y.txt", "y\n") }, "y\nx\n"},
		{"new file in a globbed sub-directory", func() { ws.write(t, "a/names/sub/z.txt", "z\n") }, "y\nz\nx\n"},
		// Rewriting a file in place leaves its directory's mtime alone.
		{".gitignore edited to hide a globbed file", func() { ws.write(t, "a/names/.gitignore", "sub/z.txt\n") }, "y\nx\n"},
		{"globbed file deleted", func() { os.Remove(ws.path("a/names/sub/y.txt")) }, "x\n"},
		{"edit of a .star file loaded by a loaded file", func() { ws.write(t, "tools/consts.star", "END = \"; echo end >> $@\"\n") }, "x\nend\n"},
		{"edit of a loaded .star file", func() {
			ws.write(t, "tools/defs.star", "load(\"//tools:consts.star\", \"END\")\n\nSUFFIX = END.replace(\"end\", \"fin\")\n")
		}, "x\nfin\n"},
		{"new file the glob does not match", func() { ws.write(t, "a/names/w.TXT", "w\n") }, "x\nfin\n"},
		{"same-size edit of BUILD.star", func() {
			ws.write(t, "a/BUILD.star", strings.Replace(ws.read(t, "a/BUILD.star"), `"names/**/*.txt"`, `"names/**/*.TXT"`, 1))
		}, "w\nfin\n"},
		{"new file in a new sub-directory", func() { ws.write(t, "a/names/v/v.TXT", "v\n") }, "v\nw\nfin\n"},
		{"sub-directory becomes a package", func() { ws.write(t, "a/names/v/BUILD.star", "") }, "w\nfin\n"},
	}
	for _, s := range steps {
		arm(s.name)
		s.change()
		check(s.name, s.want)
	}
}

// TestInterrupt: Ctrl-C stops the build with exit 130, kills the running
// command's whole process tree, and leaves no partial output; the next build
// finishes the work.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	// Outside the workspace, which only --sandbox=none lets the command
	// write (sandbox_test.go kills pipe in the sandbox).
	ctl := t.TempDir()
	pidFile := filepath.Join(ctl, "pid")
	survivor := filepath.Join(ctl, "survivor")
	gate := filepath.Join(ctl, "gate")
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": fmt.Sprintf(`genrule(
    name = "slow",
    outs = ["slow.txt"],
    # A background child that outlives the shell unless its group is killed.
    cmd = "echo partial > $@; if [ ! -e %[3]s ]; then (sleep 0.5; touch %[2]s) & fi; echo $$$$ > %[1]s; i=0; while [ ! -e %[3]s ] && [ $$i -lt 50 ]; do sleep 0.1; i=$$((i+1)); done; echo done > $@",
)
`, pidFile, survivor, gate),
	})
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := pipeCmd(ws, "build", "--sandbox=none", "--events", evFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("//a:slow never started\nstderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waitErr := cmd.Wait()
	if code := exitCode(t, waitErr); code != 130 {
		t.Errorf("exit %d after Ctrl-C, want 130", code)
	}
	if !strings.Contains(stderr.String(), "pipe: interrupted; finished outputs are kept, the rest will build next time\n") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if evs := readEvents(t, evFile); len(evs) != 1 || evs[0].Status != "skipped" {
		t.Errorf("events %+v, want //a:slow skipped", evs)
	}
	if ws.exists("dist") {
		t.Errorf("an interrupted build left %q in dist/", listFiles(t, ws.path("dist")))
	}
	time.Sleep(time.Second)
	if _, err := os.Stat(survivor); err == nil {
		t.Error("a process the interrupted action started kept running")
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := ws.buildOK(t, "--sandbox=none")
	wantLabels(t, "executed", b.labels("executed"), "//a:slow")
	if got := ws.read(t, "dist/a/slow/slow.txt"); got != "done\n" {
		t.Errorf("slow.txt = %q", got)
	}
}
