package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
)

// TestLiveProgress runs a build on a real terminal and reads what it drew:
// while two actions run at once the display says "2 running" and shows
// each with its elapsed time, which keeps counting between events (a
// redraw on a timer); a finished action is never shown as running.
func TestLiveProgress(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"a/BUILD.star": `genrule(name = "slow", outs = ["s.txt"], cmd = "sleep 1.5; echo > $@")
genrule(name = "slower", outs = ["t.txt"], cmd = "sleep 1.5; echo > $@")
genrule(name = "quick", srcs = [":slow"], outs = ["q.txt"], cmd = "cp $< $@")
`,
	}
	frames := func(cols, rows int) []string {
		t.Helper()
		ws := newWorkspace(t, files)
		pty := testenv.OpenPty(t, cols, rows)
		cmd := pipeCmd(ws, "build", "-j", "2")
		cmd.Env = append(cmd.Env, "TERM=xterm", "NO_COLOR=1")
		if err := pty.Start(cmd); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		out, perr := pty.Output(10 * time.Second)
		if code := exitCode(t, err); code != 0 || perr != nil {
			t.Fatalf("exit %d (%v):\n%q", code, perr, out)
		}
		// Each redraw starts by returning to the start of the display.
		return regexp.MustCompile(`\r(\x1b\[\d+A)?\x1b\[J`).Split(out, -1)
	}

	// A tall terminal: one line per running action.
	fs := frames(100, 24)
	elapsed := regexp.MustCompile(`(?m)^  Executing genrule //a:slow (\d+\.\d)s$`)
	var both bool
	seen := map[string]bool{}
	for _, f := range fs {
		if strings.HasPrefix(f, "[0/3] 2 running · 0 cached\n") && strings.Contains(f, "genrule //a:slow ") && strings.Contains(f, "genrule //a:slower ") {
			both = true
		}
		if m := elapsed.FindStringSubmatch(f); m != nil {
			seen[m[1]] = true
		}
		if strings.Contains(f, "0 running") && strings.Contains(f, "//a:") {
			t.Errorf("a frame shows a finished action as running: %q", f)
		}
	}
	if !both {
		t.Errorf("no frame shows both running actions under \"2 running\":\n%q", fs)
	}
	if len(seen) < 3 {
		t.Errorf("the slow action's elapsed time was drawn as %v: the display is not redrawn while it runs", seen)
	}

	// Three lines tall: no room for both, so the status line names the
	// longest-running action.
	fs = frames(100, 3)
	one := regexp.MustCompile(`^\[0/3\] 2 running · 0 cached · Executing genrule //a:slow(er)? \d+\.\ds \(\+1 more\)$`)
	found := false
	for _, f := range fs {
		found = found || one.MatchString(f)
	}
	if !found {
		t.Errorf("no one-line frame names the longest-running action:\n%q", fs)
	}
}
