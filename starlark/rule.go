package starlark

import (
	"fmt"
	"path"
	"sort"
	"strings"

	star "go.starlark.net/starlark"

	"github.com/pipebuild/pipe/engine"
)

// commonAttrs are accepted by every rule. visibility is accepted so BUILD
// files written for Bazel read unchanged; pipe does not enforce it.
var commonAttrs = []engine.Attr{
	{Name: "tags", Type: engine.AttrStringList},
	{Name: "visibility", Type: engine.AttrStringList},
}

// ruleBuiltin returns the Starlark function that declares a target of rule.
func (ev *Evaluator) ruleBuiltin(rule *engine.Rule) func(*star.Thread, *star.Builtin, star.Tuple, []star.Tuple) (star.Value, error) {
	return func(thread *star.Thread, fn *star.Builtin, args star.Tuple, kwargs []star.Tuple) (star.Value, error) {
		call := callerPos(thread, 1)
		b, ok := thread.Local(localPkg).(*pkgBuilder)
		if !ok {
			return nil, engine.Errorf(ev.callStart(call), "%s: rules can only be called while a BUILD.star is evaluated; in a .star file, call them from inside a function (a macro)", rule.Name)
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
			return engine.Errorf(pos, "%s: %s", rule.Name, msg)
		}
		if len(args) > 0 {
			return nil, errAt("", "takes keyword arguments only, as in %s(name = \"...\", ...)", rule.Name)
		}
		t := &engine.Target{Rule: rule, Attrs: map[string]any{}, Pos: declPos}
		given := map[string]bool{}
		for _, kv := range kwargs {
			name := string(kv[0].(star.String))
			given[name] = true
			attr, ok := rule.Attr(name)
			if !ok {
				if ca, isCommon := commonAttr(name); isCommon {
					attr = ca
				} else {
					names := append(rule.AttrNames(), "tags", "visibility")
					hint := ""
					if s := engine.DidYouMean(name, names); s != "" {
						hint = fmt.Sprintf(" (did you mean %q?)", s)
					} else {
						hint = fmt.Sprintf(" (%s takes %s)", rule.Name, strings.Join(names, ", "))
					}
					return nil, errAt(name, "unknown attribute %q%s", name, hint)
				}
			}
			v, err := convertAttr(attr, kv[1], b.pkg.Path)
			if err != nil {
				return nil, errAt(name, "attribute %s: %v", name, err)
			}
			t.Attrs[name] = v
		}
		nameV, _ := t.Attrs["name"].(string)
		if !given["name"] {
			return nil, errAt("", "missing required attribute \"name\"")
		}
		if _, err := engine.ParseLabel(":"+nameV, b.pkg.Path); err != nil {
			return nil, errAt("name", "invalid target name %q: %v", nameV, err)
		}
		for _, a := range rule.Attrs {
			if given[a.Name] {
				continue
			}
			if a.Required {
				return nil, errAt("", "target %q: missing required attribute %q (%s)", nameV, a.Name, a.Type)
			}
			t.Attrs[a.Name] = defaultValue(a)
		}
		t.Tags, _ = t.Attrs["tags"].([]string)
		t.Label = engine.Label{Pkg: b.pkg.Path, Name: nameV}
		if prev, dup := b.pkg.Targets[nameV]; dup {
			return nil, errAt("name", "duplicate target name %q: already declared at %s", nameV, prev.Pos)
		}
		b.pkg.Targets[nameV] = t
		b.pkg.Order = append(b.pkg.Order, nameV)
		return star.None, nil
	}
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
