package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func helloWorkspace(t *testing.T) *workspace {
	t.Helper()
	return copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestQuery(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	all := []string{"//greeting:greeting", "//greeting:names", "//shout:loud", "//shout:louder", "//site:site", "//tools:frame"}
	cases := []struct {
		expr string
		want []string
	}{
		{"//...", all},
		{"//shout/...", []string{"//shout:loud", "//shout:louder"}},
		{"//shout:all", []string{"//shout:loud", "//shout:louder"}},
		{"//site", []string{"//site:site"}},
		{"deps(//site)", all},
		{"deps(//site, 1)", []string{"//greeting:greeting", "//shout:louder", "//site:site", "//tools:frame"}},
		{"deps(//shout:loud)", []string{"//greeting:greeting", "//greeting:names", "//shout:loud"}},
		{"rdeps(//..., //greeting:names)", []string{"//greeting:greeting", "//greeting:names", "//shout:loud", "//shout:louder", "//site:site"}},
		{"rdeps(//..., //greeting:names, 1)", []string{"//greeting:greeting", "//greeting:names"}},
		{"rdeps(//..., //tools:frame)", []string{"//site:site", "//tools:frame"}},
		{"kind(genrule, //...)", []string{"//greeting:greeting", "//shout:loud", "//shout:louder", "//site:site"}},
		{`kind("filegroup", //...)`, []string{"//greeting:names", "//tools:frame"}},
		{"filter(louder, //...)", []string{"//shout:louder"}},
		{"//... - kind(genrule, //...)", []string{"//greeting:names", "//tools:frame"}},
		{"kind(genrule, //...) ^ deps(//shout:loud)", []string{"//greeting:greeting", "//shout:loud"}},
		{"//tools:frame + //site", []string{"//site:site", "//tools:frame"}},
	}
	for _, c := range cases {
		stdout, stderr, code := runPipe(t, ws, "query", c.expr)
		if code != 0 {
			t.Errorf("query %s: exit %d\n%s", c.expr, code, stderr)
			continue
		}
		if got := lines(stdout); !equalStrings(got, c.want) {
			t.Errorf("query %s:\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
	if ws.exists("dist") {
		t.Errorf("query built something: dist/ holds %q", listFiles(t, ws.path("dist")))
	}
}

func TestQueryRelativeToDirectory(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	stdout, stderr, code := runPipe(t, ws, "-C", "shout", "query", "rdeps(//..., :loud)")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if got, want := lines(stdout), []string{"//shout:loud", "//shout:louder", "//site:site"}; !equalStrings(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

type targetJSONTest struct {
	Label    string   `json:"label"`
	Kind     string   `json:"kind"`
	Deps     []string `json:"deps"`
	Location string   `json:"location"`
}

func TestQueryJSON(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	stdout, stderr, code := runPipe(t, ws, "query", "--output", "json", "deps(//shout:loud)")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var got []targetJSONTest
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	want := []targetJSONTest{
		{Label: "//greeting:greeting", Kind: "genrule", Deps: []string{"//greeting:names"}, Location: "greeting/BUILD.star:6:1"},
		{Label: "//greeting:names", Kind: "filegroup", Deps: []string{}, Location: "greeting/BUILD.star:1:1"},
		// Declared by a macro: the location is the macro call in BUILD.star.
		{Label: "//shout:loud", Kind: "genrule", Deps: []string{"//greeting:greeting"}, Location: "shout/BUILD.star:3:1"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Label != w.Label || g.Kind != w.Kind || g.Location != w.Location || g.Deps == nil || !equalStrings(g.Deps, w.Deps) {
			t.Errorf("target %d: got %+v, want %+v", i, g, w)
		}
	}

	stdout, _, code = runPipe(t, ws, "query", "--output", "label_kind", "//shout/...")
	if want := "genrule rule //shout:loud\ngenrule rule //shout:louder\n"; code != 0 || stdout != want {
		t.Errorf("--output label_kind: exit %d, got %q, want %q", code, stdout, want)
	}
}

func TestGraphDot(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	stdout, stderr, code := runPipe(t, ws, "graph", "//...", "--format", "dot")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "digraph pipe {\n") || !strings.HasSuffix(stdout, "}\n") {
		t.Errorf("not a dot graph:\n%s", stdout)
	}
	var edges []string
	for _, l := range lines(stdout) {
		if strings.Contains(l, " -> ") {
			edges = append(edges, strings.TrimSpace(l))
		}
	}
	want := []string{
		`"//greeting:greeting" -> "//greeting:names";`,
		`"//shout:loud" -> "//greeting:greeting";`,
		`"//shout:louder" -> "//shout:loud";`,
		`"//site:site" -> "//greeting:greeting";`,
		`"//site:site" -> "//shout:louder";`,
		`"//site:site" -> "//tools:frame";`,
	}
	if !equalStrings(edges, want) {
		t.Errorf("edges:\n%s\nwant:\n%s", strings.Join(edges, "\n"), strings.Join(want, "\n"))
	}
	for _, node := range []string{
		`"//site:site" [label="//site\ngenrule", style=bold];`,
		`"//tools:frame" [label="//tools:frame\nfilegroup", style=bold];`,
	} {
		if !strings.Contains(stdout, node) {
			t.Errorf("dot lacks node %s:\n%s", node, stdout)
		}
	}

	// A pattern selects roots; their dependencies are drawn too, not bold.
	stdout, _, _ = runPipe(t, ws, "graph", "//shout:loud")
	for _, s := range []string{
		`"//shout:loud" [label="//shout:loud\ngenrule", style=bold];`,
		`"//greeting:names" [label="//greeting:names\nfilegroup"];`,
		`"//shout:loud" -> "//greeting:greeting";`,
	} {
		if !strings.Contains(stdout, s) {
			t.Errorf("graph //shout:loud lacks %s:\n%s", s, stdout)
		}
	}
	if strings.Contains(stdout, "//site:site") {
		t.Errorf("graph //shout:loud draws //site:site, which it does not reach:\n%s", stdout)
	}
}

func TestGraphJSON(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	stdout, stderr, code := runPipe(t, ws, "graph", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var got []targetJSONTest
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	deps := map[string][]string{}
	for _, tj := range got {
		deps[tj.Label] = tj.Deps
	}
	want := map[string][]string{
		"//greeting:greeting": {"//greeting:names"},
		"//greeting:names":    {},
		"//shout:loud":        {"//greeting:greeting"},
		"//shout:louder":      {"//shout:loud"},
		"//site:site":         {"//greeting:greeting", "//shout:louder", "//tools:frame"},
		"//tools:frame":       {},
	}
	if len(deps) != len(want) || len(got) != len(want) {
		t.Fatalf("got %d targets %v, want %d", len(got), deps, len(want))
	}
	for l, w := range want {
		if d, ok := deps[l]; !ok || !equalStrings(d, w) {
			t.Errorf("%s: deps %q, want %q", l, d, w)
		}
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	ws.buildOK(t)
	if !ws.exists("dist/site/site/index.html") || !ws.exists(".pipe") {
		t.Fatal("the build made no dist/ or .pipe/")
	}

	_, stderr, code := runPipe(t, ws, "clean")
	if code != 0 {
		t.Fatalf("clean: exit %d\n%s", code, stderr)
	}
	if ws.exists("dist") || ws.exists(".pipe") {
		t.Errorf("after clean: dist/ exists %t, .pipe/ exists %t", ws.exists("dist"), ws.exists(".pipe"))
	}
	if !ws.exists("greeting/names/a.txt") || !ws.exists("greeting/BUILD.star") {
		t.Error("clean removed sources")
	}
	// The shared cache survives: everything is restored, nothing runs.
	b := ws.buildOK(t)
	wantLabels(t, "after clean: executed", b.labels("executed"))
	for _, ev := range b.events {
		if ev.Status != "cached" || ev.Restored != 1 {
			t.Errorf("after clean: %s status %s restored %d, want cached with 1 restored", ev.Label, ev.Status, ev.Restored)
		}
	}

	_, stderr, code = runPipe(t, ws, "clean", "--cache")
	if code != 0 {
		t.Fatalf("clean --cache: exit %d\n%s", code, stderr)
	}
	if got := listFiles(t, ws.Cache); len(got) != 0 {
		t.Errorf("clean --cache left %q in the cache", got)
	}
	if ws.exists("dist") {
		t.Error("clean --cache left dist/")
	}
	b = ws.buildOK(t)
	wantLabels(t, "after clean --cache: executed", b.labels("executed"), "//greeting:greeting", "//shout:loud", "//shout:louder", "//site:site")
}

// clean --cache refuses a directory that pipe did not write.
func TestCleanCacheRefusesForeignDirectory(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, nil)
	keep := filepath.Join(ws.Cache, "important.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runPipe(t, ws, "clean", "--cache")
	if code == 0 {
		t.Errorf("clean --cache of a foreign directory succeeded:\n%s", stderr)
	}
	if !strings.Contains(stderr, `it holds "important.txt", which pipe did not write; remove it by hand`) {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("clean --cache removed a file it did not own: %v", err)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, nil)
	stdout, stderr, code := runPipe(t, ws, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	v, ok := strings.CutPrefix(stdout, "pipe ")
	if !ok || strings.TrimSpace(v) == "" || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version output %q, want one line \"pipe <version>\"", stdout)
	}
}

func TestGraphActionsJSON(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	stdout, stderr, code := runPipe(t, ws, "graph", "--actions", "--format", "json", "//site")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var actions []struct {
		ID      int      `json:"id"`
		Label   string   `json:"label"`
		Outputs []string `json:"outputs"`
		Deps    []int    `json:"deps"`
	}
	if err := json.Unmarshal([]byte(stdout), &actions); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	byID := map[int]string{}
	for _, a := range actions {
		byID[a.ID] = a.Label
	}
	got := map[string][]string{}
	for _, a := range actions {
		for _, d := range a.Deps {
			got[a.Label] = append(got[a.Label], byID[d])
		}
	}
	want := map[string][]string{
		"//shout:loud":   {"//greeting:greeting"},
		"//shout:louder": {"//shout:loud"},
		"//site:site":    {"//greeting:greeting", "//shout:louder"},
	}
	if len(actions) != 4 {
		t.Errorf("got %d actions, want 4 (greeting, loud, louder, site)", len(actions))
	}
	for label, deps := range want {
		if strings.Join(got[label], " ") != strings.Join(deps, " ") {
			t.Errorf("%s depends on %v, want %v", label, got[label], deps)
		}
	}
}
