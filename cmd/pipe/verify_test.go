package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clockWorkspace has one deterministic genrule and one that writes the
// clock, the kind of action whose cached result is a lie.
func clockWorkspace(t *testing.T) *workspace {
	return newWorkspace(t, map[string]string{
		"BUILD.star": `genrule(
    name = "stable",
    outs = ["stable.txt"],
    cmd = "echo stable > $@",
)

genrule(
    name = "clock",
    outs = ["clock.txt"],
    cmd = "date +%s%N > $@",
)
`,
	})
}

func TestVerifyReportsNondeterministicAction(t *testing.T) {
	ws := clockWorkspace(t)
	ws.buildOK(t)
	cached := ws.read(t, "dist/clock/clock.txt")

	b := ws.build(t, "--verify")
	if b.code != 1 {
		t.Fatalf("pipe build --verify: exit %d, want 1\n%s", b.code, b.stderr)
	}
	for _, want := range []string{"//:clock", "not deterministic", "dist/clock/clock.txt", "--verify"} {
		if !strings.Contains(b.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, b.stderr)
		}
	}
	if strings.Contains(b.stderr, "//:stable (Genrule) is not deterministic") {
		t.Errorf("the deterministic action was reported:\n%s", b.stderr)
	}
	if got := b.labels("failed"); !equalStrings(got, []string{"//:clock"}) {
		t.Errorf("failed %q, want [//:clock]", got)
	}
	// Verifying leaves the cached outputs in place.
	if got := ws.read(t, "dist/clock/clock.txt"); got != cached {
		t.Errorf("--verify replaced the cached output %q with %q", cached, got)
	}

	// The environment variable does the same.
	b = ws.buildEnv(t, []string{"PIPE_CACHE_VERIFY=1"}, "//:stable")
	if b.code != 0 {
		t.Fatalf("PIPE_CACHE_VERIFY=1 of the deterministic target: exit %d\n%s", b.code, b.stderr)
	}
	b = ws.buildEnv(t, []string{"PIPE_CACHE_VERIFY=1"}, "//:clock")
	if b.code != 1 || !strings.Contains(b.stderr, "not deterministic") {
		t.Errorf("PIPE_CACHE_VERIFY=1: exit %d, want 1 naming the action\n%s", b.code, b.stderr)
	}
}

func TestVerifyPassesDeterministicWorkspace(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	before := ws.read(t, "dist/site/site/index.html")
	b := ws.buildOK(t, "--verify")
	if got := len(b.labels("cached")); got != 4 {
		t.Errorf("--verify: %d cached, want 4", got)
	}
	if got := ws.read(t, "dist/site/site/index.html"); got != before {
		t.Errorf("output changed under --verify")
	}
}

// When a result must be made again (its blob was trimmed away) and comes
// out different, pipe says so instead of replacing it silently.
func TestReplacedResultWarns(t *testing.T) {
	ws := clockWorkspace(t)
	ws.buildOK(t)
	if err := os.RemoveAll(filepath.Join(ws.Cache, "cas")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(ws.path("dist"))
	b := ws.buildOK(t)
	if !strings.Contains(b.stderr, "WARNING") || !strings.Contains(b.stderr, "//:clock (Genrule) is not deterministic") {
		t.Errorf("no warning about the replaced result:\n%s", b.stderr)
	}
	if strings.Contains(b.stderr, "//:stable (Genrule) is not deterministic") {
		t.Errorf("the deterministic action was reported:\n%s", b.stderr)
	}
}
