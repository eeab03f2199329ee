package buildfile

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	star "go.starlark.net/starlark"

	"github.com/pipebuild/pipe/internal/engine"
)

// commonAttrs are accepted by every rule. visibility is accepted so BUILD
// files written for Bazel read unchanged; pipe does not enforce it.
var commonAttrs = []engine.Attr{
	{Name: "tags", Type: engine.AttrStringList},
	{Name: "visibility", Type: engine.AttrStringList},
}

type builtinFunc = func(*star.Thread, *star.Builtin, star.Tuple, []star.Tuple) (star.Value, error)

// errAtFunc reports an error at an attribute of the current call (or at
// the call when attr is "").
type errAtFunc func(attr string, format string, a ...any) error

// schema is what rules and macros share: a name and typed attributes.
type schema struct {
	name  string
	attrs []engine.Attr
}

func (sc schema) lookup(name string) (engine.Attr, bool) {
	if name == "name" {
		return engine.Attr{Name: "name", Type: engine.AttrString, Required: true}, true
	}
	for _, a := range sc.attrs {
		if a.Name == name {
			return a, true
		}
	}
	return commonAttr(name)
}

// ruleBuiltin returns the Starlark function that declares a target of rule.
func (ev *Evaluator) ruleBuiltin(rule *engine.Rule) builtinFunc {
	return ev.callable(schema{rule.Name, rule.Attrs}, func(b *pkgBuilder, attrs map[string]any, declPos engine.Pos, errAt errAtFunc) error {
		return addTarget(b, rule, attrs, declPos, errAt)
	})
}

// macroBuiltin returns the Starlark function for a Go macro.
func (ev *Evaluator) macroBuiltin(m *engine.Macro) builtinFunc {
	return ev.callable(schema{m.Name, m.Attrs}, func(b *pkgBuilder, attrs map[string]any, declPos engine.Pos, errAt errAtFunc) error {
		call := &engine.MacroCall{Attrs: attrs, Package: b.pkg.Path}
		call.Glob = func(include, exclude []string) ([]string, error) {
			return ev.globFiles(b, include, exclude)
		}
		call.Declare = func(ruleName string, given map[string]any) error {
			rule, ok := ev.registry.Lookup(ruleName)
			if !ok {
				return errAt("", "internal error: macro declares unknown rule %s", ruleName)
			}
			converted := map[string]any{}
			for k, v := range given {
				attr, ok := schema{rule.Name, rule.Attrs}.lookup(k)
				if !ok {
					return errAt("", "internal error: %s has no attribute %s", rule.Name, k)
				}
				cv, err := convertGo(attr, v, b.pkg.Path)
				if err != nil {
					return errAt("", "%s attribute %s: %v", rule.Name, k, err)
				}
				converted[k] = cv
			}
			if err := fillDefaults(rule.Attrs, converted, errAt); err != nil {
				return err
			}
			return addTarget(b, rule, converted, declPos, errAt)
		}
		if err := m.Expand(call); err != nil {
			var be *engine.BuildFileError
			if errors.As(err, &be) {
				return err
			}
			return errAt("", "%v", err)
		}
		return nil
	})
}

