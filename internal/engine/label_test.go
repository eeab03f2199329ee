package engine

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseLabel(t *testing.T) {
	tests := []struct {
		in, pkg string
		want    Label
		str     string // canonical String()
	}{
		{"//pkg:name", "", Label{"pkg", "name"}, "//pkg:name"},
		{"//a/b/c:name", "x", Label{"a/b/c", "name"}, "//a/b/c:name"},
		{"//pkg", "", Label{"pkg", "pkg"}, "//pkg:pkg"},
		{"//a/b/c", "", Label{"a/b/c", "c"}, "//a/b/c:c"},
		{":name", "some/pkg", Label{"some/pkg", "name"}, "//some/pkg:name"},
		{":name", "", Label{"", "name"}, "//:name"},
		{"name", "some/pkg", Label{"some/pkg", "name"}, "//some/pkg:name"},
		{"name", "", Label{"", "name"}, "//:name"},
		{"//:root", "", Label{"", "root"}, "//:root"},
		{"//:root", "ignored", Label{"", "root"}, "//:root"},
		{"sub/file.txt", "pkg", Label{"pkg", "sub/file.txt"}, "//pkg:sub/file.txt"},
		{"//pkg:sub/dir/file.txt", "", Label{"pkg", "sub/dir/file.txt"}, "//pkg:sub/dir/file.txt"},
		{":file.tar.gz", "p", Label{"p", "file.tar.gz"}, "//p:file.tar.gz"},
		{"//pkg:a-b_c+d=e,f", "", Label{"pkg", "a-b_c+d=e,f"}, "//pkg:a-b_c+d=e,f"},
		{"//pkg:name@v1", "", Label{"pkg", "name@v1"}, "//pkg:name@v1"},
		{"//pkg:...", "", Label{"pkg", "..."}, "//pkg:..."},
		{"//pkg:a..b", "", Label{"pkg", "a..b"}, "//pkg:a..b"},
		{"//héllo:wörld", "", Label{"héllo", "wörld"}, "//héllo:wörld"},
	}
	for _, tt := range tests {
		got, err := ParseLabel(tt.in, tt.pkg)
		if err != nil {
			t.Errorf("ParseLabel(%q, %q): unexpected error: %v", tt.in, tt.pkg, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLabel(%q, %q) = %#v, want %#v", tt.in, tt.pkg, got, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParseLabel(%q, %q).String() = %q, want %q", tt.in, tt.pkg, s, tt.str)
		}
		// The canonical form parses back to the same label from anywhere.
		back, err := ParseLabel(got.String(), "elsewhere")
		if err != nil || back != got {
			t.Errorf("ParseLabel(%q) = %#v, %v; want %#v", got.String(), back, err, got)
		}
	}
}

func TestParseLabelErrors(t *testing.T) {
	tests := []struct {
		in, pkg string
		errHas  string
	}{
		{"", "", "empty label"},
		{"@repo//x", "", "external repositories"},
		{"@repo//x:y", "", "external repositories"},
		{"//a//b", "", "empty segment"},
		{"//a//b:c", "", "empty segment"},
		{"///a:b", "", "must not start or end with /"},
		{"//a/:b", "", "must not start or end with /"},
		{"//a/../b", "", `".."`},
		{"//a/./b", "", `"."`},
		{"//..:x", "", `".."`},
		{"//a/...", "", "pattern"},
		{"//pkg:", "", "empty target name"},
		{":", "pkg", "empty target name"},
		{"//:", "", "empty target name"},
		{"//", "", "root package has no default target"},
		{"a:b", "", "must start with //"},
		{"sub/dir:b", "pkg", "must start with //"},
		{"//pkg:a/../b", "", `".."`},
		{"//pkg:./b", "", `"."`},
		{"//pkg:/abs", "", "must not start or end with /"},
		{"//pkg:dir/", "", "must not start or end with /"},
		{"//pkg:a//b", "", "empty segment"},
		{"../x", "pkg", `".."`},
		{"//pkg:a:b", "", "character"},
		{"//p@kg:x", "", "character"},
		{`//pkg:a"b`, "", "character"},
		{`//pkg:a'b`, "", "character"},
		{`//pkg:a\b`, "", "character"},
		{"//pkg:a\x00b", "", "character"},
		{"//pkg:a\nb", "", "character"},
		{"//pkg:a\tb", "", "character"},
		{"//pkg:a\x7fb", "", "character"},
		{"//pk\x01g:x", "", "character"},
		{"na\rme", "pkg", "character"},
		{"//pkg:\xff", "", "UTF-8"},
		{"//p\xc3:x", "", "UTF-8"},
	}
	for _, tt := range tests {
		got, err := ParseLabel(tt.in, tt.pkg)
		if err == nil {
			t.Errorf("ParseLabel(%q, %q) = %#v, want an error containing %q", tt.in, tt.pkg, got, tt.errHas)
			continue
		}
		if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParseLabel(%q, %q) error = %q, want it to contain %q", tt.in, tt.pkg, err, tt.errHas)
		}
	}
}

func TestMustParseLabelPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseLabel(\"a:b\") did not panic")
		}
	}()
	MustParseLabel("a:b")
}

func TestLabelShortAndLess(t *testing.T) {
	for _, tt := range []struct {
		l     Label
		short string
	}{
		{Label{"a/b", "b"}, "//a/b"},
		{Label{"a/b", "c"}, "//a/b:c"},
		{Label{"", "x"}, "//:x"},
		{Label{"pkg", "sub/pkg"}, "//pkg:sub/pkg"},
	} {
		if got := tt.l.Short(); got != tt.short {
			t.Errorf("%#v.Short() = %q, want %q", tt.l, got, tt.short)
		}
		if back, err := ParseLabel(tt.l.Short(), ""); err != nil || back != tt.l {
			t.Errorf("ParseLabel(%q) = %#v, %v; want %#v", tt.l.Short(), back, err, tt.l)
		}
	}
	ordered := []Label{{"", "z"}, {"a", "a"}, {"a", "b"}, {"a/b", "a"}, {"b", "a"}}
	for i := range ordered {
		for j := range ordered {
			if got, want := ordered[i].Less(ordered[j]), i < j; got != want {
				t.Errorf("%v.Less(%v) = %v, want %v", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in, rel string
		want    Pattern
		str     string
	}{
		{"//...", "", Pattern{Recursive: true}, "//..."},
		{"//...", "a/b", Pattern{Recursive: true}, "//..."},
		{"//pkg/...", "", Pattern{Pkg: "pkg", Recursive: true}, "//pkg/..."},
		{"//a/b/...", "x", Pattern{Pkg: "a/b", Recursive: true}, "//a/b/..."},
		{"//pkg:all", "", Pattern{Pkg: "pkg", All: true}, "//pkg:all"},
		{"//pkg:*", "", Pattern{Pkg: "pkg", All: true}, "//pkg:all"},
		{"//pkg:all-targets", "", Pattern{Pkg: "pkg", All: true}, "//pkg:all"},
		{"//:all", "", Pattern{All: true}, "//:all"},
		{"//:*", "", Pattern{All: true}, "//:all"},
		{"//", "", Pattern{All: true}, "//:all"},
		{"//pkg:name", "", Pattern{Pkg: "pkg", Name: "name"}, "//pkg:name"},
		{"//pkg", "", Pattern{Pkg: "pkg", Name: "pkg"}, "//pkg:pkg"},
		{"//:root", "sub", Pattern{Name: "root"}, "//:root"},

		// Relative patterns, resolved against the working directory's package.
		{"...", "", Pattern{Recursive: true}, "//..."},
		{"...", "sub", Pattern{Pkg: "sub", Recursive: true}, "//sub/..."},
		{"...", "a/b", Pattern{Pkg: "a/b", Recursive: true}, "//a/b/..."},
		{":x", "sub", Pattern{Pkg: "sub", Name: "x"}, "//sub:x"},
		{":x", "", Pattern{Name: "x"}, "//:x"},
		{":all", "sub", Pattern{Pkg: "sub", All: true}, "//sub:all"},
		{":*", "", Pattern{All: true}, "//:all"},
		{"sub/...", "", Pattern{Pkg: "sub", Recursive: true}, "//sub/..."},
		{"sub/...", "a", Pattern{Pkg: "a/sub", Recursive: true}, "//a/sub/..."},
		{"sub:x", "a", Pattern{Pkg: "a/sub", Name: "x"}, "//a/sub:x"},
		{"sub:all", "a", Pattern{Pkg: "a/sub", All: true}, "//a/sub:all"},
		{"sub", "a", Pattern{Pkg: "a/sub", Name: "sub"}, "//a/sub:sub"},
		{"../x:y", "a/b", Pattern{Pkg: "a/x", Name: "y"}, "//a/x:y"},
		{"../...", "a", Pattern{Recursive: true}, "//..."},
		{"..", "a/b", Pattern{Pkg: "a", Name: "a"}, "//a:a"},
		{".", "", Pattern{All: true}, "//:all"},
	}
	for _, tt := range tests {
		got, err := ParsePattern(tt.in, tt.rel)
		if err != nil {
			t.Errorf("ParsePattern(%q, %q): unexpected error: %v", tt.in, tt.rel, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePattern(%q, %q) = %#v, want %#v", tt.in, tt.rel, got, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParsePattern(%q, %q).String() = %q, want %q", tt.in, tt.rel, s, tt.str)
		}
		if back, err := ParsePattern(got.String(), "elsewhere"); err != nil || back != got {
			t.Errorf("ParsePattern(%q) = %#v, %v; want %#v", got.String(), back, err, got)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	tests := []struct {
		in, rel string
		errHas  string
	}{
		{"../x", "", "leaves the workspace"},
		{"..", "", "leaves the workspace"},
		{"../../x", "a", "leaves the workspace"},
		{"../../...", "a", "leaves the workspace"},
		{"//a/../b/...", "", `".."`},
		{"//a//b/...", "", "empty segment"},
		{"//.../...", "", "pattern"},
		{"//a/...:all", "", "pattern"},
		{"//a:b/...", "", "character"},
		{"//a/:all", "", "must not start or end with /"},
		{"//pkg:", "", "empty target name"},
		{"@repo//x", "", "@"}, // treated as relative: //@repo/x
		{"//@repo/x:y", "", "character"},
		{"//pkg:a\x00", "", "character"},
		{"//a:b:c", "", "character"},
	}
	for _, tt := range tests {
		got, err := ParsePattern(tt.in, tt.rel)
		if err == nil {
			t.Errorf("ParsePattern(%q, %q) = %#v, want an error containing %q", tt.in, tt.rel, got, tt.errHas)
			continue
		}
		if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParsePattern(%q, %q) error = %q, want it to contain %q", tt.in, tt.rel, err, tt.errHas)
		}
	}
}

func TestPatternMatches(t *testing.T) {
	tests := []struct {
		pat  string
		l    string
		want bool
	}{
		{"//...", "//:x", true},
		{"//...", "//a/b:c", true},
		{"//a/...", "//a:x", true},
		{"//a/...", "//a/b:x", true},
		{"//a/...", "//ab:x", false},
		{"//a/...", "//:a", false},
		{"//a:all", "//a:x", true},
		{"//a:all", "//a/b:x", false},
		{"//:all", "//:x", true},
		{"//:all", "//a:x", false},
		{"//a:x", "//a:x", true},
		{"//a:x", "//a:y", false},
		{"//a", "//a:a", true},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pat, "")
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pat, err)
		}
		if got := p.Matches(MustParseLabel(tt.l)); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.pat, tt.l, got, tt.want)
		}
	}
}

