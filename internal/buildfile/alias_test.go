package buildfile

import (
	"context"
	"testing"

	"github.com/pipebuild/pipe/internal/rules"
)

// TestArchitectureAliases: the other names users give the Lambda
// architectures (amd64, aarch64) are accepted, through the fastapi_project
// macro too, and stored as Lambda's names, so both spellings give the same
// targets and action keys.
func TestArchitectureAliases(t *testing.T) {
	root := workspace(t, map[string]string{
		"p/BUILD.star": `
python_bundle(name = "x", module = "m", architecture = "amd64")
python_bundle(name = "a", module = "m", architecture = "aarch64")
fastapi_project(name = "svc", architecture = "amd64")
`,
		"p/svc/main.py": "app = None\n",
	})
	p, err := NewEvaluator(root, rules.Registry()).LoadPackage(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"x": "x86_64", "a": "arm64", "bundle": "x86_64"} {
		tg, ok := p.Targets[name]
		if !ok {
			t.Fatalf("no target %s", name)
		}
		if got := tg.Attrs["architecture"]; got != want {
			t.Errorf("%s: architecture = %v, want %s", name, got, want)
		}
	}
}
