package engine

import (
	"fmt"
	"path"
	"strings"
	"unicode"
)

// Label names a target or a source file: //pkg:name. Pkg is the package path
// relative to the workspace root ("" for the root package); Name is the target
// name or, for a source file, its path relative to the package.
type Label struct {
	Pkg  string
	Name string
}

// String is the one canonical printed form: //pkg:name, with the name always
// spelled out, so two spellings of a label always print the same.
func (l Label) String() string {
	return "//" + l.Pkg + ":" + l.Name
}

// Short prints //pkg when the name repeats the package's last element, the
// form users write by hand.
func (l Label) Short() string {
	if l.Name == path.Base(l.Pkg) && l.Pkg != "" {
		return "//" + l.Pkg
	}
	return l.String()
}

// Less orders labels by package, then name.
func (l Label) Less(o Label) bool {
	if l.Pkg != o.Pkg {
		return l.Pkg < o.Pkg
	}
	return l.Name < o.Name
}

// ParseLabel parses an absolute or package-relative label. pkg is the package
// the label is written in, used for ":name" and bare "name" forms.
func ParseLabel(s, pkg string) (Label, error) {
	orig := s
	if s == "" {
		return Label{}, fmt.Errorf("empty label")
	}
	if strings.HasPrefix(s, "@") {
		return Label{}, fmt.Errorf("label %q: external repositories (@repo) are not supported; use a //path label inside the workspace", orig)
	}
	var l Label
	switch {
	case strings.HasPrefix(s, "//"):
		s = s[2:]
		p, name, hasColon := strings.Cut(s, ":")
		if err := checkPkg(p); err != nil {
			return Label{}, fmt.Errorf("label %q: %w", orig, err)
		}
		l.Pkg = p
		if hasColon {
			l.Name = name
		} else {
			if p == "" {
				return Label{}, fmt.Errorf("label %q: the root package has no default target; write //:name", orig)
			}
			l.Name = path.Base(p)
		}
	case strings.HasPrefix(s, ":"):
		l.Pkg, l.Name = pkg, s[1:]
	default:
		if strings.Contains(s, ":") {
			return Label{}, fmt.Errorf("label %q: a label with a package must start with //", orig)
		}
		l.Pkg, l.Name = pkg, s
	}
	if err := checkName(l.Name); err != nil {
		return Label{}, fmt.Errorf("label %q: %w", orig, err)
	}
	return l, nil
}

// MustParseLabel is ParseLabel for labels written in Go source.
func MustParseLabel(s string) Label {
	l, err := ParseLabel(s, "")
	if err != nil {
		panic(err)
	}
	return l
}

func checkPkg(p string) error {
	if p == "" {
		return nil
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("package path %q must not start or end with /", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("package path %q has an empty segment (//)", p)
		case ".", "..":
			return fmt.Errorf("package path %q must not contain %q", p, seg)
		case "...":
			return fmt.Errorf("package path %q: ... is a pattern, not a package", p)
		}
		if err := checkChars(seg, "package path"); err != nil {
			return err
		}
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return fmt.Errorf("empty target name")
	}
	if strings.HasPrefix(n, "/") || strings.HasSuffix(n, "/") {
		return fmt.Errorf("target name %q must not start or end with /", n)
	}
	for _, seg := range strings.Split(n, "/") {
		switch seg {
		case "":
			return fmt.Errorf("target name %q has an empty segment (//)", n)
		case ".", "..":
			return fmt.Errorf("target name %q must not contain %q", n, seg)
		}
	}
	return checkChars(n, "target name")
}

// checkChars refuses characters that would make a label ambiguous to print or
// unsafe as a path: control characters, colons and quotes.
func checkChars(s, what string) error {
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == ':' || r == '"' || r == '\'' || r == '\\' || r == '@' && what == "package path" {
			return fmt.Errorf("%s %q contains the character %q", what, s, r)
		}
		if r == 0xfffd {
			return fmt.Errorf("%s %q is not valid UTF-8", what, s)
		}
	}
	return nil
}

