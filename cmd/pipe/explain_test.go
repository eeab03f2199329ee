package main

import (
	"regexp"
	"strings"
	"testing"
)

// explainFiles is a workspace whose genrule sees a host variable, so an
// environment change has a key to change.
var explainFiles = map[string]string{
	"WORKSPACE.star": "workspace(name = \"t\", action_env = [\"GREETING\"])\n",
	"a/BUILD.star": `genrule(
    name = "greet",
    srcs = ["name.txt"],
    outs = ["out.txt"],
    cmd = "echo \"$$GREETING $$(cat $<)\" > $@",
)

genrule(
    name = "shout",
    srcs = [":greet"],
    outs = ["loud.txt"],
    cmd = "tr a-z A-Z < $< > $@",
)
`,
	"a/name.txt": "world\n",
}

// why returns the explanation printed under an executed action's line.
func why(t *testing.T, stderr, label string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\[\d+/\d+\] Executing genrule ` + regexp.QuoteMeta(label) + ` \(.*\)\n  why: (.*)$`)
	m := re.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no explanation for %s in:\n%s", label, stderr)
	}
	return m[1]
}

func TestExplainNamesChangedInputAndEnv(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, explainFiles)
	env := func(v string) []string { return []string{"GREETING=" + v} }

	b := ws.buildEnvOK(t, env("hello"), "--explain", "//a:shout")
	if got := why(t, b.stderr, "//a:greet"); !strings.Contains(got, "no earlier execution recorded") {
		t.Errorf("first build: why = %q", got)
	}

	ws.write(t, "a/name.txt", "pipe\n")
	b = ws.buildEnvOK(t, env("hello"), "--explain", "//a:shout")
	if got := why(t, b.stderr, "//a:greet"); !strings.HasPrefix(got, "input a/name.txt changed (") {
		t.Errorf("after an edit: why = %q, want the changed input named", got)
	}
	if got := why(t, b.stderr, "//a:shout"); !strings.HasPrefix(got, "input dist/a/greet/out.txt changed (") {
		t.Errorf("downstream: why = %q, want the changed generated input named", got)
	}
	if ev := b.event(t, "//a:greet"); !strings.HasPrefix(ev.Explain, "input a/name.txt changed") {
		t.Errorf("events record explain = %q", ev.Explain)
	}

	b = ws.buildEnvOK(t, env("howdy"), "--explain", "//a:shout")
	if got := why(t, b.stderr, "//a:greet"); got != `environment variable GREETING changed ("hello" → "howdy")` {
		t.Errorf("after an env change: why = %q", got)
	}

	// Back to a key that ran before: a cache hit, nothing to explain.
	b = ws.buildEnvOK(t, env("hello"), "--explain", "//a:shout")
	if n := len(b.labels("executed")); n != 0 || strings.Contains(b.stderr, "why:") {
		t.Errorf("reverting executed %d actions:\n%s", n, b.stderr)
	}
}
