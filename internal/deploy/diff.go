package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// sections of a template whose entries are named things, diffed entry by
// entry; other top-level keys are diffed as values.
var namedSections = []string{"Parameters", "Mappings", "Conditions", "Rules", "Resources", "Outputs"}

// TemplateDiff writes the differences between the deployed template old
// (nil: not deployed) and new, section by section and resource by resource,
// with the changed properties' paths, and reports whether there were any.
func TemplateDiff(w io.Writer, old, new []byte) (bool, error) {
	o, err := decodeTemplate(old)
	if err != nil {
		return false, fmt.Errorf("deployed template: %w", err)
	}
	n, err := decodeTemplate(new)
	if err != nil {
		return false, fmt.Errorf("template: %w", err)
	}
	var b bytes.Buffer
	named := map[string]bool{}
	for _, sec := range namedSections {
		named[sec] = true
		om, _ := o[sec].(map[string]any)
		nm, _ := n[sec].(map[string]any)
		diffSection(&b, sec, om, nm)
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
		var lines []string
		diffValue(&lines, k, o[k], n[k])
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	_, err = w.Write(b.Bytes())
	return b.Len() > 0, err
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

func diffSection(b *bytes.Buffer, sec string, o, n map[string]any) {
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
	header := false
	head := func() {
		if !header {
			fmt.Fprintf(b, "  %s\n", sec)
			header = true
		}
	}
	for _, k := range keys {
		ov, inOld := o[k]
		nv, inNew := n[k]
		kind := ""
		if sec == "Resources" {
			kind = resourceType(nv)
			if kind == "" {
				kind = resourceType(ov)
			}
			kind += " "
		}
		switch {
		case !inOld:
			head()
			fmt.Fprintf(b, "  [+] %s%s\n", kind, k)
		case !inNew:
			head()
			fmt.Fprintf(b, "  [-] %s%s\n", kind, k)
		case canon(ov) != canon(nv):
			head()
			note := ""
			if sec == "Resources" && resourceType(ov) != resourceType(nv) {
				note = fmt.Sprintf(" (type %s → %s: replaced)", resourceType(ov), resourceType(nv))
			}
			fmt.Fprintf(b, "  [~] %s%s%s\n", kind, k, note)
			var lines []string
			diffValue(&lines, "", ov, nv)
			for _, l := range lines {
				fmt.Fprintf(b, "       %s\n", l)
			}
		}
	}
}

func resourceType(v any) string {
	m, _ := v.(map[string]any)
	t, _ := m["Type"].(string)
	return t
}

// diffValue appends one line per changed leaf: "path: old → new", or
// "+ path: v" / "- path: v" for added and removed keys and list items.
func diffValue(lines *[]string, path string, a, b any) {
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
				*lines = append(*lines, fmt.Sprintf("+ %s: %s", join(path, k), short(y)))
			case !inB:
				*lines = append(*lines, fmt.Sprintf("- %s: %s", join(path, k), short(x)))
			default:
				diffValue(lines, join(path, k), x, y)
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
				*lines = append(*lines, fmt.Sprintf("+ %s: %s", p, short(bv[i])))
			case i >= len(bv):
				*lines = append(*lines, fmt.Sprintf("- %s: %s", p, short(av[i])))
			default:
				diffValue(lines, p, av[i], bv[i])
			}
		}
		return
	}
	if path == "" {
		path = "value"
	}
	*lines = append(*lines, fmt.Sprintf("%s: %s → %s", path, short(a), short(b)))
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

// mapDiff writes the differences of two string maps (parameters, tags).
func mapDiff(b io.Writer, what string, o, n map[string]string) bool {
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
	found := false
	for _, k := range sorted {
		ov, inO := o[k]
		nv, inN := n[k]
		if inO && inN && ov == nv {
			continue
		}
		if !found {
			fmt.Fprintf(b, "  %s\n", what)
			found = true
		}
		switch {
		case !inO:
			fmt.Fprintf(b, "  [+] %s = %s\n", k, nv)
		case !inN:
			fmt.Fprintf(b, "  [-] %s = %s\n", k, ov)
		default:
			fmt.Fprintf(b, "  [~] %s: %s → %s\n", k, ov, nv)
		}
	}
	return found
}
