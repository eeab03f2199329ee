package main

// pipe deploy --hotswap and pipe watch against moto, with the real CDK app
// of cdk_deploy_test.go: a Python edit reaches the Lambda function without
// a CloudFormation write; what cannot be hotswapped falls back and says
// why; the next plain deploy puts the hotswapped function back in line
// with its template; protected stacks are refused.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/pipebuild/pipe/internal/testenv"
)

// cfnWrites are the CloudFormation write calls the proxy saw.
func (r *awsRegion) cfnWrites() []testenv.Call {
	var out []testenv.Call
	for _, c := range r.proxy.Writes() {
		if c.Service == "cloudformation" {
			out = append(out, c)
		}
	}
	return out
}

// deployedTemplate is the template CloudFormation holds for the stack.
func (r *awsRegion) deployedTemplate(t *testing.T, stack string) string {
	t.Helper()
	out, err := cloudformation.NewFromConfig(r.aws()).GetTemplate(context.Background(), &cloudformation.GetTemplateInput{StackName: aws.String(stack), TemplateStage: cfntypes.TemplateStageOriginal})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.TemplateBody)
}

// recordFile is where pipe records the hotswaps of a stack.
func recordFile(ws *workspace, region, stack string) string {
	return ws.path(filepath.Join(".pipe", "hotswap", testenv.Account, region, stack+".json"))
}

// editAPIStack rewrites the API stack's source with a replacement.
func editAPIStack(t *testing.T, ws *workspace, old, new string) {
	t.Helper()
	const rel = "packages/infra/src/stacks/api-stack.ts"
	src := ws.read(t, rel)
	if !strings.Contains(src, old) {
		t.Fatalf("%s has no %q", rel, old)
	}
	ws.write(t, rel, strings.Replace(src, old, new, 1))
}

const (
	apiEnvLine     = "        STAGE: props.stage,\n"
	apiEnvFeature  = "        STAGE: props.stage,\n        FEATURE: 'on',\n"
	apiRoleAnchor  = "    this.api = new apigateway.LambdaRestApi("
	apiRolePolicy  = "    handler.role!.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonS3ReadOnlyAccess'));\n" + apiRoleAnchor
	apiImports     = "import * as lambda from 'aws-cdk-lib/aws-lambda';\n"
	apiImportsIAM  = apiImports + "import * as iam from 'aws-cdk-lib/aws-iam';\n"
	handlerPrefix  = "MyApiStack: hotswapped Handler"
	fallbackPrefix = "MyApiStack: cannot hotswap, deploying with a change set:\n"
)

