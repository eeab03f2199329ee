package engine

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseQueryValid(t *testing.T) {
	tests := []struct {
		expr, rel string
		patterns  []string // Patterns(), printed
	}{
		{"//...", "", []string{"//..."}},
		{"//a:b", "", []string{"//a:b"}},
		{"  //a:all  ", "", []string{"//a:all"}},
		{"...", "sub", []string{"//sub/..."}},
		{":x", "sub", []string{"//sub:x"}},
		{"'//a:b'", "", []string{"//a:b"}},
		{`"//a/..."`, "", []string{"//a/..."}},
		{"deps(//a:b)", "", []string{"//a:b"}},
		{"deps(//a:b, 2)", "", []string{"//a:b"}},
		{"deps( //a:b , 0 )", "", []string{"//a:b"}},
		{"rdeps(//..., //a:b)", "", []string{"//...", "//a:b"}},
		{"rdeps(//..., //a:b, 1)", "", []string{"//...", "//a:b"}},
		{"kind('go_.*', //...)", "", []string{"//..."}},
		{`kind("genrule rule", //a/...)`, "", []string{"//a/..."}},
		{"filter(test, //a:all)", "", []string{"//a:all"}},
		{"//a/... - //a/b:c", "", []string{"//a/...", "//a/b:c"}},
		{"//a/... except //a/b:c", "", []string{"//a/...", "//a/b:c"}},
		{"//a:b + //c:d", "", []string{"//a:b", "//c:d"}},
		{"//a:b union //c:d", "", []string{"//a:b", "//c:d"}},
		{"//a:b ^ //c:d", "", []string{"//a:b", "//c:d"}},
		{"//a:b intersect //c:d", "", []string{"//a:b", "//c:d"}},
		{"//a:b+//c:d", "", []string{"//a:b", "//c:d"}},
		{"(//a:b + //c:d) ^ //...", "", []string{"//a:b", "//c:d", "//..."}},
		{"((//a:b))", "", []string{"//a:b"}},
		{"deps(kind(test, //...) - //x:y, 3) + rdeps(//..., filter('a', :z))", "p",
			[]string{"//...", "//x:y", "//...", "//p:z"}},
		// A registered function name without "(" is an ordinary pattern.
		{"deps", "", []string{"//deps:deps"}},
		{"deps + kind", "", []string{"//deps:deps", "//kind:kind"}},
	}
	for _, tt := range tests {
		q, err := ParseQuery(tt.expr, tt.rel)
		if err != nil {
			t.Errorf("ParseQuery(%q, %q): unexpected error: %v", tt.expr, tt.rel, err)
			continue
		}
		var got []string
		for _, p := range q.Patterns() {
			got = append(got, p.String())
		}
		if !reflect.DeepEqual(got, tt.patterns) {
			t.Errorf("ParseQuery(%q, %q).Patterns() = %q, want %q", tt.expr, tt.rel, got, tt.patterns)
		}
	}
}

func TestParseQueryInvalid(t *testing.T) {
	tests := []struct {
		expr   string
		errHas string
	}{
		{"", "unexpected end of expression"},
		{"   ", "unexpected end of expression"},
		{"(//a:b", `expected ")", found "end of expression"`},
		{"((//a:b)", `expected ")"`},
		{"//a:b)", `unexpected ")" after a complete expression`},
		{"(//a:b))", `unexpected ")" after a complete expression`},
		{"deps(//a:b", `expected ")" or ",", found end of expression`},
		{"deps(//a:b, 1", `expected ")"`},
		{"deps(//a:b, 1, 2)", `expected ")", found ","`},
		{"deps(//a:b,)", `expected a word, found ")"`},
		{"rdeps(//...)", `expected ","`},
		{"kind(x)", `expected ","`},
		{"//a:b //c:d", `unexpected "//c:d" after a complete expression`},
		{"//a:b +", "unexpected end of expression"},
		{"//a:b - ", "unexpected end of expression"},
		{"'//a:b", "unterminated string"},
		{`deps("//a:b)`, "unterminated string"},
		// Not a query function: read as the pattern //foo:foo, then the
		// "(" has nowhere to go.
		{"foo(//a:b)", `unexpected "(" after a complete expression`},
		{"somepath(//a:b, //c:d)", `unexpected "("`},
		// Bad patterns are reported with the query prefix.
		{"//a/../b", "query: pattern"},
		{"deps(//a//b)", "empty segment"},
		{"../x", "leaves the workspace"},
		{"//a:b + @r//x", "query: pattern"},
	}
	for _, tt := range tests {
		q, err := ParseQuery(tt.expr, "")
		if err == nil {
			t.Errorf("ParseQuery(%q) = %v (patterns %v), want an error containing %q", tt.expr, q, q.Patterns(), tt.errHas)
			continue
		}
		if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParseQuery(%q) error = %q, want it to contain %q", tt.expr, err, tt.errHas)
		}
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("ParseQuery(%q) error %T is not a UsageError", tt.expr, err)
		}
	}
}

