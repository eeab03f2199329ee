package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// tofuWorkspace is a workspace with one terraform_root whose only
// resources are terraform's built-in ones, run through a wrapper script
// that logs each tofu invocation (its subcommand) before running it.
type tofuWorkspace struct {
	*workspace
	log string
}

func newTofuWorkspace(t *testing.T, mainTF string) *tofuWorkspace {
	t.Helper()
	tofu := testenv.Tofu(t)
	logFile := filepath.Join(t.TempDir(), "tofu.log")
	ws := newWorkspace(t, map[string]string{
		"WORKSPACE.star":           "workspace(name = \"tf\", terraform = \"tools/tofu.sh\")\n",
		"tools/tofu.sh":            fmt.Sprintf("#!/bin/sh\necho \"$1\" >> %q\nexec %q \"$@\"\n", logFile, tofu),
		"modules/greet/BUILD.star": `terraform_module(name = "greet", srcs = glob(["*.tf"]))` + "\n",
		"modules/greet/main.tf": `variable "name" {
  type = string
}

locals {
  text = "hello, ${var.name}"
}

output "text" {
  value = local.text
}
`,
		"infra/BUILD.star": `terraform_root(
    name = "infra",
    srcs = glob(["*.tf"]),
    deps = ["//modules/greet", "//data:payload"],
    vars = {"payload": "$(location //data:payload)"},
)
`,
		"infra/main.tf":   mainTF,
		"data/BUILD.star": `genrule(name = "payload", srcs = ["input.txt"], outs = ["payload.txt"], cmd = "cat $< > $@")` + "\n",
		"data/input.txt":  "v1\n",
	})
	return &tofuWorkspace{workspace: ws, log: logFile}
}

const tofuRoot = `variable "payload" {
  type = string
}

module "greet" {
  source = "../modules/greet"
  name   = "pipe"
}

resource "terraform_data" "payload" {
  input            = filesha256(var.payload)
  triggers_replace = filesha256(var.payload)

  provisioner "local-exec" {
    command = "test ! -e ${path.module}/fail-apply"
  }
}

output "greeting" {
  value = module.greet.text
}

output "payload_sha" {
  value = terraform_data.payload.output
}
`

// calls returns the tofu subcommands run since the last call, and
// forgets them.
func (ws *tofuWorkspace) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(ws.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(ws.log)
	return strings.Fields(string(b))
}

func count(calls []string, sub string) int {
	n := 0
	for _, c := range calls {
		if c == sub {
			n++
		}
	}
	return n
}