// checkLabelParts asserts the shape every parsed package path and target
// name must have.
func checkLabelParts(t *testing.T, what, pkg, name string) {
	t.Helper()
	for _, part := range []struct{ kind, s string }{{"package", pkg}, {"name", name}} {
		if part.kind == "name" && part.s == "" {
			t.Errorf("%s: empty name", what)
			continue
		}
		if part.s == "" {
			continue
		}
		if strings.HasPrefix(part.s, "/") || strings.HasSuffix(part.s, "/") {
			t.Errorf("%s: %s %q starts or ends with /", what, part.kind, part.s)
		}
		for _, seg := range strings.Split(part.s, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Errorf("%s: %s %q has segment %q", what, part.kind, part.s, seg)
			}
		}
		for _, r := range part.s {
			if r < 0x20 || r == 0x7f || r == 0xfffd {
				t.Errorf("%s: %s %q contains %q", what, part.kind, part.s, r)
			}
		}
	}
	if strings.Contains(pkg, ":") || strings.Contains(name, ":") {
		t.Errorf("%s: colon in %q / %q", what, pkg, name)
	}
}

var fuzzPkgs = []string{"", "pkg", "a/b", "a/b/c"}

func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{
		"//pkg:name", "//pkg", "//a/b/c", ":name", "name", "//:root",
		"sub/file.txt", "", "@repo//x", "//a//b", "//a/../b", "//pkg:",
		"a:b", "//pkg:a\x00b", "//pkg:\xff", "//...", "//pkg:...",
		"///a", "//a/", "//:", "//", ":", "..", "//a:b/../c", "//a:b:c",
		"//p@kg:x", "//pkg:x@y", "//pkg:all", "//héllo:wörld",
	} {
		for i := range fuzzPkgs {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, s string, pi uint8) {
		pkg := fuzzPkgs[int(pi)%len(fuzzPkgs)]
		l, err := ParseLabel(s, pkg)
		if err != nil {
			return
		}
		checkLabelParts(t, fmt.Sprintf("ParseLabel(%q, %q)", s, pkg), l.Pkg, l.Name)
		str := l.String()
		back, err := ParseLabel(str, "elsewhere")
		if err != nil {
			t.Fatalf("ParseLabel(%q, %q) = %#v, but its String() %q does not parse: %v", s, pkg, l, str, err)
		}
		if back != l {
			t.Fatalf("ParseLabel(%q, %q) = %#v; String() %q parses to %#v", s, pkg, l, str, back)
		}
		if back.String() != str {
			t.Fatalf("String() not stable: %q then %q", str, back.String())
		}
		// Short is also a valid spelling of the same label.
		if short, err := ParseLabel(l.Short(), ""); err != nil || short != l {
			t.Fatalf("Short() %q of %#v parses to %#v, %v", l.Short(), l, short, err)
		}
	})
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{
		"//...", "//pkg/...", "//pkg:all", "//pkg:*", "//pkg:all-targets",
		"//pkg:name", "//pkg", "//", "//:all", "...", ":x", ":all", "sub/...",
		"sub:x", "../x", "../...", "..", ".", "", "//a/../b/...", "//a:b/...",
		"///...", "/abs", "//a/...:all", "@r//x", "x/../../y",
	} {
		for i := range fuzzPkgs {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, s string, pi uint8) {
		rel := fuzzPkgs[int(pi)%len(fuzzPkgs)]
		p, err := ParsePattern(s, rel)
		if err != nil {
			return
		}
		what := fmt.Sprintf("ParsePattern(%q, %q)", s, rel)
		switch {
		case p.Recursive:
			if p.All || p.Name != "" {
				t.Fatalf("%s = %#v: Recursive with All or Name", what, p)
			}
			checkLabelParts(t, what, p.Pkg, "x")
		case p.All:
			if p.Name != "" {
				t.Fatalf("%s = %#v: All with Name", what, p)
			}
			checkLabelParts(t, what, p.Pkg, "x")
		default:
			checkLabelParts(t, what, p.Pkg, p.Name)
		}
		str := p.String()
		back, err := ParsePattern(str, "elsewhere")
		if err != nil {
			t.Fatalf("%s = %#v, but its String() %q does not parse: %v", what, p, str, err)
		}
		if back != p {
			t.Fatalf("%s = %#v; String() %q parses to %#v", what, p, str, back)
		}
	})
}

