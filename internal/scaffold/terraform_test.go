package scaffold

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/pipebuild/pipe/internal/testenv"
)

// tfFiles lists the .tf files under dir, workspace-relative.
func tfFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".tf") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parseTF parses a file with HCL's parser and returns its top-level
// blocks as "type label label...".
func parseTF(t *testing.T, file string) []string {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(file)
	if diags.HasErrors() {
		t.Fatalf("%s does not parse: %s", file, diags.Error())
	}
	content, _, diags := f.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "terraform"}, {Type: "provider", LabelNames: []string{"name"}},
		{Type: "variable", LabelNames: []string{"name"}}, {Type: "locals"},
		{Type: "output", LabelNames: []string{"name"}}, {Type: "module", LabelNames: []string{"name"}},
		{Type: "resource", LabelNames: []string{"type", "name"}}, {Type: "data", LabelNames: []string{"type", "name"}},
	}})
	if diags.HasErrors() {
		t.Fatalf("%s: %s", file, diags.Error())
	}
	var blocks []string
	for _, b := range content.Blocks {
		blocks = append(blocks, strings.Join(append([]string{b.Type}, b.Labels...), " "))
	}
	return blocks
}

func hasBlock(blocks []string, want string) bool {
	for _, b := range blocks {
		if b == want {
			return true
		}
	}
	return false
}

// tofuFmtCheck runs tofu fmt -check over dir's .tf files and fails the
// test with the diff of any file it would change.
func tofuFmtCheck(t *testing.T, tofu, dir string) {
	t.Helper()
	cmd := exec.Command(tofu, "fmt", "-check", "-recursive", "-diff", "-no-color", dir)
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tofu fmt -check: %v\n%s", err, out)
	}
}

