package cdk

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLinkedPackages: the packages node_modules links to outside itself
// (top level and in @scope directories) are named by their real paths;
// links into node_modules itself, real directories and dangling links are
// not.
func TestLinkedPackages(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nm := filepath.Join(root, "node_modules")
	store := filepath.Join(root, "store")
	for _, d := range []string{
		filepath.Join(store, "aws-cdk-lib"),
		filepath.Join(store, "lib"),
		filepath.Join(nm, ".pnpm", "x"),
		filepath.Join(nm, "constructs"),
		filepath.Join(nm, "@my"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"aws-cdk-lib": filepath.Join(store, "aws-cdk-lib"),
		"@my/lib":     filepath.Join("..", "..", "store", "lib"),
		"inner":       filepath.Join(".pnpm", "x"),
		"dangling":    filepath.Join(root, "missing"),
	} {
		if err := os.Symlink(target, filepath.Join(nm, link)); err != nil {
			t.Fatal(err)
		}
	}
	got := linkedPackages(nm)
	slices.Sort(got)
	want := []string{filepath.Join(store, "aws-cdk-lib"), filepath.Join(store, "lib")}
	if !slices.Equal(got, want) {
		t.Errorf("linkedPackages = %q, want %q", got, want)
	}
}