// callable checks a call's keyword arguments against sc, converts them and
// hands them, defaults filled in, to finish.
func (ev *Evaluator) callable(sc schema, finish func(b *pkgBuilder, attrs map[string]any, declPos engine.Pos, errAt errAtFunc) error) builtinFunc {
	return func(thread *star.Thread, fn *star.Builtin, args star.Tuple, kwargs []star.Tuple) (star.Value, error) {
		call := callerPos(thread, 1)
		b, ok := thread.Local(localPkg).(*pkgBuilder)
		if !ok {
			return nil, engine.Errorf(ev.callStart(call), "%s: rules can only be called while a BUILD.star is evaluated; in a .star file, call them from inside a function (a macro)", sc.name)
		}
		// Where the target is "declared" for users: the outermost call in
		// the BUILD.star, which is the macro call when a macro made it.
		declPos := ev.callStart(toPos(thread.CallFrame(thread.CallStackDepth() - 1).Pos))
		inMacro := call.File != b.pkg.File
		errAt := func(attr string, format string, a ...any) error {
			pos := ev.callStart(call)
			if attr != "" {
				pos = ev.argPos(call, attr)
			}
			msg := fmt.Sprintf(format, a...)
			if inMacro {
				msg += fmt.Sprintf(" (in a macro called at %s)", declPos)
			}
			return engine.Errorf(pos, "%s: %s", sc.name, msg)
		}
		if len(args) > 0 {
			return nil, errAt("", "takes keyword arguments only, as in %s(name = \"...\", ...)", sc.name)
		}
		attrs := map[string]any{}
		for _, kv := range kwargs {
			name := string(kv[0].(star.String))
			attr, ok := sc.lookup(name)
			if !ok {
				names := []string{"name"}
				for _, a := range sc.attrs {
					names = append(names, a.Name)
				}
				names = append(names, "tags", "visibility")
				hint := ""
				if s := engine.DidYouMean(name, names); s != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					hint = fmt.Sprintf(" (%s takes %s)", sc.name, strings.Join(names, ", "))
				}
				return nil, errAt(name, "unknown attribute %q%s", name, hint)
			}
			v, err := convertAttr(attr, kv[1], b.pkg.Path)
			if err != nil {
				return nil, errAt(name, "attribute %s: %v", name, err)
			}
			attrs[name] = v
		}
		if _, ok := attrs["name"]; !ok {
			return nil, errAt("", "missing required attribute \"name\"")
		}
		nameV := attrs["name"].(string)
		if _, err := engine.ParseLabel(":"+nameV, b.pkg.Path); err != nil {
			return nil, errAt("name", "invalid target name %q: %v", nameV, err)
		}
		if err := fillDefaults(sc.attrs, attrs, errAt); err != nil {
			return nil, err
		}
		if err := finish(b, attrs, declPos, errAt); err != nil {
			return nil, err
		}
		return star.None, nil
	}
}

// fillDefaults adds defaults for attributes not given, and reports missing
// required ones.
func fillDefaults(decl []engine.Attr, attrs map[string]any, errAt errAtFunc) error {
	nameV, _ := attrs["name"].(string)
	for _, a := range decl {
		if _, given := attrs[a.Name]; given {
			continue
		}
		if a.Required {
			return errAt("", "target %q: missing required attribute %q (%s)", nameV, a.Name, a.Type)
		}
		attrs[a.Name] = defaultValue(a)
	}
	return nil
}

// addTarget adds a target of rule with checked attributes to the package.
func addTarget(b *pkgBuilder, rule *engine.Rule, attrs map[string]any, declPos engine.Pos, errAt errAtFunc) error {
	nameV, _ := attrs["name"].(string)
	if _, err := engine.ParseLabel(":"+nameV, b.pkg.Path); err != nil {
		return errAt("name", "invalid target name %q: %v", nameV, err)
	}
	if prev, dup := b.pkg.Targets[nameV]; dup {
		return errAt("name", "duplicate target name %q: already declared at %s", nameV, prev.Pos)
	}
	t := &engine.Target{Rule: rule, Attrs: attrs, Pos: declPos, Label: engine.Label{Pkg: b.pkg.Path, Name: nameV}}
	t.Tags, _ = attrs["tags"].([]string)
	b.pkg.Targets[nameV] = t
	b.pkg.Order = append(b.pkg.Order, nameV)
	return nil
}

// convertGo checks a Go value a macro passes for attribute a, parsing label
// strings against the package.
func convertGo(a engine.Attr, v any, pkg string) (any, error) {
	switch a.Type {
	case engine.AttrLabel:
		switch x := v.(type) {
		case engine.Label:
			return x, nil
		case string:
			return engine.ParseLabel(x, pkg)
		}
	case engine.AttrLabelList:
		switch x := v.(type) {
		case []engine.Label:
			return x, nil
		case []string:
			out := make([]engine.Label, 0, len(x))
			for _, s := range x {
				l, err := engine.ParseLabel(s, pkg)
				if err != nil {
					return nil, err
				}
				out = append(out, l)
			}
			return out, nil
		}
	case engine.AttrString, engine.AttrOutput:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case engine.AttrStringList, engine.AttrOutputList:
		if s, ok := v.([]string); ok {
			return s, nil
		}
	case engine.AttrBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case engine.AttrInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		}
	case engine.AttrStringDict:
		if d, ok := v.(map[string]string); ok {
			return d, nil
		}
	}
	return nil, fmt.Errorf("want a %s, got %T", a.Type, v)
}

func commonAttr(name string) (engine.Attr, bool) {
	for _, a := range commonAttrs {
		if a.Name == name {
			return a, true
		}
	}
	return engine.Attr{}, false
}

