package deploy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadAssemblies: any manifest.json loads into stacks or fails with an
// error, without a panic, and never names a template outside the assembly.
func FuzzLoadAssemblies(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "app", "manifest.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version": "36.0.0", "artifacts": {"S": {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region", "properties": {"templateFile": "../../etc/passwd"}}}}`))
	f.Add([]byte(`{"version": "36.0.0", "artifacts": {"A": {"type": "aws:cloudformation:stack", "dependencies": ["A"], "properties": {"templateFile": "A.json"}}}}`))
	f.Add([]byte(`{"version": "36.0.0", "artifacts": {"N": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "..", "displayName": "N"}}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		dir := t.TempDir()
		asm := filepath.Join(dir, "cdk.out")
		os.MkdirAll(asm, 0o755)
		os.WriteFile(filepath.Join(asm, "manifest.json"), manifest, 0o644)
		os.WriteFile(filepath.Join(asm, "A.json"), []byte(`{"Resources": {}}`), 0o644)
		stacks, err := LoadAssemblies([]string{asm})
		if err != nil {
			return
		}
		for _, s := range stacks {
			rel, err := filepath.Rel(asm, s.TemplateFile)
			if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) > 2 && rel[:3] == "../" {
				t.Fatalf("stack %s reads its template from %s, outside the assembly", s.ID, s.TemplateFile)
			}
		}
	})
}
