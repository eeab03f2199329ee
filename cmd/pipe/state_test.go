package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// stateLine is what -v reports about the state files a build used.
var stateLine = regexp.MustCompile(`state: file digests (\d+) read, (\d+) (appended|rewritten); packages (\d+) read, (\d+) (appended|rewritten); ledger (\d+) BUILD.star statted`)

type stateUse struct {
	digestsRead, digestsWritten   int
	packagesRead, packagesWritten int
	rewritten                     bool
	buildStats                    int
}

func parseState(t *testing.T, stderr string) stateUse {
	t.Helper()
	m := stateLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no state line in -v output:\n%s", stderr)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return stateUse{n(1), n(2), n(4), n(5), m[3] == "rewritten" || m[6] == "rewritten", n(7)}
}

// One edited source file in a workspace of 40 packages: the build after it
// (answered in part by the snapshot) reads and writes the cache entries of
// the chain it ran, not of the whole workspace, and stats no BUILD.star to
// reconcile the ledger.
func TestOneEditTouchesOnlyItsEntries(t *testing.T) {
	const n = 40
	files := map[string]string{"WORKSPACE.star": `workspace(name = "w")` + "\n"}
	for i := range n {
		dep := ""
		if i%10 != 0 {
			dep = fmt.Sprintf(`"//p%d:gen", `, i-1)
		}
		files[fmt.Sprintf("p%d/BUILD.star", i)] = fmt.Sprintf(`genrule(
    name = "gen",
    srcs = [%s"in.txt"],
    outs = ["out.txt"],
    cmd = "cat $(SRCS) > $(OUTS)",
)
`, dep)
		files[fmt.Sprintf("p%d/in.txt", i)] = fmt.Sprintf("input %d\n", i)
	}
	ws := newWorkspace(t, files)
	ws.buildOK(t)
	primeSnapshot(t, ws, nil)
	// p25 heads nothing: p25…p29 run (five actions).
	ws.write(t, "p25/in.txt", "edited\n")
	settle()
	b := ws.buildEnv(t, nil, "-v")
	if b.code != 0 {
		t.Fatalf("build after the edit: exit %d\n%s", b.code, b.stderr)
	}
	wantLabels(t, "executed", b.labels("executed"), "//p25:gen", "//p26:gen", "//p27:gen", "//p28:gen", "//p29:gen")
	st := parseState(t, b.stderr)
	// Five actions with two inputs each (one source, one output of the
	// one before) and an output each: a few entries per action, not one
	// per file of the workspace (80); the packages of its chain of ten
	// (the five that ran and those they depend on), not all 40.
	if st.rewritten || st.digestsRead > 20 || st.digestsWritten > 12 || st.packagesRead > 10 || st.packagesWritten != 0 || st.buildStats != 0 {
		t.Fatalf("one edit touched %+v\n%s", st, b.stderr)
	}
	if st.digestsWritten == 0 || st.packagesRead == 0 {
		t.Fatalf("one edit read or wrote nothing (%+v): the test measures nothing\n%s", st, b.stderr)
	}
}

// A build of part of the snapshot's graph that fails leaves the snapshot
// withdrawn: the next build takes the long way, neither answered nor
// partly built from it.
func TestSnapshotWithdrawnByFailedPart(t *testing.T) {
	ws := newWorkspace(t, map[string]string{
		"WORKSPACE.star": `workspace(name = "w")` + "\n",
		"a/BUILD.star":   `genrule(name = "a", srcs = ["in.txt"], outs = ["out.txt"], cmd = "! grep -q fail $(SRCS) && cp $(SRCS) $(OUTS)")` + "\n",
		"a/in.txt":       "ok\n",
		"b/BUILD.star":   `genrule(name = "b", srcs = ["in.txt"], outs = ["out.txt"], cmd = "cp $(SRCS) $(OUTS)")` + "\n",
		"b/in.txt":       "b\n",
		"c/BUILD.star":   `genrule(name = "c", srcs = ["in.txt"], outs = ["out.txt"], cmd = "cp $(SRCS) $(OUTS)")` + "\n",
		"c/in.txt":       "c\n",
	})
	ws.buildOK(t)
	primeSnapshot(t, ws, nil)
	ws.write(t, "a/in.txt", "fail\n")
	settle()
	b := ws.buildEnv(t, nil, "-v")
	if b.code != 1 || !strings.Contains(b.stderr, "build snapshot: 1 of 3 actions") {
		t.Fatalf("build of the failing part: exit %d\n%s", b.code, b.stderr)
	}
	again := ws.buildEnv(t, nil, "-v")
	if again.code != 1 || strings.Contains(again.stderr, "build snapshot") || strings.Contains(again.stderr, snapshotUsed) {
		t.Fatalf("the build after a failed part used the snapshot: exit %d\n%s", again.code, again.stderr)
	}
	ws.write(t, "a/in.txt", "ok again\n")
	settle()
	ws.buildOK(t)
	primeSnapshot(t, ws, nil)
}