// Every combination of --compute-type, --auth and --integration-pattern
// generates Terraform that parses and is formatted as terraform fmt
// writes it, with the resources the options call for.
func TestFastAPITerraformVariants(t *testing.T) {
	tofu := testenv.Tofu(t)
	for _, c := range terraformComputeTypes {
		for _, a := range AuthTypes {
			for _, p := range IntegrationPatterns {
				t.Run(c+"-"+a+"-"+p, func(t *testing.T) {
					root := t.TempDir()
					if _, err := FastAPI(root, FastAPIOptions{Name: "my-api", ComputeType: c, Auth: a, IntegrationPattern: p, IaC: IaCTerraform}); err != nil {
						t.Fatal(err)
					}
					files := tfFiles(t, root)
					want := []string{
						"packages/common/terraform/src/app/apis/my-api/my-api.tf",
						"packages/common/terraform/src/core/api/" + c + "-api/" + c + "-api.tf",
						"packages/common/terraform/src/core/runtime-config/runtime-config.tf",
						"packages/infra/main.tf",
						"packages/infra/my-api.tf",
						"packages/infra/runtime-config.tf",
					}
					if strings.Join(files, "\n") != strings.Join(want, "\n") {
						t.Fatalf("generated .tf files:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
					}
					for _, f := range []string{"packages/infra/cdk.json", "packages/common/constructs/tsconfig.json", "package.json"} {
						if _, err := os.Stat(filepath.Join(root, f)); err == nil {
							t.Errorf("--iac terraform wrote the CDK file %s", f)
						}
					}
					blocks := map[string][]string{}
					for _, f := range files {
						blocks[f] = parseTF(t, filepath.Join(root, f))
					}
					app := blocks["packages/common/terraform/src/app/apis/my-api/my-api.tf"]
					body, _ := os.ReadFile(filepath.Join(root, "packages/common/terraform/src/app/apis/my-api/my-api.tf"))
					text := string(body)
					// pipe's bundle.zip is the code: no archive_file.
					if strings.Contains(text, "archive_file") || !strings.Contains(text, "filebase64sha256(var.bundle_zip)") {
						t.Error("the function's code is not pipe's bundle.zip")
					}
					for _, b := range []string{"resource aws_lambda_function handler", "resource aws_iam_role handler", "resource aws_cloudwatch_log_group handler", "resource aws_lambda_permission api", "output api_url", "output runtime_config_entry"} {
						if !hasBlock(app, b) {
							t.Errorf("the API module lacks %s", b)
						}
					}
					shared := p == "shared"
					if got := strings.Contains(text, "for_each         = local.operations"); got == shared {
						t.Errorf("a function per operation: %v, want %v", got, !shared)
					}
					if shared && !strings.Contains(text, "{proxy+}") {
						t.Error("the shared pattern has no {proxy+} route")
					}
					if shared && strings.Count(text, `resource "aws_lambda_permission"`) != 1 {
						t.Error("the shared pattern needs exactly one Lambda permission")
					}
					switch a {
					case "iam":
						if !strings.Contains(text, "AWS_IAM") && !strings.Contains(text, "awsSigv4") {
							t.Error("IAM auth is not set")
						}
					case "cognito":
						if !strings.Contains(text, "var.user_pool_id") || !hasBlock(blocks["packages/infra/my-api.tf"], "variable my_api_user_pool_id") {
							t.Error("Cognito auth has no user pool")
						}
					case "none":
						if strings.Contains(text, "AWS_IAM") || strings.Contains(text, "cognito") {
							t.Error("auth none still authorizes")
						}
					}
					core := blocks["packages/common/terraform/src/core/api/"+c+"-api/"+c+"-api.tf"]
					for _, b := range []string{"resource aws_kms_key logs", "resource aws_cloudwatch_log_group access"} {
						if !hasBlock(core, b) {
							t.Errorf("the core module lacks %s", b)
						}
					}
					if !hasBlock(blocks["packages/infra/my-api.tf"], "module my_api") || !hasBlock(blocks["packages/infra/runtime-config.tf"], "module runtime_config") {
						t.Error("the root module does not compose the service's module and the runtime configuration")
					}
					tofuFmtCheck(t, tofu, filepath.Join(root, "packages"))
				})
			}
		}
	}
}

// A second service joins the root module's shared files, which still
// parse and pass fmt; the workspace setting's default is not needed by
// the generator itself.
func TestFastAPITerraformTwoServices(t *testing.T) {
	tofu := testenv.Tofu(t)
	root := t.TempDir()
	for _, name := range []string{"orders", "my-api"} {
		if _, err := FastAPI(root, FastAPIOptions{Name: name, IaC: IaCTerraform, ComputeType: "http"}); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := os.ReadFile(filepath.Join(root, "packages/infra/runtime-config.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rc), "module.my_api.runtime_config_entry") || !strings.Contains(string(rc), "module.orders.runtime_config_entry") {
		t.Errorf("runtime-config.tf does not list both services:\n%s", rc)
	}
	build, _ := os.ReadFile(filepath.Join(root, "packages/infra/BUILD.star"))
	for _, want := range []string{`"//packages/orders:bundle"`, `"//packages/my-api:bundle"`, `"//packages/common/terraform/src/app/apis/orders"`} {
		if !strings.Contains(string(build), want) {
			t.Errorf("packages/infra/BUILD.star lacks %s:\n%s", want, build)
		}
	}
	tofuFmtCheck(t, tofu, filepath.Join(root, "packages"))
	// Regenerating changes nothing.
	res, err := FastAPI(root, FastAPIOptions{Name: "orders", IaC: IaCTerraform, ComputeType: "http"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if f.Status != Unchanged {
			t.Errorf("regeneration: %s %s", f.Path, f.Status)
		}
	}
}

// A workspace whose packages/infra is a CDK app gets no Terraform root
// module over it.
func TestFastAPITerraformRefusesCDKInfra(t *testing.T) {
	root := t.TempDir()
	if _, err := FastAPI(root, FastAPIOptions{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	_, err := FastAPI(root, FastAPIOptions{Name: "second", IaC: IaCTerraform})
	if err == nil || !strings.Contains(err.Error(), "packages/infra holds a CDK app (cdk.json)") {
		t.Fatalf("terraform service over a CDK app: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "packages/second")); err == nil {
		t.Error("the refused service was written")
	}
}

// The runtime-config module needs no provider, so it is applied for
// real: its entries become the configuration clients read.
func TestTerraformRuntimeConfigModule(t *testing.T) {
	tofu := testenv.Tofu(t)
	root := t.TempDir()
	if _, err := FastAPI(root, FastAPIOptions{Name: "my-api", IaC: IaCTerraform}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "try")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	main := `module "rc" {
  source = "../packages/common/terraform/src/core/runtime-config"

  entries = [
    { key_path = "apis.MyApi", value = "https://a.example/prod/" },
    { key_path = "apis.Orders", value = "https://b.example/" },
    { key_path = "cognito.userPoolId", value = "pool-1" },
  ]
}

output "json" {
  value = module.rc.config_json
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	run := func(args ...string) []byte {
		cmd := exec.Command(tofu, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null", "TF_DATA_DIR="+data)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("tofu %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		return out
	}
	run("init", "-input=false", "-no-color")
	run("apply", "-input=false", "-auto-approve", "-no-color")
	var got string
	if err := json.Unmarshal(run("output", "-json", "json"), &got); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]map[string]string
	if err := json.Unmarshal([]byte(got), &cfg); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg) != "map[apis:map[MyApi:https://a.example/prod/ Orders:https://b.example/] cognito:map[userPoolId:pool-1]]" {
		t.Errorf("runtime configuration: %v", cfg)
	}
}
