package main

// pipe deploy and pipe diff against moto. One moto serves the package's
// tests (started on first use; it exits when the test process does); each
// test deploys to its own region through its own counting proxy.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/pipebuild/pipe/internal/testenv"
)

var (
	motoOnce   sync.Once
	motoServer *testenv.Moto
	motoErr    error
)

// awsRegion is one test's moto region behind a counting proxy.
type awsRegion struct {
	region string
	proxy  *testenv.CountingProxy
}

func newAWSRegion(t *testing.T, region string, bootstrap bool) *awsRegion {
	t.Helper()
	testenv.RequireMoto(t)
	motoOnce.Do(func() { motoServer, motoErr = testenv.StartMoto() })
	if motoErr != nil {
		t.Fatalf("start moto: %v", motoErr)
	}
	if bootstrap {
		if err := motoServer.Bootstrap(region); err != nil {
			t.Fatal(err)
		}
	}
	p, err := testenv.NewCountingProxy(motoServer.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &awsRegion{region: region, proxy: p}
}

func (r *awsRegion) env() []string {
	return append(testenv.AWSEnv(r.proxy.URL), "AWS_REGION="+r.region, "AWS_DEFAULT_REGION="+r.region)
}

// pipe runs pipe with the region's AWS environment.
func (r *awsRegion) pipe(t *testing.T, ws *workspace, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := pipeCmd(ws, args...)
	cmd.Env = append(cmd.Env, r.env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code = exitCode(t, cmd.Run())
	t.Logf("pipe %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), errb.String(), code
}

func (r *awsRegion) changeSets(t *testing.T, stack string) []string {
	t.Helper()
	c := cloudformation.NewFromConfig(aws.Config{
		Region:       r.region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(motoServer.URL),
	})
	out, err := c.ListChangeSets(context.Background(), &cloudformation.ListChangeSetsInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range out.Summaries {
		if aws.ToString(s.StackName) == stack && s.ExecutionStatus != "EXECUTE_COMPLETE" {
			names = append(names, aws.ToString(s.ChangeSetName))
		}
	}
	return names
}

// appWorkspace is a workspace holding, as cdk.out, the cloud assembly of
// deploy/testdata/app: ApiStack (a Lambda from a directory asset, its IAM
// role, a file asset), DepStack (imports an ApiStack output), IndStack,
// and the stage Prod with Prod/Inner.
func appWorkspace(t *testing.T) *workspace {
	t.Helper()
	ws := newWorkspace(t, nil)
	if err := os.CopyFS(ws.path("cdk.out"), os.DirFS(filepath.Join("..", "..", "internal", "deploy", "testdata", "app"))); err != nil {
		t.Fatal(err)
	}
	// CopyFS drops the execute bit run.sh needs in the Lambda zip.
	matches, _ := filepath.Glob(ws.path("cdk.out/asset.*/run.sh"))
	for _, m := range matches {
		os.Chmod(m, 0o755)
	}
	return ws
}

const appCodeAsset = "eaab6cdcf227daa5b36818bbe22b367b8a706504cbf165dd72bdf536205da039"

// newCode gives ApiStack's Lambda new code, as a new synth would.
func newCode(t *testing.T, ws *workspace, content string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	if err := os.Rename(ws.path("cdk.out/asset."+appCodeAsset), ws.path("cdk.out/asset."+h)); err != nil {
		t.Fatal(err)
	}
	ws.write(t, "cdk.out/asset."+h+"/main.py", content)
	for _, f := range []string{"cdk.out/ApiStack.template.json", "cdk.out/ApiStack.assets.json"} {
		ws.write(t, f, strings.ReplaceAll(ws.read(t, f), appCodeAsset, h))
	}
	return h
}

func TestDeployCommand(t *testing.T) {
	r := newAWSRegion(t, "us-east-1", true)
	ws := appWorkspace(t)

	stdout, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--require-approval", "never", "--outputs-file", "outputs.json")
	if code != 0 {
		t.Fatalf("first deploy exit %d", code)
	}
	if !strings.Contains(stderr, "4 stacks: 4 deployed") || !strings.Contains(stdout, "Outputs:\nApiStack.DataKey = ") {
		t.Errorf("first deploy: summary or outputs missing")
	}
	var outputs map[string]map[string]string
	if err := json.Unmarshal([]byte(ws.read(t, "outputs.json")), &outputs); err != nil {
		t.Fatal(err)
	}
	if outputs["ApiStack"]["FnName"] == "" {
		t.Errorf("outputs file: %v", outputs)
	}

	r.proxy.Reset()
	b := r.deploy(t, ws, nil, "deploy", "--app", "cdk.out")
	if b.code != 0 {
		t.Fatalf("second deploy exit %d", b.code)
	}
	if w := r.proxy.Writes(); len(w) > 0 {
		t.Errorf("an unchanged deploy made write calls: %v", w)
	}
	done := doneEvents(b.stackEvents)
	for _, s := range []string{"ApiStack", "DepStack", "IndStack", "Prod/Inner"} {
		if !strings.Contains(b.stderr, "✓ "+s+" (no changes)\n") {
			t.Errorf("missing `✓ %s (no changes)`", s)
		}
		if done[s] != "unchanged" {
			t.Errorf("--events: %s done %q, want unchanged", s, done[s])
		}
	}
	if len(b.events) > 0 {
		t.Errorf("--events of a deploy --app holds actions: %+v", b.events)
	}

	newCode(t, ws, "print('v2')\n")
	r.proxy.Reset()
	stdout, _, code = r.pipe(t, ws, "diff", "--app", "cdk.out")
	if code != 0 || !strings.Contains(stdout, "[~] AWS::Lambda::Function Fn9270CBC0") || !strings.Contains(stdout, "Code.S3Key") {
		t.Errorf("pipe diff (exit %d) does not show the code change", code)
	}
	if !strings.Contains(stdout, "Stack IndStack\n  There were no differences") {
		t.Errorf("pipe diff does not say IndStack is unchanged")
	}
	if w := r.proxy.Writes(); len(w) > 0 {
		t.Errorf("pipe diff made write calls: %v", w)
	}
	if _, _, code = r.pipe(t, ws, "diff", "--app", "cdk.out", "--fail"); code != 1 {
		t.Errorf("pipe diff --fail with differences: exit %d, want 1", code)
	}

	// --stacks selects by construct path; only IndStack is looked at.
	_, stderr, code = r.pipe(t, ws, "deploy", "--app", "cdk.out", "--stacks", "Ind*")
	if code != 0 || !strings.Contains(stderr, "✓ IndStack (no changes)") || strings.Contains(stderr, "ApiStack") {
		t.Errorf("--stacks Ind*: exit %d", code)
	}

	// The code change deploys ApiStack only, uploading one object.
	r.proxy.Reset()
	_, stderr, code = r.pipe(t, ws, "deploy", "--app", "cdk.out")
	if code != 0 || !strings.Contains(stderr, "✓ ApiStack (deployed") || !strings.Contains(stderr, "4 stacks: 1 deployed, 3 unchanged") {
		t.Errorf("deploy after the code change: exit %d", code)
	}
	puts := 0
	for _, c := range r.proxy.Writes() {
		if c.Service == "s3" {
			puts++
		}
		if c.Stack != "" && c.Stack != "ApiStack" {
			t.Errorf("write call for an unchanged stack: %v", c)
		}
	}
	if puts != 1 {
		t.Errorf("%d uploads, want 1", puts)
	}
}

// Non-interactive and default --require-approval: a new IAM role is
// refused, with a message naming the flag; the rest goes on.
func TestDeployCommandRefusesBroadening(t *testing.T) {
	r := newAWSRegion(t, "us-west-1", true)
	ws := appWorkspace(t)
	_, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "✗ ApiStack: ") || !strings.Contains(stderr, "--require-approval never") || !strings.Contains(stderr, "no terminal to ask") {
		t.Errorf("refusal does not name --require-approval")
	}
	if !strings.Contains(stderr, "- DepStack skipped: its dependency ApiStack was not deployed") {
		t.Errorf("the dependent stack is not reported skipped")
	}
	if !strings.Contains(stderr, "✓ IndStack (deployed") {
		t.Errorf("an independent stack without IAM changes was not deployed")
	}
	if cs := r.changeSets(t, "ApiStack"); len(cs) > 0 {
		t.Errorf("change sets left: %v", cs)
	}
}

// A resource that cannot be created: exit 1 with the reason, no change set.
func TestDeployCommandFailingResource(t *testing.T) {
	r := newAWSRegion(t, "us-east-2", true)
	ws := appWorkspace(t)
	var tpl map[string]any
	if err := json.Unmarshal([]byte(ws.read(t, "cdk.out/IndStack.template.json")), &tpl); err != nil {
		t.Fatal(err)
	}
	bucket := map[string]any{"Type": "AWS::S3::Bucket", "Properties": map[string]any{"BucketName": "pipe-cmd-taken"}}
	res := tpl["Resources"].(map[string]any)
	res["One"], res["Two"] = bucket, bucket
	b, _ := json.MarshalIndent(tpl, "", " ")
	ws.write(t, "cdk.out/IndStack.template.json", string(b))

	_, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--stacks", "IndStack")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "✗ IndStack: ") || !strings.Contains(stderr, "BucketAlreadyExists: The requested bucket name is not available") {
		t.Errorf("the failure's reason is not shown")
	}
	if cs := r.changeSets(t, "IndStack"); len(cs) > 0 {
		t.Errorf("change sets left: %v", cs)
	}
}

func TestDeployCommandNotBootstrapped(t *testing.T) {
	r := newAWSRegion(t, "ap-south-1", false)
	ws := appWorkspace(t)
	_, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--stacks", "IndStack")
	if code != 1 || !strings.Contains(stderr, "run `cdk bootstrap aws://123456789012/ap-south-1` first") {
		t.Errorf("exit %d; want 1 and an error saying to run cdk bootstrap", code)
	}
}

func TestDeployCommandUsage(t *testing.T) {
	ws := newWorkspace(t, map[string]string{
		"BUILD.star": "genrule(name = \"g\", outs = [\"g.txt\"], cmd = \"echo hi > $@\")\n",
	})
	_, stderr, code := runPipe(t, ws, "deploy")
	if code != 2 || !strings.Contains(stderr, "no cdk_stack target among //...") {
		t.Errorf("deploy without cdk_stack targets: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runPipe(t, ws, "deploy", "--app", "x", "--require-approval", "sometimes")
	if code != 2 || !strings.Contains(stderr, "want never, any-change or broadening") {
		t.Errorf("bad --require-approval: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runPipe(t, ws, "deploy", "--app", "nowhere")
	if code != 1 || !strings.Contains(stderr, "not a cloud assembly") {
		t.Errorf("--app of a missing directory: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runPipe(t, ws, "diff", "//...", "--app", "cdk.out")
	if code != 2 || !strings.Contains(stderr, "not both") {
		t.Errorf("patterns and --app: exit %d\n%s", code, stderr)
	}
}