func TestTerraformDeploy(t *testing.T) {
	ws := newTofuWorkspace(t, tofuRoot)

	// The build checks the format and validates both modules and writes
	// the root's fingerprint.
	// Its fmt and validate run in the sandbox, where the wrapper's log
	// (under the host's /tmp) is out of reach: they are counted by the
	// build's events.
	b := ws.buildOK(t)
	if c := ws.calls(t); count(c, "plan") != 0 || count(c, "apply") != 0 || len(b.executedAs("TerraformFmt")) != 2 || len(b.executedAs("TerraformValidate")) != 2 {
		t.Fatalf("build ran %v and %d fmt, %d validate actions; want fmt and validate twice each and no plan or apply", c, len(b.executedAs("TerraformFmt")), len(b.executedAs("TerraformValidate")))
	}

	// --require-approval any-change with no terminal to ask: refused
	// after the plan, nothing applied.
	_, stderr, code := runPipe(t, ws.workspace, "deploy", "--require-approval", "any-change")
	if code != 1 || !strings.Contains(stderr, "needs approval (--require-approval any-change), but there is no terminal to ask") {
		t.Fatalf("deploy --require-approval any-change without a terminal: exit %d (want 1)\n%s", code, stderr)
	}
	if c := ws.calls(t); count(c, "plan") != 1 || count(c, "apply") != 0 {
		t.Errorf("refused deploy ran %v; want one plan and no apply", c)
	}
	if ws.exists("infra/terraform.tfstate") {
		t.Error("a refused deploy wrote state")
	}

	// First deploy: the saved plan, applied; outputs.
	stdout, stderr, code := runPipe(t, ws.workspace, "deploy")
	if code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "//infra:infra: plan: 1 to add, 0 to change, 0 to destroy (saved plan)") || !strings.Contains(stderr, "+   terraform_data.payload") {
		t.Errorf("first deploy does not show the plan:\n%s", stderr)
	}
	if !strings.Contains(stdout, "//infra:infra.greeting = hello, pipe") || !strings.Contains(stdout, "//infra:infra.payload_sha = ") {
		t.Errorf("first deploy's outputs:\n%s", stdout)
	}
	if c := ws.calls(t); count(c, "plan") != 0 || count(c, "apply") != 1 {
		t.Errorf("first deploy ran %v; want the saved plan applied without planning again", c)
	}
	if !ws.exists("infra/terraform.tfstate") {
		t.Fatal("no local state after the first apply")
	}

	// Nothing changed: no tofu process at all, outputs still printed and
	// written.
	stdout, stderr, code = runPipe(t, ws.workspace, "deploy", "--outputs-file", "outputs.json")
	if code != 0 {
		t.Fatalf("no-change deploy: exit %d\n%s", code, stderr)
	}
	if c := ws.calls(t); len(c) != 0 {
		t.Errorf("no-change deploy ran tofu %v; want nothing", c)
	}
	if !strings.Contains(stderr, "//infra:infra: no changes since the last apply (skipped)") || !strings.Contains(stdout, "greeting = hello, pipe") {
		t.Errorf("no-change deploy:\nstdout: %s\nstderr: %s", stdout, stderr)
	}
	var outs map[string]map[string]string
	if err := json.Unmarshal([]byte(ws.read(t, "outputs.json")), &outs); err != nil || outs["//infra:infra"]["greeting"] != "hello, pipe" {
		t.Errorf("--outputs-file: %v %v", outs, err)
	}

	// A change to a file the root reads through a var: re-plan and apply.
	ws.write(t, "data/input.txt", "v2\n")
	_, stderr, code = runPipe(t, ws.workspace, "deploy")
	if code != 0 {
		t.Fatalf("deploy after a change: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "1 to add, 0 to change, 1 to destroy") || !strings.Contains(stderr, "-/+ terraform_data.payload") {
		t.Errorf("deploy after a change does not show the replacement:\n%s", stderr)
	}
	if c := ws.calls(t); count(c, "plan") != 1 || count(c, "apply") != 1 {
		t.Errorf("deploy after a change ran %v; want one plan and one apply", c)
	}

	// pipe diff shows the plan of a pending change; pipe deploy then
	// applies the saved plan without planning again.
	ws.write(t, "data/input.txt", "v3\n")
	stdout, stderr, code = runPipe(t, ws.workspace, "diff", "--fail")
	if code != 1 || !strings.Contains(stdout, "-/+ terraform_data.payload") {
		t.Fatalf("diff --fail of a pending change: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if c := ws.calls(t); count(c, "plan") != 1 || count(c, "apply") != 0 {
		t.Errorf("diff ran %v; want one plan and no apply", c)
	}
	_, stderr, code = runPipe(t, ws.workspace, "deploy")
	if code != 0 || !strings.Contains(stderr, "(saved plan)") {
		t.Fatalf("deploy after diff: exit %d\n%s", code, stderr)
	}
	if c := ws.calls(t); count(c, "plan") != 0 || count(c, "apply") != 1 {
		t.Errorf("deploy after diff ran %v; want the saved plan applied, no new plan", c)
	}

	// A failing apply exits 1 and names the failure; the next deploy,
	// with the cause gone, plans again from the state and recovers.
	ws.write(t, "data/input.txt", "v4\n")
	ws.write(t, "infra/fail-apply", "")
	_, stderr, code = runPipe(t, ws.workspace, "deploy")
	if code != 1 || !strings.Contains(stderr, "local-exec provisioner error") || !strings.Contains(stderr, "infra/main.tf:") {
		t.Fatalf("failing apply: exit %d (want 1)\n%s", code, stderr)
	}
	ws.calls(t)
	os.Remove(ws.path("infra/fail-apply"))
	stdout, stderr, code = runPipe(t, ws.workspace, "deploy")
	if code != 0 {
		t.Fatalf("deploy after a failed apply: exit %d\n%s", code, stderr)
	}
	if c := ws.calls(t); count(c, "plan") != 1 || count(c, "apply") != 1 {
		t.Errorf("deploy after a failed apply ran %v; want one plan and one apply", c)
	}
	if !strings.Contains(stdout, "payload_sha = ") {
		t.Errorf("outputs after recovery:\n%s", stdout)
	}
	// And then it is up to date again.
	_, stderr, code = runPipe(t, ws.workspace, "deploy")
	if c := ws.calls(t); code != 0 || len(c) != 0 {
		t.Errorf("deploy after recovery: exit %d, tofu %v; want 0 and nothing\n%s", code, c, stderr)
	}

	// A TF_VAR_ of the environment may change a plan: no skip, a plan that
	// finds nothing to do, and no apply.
	cmd := pipeCmd(ws.workspace, "deploy")
	cmd.Env = append(cmd.Env, "TF_VAR_unused=1")
	out, err := cmd.CombinedOutput()
	if code := exitCode(t, err); code != 0 || !strings.Contains(string(out), "//infra:infra: no changes\n") {
		t.Errorf("deploy with a new TF_VAR_: exit %d\n%s", code, out)
	}
	if c := ws.calls(t); count(c, "plan") != 1 || count(c, "apply") != 0 {
		t.Errorf("deploy with a new TF_VAR_ ran %v; want one plan and no apply", c)
	}

	// pipe destroy destroys everything in the state.
	_, stderr, code = runPipe(t, ws.workspace, "destroy", "--force")
	if code != 0 || !strings.Contains(stderr, "0 to add, 0 to change, 1 to destroy") || !strings.Contains(stderr, "//infra:infra: destroyed") {
		t.Fatalf("destroy: exit %d\n%s", code, stderr)
	}
	if st := ws.read(t, "infra/terraform.tfstate"); strings.Contains(st, "terraform_data") {
		t.Errorf("the state still holds the resource after destroy:\n%s", st)
	}
	// A deploy after the destroy creates it again.
	_, stderr, code = runPipe(t, ws.workspace, "deploy")
	if code != 0 || !strings.Contains(stderr, "1 to add") {
		t.Fatalf("deploy after destroy: exit %d\n%s", code, stderr)
	}
}

// pipe new fastapi --iac terraform, and workspace(iac = "terraform") as
// the default, lay out Terraform modules whose BUILD files declare
// terraform_module and terraform_root targets; no CDK file is written.
func TestNewFastAPITerraform(t *testing.T) {
	for _, tc := range []struct {
		name, workspace string
		args            []string
	}{
		{"flag", "workspace(name = \"w\")\n", []string{"--iac", "terraform"}},
		{"inherited", "workspace(name = \"w\", iac = \"terraform\")\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := newWorkspace(t, map[string]string{"WORKSPACE.star": tc.workspace})
			stdout, stderr, code := runPipe(t, ws, append([]string{"new", "fastapi", "my-api", "--integration-pattern", "shared"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("pipe new: exit %d\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "pipe deploy //packages/infra") {
				t.Errorf("next steps do not say how to deploy the root module:\n%s", stdout)
			}
			for _, f := range []string{"packages/infra/cdk.json", "packages/common/constructs/tsconfig.json"} {
				if ws.exists(f) {
					t.Errorf("--iac terraform wrote the CDK file %s", f)
				}
			}
			stdout, stderr, code = runPipe(t, ws, "query", "kind('terraform_.*', //...)")
			if code != 0 {
				t.Fatalf("pipe query: exit %d\n%s", code, stderr)
			}
			want := []string{
				"//packages/common/terraform/src/app/apis/my-api:my-api",
				"//packages/common/terraform/src/core/api/rest-api:rest-api",
				"//packages/common/terraform/src/core/runtime-config:runtime-config",
				"//packages/infra:infra",
			}
			if got := strings.Fields(stdout); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("terraform targets:\n%s\nwant:\n%s", stdout, strings.Join(want, "\n"))
			}
		})
	}
	ws := newWorkspace(t, nil)
	if _, stderr, code := runPipe(t, ws, "new", "fastapi", "my-api", "--iac", "pulumi"); code != 2 || !strings.Contains(stderr, `--iac "pulumi": want one of cdk, terraform`) {
		t.Errorf("--iac pulumi: exit %d (want 2)\n%s", code, stderr)
	}
}

// Build-time checks fail with what is wrong, where, and what to do.
func TestTerraformBuildErrors(t *testing.T) {
	testenv.Tofu(t)
	t.Run("unformatted", func(t *testing.T) {
		ws := newTofuWorkspace(t, strings.Replace(tofuRoot, "  type = string", "  type    =    string", 1))
		_, stderr, code := runPipe(t, ws.workspace, "build", "//infra")
		if code != 1 || !strings.Contains(stderr, "not formatted as terraform fmt writes them: infra/main.tf; run `tofu.sh fmt infra/main.tf` to fix") {
			t.Fatalf("exit %d (want 1)\n%s", code, stderr)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		ws := newTofuWorkspace(t, tofuRoot+"\noutput \"broken\" {\n  value = var.missing\n}\n")
		_, stderr, code := runPipe(t, ws.workspace, "build", "//infra")
		if code != 1 || !strings.Contains(stderr, "infra/main.tf:28:11: Reference to undeclared input variable") {
			t.Fatalf("exit %d (want 1)\n%s", code, stderr)
		}
	})
	t.Run("no binary", func(t *testing.T) {
		ws := newTofuWorkspace(t, tofuRoot)
		ws.write(t, "WORKSPACE.star", "workspace(name = \"tf\", terraform = \"bin/none\")\n")
		_, stderr, code := runPipe(t, ws.workspace, "build", "//infra")
		if code != 1 || !strings.Contains(stderr, `workspace(terraform = "bin/none") is not an executable file`) {
			t.Fatalf("exit %d (want 1)\n%s", code, stderr)
		}
		// Targets that do not need terraform still build.
		ws.buildOK(t, "//data:payload")
	})
	t.Run("location outside deps", func(t *testing.T) {
		ws := newTofuWorkspace(t, tofuRoot)
		ws.write(t, "infra/BUILD.star", `terraform_root(
    name = "infra",
    srcs = glob(["*.tf"]),
    deps = ["//modules/greet"],
    vars = {"payload": "$(location //data:payload)"},
)
`)
		_, stderr, code := runPipe(t, ws.workspace, "build", "//infra")
		if code != 2 || !strings.Contains(stderr, "infra/BUILD.star:1:1") || !strings.Contains(stderr, "must name one file of deps") {
			t.Fatalf("exit %d (want 2)\n%s", code, stderr)
		}
	})
}

// What of the deploy's environment changes a plan is part of the skip's
// fingerprint; credentials, which rotate, are not.
func TestDeployFingerprint(t *testing.T) {
	base := deployFingerprint("f", map[string]string{"AWS_SECRET_ACCESS_KEY": "a", "AWS_SESSION_TOKEN": "t", "AWS_ACCESS_KEY_ID": "k"})
	if base != "f" {
		t.Errorf("credentials changed the fingerprint: %s", base)
	}
	region := deployFingerprint("f", map[string]string{"AWS_REGION": "eu-west-1"})
	other := deployFingerprint("f", map[string]string{"AWS_REGION": "us-east-1"})
	tfvar := deployFingerprint("f", map[string]string{"TF_VAR_x": "1"})
	if region == "f" || region == other || tfvar == "f" || tfvar == region {
		t.Errorf("region or TF_VAR_ did not change the fingerprint: %s %s %s", region, other, tfvar)
	}
}
