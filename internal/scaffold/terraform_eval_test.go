package scaffold

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/pipebuild/pipe/internal/testenv"
)

// openapiSample is an OpenAPI document as FastAPI writes it, with a
// path-level parameters list (not an operation) and a path parameter.
const openapiSample = `{
  "openapi": "3.1.0",
  "info": {"title": "My Api", "version": "0.1.0"},
  "paths": {
    "/": {"get": {"operationId": "root__get", "responses": {}}},
    "/items/{item_id}": {
      "parameters": [{"name": "item_id", "in": "path", "required": true}],
      "get": {"operationId": "read_item_items__item_id__get", "parameters": [{"name": "item_id", "in": "path", "required": true}], "responses": {}},
      "put": {"operationId": "update_item_items__item_id__put", "responses": {}}
    }
  }
}`

// The isolated pattern's operations are computed from the spec by the
// generated module's own expressions; they need no provider, so they are
// lifted out of the generated file as written and evaluated by tofu.
func TestTerraformOperationsFromSpec(t *testing.T) {
	tofu := testenv.Tofu(t)
	root := t.TempDir()
	// The REST API's isolated module: its operations, and the source ARN
	// of each operation's Lambda permission.
	if _, err := FastAPI(root, FastAPIOptions{Name: "my-api", ComputeType: "rest", IaC: IaCTerraform}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "packages/common/terraform/src/app/apis/my-api/my-api.tf")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, file, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	exprs := map[string]string{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		switch {
		case b.Type == "locals":
			for _, name := range []string{"spec", "http_verbs", "operations"} {
				if a, ok := b.Body.Attributes[name]; ok {
					exprs[name] = string(a.Expr.Range().SliceBytes(src))
				}
			}
		case b.Type == "resource" && b.Labels[0] == "aws_lambda_permission":
			exprs["source_arn"] = string(b.Body.Attributes["source_arn"].Expr.Range().SliceBytes(src))
		}
	}
	if len(exprs) != 4 || !strings.Contains(exprs["spec"], "var.openapi_spec") || !strings.Contains(exprs["source_arn"], "each.value") {
		t.Fatalf("the module's expressions: %v", exprs)
	}
	arn := strings.NewReplacer("module.rest_api.api_execution_arn", "\"arn:aws:execute-api:r:1:abc\"", "each.value", "op").Replace(exprs["source_arn"])
	dir := filepath.Join(root, "eval")
	main := "variable \"openapi_spec\" {\n  type = string\n}\n\nlocals {\n" +
		"  spec = " + exprs["spec"] + "\n  http_verbs = " + exprs["http_verbs"] + "\n  operations = " + exprs["operations"] + "\n}\n\n" +
		"output \"operations\" {\n  value = local.operations\n}\n\n" +
		"output \"route_keys\" {\n  value = sort([for op in local.operations : \"${op.method} ${op.path}\"])\n}\n\n" +
		"output \"source_arns\" {\n  value = sort([for op in local.operations : " + arn + "])\n}\n"
	for name, content := range map[string]string{"main.tf": main, "openapi.json": openapiSample} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	run := func(args ...string) []byte {
		cmd := exec.Command(tofu, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null", "TF_DATA_DIR="+data)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tofu %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("init", "-input=false", "-no-color")
	run("apply", "-input=false", "-auto-approve", "-no-color", "-var", "openapi_spec=openapi.json")
	cmd := exec.Command(tofu, "output", "-json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null", "TF_DATA_DIR="+data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var outputs struct {
		Operations struct {
			Value map[string]struct{ Path, Method string }
		}
		RouteKeys  struct{ Value []string } `json:"route_keys"`
		SourceARNs struct{ Value []string } `json:"source_arns"`
	}
	if err := json.Unmarshal(out, &outputs); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(outputs.RouteKeys.Value, ", "); got != "GET /, GET /items/{item_id}, PUT /items/{item_id}" {
		t.Errorf("route keys: %s", got)
	}
	if got := strings.Join(outputs.SourceARNs.Value, ", "); got != "arn:aws:execute-api:r:1:abc/*/GET/, arn:aws:execute-api:r:1:abc/*/GET/items/*, arn:aws:execute-api:r:1:abc/*/PUT/items/*" {
		t.Errorf("permission source ARNs: %s", got)
	}
	if op := outputs.Operations.Value["read_item_items__item_id__get"]; op.Method != "GET" || op.Path != "/items/{item_id}" {
		t.Errorf("operations: %+v", outputs.Operations.Value)
	}
}
