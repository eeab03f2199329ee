package deploy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// sections of a template whose entries are named things, diffed entry by
// entry; other top-level keys are diffed as values.
var namedSections = []string{"Parameters", "Mappings", "Conditions", "Rules", "Resources", "Outputs"}

// ChangeKind is how an entry or a value differs.
type ChangeKind string

const (
	Added    ChangeKind = "add"
	Removed  ChangeKind = "remove"
	Modified ChangeKind = "modify"
)

// TemplateChange is one difference between a deployed template and the
// local one: an entry of a named section (a resource, an output…) added,
// removed or modified, or a top-level value (Description…) that changed.
type TemplateChange struct {
	// Section is the template section ("Resources", "Outputs"…); "" for
	// a top-level value, whose Values then hold the change.
	Section string
	// Name is the entry's name (a resource's logical ID) or the
	// top-level key.
	Name string
	// Type is a resource's type; OldType is set when the type changed,
	// which replaces the resource.
	Type, OldType string
	Kind          ChangeKind
	// Values are the changed leaves of a modified entry.
	Values []ValueChange
}

// ValueChange is one changed leaf of a template value, at a dotted path
// ("Properties.Code.S3Key", "Layers[1]"). Old and New are brief JSON.
type ValueChange struct {
	Path     string
	Kind     ChangeKind
	Old, New string
}

// MapChange is one changed entry of a string map (tags, parameter
// values).
type MapChange struct {
	Key      string
	Kind     ChangeKind
	Old, New string
}

// DiffTemplates compares the deployed template old (nil: not deployed)
// with new, section by section and entry by entry, in a stable order:
// the named sections first, then other top-level keys sorted.
func DiffTemplates(old, new []byte) ([]TemplateChange, error) {
	o, err := decodeTemplate(old)
	if err != nil {
		return nil, fmt.Errorf("deployed template: %w", err)
	}
	n, err := decodeTemplate(new)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	var out []TemplateChange
	named := map[string]bool{}
	for _, sec := range namedSections {
		named[sec] = true
		om, _ := o[sec].(map[string]any)
		nm, _ := n[sec].(map[string]any)
		out = append(out, diffSection(sec, om, nm)...)
	}
	var other []string
	for k := range o {
		if !named[k] {
			other = append(other, k)
		}
	}
	for k := range n {
		if _, ok := o[k]; !ok && !named[k] {
			other = append(other, k)
		}
	}
	sort.Strings(other)
	for _, k := range other {
		var values []ValueChange
		diffValue(&values, k, o[k], n[k])
		if len(values) > 0 {
			out = append(out, TemplateChange{Name: k, Kind: Modified, Values: values})
		}
	}
	return out, nil
}

func decodeTemplate(b []byte) (map[string]any, error) {
	m := map[string]any{}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not JSON (a YAML template cannot be compared): %w", err)
	}
	return m, nil
}

func diffSection(sec string, o, n map[string]any) []TemplateChange {
	names := map[string]bool{}
	for k := range o {
		names[k] = true
	}
	for k := range n {
		names[k] = true
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []TemplateChange
	for _, k := range keys {
		ov, inOld := o[k]
		nv, inNew := n[k]
		c := TemplateChange{Section: sec, Name: k}
		if sec == "Resources" {
			c.Type = resourceType(nv)
			if c.Type == "" {
				c.Type = resourceType(ov)
			}
		}
		switch {
		case !inOld:
			c.Kind = Added
		case !inNew:
			c.Kind = Removed
		case canon(ov) != canon(nv):
			c.Kind = Modified
			if sec == "Resources" && resourceType(ov) != resourceType(nv) {
				c.OldType = resourceType(ov)
			}
			diffValue(&c.Values, "", ov, nv)
		default:
			continue
		}
		out = append(out, c)
	}
	return out
}

func resourceType(v any) string {
	m, _ := v.(map[string]any)
	t, _ := m["Type"].(string)
	return t
}

// diffValue appends one change per changed leaf: a modified value, or a
// key or list item added or removed.
func diffValue(out *[]ValueChange, path string, a, b any) {
	if canon(a) == canon(b) {
		return
	}
	join := func(p, k string) string {
		if p == "" {
			return k
		}
		return p + "." + k
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || isIntrinsic(av) || isIntrinsic(bv) {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inA:
				*out = append(*out, ValueChange{Path: join(path, k), Kind: Added, New: short(y)})
			case !inB:
				*out = append(*out, ValueChange{Path: join(path, k), Kind: Removed, Old: short(x)})
			default:
				diffValue(out, join(path, k), x, y)
			}
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		for i := 0; i < max(len(av), len(bv)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(av):
				*out = append(*out, ValueChange{Path: p, Kind: Added, New: short(bv[i])})
			case i >= len(bv):
				*out = append(*out, ValueChange{Path: p, Kind: Removed, Old: short(av[i])})
			default:
				diffValue(out, p, av[i], bv[i])
			}
		}
		return
	}
	if path == "" {
		path = "value"
	}
	*out = append(*out, ValueChange{Path: path, Kind: Modified, Old: short(a), New: short(b)})
}

// isIntrinsic reports a one-key {"Fn::…"} or {"Ref"} object, shown whole:
// its parts mean nothing on their own.
func isIntrinsic(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

func short(v any) string {
	s := canon(v)
	const maxLen = 120
	if len(s) > maxLen {
		s = s[:maxLen-1] + "…"
	}
	return s
}

// diffMaps compares two string maps (tags, parameter values), by key.
func diffMaps(o, n map[string]string) []MapChange {
	keys := map[string]bool{}
	for k := range o {
		keys[k] = true
	}
	for k := range n {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []MapChange
	for _, k := range sorted {
		ov, inO := o[k]
		nv, inN := n[k]
		switch {
		case inO && inN && ov == nv:
		case !inO:
			out = append(out, MapChange{Key: k, Kind: Added, New: nv})
		case !inN:
			out = append(out, MapChange{Key: k, Kind: Removed, Old: ov})
		default:
			out = append(out, MapChange{Key: k, Kind: Modified, Old: ov, New: nv})
		}
	}
	return out
}
