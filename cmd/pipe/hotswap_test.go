package main

// pipe deploy --hotswap and pipe watch against moto, with the real CDK app
// of cdk_deploy_test.go: a Python edit reaches the Lambda function without
// a CloudFormation write; what cannot be hotswapped falls back and says
// why; the next plain deploy puts the hotswapped function back in line
// with its template; protected stacks are refused.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

	// An edit hotswapped, then undone: --hotswap sets the function back to
	// the deployed template and forgets the record.
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	if b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap"); b.code != 0 {
		t.Fatalf("deploy --hotswap: exit %d", b.code)
	}
	ws.write(t, "packages/my-api/my_api/main.py", cdkAppMain)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || !strings.Contains(b.stderr, "MyApiStack: set back to the template Handler") || !strings.Contains(b.stderr, "3 stacks: 1 deployed, 2 unchanged") || strings.Contains(b.stderr, "note: hotswapped") {
		t.Errorf("deploy --hotswap of the deployed sources: exit %d, want the function set back, the stack deployed", b.code)
	}
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("CloudFormation write calls: %v", w)
	}
	if code := checkFunction(t, r, ws, fn, cdkAppMain); code != firstCode {
		t.Errorf("the function runs %s, want the template's %s", code, firstCode)
	}
	if _, err := os.Stat(recordFile(ws, r.region, "MyApiStack")); !os.IsNotExist(err) {
		t.Errorf("the record outlived the stack's return to its template: %v", err)
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

// stackOutput reads one output of a deployed stack.
func (r *awsRegion) stackOutput(t *testing.T, stack, key string) string {
	t.Helper()
	out, err := cloudformation.NewFromConfig(r.aws()).DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	if err != nil || len(out.Stacks) != 1 {
		t.Fatalf("describe %s: %v", stack, err)
	}
	for _, o := range out.Stacks[0].Outputs {
		if aws.ToString(o.OutputKey) == key {
			return aws.ToString(o.OutputValue)
		}
	}
	t.Fatalf("stack %s has no output %s", stack, key)
	return ""
}

// watchProcess is a running pipe watch whose stderr lines the test reads.
type watchProcess struct {
	cmd   *exec.Cmd
	lines chan string
	all   *lockedBuffer
	done  chan error
}

func startWatch(t *testing.T, ws *workspace, env []string, args ...string) *watchProcess {
	t.Helper()
	cmd := pipeCmdEnv(ws, env, append([]string{"watch"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watchProcess{cmd: cmd, lines: make(chan string, 1000), all: &lockedBuffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			w.all.Write([]byte(sc.Text() + "\n"))
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		t.Logf("pipe watch printed:\n%s", w.all.String())
	})
	return w
}

// cycle waits for the next cycle line (the one starting with a time) and
// returns it.
func (w *watchProcess) cycle(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("pipe watch ended")
			}
			if cycleLine.MatchString(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no cycle line within %v", timeout)
		}
	}
}

// quiet checks that no cycle starts for a while.
func (w *watchProcess) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-w.lines:
			if cycleLine.MatchString(l) {
				t.Errorf("a cycle ran: %s", l)
			}
		case <-deadline:
			return
		}
	}
}

var cycleLine = regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] `)

// TestWatchHotswaps: pipe watch --deploy --hotswap deploys at start, sees a
// Python edit and hotswaps it, ignores files that are no input (a README,
// a non-Python file the glob leaves out, an editor's swap file), survives a
// syntax error in the CDK app and recovers, and ends with status 0 on
// Ctrl-C while it waits.
func TestWatchHotswaps(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "eu-south-1", true)
	ws, env := cdkDeployWorkspace(t, nm)
	w := startWatch(t, ws, append(r.env(), env...), "//...", "--deploy", "--hotswap", "--require-approval", "never", "--debounce", "50ms")

	l := w.cycle(t, 3*time.Minute)
	if !regexp.MustCompile(`\] start · build \d+\.\d\ds \(5 executed, 0 cached\) · deploy \d+\.\d\ds \(3 deployed\) · ok$`).MatchString(l) {
		t.Fatalf("first cycle: %q, want the build and three stacks deployed", l)
	}
	fn := r.stackOutput(t, "MyApiStack", "FunctionName")
	first := checkFunction(t, r, ws, fn, cdkAppMain)

	edited := cdkAppMain + "\nVERSION = 2\n"
	r.proxy.Reset()
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	l = w.cycle(t, 2*time.Minute)
	// The bundle's two actions run; the synth does not (the assembly of
	// the first cycle is kept).
	if !regexp.MustCompile(`\] packages/my-api/my_api/main\.py changed · build \d+\.\d\ds \(2 executed, 2 cached\) · deploy \d+\.\d\ds \(1 hotswapped, 2 unchanged\) · ok$`).MatchString(l) {
		t.Errorf("after the edit: %q, want main.py changed, the bundle built without a synth, and hotswapped", l)
	}
	if !strings.Contains(w.all.String(), handlerPrefix) {
		t.Errorf("no `%s…` line", handlerPrefix)
	}
	if code := checkFunction(t, r, ws, fn, edited); code == first {
		t.Errorf("the function still runs the first code")
	}
	if cw := r.cfnWrites(); len(cw) > 0 {
		t.Errorf("the watch's hotswap made CloudFormation write calls: %v", cw)
	}

	// Files no target reads start nothing.
	ws.write(t, "packages/my-api/README.md", "notes\n")
	ws.write(t, "packages/my-api/my_api/data.txt", "not in glob([\"my_api/**/*.py\"])\n")
	ws.write(t, "packages/my-api/my_api/.main.py.swp", "vim swap\n")
	ws.write(t, "packages/my-api/my_api/main.py~", "backup\n")
	ws.write(t, "dist/stray.txt", "pipe's\n")
	w.quiet(t, 2*time.Second)

	// A syntax error fails the cycle; fixing it recovers.
	const mainTS = "packages/infra/src/main.ts"
	good := ws.read(t, mainTS)
	ws.write(t, mainTS, good+"\nconst broken: = ;\n")
	l = w.cycle(t, 2*time.Minute)
	if !regexp.MustCompile(`\] packages/infra/src/main\.ts changed · build failed \(\d+\.\d\ds\) · waiting for a change$`).MatchString(l) {
		t.Errorf("after the syntax error: %q, want the build failed", l)
	}
	if !strings.Contains(w.all.String(), "FAIL //packages/infra:infra (CdkBundle)") {
		t.Errorf("the failed build's reason was not printed")
	}
	ws.write(t, mainTS, good)
	l = w.cycle(t, 2*time.Minute)
	if !regexp.MustCompile(`\] packages/infra/src/main\.ts changed · build \d+\.\d\ds .* · deploy \d+\.\d\ds \(3 unchanged\) · ok$`).MatchString(l) {
		t.Errorf("after the fix: %q, want a build and nothing to deploy", l)
	}
	// A new Python file the glob picks up starts a cycle.
	ws.write(t, "packages/my-api/my_api/extra.py", "X = 1\n")
	l = w.cycle(t, 2*time.Minute)
	if !regexp.MustCompile(`\] packages/my-api/my_api/extra\.py changed · .*\(1 hotswapped, 2 unchanged\) · ok$`).MatchString(l) {
		t.Errorf("after a new module: %q, want it built and hotswapped", l)
	}

	if err := w.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if code := exitCode(t, err); code != 0 {
			t.Errorf("Ctrl-C while waiting: exit %d, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pipe watch did not stop on Ctrl-C")
	}
}