func TestParseLabelRejectsUnicodeControls(t *testing.T) {
	for _, s := range []string{"//pkg:a\u0085b", "//p\u009bkg:x", "//pkg:a\u2028b"} {
		if l, err := ParseLabel(s, ""); err == nil {
			t.Errorf("ParseLabel(%q) = %v, want an error", s, l)
		}
	}
}

func TestParsePatternAllNames(t *testing.T) {
	for _, tc := range []struct{ in, rel, want string }{
		{"//x/all", "", "//x/all:all"},
		{"*", "a/b/c", "//a/b/c/*:all"},
		{"all", "", "//all:all"},
		{":all", "a", "//a:all"},
		{"sub:t", "a", "//a/sub:t"},
	} {
		p, err := ParsePattern(tc.in, tc.rel)
		if err != nil {
			t.Errorf("ParsePattern(%q, %q): %v", tc.in, tc.rel, err)
			continue
		}
		if p.String() != tc.want {
			t.Errorf("ParsePattern(%q, %q) = %s, want %s", tc.in, tc.rel, p, tc.want)
		}
	}
	for _, bad := range []string{"/etc", "a/b:c/../d", "", "@repo//x"} {
		if p, err := ParsePattern(bad, "a"); err == nil {
			t.Errorf("ParsePattern(%q) = %v, want an error", bad, p)
		}
	}
}