func defaultValue(a engine.Attr) any {
	if a.Default != nil {
		return a.Default
	}
	switch a.Type {
	case engine.AttrString, engine.AttrOutput:
		return ""
	case engine.AttrStringList, engine.AttrOutputList:
		return []string(nil)
	case engine.AttrLabel:
		return engine.Label{}
	case engine.AttrLabelList:
		return []engine.Label(nil)
	case engine.AttrBool:
		return false
	case engine.AttrInt:
		return int64(0)
	case engine.AttrStringDict:
		return map[string]string(nil)
	}
	return nil
}

func typeName(v star.Value) string {
	if v == star.None {
		return "None"
	}
	return v.Type()
}

func toStrings(v star.Value) ([]string, error) {
	iter, ok := v.(star.Indexable)
	if !ok || v.Type() == "string" {
		return nil, fmt.Errorf("want a list of strings, got %s", typeName(v))
	}
	out := make([]string, iter.Len())
	for i := range out {
		s, ok := star.AsString(iter.Index(i))
		if !ok {
			return nil, fmt.Errorf("element %d: want a string, got %s", i, typeName(iter.Index(i)))
		}
		out[i] = s
	}
	return out, nil
}

// checkOutputName refuses output names that would escape the target's
// output directory.
func checkOutputName(s string) error {
	if s == "" {
		return fmt.Errorf("empty output name")
	}
	if path.IsAbs(s) || s != path.Clean(s) || s == ".." || strings.HasPrefix(s, "../") {
		return fmt.Errorf("output %q must be a clean relative path inside the target's output directory", s)
	}
	return nil
}

// convertAttr checks a Starlark value against the attribute's type and
// converts it to the Go value the engine stores.
func convertAttr(a engine.Attr, v star.Value, pkg string) (any, error) {
	switch a.Type {
	case engine.AttrString:
		s, ok := star.AsString(v)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", typeName(v))
		}
		if canonical, ok := a.Aliases[s]; ok {
			s = canonical
		}
		if len(a.Values) > 0 && !contains(a.Values, s) {
			hint := ""
			if d := engine.DidYouMean(s, a.Values); d != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", d)
			}
			return nil, fmt.Errorf("%q is not one of %s%s", s, quoteAll(a.Values), hint)
		}
		return s, nil
	case engine.AttrOutput:
		s, ok := star.AsString(v)
		if !ok {
			return nil, fmt.Errorf("want a file name, got %s", typeName(v))
		}
		return s, checkOutputName(s)
	case engine.AttrStringList, engine.AttrOutputList:
		ss, err := toStrings(v)
		if err != nil {
			return nil, err
		}
		if a.Type == engine.AttrOutputList {
			seen := map[string]bool{}
			for _, s := range ss {
				if err := checkOutputName(s); err != nil {
					return nil, err
				}
				if seen[s] {
					return nil, fmt.Errorf("output %q listed twice", s)
				}
				seen[s] = true
			}
		}
		return ss, nil
	case engine.AttrLabel:
		s, ok := star.AsString(v)
		if !ok {
			return nil, fmt.Errorf("want a label string, got %s", typeName(v))
		}
		return engine.ParseLabel(s, pkg)
	case engine.AttrLabelList:
		ss, err := toStrings(v)
		if err != nil {
			return nil, err
		}
		out := make([]engine.Label, 0, len(ss))
		seen := map[engine.Label]bool{}
		for _, s := range ss {
			l, err := engine.ParseLabel(s, pkg)
			if err != nil {
				return nil, err
			}
			if seen[l] {
				return nil, fmt.Errorf("%s is listed twice", l)
			}
			seen[l] = true
			out = append(out, l)
		}
		return out, nil
	case engine.AttrBool:
		b, ok := v.(star.Bool)
		if !ok {
			return nil, fmt.Errorf("want True or False, got %s", typeName(v))
		}
		return bool(b), nil
	case engine.AttrInt:
		i, err := star.AsInt32(v)
		if err != nil {
			return nil, fmt.Errorf("want an int, got %s", typeName(v))
		}
		return int64(i), nil
	case engine.AttrStringDict:
		d, ok := v.(*star.Dict)
		if !ok {
			return nil, fmt.Errorf("want a dict of strings, got %s", typeName(v))
		}
		out := make(map[string]string, d.Len())
		for _, item := range d.Items() {
			k, ok1 := star.AsString(item[0])
			val, ok2 := star.AsString(item[1])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("want a dict of strings to strings, got %s: %s", typeName(item[0]), typeName(item[1]))
			}
			out[k] = val
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported attribute type %v", a.Type)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	sort.Strings(q)
	return strings.Join(q, ", ")
}
