package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// mapLoader serves packages built in the test.
type mapLoader map[string]*Package

func (m mapLoader) LoadPackage(_ context.Context, pkg string) (*Package, error) { return m[pkg], nil }

type libInfo struct{ Name string }

// A rule's provider reaches the targets that depend on it (InfoOf) and the
// CLI (TargetInfo), typed; another key, or a key of the same name and
// another type, finds nothing.
func TestProviders(t *testing.T) {
	libKey := NewInfoKey[libInfo]("test.lib")
	seen := map[string]libInfo{}
	lib := &Rule{Name: "lib", Analyze: func(c *AnalysisContext) error {
		SetInfo(c, libKey, libInfo{Name: c.Label().Name})
		return nil
	}}
	app := &Rule{Name: "app", Attrs: []Attr{{Name: "deps", Type: AttrLabelList}}, Analyze: func(c *AnalysisContext) error {
		for _, l := range c.Labels("deps") {
			if v, ok := InfoOf(c, l, libKey); ok {
				seen[l.String()] = v
			}
			if _, ok := InfoOf(c, l, NewInfoKey[string]("test.lib")); ok {
				t.Errorf("%s: test.lib read as a string", l)
			}
		}
		return nil
	}}
	pkg := &Package{Path: "p", File: "p/BUILD.star", Targets: map[string]*Target{}, Order: []string{"a", "b", "app"}}
	add := func(name string, r *Rule, attrs map[string]any) {
		pkg.Targets[name] = &Target{Label: Label{Pkg: "p", Name: name}, Rule: r, Attrs: attrs}
	}
	add("a", lib, map[string]any{})
	add("b", app, map[string]any{"deps": []Label{}})
	add("app", app, map[string]any{"deps": []Label{{Pkg: "p", Name: "a"}, {Pkg: "p", Name: "b"}}})
	ws := &Workspace{Root: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(ws.Root, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws.Root, "p", BuildFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tg, err := LoadTargets(context.Background(), ws, mapLoader{"p": pkg}, []Pattern{{Pkg: "p", Name: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := Analyze(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen["//p:a"].Name != "a" {
		t.Errorf("app saw %v, want //p:a's info only", seen)
	}
	if v, ok := TargetInfo(ag, Label{Pkg: "p", Name: "a"}, libKey); !ok || v.Name != "a" {
		t.Errorf("TargetInfo(//p:a) = %v, %t", v, ok)
	}
	if _, ok := TargetInfo(ag, Label{Pkg: "p", Name: "b"}, libKey); ok {
		t.Errorf("//p:b provides no test.lib")
	}
	if libKey.String() != "test.lib" {
		t.Errorf("key name %q", libKey)
	}
}