// Pattern selects targets: one target (//pkg:name), every target of a
// package (//pkg:all), or every target beneath a directory (//pkg/...).
type Pattern struct {
	Pkg       string
	Name      string // set for a single target
	Recursive bool   // //pkg/...
	All       bool   // //pkg:all, //pkg:*
}

func (p Pattern) String() string {
	switch {
	case p.Recursive:
		if p.Pkg == "" {
			return "//..."
		}
		return "//" + p.Pkg + "/..."
	case p.All:
		return "//" + p.Pkg + ":all"
	default:
		return Label{p.Pkg, p.Name}.String()
	}
}

// Matches reports whether the pattern selects the target label l.
func (p Pattern) Matches(l Label) bool {
	switch {
	case p.Recursive:
		return p.Pkg == "" || l.Pkg == p.Pkg || strings.HasPrefix(l.Pkg, p.Pkg+"/")
	case p.All:
		return l.Pkg == p.Pkg
	default:
		return l.Pkg == p.Pkg && l.Name == p.Name
	}
}

// isAllName reports the names that select every target of a package. As in
// Bazel, they shadow a target of the same name.
func isAllName(n string) bool { return n == "all" || n == "*" || n == "all-targets" }

// ParsePattern parses a target pattern given on the command line. relPkg is
// the package of the working directory, so "...", ":name" and "sub/dir"
// work from inside a package as they do in Bazel.
func ParsePattern(s, relPkg string) (Pattern, error) {
	orig := s
	if s == "" {
		return Pattern{}, fmt.Errorf("empty pattern")
	}
	if strings.HasPrefix(s, "@") {
		return Pattern{}, fmt.Errorf("pattern %q: external repositories (@repo) are not supported; use a //path pattern inside the workspace", orig)
	}
	switch {
	case strings.HasPrefix(s, "//"):
	case strings.HasPrefix(s, ":"):
		s = "//" + relPkg + s
	case strings.HasPrefix(s, "/"):
		return Pattern{}, fmt.Errorf("pattern %q: write workspace patterns with two slashes (//pkg:name) or relative to the current directory", orig)
	default:
		// Relative to the working directory's package: only the package part
		// is a path; the name after ':' is checked as written.
		rel, name, hasName := strings.Cut(s, ":")
		joined := rel
		if relPkg != "" {
			joined = relPkg + "/" + rel
		}
		clean := path.Clean(joined)
		if clean == ".." || strings.HasPrefix(clean, "../") {
			return Pattern{}, fmt.Errorf("pattern %q leaves the workspace", orig)
		}
		if clean == "." {
			clean = ""
		}
		if rest, ok := strings.CutSuffix(rel, "..."); ok && (rest == "" || strings.HasSuffix(rest, "/")) && !hasName {
			// "..." and "sub/..." keep their meaning after cleaning.
			base := path.Clean(relPkg + "/" + rest)
			base = strings.Trim(base, "/")
			if base == "." || base == "" {
				return Pattern{Recursive: true}, nil
			}
			if strings.HasPrefix(base, "..") {
				return Pattern{}, fmt.Errorf("pattern %q leaves the workspace", orig)
			}
			s = "//" + base + "/..."
		} else {
			s = "//" + clean
			if hasName {
				s += ":" + name
			}
		}
	}
	body := s[2:]
	if body == "..." {
		return Pattern{Recursive: true}, nil
	}
	if p, ok := strings.CutSuffix(body, "/..."); ok {
		if err := checkPkg(p); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", orig, err)
		}
		return Pattern{Pkg: p, Recursive: true}, nil
	}
	if body == "" {
		return Pattern{Pkg: "", All: true}, nil
	}
	l, err := ParseLabel(s, relPkg)
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", orig, err)
	}
	if isAllName(l.Name) {
		return Pattern{Pkg: l.Pkg, All: true}, nil
	}
	return Pattern{Pkg: l.Pkg, Name: l.Name}, nil
}