// A bad depth argument is rejected when the query is parsed, before any
// package is loaded.
func TestQueryBadDepth(t *testing.T) {
	tg := &TargetGraph{Targets: map[Label]*Target{}}
	for _, expr := range []string{
		"deps(//a:b, x)",
		"deps(//a:b, -1)",
		"deps(//a:b, 1.5)",
		"rdeps(//..., //a:b, many)",
		"deps(//a:b, '')",
	} {
		_, err := ParseQuery(expr, "")
		if err == nil || !strings.Contains(err.Error(), "is not a non-negative integer") {
			t.Errorf("ParseQuery(%q) error = %v, want a bad depth error", expr, err)
		}
		if !IsUserError(err) {
			t.Errorf("ParseQuery(%q) error %T is not a user error", expr, err)
		}
	}
	for _, expr := range []string{"deps(//a:b, 0)", "deps(//a:b, 10)", "rdeps(//..., //a:b, 2)"} {
		q, err := ParseQuery(expr, "")
		if err != nil {
			t.Fatalf("ParseQuery(%q): %v", expr, err)
		}
		if _, err := q.Eval(tg); err != nil {
			t.Errorf("Eval(%q): %v", expr, err)
		}
	}
}

func TestQueryBadRegexp(t *testing.T) {
	tg := &TargetGraph{Targets: map[Label]*Target{}}
	q, err := ParseQuery("filter('a(', //...)", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Eval(tg); err == nil || !strings.Contains(err.Error(), "bad regular expression") {
		t.Errorf("Eval: error = %v, want a bad regular expression error", err)
	}
}

// TestQueryEval runs queries over a small hand-built graph:
// //app:bin -> //lib:a -> //lib:b, //other:x stands alone.
func TestQueryEval(t *testing.T) {
	lib := &Rule{Name: "fake_lib", Attrs: []Attr{{Name: "deps", Type: AttrLabelList}}}
	bin := &Rule{Name: "fake_bin", Attrs: []Attr{{Name: "deps", Type: AttrLabelList}}}
	mk := func(l string, r *Rule, deps ...string) *Target {
		var ds []Label
		for _, d := range deps {
			ds = append(ds, MustParseLabel(d))
		}
		return &Target{Label: MustParseLabel(l), Rule: r, Attrs: map[string]any{"deps": ds}}
	}
	tg := &TargetGraph{Targets: map[Label]*Target{}, Resolved: map[Label]Resolved{}}
	for _, tgt := range []*Target{
		mk("//app:bin", bin, "//lib:a"),
		mk("//lib:a", lib, "//lib:b"),
		mk("//lib:b", lib),
		mk("//other:x", lib),
	} {
		tg.Targets[tgt.Label] = tgt
	}
	for _, tgt := range tg.Targets {
		for _, d := range tgt.Deps() {
			tg.Resolved[refKey(tgt.Label, d.Label)] = Resolved{Target: tg.Targets[d.Label]}
		}
	}
	tests := []struct {
		expr string
		want string
	}{
		{"//...", "//app:bin //lib:a //lib:b //other:x"},
		{"//lib:all", "//lib:a //lib:b"},
		{"deps(//app:bin)", "//app:bin //lib:a //lib:b"},
		{"deps(//app:bin, 0)", "//app:bin"},
		{"deps(//app:bin, 1)", "//app:bin //lib:a"},
		{"rdeps(//..., //lib:b)", "//app:bin //lib:a //lib:b"},
		{"rdeps(//..., //lib:b, 1)", "//lib:a //lib:b"},
		{"rdeps(//lib:all, //lib:b)", "//lib:a //lib:b"},
		{"kind(fake_bin, //...)", "//app:bin"},
		{"kind('^fake_lib rule$', //...)", "//lib:a //lib:b //other:x"},
		{"filter(':b$', //...)", "//lib:b"},
		{"//... - //lib/...", "//app:bin //other:x"},
		{"//... ^ deps(//app:bin)", "//app:bin //lib:a //lib:b"},
		{"//other:x + //lib:b", "//lib:b //other:x"},
	}
	for _, tt := range tests {
		q, err := ParseQuery(tt.expr, "")
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", tt.expr, err)
			continue
		}
		ls, err := q.Eval(tg)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.expr, err)
			continue
		}
		var got []string
		for _, l := range ls {
			got = append(got, l.String())
		}
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("Eval(%q) = %s, want %s", tt.expr, s, tt.want)
		}
	}
}