// TestDeployHotswap: a Python edit and an environment change are
// hotswapped (new CodeSha256, the variable set, no CloudFormation write);
// the next plain deploy of the unchanged template sets the function back;
// an IAM change falls back naming the property, or is refused with
// --hotswap-fallback=never; a cdk_stack(hotswap = False) is refused.
func TestDeployHotswap(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "us-west-2", true)
	ws, env := cdkDeployWorkspace(t, nm)

	b := r.deploy(t, ws, env, "deploy", "//...", "--require-approval", "never", "--outputs-file", "outputs.json")
	if b.code != 0 {
		t.Fatalf("first deploy: exit %d", b.code)
	}
	fn := outputsOf(t, ws, "outputs.json")["MyApiStack"]["FunctionName"]
	firstCode := checkFunction(t, r, ws, fn, cdkAppMain)
	firstTemplate := r.deployedTemplate(t, "MyApiStack")

	// A Python edit: --dry-run says what a hotswap would do, with reads.
	edited := cdkAppMain + "\nVERSION = 2\n"
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap", "--dry-run")
	if b.code != 0 || !strings.Contains(b.stderr, "• MyApiStack would be hotswapped (template differs)\n  function Handler") || !strings.Contains(b.stderr, "("+fn+"): code\n") {
		t.Errorf("--hotswap --dry-run: exit %d, want MyApiStack's function %s hotswapped (code)", b.code, fn)
	}
	wantNoWrites(t, r.proxy)

	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 {
		t.Fatalf("deploy --hotswap: exit %d", b.code)
	}
	if !strings.Contains(b.stderr, handlerPrefix) || !strings.Contains(b.stderr, "("+fn+"): code (") {
		t.Errorf("no `%s… (%s): code (TIME)` line", handlerPrefix, fn)
	}
	if !strings.Contains(b.stderr, "3 stacks: 1 hotswapped, 2 unchanged") || strings.Count(b.stderr, "note: hotswapped stacks differ") != 1 {
		t.Errorf("want `3 stacks: 1 hotswapped, 2 unchanged` and the drift note once")
	}
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("a hotswap made CloudFormation write calls: %v", w)
	}
	hotCode := checkFunction(t, r, ws, fn, edited)
	if hotCode == firstCode {
		t.Errorf("CodeSha256 did not change: the function runs the old code")
	}
	if got := r.deployedTemplate(t, "MyApiStack"); got != firstTemplate {
		t.Errorf("a hotswap changed the deployed template")
	}
	if _, err := os.Stat(recordFile(ws, r.region, "MyApiStack")); err != nil {
		t.Errorf("the hotswap is not recorded: %v", err)
	}
	hs := 0
	for _, ev := range b.stackEvents {
		if ev.Event == "hotswapped" && ev.Stack == "MyApiStack" && strings.HasPrefix(ev.Resource, "Handler") {
			hs++
		}
	}
	if done := doneEvents(b.stackEvents); hs != 1 || done["MyApiStack"] != "hotswapped" || done["SharedStack"] != "unchanged" {
		t.Errorf("--events: %d hotswapped events for the handler, done %v", hs, done)
	}

	// An environment change is hotswapped too; the other variables stay.
	editAPIStack(t, ws, apiEnvLine, apiEnvFeature)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || !strings.Contains(b.stderr, "): environment (FEATURE) (") || !strings.Contains(b.stderr, "3 stacks: 1 hotswapped, 2 unchanged") {
		t.Fatalf("deploy --hotswap of an environment change: exit %d, want `environment (FEATURE)` hotswapped", b.code)
	}
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("a hotswap made CloudFormation write calls: %v", w)
	}
	vars := r.lambdaFunction(t, fn).Configuration.Environment.Variables
	if vars["FEATURE"] != "on" || vars["STAGE"] != "dev" || vars["PORT"] != "8000" {
		t.Errorf("environment %v, want FEATURE=on beside the others", vars)
	}

	// Back to the deployed sources: the template is the deployed one, but
	// the function is not what it says. A plain deploy must see that and
	// set the function back, without a change set.
	ws.write(t, "packages/my-api/my_api/main.py", cdkAppMain)
	editAPIStack(t, ws, apiEnvFeature, apiEnvLine)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...")
	if b.code != 0 || strings.Contains(b.stderr, "✓ MyApiStack (no changes)") || !strings.Contains(b.stderr, "MyApiStack: deploying (hotswapped since its last deployment)") ||
		!strings.Contains(b.stderr, "MyApiStack: set back to the template Handler") || !strings.Contains(b.stderr, "3 stacks: 1 deployed, 2 unchanged") {
		t.Fatalf("plain deploy after hotswaps: exit %d, want MyApiStack's function set back to the template", b.code)
	}
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("setting the function back needs no change set, but: %v", w)
	}
	if code := checkFunction(t, r, ws, fn, cdkAppMain); code != firstCode {
		t.Errorf("after the plain deploy the function runs %s, want the template's %s", code, firstCode)
	}
	if vars := r.lambdaFunction(t, fn).Configuration.Environment.Variables; vars["FEATURE"] != "" || vars["STAGE"] != "dev" {
		t.Errorf("after the plain deploy the environment is %v, want FEATURE gone", vars)
	}
	if _, err := os.Stat(recordFile(ws, r.region, "MyApiStack")); !os.IsNotExist(err) {
		t.Errorf("the record outlived the deploy that converged the stack: %v", err)
	}
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...")
	if b.code != 0 || !strings.Contains(b.stderr, "✓ MyApiStack (no changes)") || len(r.proxy.Writes()) > 0 {
		t.Errorf("deploy after converging: exit %d, writes %v; want no changes", b.code, r.proxy.Writes())
	}

	// An IAM change (with a code edit) cannot be hotswapped: refused with
	// --hotswap-fallback=never, deployed with a change set otherwise, each
	// naming the resource and property.
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	if b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap"); b.code != 0 {
		t.Fatalf("deploy --hotswap: exit %d", b.code)
	}
	editAPIStack(t, ws, apiImports, apiImportsIAM)
	editAPIStack(t, ws, apiRoleAnchor, apiRolePolicy)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap", "--hotswap-fallback=never")
	if b.code != 1 || !strings.Contains(b.stderr, "--hotswap-fallback=never refuses a change-set deployment") || !strings.Contains(b.stderr, "(AWS::IAM::Role) Properties.ManagedPolicyArns[1]: added") {
		t.Errorf("--hotswap-fallback=never: exit %d, want 1 naming the role's ManagedPolicyArns[1]", b.code)
	}
	wantNoWrites(t, r.proxy)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap", "--require-approval", "never")
	if b.code != 0 || !strings.Contains(b.stderr, fallbackPrefix+"  HandlerServiceRole") || !strings.Contains(b.stderr, "(AWS::IAM::Role) Properties.ManagedPolicyArns[1]: added\n") ||
		!strings.Contains(b.stderr, "✓ MyApiStack (deployed") {
		t.Fatalf("deploy --hotswap of an IAM change: exit %d, want a fallback naming HandlerServiceRole… Properties.ManagedPolicyArns[1]", b.code)
	}
	if len(r.cfnWrites()) == 0 {
		t.Errorf("the fallback made no CloudFormation call")
	}
	if _, err := os.Stat(recordFile(ws, r.region, "MyApiStack")); !os.IsNotExist(err) {
		t.Errorf("the record outlived the deploy: %v", err)
	}
	checkFunction(t, r, ws, fn, edited)

	// A production stack is never hotswapped.
	ws.write(t, "packages/infra/BUILD.star", strings.Replace(cdkAppFiles["packages/infra/BUILD.star"], "    deps = [", "    hotswap = False,\n    deps = [", 1))
	ws.write(t, "packages/my-api/my_api/main.py", edited+"VERSION = 3\n")
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 1 || !strings.Contains(b.stderr, "✗ MyApiStack: hotswap refused: //packages/infra:infra says hotswap = False; deploy it without --hotswap") {
		t.Errorf("hotswap of a protected stack: exit %d, want refused", b.code)
	}
	wantNoWrites(t, r.proxy)
}

func wantNoWrites(t *testing.T, p *testenv.CountingProxy) {
	t.Helper()
	if w := p.Writes(); len(w) > 0 {
		t.Errorf("want no write calls, got %v", w)
	}
}
