package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func names(stacks []*Stack) []string {
	var out []string
	for _, s := range stacks {
		out = append(out, s.DisplayName)
	}
	return out
}

func TestLoadAssembly(t *testing.T) {
	app, _ := filepath.Abs(filepath.Join("testdata", "app"))
	stacks := load(t, app)
	got := strings.Join(names(stacks), ",")
	// Dependencies first; otherwise the manifest's (sorted) order.
	if got != "ApiStack,DepStack,IndStack,Prod/Inner" {
		t.Fatalf("order %s", got)
	}
	api, dep, ind, inner := stacks[0], stacks[1], stacks[2], stacks[3]
	if len(dep.Deps) != 1 || dep.Deps[0] != api {
		t.Errorf("DepStack deps %v", names(dep.Deps))
	}
	if inner.StackName != "Prod-Inner" || inner.AssemblyDir != filepath.Join(app, "assembly-Prod") {
		t.Errorf("nested stack: name %q dir %q", inner.StackName, inner.AssemblyDir)
	}
	if ind.Tags["team"] != "a" || ind.Account != "" || ind.Region != "" {
		t.Errorf("IndStack tags %v env %q/%q", ind.Tags, ind.Account, ind.Region)
	}
	if api.RequiresBootstrap != 6 || api.BootstrapParam != DefaultBootstrapParam {
		t.Errorf("bootstrap requirement %d %q", api.RequiresBootstrap, api.BootstrapParam)
	}
	kinds := map[string]bool{}
	for _, a := range api.Assets {
		switch {
		case a.Zip && a.Source == filepath.Join(app, "asset."+codeAsset):
			kinds["code"] = true
			if a.Key != codeAsset+".zip" || a.Bucket != "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}" {
				t.Errorf("code asset destination %s/%s", a.Bucket, a.Key)
			}
		case a.Source == api.TemplateFile:
			kinds["template"] = true
		case !a.Zip:
			kinds["file"] = true
		}
	}
	if len(kinds) != 3 {
		t.Errorf("ApiStack assets: %v", kinds)
	}
	if !strings.HasPrefix(api.TemplateURL, "s3://cdk-hnb659fds-assets-") || !strings.Contains(api.ExecRoleARN, "cfn-exec-role") {
		t.Errorf("template URL %q, exec role %q", api.TemplateURL, api.ExecRoleARN)
	}
}

func TestSelectStacks(t *testing.T) {
	stacks := load(t, filepath.Join("testdata", "app"))
	for glob, want := range map[string]string{
		"DepStack":   "ApiStack,DepStack", // with its dependency
		"Prod/*":     "Prod/Inner",
		"Prod-Inner": "Prod/Inner", // by CloudFormation name
		"*Stack":     "ApiStack,DepStack,IndStack",
	} {
		sel, err := Select(stacks, []string{glob})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names(sel), ","); got != want {
			t.Errorf("Select %q = %s, want %s", glob, got, want)
		}
	}
	if _, err := Select(stacks, []string{"Nope*"}); err == nil || !strings.Contains(err.Error(), "the stacks are: ApiStack, DepStack") {
		t.Errorf("no match: %v", err)
	}
}

func TestLoadAssemblyErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadAssemblies([]string{dir}); err == nil || !strings.Contains(err.Error(), "not a cloud assembly") {
		t.Errorf("empty dir: %v", err)
	}

	// A dependency cycle names its stacks.
	manifest := `{"version": "55.0.0", "artifacts": {
  "A": {"type": "aws:cloudformation:stack", "environment": "aws://123456789012/us-east-1", "properties": {"templateFile": "A.json"}, "dependencies": ["B"]},
  "B": {"type": "aws:cloudformation:stack", "environment": "aws://123456789012/us-east-1", "properties": {"templateFile": "B.json"}, "dependencies": ["A"]}}}`
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o644)
	os.WriteFile(filepath.Join(dir, "A.json"), []byte(`{"Resources": {}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "B.json"), []byte(`{"Resources": {}}`), 0o644)
	if _, err := LoadAssemblies([]string{dir}); err == nil || !strings.Contains(err.Error(), "cycle: A -> B -> A") {
		t.Errorf("cycle: %v", err)
	}

	// Explicit environments are kept.
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(strings.Replace(manifest, `"dependencies": ["A"]`, `"dependencies": []`, 1)), 0o644)
	stacks, err := LoadAssemblies([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if stacks[0].DisplayName != "B" || stacks[0].Account != "123456789012" || stacks[0].Region != "us-east-1" {
		t.Errorf("B first with its environment: %+v", stacks[0])
	}

	// The same assembly twice would deploy each stack twice.
	if _, err := LoadAssemblies([]string{dir, dir}); err == nil || !strings.Contains(err.Error(), "two cloud assembly stacks deploy to stack") {
		t.Errorf("duplicate stacks: %v", err)
	}
}

func TestTemplateURL(t *testing.T) {
	se := &stackEnv{regionClients: &regionClients{region: "eu-west-1"}, account: "111122223333", partition: "aws"}
	const u = "s3://cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}/abc.json"
	for _, c := range []struct{ s3Base, override, want string }{
		{"", "", "https://s3.eu-west-1.amazonaws.com/cdk-hnb659fds-assets-111122223333-eu-west-1/abc.json"},
		{"http://127.0.0.1:5000", "", "http://localhost:5000/cdk-hnb659fds-assets-111122223333-eu-west-1/abc.json"},
		{"http://127.0.0.1:5000", "http://s3.internal:9000/", "http://s3.internal:9000/cdk-hnb659fds-assets-111122223333-eu-west-1/abc.json"},
	} {
		se.s3Base = c.s3Base
		got, err := se.templateURL(u, c.override)
		if err != nil || got != c.want {
			t.Errorf("templateURL(base %q, override %q) = %q, %v; want %q", c.s3Base, c.override, got, err, c.want)
		}
	}
	if p := partitionOf("cn-north-1"); p != "aws-cn" {
		t.Errorf("partition of cn-north-1: %s", p)
	}
}

// Templates compare by meaning, not by formatting.
func TestCanonicalJSON(t *testing.T) {
	a, _ := canonicalJSON([]byte("{\n \"B\": [1, 2.50],\n \"A\": {\"y\": \"\\u00e9\", \"x\": true}\n}"))
	b, _ := canonicalJSON([]byte(`{"A":{"x":true,"y":"é"},"B":[1,2.50]}`))
	if string(a) != string(b) {
		t.Errorf("%s != %s", a, b)
	}
	c, _ := canonicalJSON([]byte(`{"A":{"x":true,"y":"é"},"B":[2.50,1]}`))
	if string(a) == string(c) {
		t.Error("list order must matter")
	}
}
