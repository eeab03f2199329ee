package migrate

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// writeTree writes files (slash paths → content) under a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestNxFixture: on the generator-shaped fixture every generated target
// is translated, and every other target is listed once, with its
// executor. A dry run writes nothing.
func TestNxFixture(t *testing.T) {
	res, err := Nx(NxOptions{Root: "testdata/nx", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var translated []string
	for _, tr := range res.Translated {
		translated = append(translated, tr.Project+":"+tr.Target+" "+tr.Rule+" "+tr.Label)
	}
	sort.Strings(translated)
	want := []string{
		"@acme/common-constructs:generate:billing-api-metadata api_metadata //packages/common/constructs:billing-api-metadata",
		"@acme/common-constructs:generate:orders-api-metadata api_metadata //packages/common/constructs:orders-api-metadata",
		"@acme/infra:synth cdk_stack //packages/infra",
		"acme.billing_api:bundle-arm python_bundle //packages/billing_api:bundle-arm",
		"acme.billing_api:openapi openapi_schema //packages/billing_api:openapi",
		"acme.billing_api:serve fastapi_serve //packages/billing_api:serve",
		"acme.orders_api:bundle-x86 python_bundle //packages/orders_api:bundle-x86",
		"acme.orders_api:openapi openapi_schema //packages/orders_api:openapi",
		"acme.orders_api:serve fastapi_serve //packages/orders_api:serve",
	}
	if strings.Join(translated, "\n") != strings.Join(want, "\n") {
		t.Errorf("translated:\n%s\nwant:\n%s", strings.Join(translated, "\n"), strings.Join(want, "\n"))
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		key := s.Project + ":" + s.Target
		if _, dup := skipped[key]; dup {
			t.Errorf("%s listed twice", key)
		}
		skipped[key] = s.Executor
	}
	for key, exec := range map[string]string{
		"@acme/tools:gen-docs":            "@acme/workspace-plugin:docs", // unknown executor
		"@acme/tools:seed":                "nx:run-commands",
		"acme.orders_api-e2e:e2e":         "@nx/playwright:playwright", // nested in packages/orders_api
		"@acme/docs:":                     "",                          // no targets, no sources
		"acme.orders_api:test":            "@nxlv/python:run-commands",
		"acme.orders_api:lint":            "@nxlv/python:ruff-check",
		"acme.orders_api:serve-local":     "@nxlv/python:run-commands",
		"@acme/infra:deploy":              "nx:run-commands",
		"@acme/infra:checkov":             "nx:run-commands",
		"@acme/common-constructs:compile": "nx:run-commands",
	} {
		if got, ok := skipped[key]; !ok || got != exec {
			t.Errorf("%s: skipped with executor %q (%t), want %q", key, got, ok, exec)
		}
	}
	if len(skipped)+len(translated) != 42 {
		t.Errorf("%d targets accounted for, want the fixture's 42 (and its project without targets)", len(skipped)+len(translated))
	}
	for _, f := range res.Files {
		if _, err := os.Stat(filepath.Join("testdata/nx", f.Path)); f.Path != ".gitignore" && err == nil {
			t.Errorf("a dry run wrote %s", f.Path)
		}
	}
}

// TestNxEdgeCases: a project nested in another's directory, a spec no
// translated target makes, a command pipe cannot read, and a project
// without targets but with sources.
func TestNxEdgeCases(t *testing.T) {
	root := writeTree(t, map[string]string{
		"nx.json":                    "{}",
		"libs/ui/project.json":       `{"name": "ui", "targets": {"build": {"executor": "@nx/js:tsc"}}}`,
		"libs/ui/src/index.ts":       "export const ui = 1;\n",
		"libs/ui/icons/project.json": `{"name": "ui-icons"}`,
		"libs/ui/icons/src/a.ts":     "export const a = 1;\n",
		"libs/api/project.json": `{"name": "api", "targets": {
			"generate:x-metadata": {"executor": "@aws/nx-plugin:open-api-codegen", "options": {"generator": "ts-metadata", "openApiSpecPath": "specs/x.json", "outputPath": "libs/api/src/generated/x"}},
			"broken": {"executor": "nx:run-commands", "options": {"command": "echo 'unterminated"}}
		}}`,
		"libs/api/src/index.ts": "export {};\n",
	})
	res, err := Nx(NxOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, s := range res.Skipped {
		reasons[s.Project+":"+s.Target] = s.Reason
	}
	for key, want := range map[string]string{
		"ui:build":                "executor @nx/js:tsc is not one pipe translates",
		"api:generate:x-metadata": "its spec specs/x.json is not made by a target pipe translated",
		"api:broken":              "a command pipe does not recognise",
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("%s: reason %q, want it to say %q", key, reasons[key], want)
		}
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{
		"libs/ui/icons (ui-icons) is inside libs/ui (ui): it is a package of its own, //libs/ui/icons, and //libs/ui's globs stop at it",
		"libs/ui/icons (ui-icons) has no targets: its BUILD.star is a filegroup",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "libs/ui/icons/BUILD.star"))
	if err != nil || !strings.Contains(string(b), `name = "icons"`) {
		t.Errorf("libs/ui/icons/BUILD.star: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(root, "WORKSPACE.star")); err != nil {
		t.Error(err)
	}
}

// TestNxNeedsNxJSON: without nx.json it is a usage error, naming the
// directory.
func TestNxNeedsNxJSON(t *testing.T) {
	root := t.TempDir()
	if _, err := Nx(NxOptions{Root: root}); err == nil || !strings.Contains(err.Error(), "no nx.json in "+root) {
		t.Errorf("err = %v", err)
	}
}
