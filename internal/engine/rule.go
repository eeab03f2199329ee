package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
)

// AttrType is the type of a rule attribute.
type AttrType int

const (
	AttrString AttrType = iota
	AttrStringList
	AttrLabel     // one label (a target or a source file)
	AttrLabelList // labels; strings are resolved relative to the package
	AttrBool
	AttrInt
	AttrStringDict
	AttrOutput     // a file name the rule writes, relative to its output dir
	AttrOutputList // several such names
)

func (t AttrType) String() string {
	return [...]string{"string", "list of strings", "label", "list of labels", "bool", "int", "dict of string to string", "output file name", "list of output file names"}[t]
}

// Attr declares one attribute of a rule.
type Attr struct {
	Name     string
	Type     AttrType
	Required bool
	Default  any      // Go value of the attribute's type; nil means the type's zero
	Values   []string // allowed values of a string attribute, if restricted
	// Aliases are other spellings of Values that mean the same thing
	// ("amd64" for "x86_64"): they are accepted and stored as the value
	// they name, so both spellings give the same targets and keys.
	Aliases map[string]string
	Doc     string
}

// Rule is a kind of target. Rules live in rules/* and register here; the
// engine knows nothing about what they build.
type Rule struct {
	Name string
	// Version is part of every action key of the rule: bump it when the
	// rule's implementation changes what its actions produce.
	Version string
	Attrs   []Attr
	Doc     string
	// Analyze declares the target's actions and the files it provides.
	Analyze func(ctx *AnalysisContext) error
}

// Macro is a function written in Go that BUILD files call like a rule and
// that declares several targets, such as fastapi_project. Its attributes are
// checked against the schema exactly as a rule's are.
type Macro struct {
	Name    string
	Version string
	Attrs   []Attr
	Doc     string
	Expand  func(m *MacroCall) error
}

// MacroCall is one call of a macro in a BUILD file.
type MacroCall struct {
	// Attrs holds every attribute, defaults filled in, as for a Target.
	Attrs   map[string]any
	Package string
	// Declare adds a target of rule to the package. Label attributes may be
	// given as strings (resolved against the package) or Labels.
	Declare func(rule string, attrs map[string]any) error
	// Glob is the BUILD-file glob(): package-relative files, sorted.
	Glob func(include, exclude []string) ([]string, error)
}

// String returns a string attribute of the call.
func (m *MacroCall) String(name string) string { s, _ := m.Attrs[name].(string); return s }

// Registry holds the rules and macros a build knows.
type Registry struct {
	rules  map[string]*Rule
	macros map[string]*Macro
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{rules: map[string]*Rule{}, macros: map[string]*Macro{}}
}

// RegisterMacro adds m; its name must not clash with a rule's.
func (r *Registry) RegisterMacro(m *Macro) {
	if _, dup := r.rules[m.Name]; dup {
		panic(fmt.Sprintf("macro %s clashes with a rule", m.Name))
	}
	if _, dup := r.macros[m.Name]; dup {
		panic(fmt.Sprintf("macro %s registered twice", m.Name))
	}
	r.macros[m.Name] = m
}

// LookupMacro returns the macro named name.
func (r *Registry) LookupMacro(name string) (*Macro, bool) {
	m, ok := r.macros[name]
	return m, ok
}

// MacroNames lists the registered macros, sorted.
func (r *Registry) MacroNames() []string {
	var names []string
	for n := range r.macros {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Register adds r; registering a name twice is a programming error.
func (r *Registry) Register(rule *Rule) {
	if _, dup := r.macros[rule.Name]; dup {
		panic(fmt.Sprintf("rule %s clashes with a macro", rule.Name))
	}
	if _, dup := r.rules[rule.Name]; dup {
		panic(fmt.Sprintf("rule %s registered twice", rule.Name))
	}
	r.rules[rule.Name] = rule
}

// Lookup returns the rule named name.
func (r *Registry) Lookup(name string) (*Rule, bool) {
	rule, ok := r.rules[name]
	return rule, ok
}

// Names lists the registered rules, sorted.
func (r *Registry) Names() []string {
	var names []string
	for n := range r.rules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Pos is a position in a Starlark file, relative to the workspace root.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Target is a rule instance declared in a BUILD.star file.
type Target struct {
	Label Label
	Rule  *Rule
	// Attrs holds every attribute of the rule, defaults filled in: string,
	// []string, Label, []Label, bool, int64, map[string]string.
	Attrs map[string]any
	Pos   Pos
	// Tags are free-form strings users set with tags = [...].
	Tags []string
}

// Deps lists every label the target's attributes mention, in attribute
// order, each with the attribute naming it.
func (t *Target) Deps() []Dep {
	var deps []Dep
	for _, a := range t.Rule.Attrs {
		switch v := t.Attrs[a.Name].(type) {
		case Label:
			if v != (Label{}) {
				deps = append(deps, Dep{Attr: a.Name, Label: v})
			}
		case []Label:
			for _, l := range v {
				deps = append(deps, Dep{Attr: a.Name, Label: l})
			}
		}
	}
	return deps
}

// Dep is one label a target's attribute refers to.
type Dep struct {
	Attr  string
	Label Label
}

// Package is the evaluated contents of one BUILD.star.
type Package struct {
	Path    string // "" for the root package
	File    string // workspace-relative path of the BUILD.star
	Targets map[string]*Target
	Order   []string // target names in declaration order
	// Loads are the .star files the package loaded, transitively.
	Loads []string
	// Globbed holds the package-relative files glob() returned: they are
	// known to exist, so resolving a label to one needs no stat.
	Globbed map[string]bool
}

// DidYouMean returns the candidate closest to s, or "" when none is close.
func DidYouMean(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		d := levenshtein.Distance(strings.ToLower(s), strings.ToLower(c), nil)
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
