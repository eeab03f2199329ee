package main

// A cdk_stack app deployed end to end: pipe builds a python_bundle from a
// wheel mirror, synthesizes a TypeScript CDK app that takes its Lambda code
// from the bundle, and deploys the three stacks to moto; and the real CDK
// CLI deploys the cloud assembly pipe synthesized. Every component is real
// (node, aws-cdk-lib, the aws-cdk CLI, moto); without them the tests skip,
// saying what is missing, and fail under PIPE_REQUIRE_ALL=1.

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"golang.org/x/sys/unix"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/testenv"
)

// cdkAssemblyDir is where `pipe build` leaves //packages/infra:infra's
// cloud assembly.
const cdkAssemblyDir = "dist/packages/infra/infra/cdk.out"

// cdkStacks are the app's stacks.
var cdkStacks = []string{"MyApiStack", "MyApiMonitoringStack", "SharedStack"}

// webAdapterLayer is the Lambda Web Adapter layer the API's function uses,
// in region.
func webAdapterLayer(region string) string {
	return "arn:aws:lambda:" + region + ":753240598075:layer:LambdaAdapterLayerX86:25"
}

// cdkAppFiles is the infra package: a CDK app shaped like
// examples/fastapi/packages/infra. MyApiStack serves the bundle's run.sh
// behind the Web Adapter layer from a LambdaRestApi; MyApiMonitoringStack
// keeps the API's URL in an SSM parameter (a cross-stack reference, so it
// deploys after MyApiStack); SharedStack is independent.
var cdkAppFiles = map[string]string{
	"packages/infra/BUILD.star": `cdk_stack(
    name = "infra",
    app = "src/main.ts",
    srcs = glob(["src/**/*.ts"]),
    # Code.fromAsset('dist/packages/my-api/bundle') reads the bundle.
    deps = ["//packages/my-api:bundle"],
)
`,
	"packages/infra/cdk.json": `{
  "context": {
    "stage": "dev",
    "@aws-cdk/aws-lambda:recognizeLayerVersion": true,
    "@aws-cdk/core:checkSecretUsage": true,
    "@aws-cdk/core:target-partitions": ["aws", "aws-cn"],
    "@aws-cdk/aws-iam:minimizePolicies": true,
    "@aws-cdk/core:enablePartitionLiterals": true,
    "@aws-cdk/aws-apigateway:disableCloudWatchRole": true,
    "@aws-cdk/aws-apigateway:usagePlanKeyOrderInsensitiveId": true
  }
}
`,
	"packages/infra/src/main.ts": `import { App } from 'aws-cdk-lib';

import { MyApiStack } from './stacks/api-stack';
import { MyApiMonitoringStack } from './stacks/monitoring-stack';
import { SharedStack } from './stacks/shared-stack';

const app = new App();
const stage: string = app.node.tryGetContext('stage') ?? 'dev';

const api = new MyApiStack(app, 'MyApiStack', { stage, bundleDir: 'dist/packages/my-api/bundle' });
new MyApiMonitoringStack(app, 'MyApiMonitoringStack', { stage, api: api.api });
new SharedStack(app, 'SharedStack', { stage });
`,
	"packages/infra/src/stacks/api-stack.ts": `import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export interface MyApiStackProps extends StackProps {
  readonly stage: string;
  readonly bundleDir: string;
}

const routes: Array<[string, string]> = [
  ['/items', 'GET'],
  ['/items', 'POST'],
  ['/items/{item_id}', 'GET'],
];

export class MyApiStack extends Stack {
  readonly api: apigateway.RestApi;

  constructor(scope: Construct, id: string, props: MyApiStackProps) {
    super(scope, id, props);
    const handler = new lambda.Function(this, 'Handler', {
      runtime: lambda.Runtime.PYTHON_3_12,
      architecture: lambda.Architecture.X86_64,
      code: lambda.Code.fromAsset(props.bundleDir),
      handler: 'run.sh',
      memorySize: 512,
      timeout: Duration.seconds(30),
      layers: [
        lambda.LayerVersion.fromLayerVersionArn(
          this,
          'WebAdapter',
          ` + "`arn:aws:lambda:${this.region}:753240598075:layer:LambdaAdapterLayerX86:25`" + `,
        ),
      ],
      environment: {
        AWS_LAMBDA_EXEC_WRAPPER: '/opt/bootstrap',
        PORT: '8000',
        AWS_LWA_INVOKE_MODE: 'buffered',
        STAGE: props.stage,
      },
    });
    this.api = new apigateway.LambdaRestApi(this, 'Api', {
      handler,
      proxy: false,
      deployOptions: { stageName: props.stage },
    });
    const integration = new apigateway.LambdaIntegration(handler);
    for (const [path, method] of routes) {
      this.api.root.resourceForPath(path).addMethod(method, integration);
    }
    new CfnOutput(this, 'ApiUrl', { value: this.api.url });
    new CfnOutput(this, 'FunctionName', { value: handler.functionName });
  }
}
`,
	"packages/infra/src/stacks/monitoring-stack.ts": `import { Stack, StackProps } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface MyApiMonitoringStackProps extends StackProps {
  readonly stage: string;
  readonly api: apigateway.RestApi;
}

export class MyApiMonitoringStack extends Stack {
  constructor(scope: Construct, id: string, props: MyApiMonitoringStackProps) {
    super(scope, id, props);
    new ssm.StringParameter(this, 'ApiUrl', {
      parameterName: ` + "`/my-api/${props.stage}/url`" + `,
      stringValue: props.api.url,
    });
  }
}
`,
	"packages/infra/src/stacks/shared-stack.ts": `import { Stack, StackProps } from 'aws-cdk-lib';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface SharedStackProps extends StackProps {
  readonly stage: string;
}

export class SharedStack extends Stack {
  constructor(scope: Construct, id: string, props: SharedStackProps) {
    super(scope, id, props);
    new ssm.StringParameter(this, 'Stage', {
      parameterName: ` + "`/shared/${props.stage}/stage`" + `,
      stringValue: props.stage,
    });
  }
}
`,
}

const cdkAppMain = "\"\"\"my-api, as pipe's deploy tests bundle it.\"\"\"\n\napp = None\n"

// cdkDeployWorkspace writes a uv workspace whose my-api (locked to one wheel,
// served by a local mirror) is bundled by python_bundle, and the infra app
// that deploys the bundle. It returns the environment pipe needs
// (PIPE_PYTHON_INDEX).
func cdkDeployWorkspace(t *testing.T, nodeModules string) (*workspace, []string) {
	t.Helper()
	w := tinyWheel(t)
	m := newWheelMirror(t)
	m.serve(w, w.Data)
	app := pyApp{Deps: []string{"tinydep"}, Packages: []lockEntry{lockEntryOf(w)}}
	files := map[string]string{
		"WORKSPACE.star":                     fmt.Sprintf("workspace(name = \"t\", node_modules = %q)\n", nodeModules),
		"pyproject.toml":                     "[tool.uv.workspace]\nmembers = [\"packages/my-api\"]\n",
		"uv.lock":                            writeLock(app),
		"packages/my-api/pyproject.toml":     pyprojectOf(app.Deps),
		"packages/my-api/my_api/__init__.py": "",
		"packages/my-api/my_api/main.py":     cdkAppMain,
		"packages/my-api/BUILD.star": `python_bundle(
    name = "bundle",
    srcs = glob(["my_api/**/*.py"]),
    module = "my_api",
    python_version = "3.12",
    architecture = "x86_64",
)
`,
	}
	for k, v := range cdkAppFiles {
		files[k] = v
	}
	return newWorkspace(t, files), []string{"PIPE_PYTHON_INDEX=" + m.srv.URL}
}

// deploy runs `pipe --events FILE args...` with the region's AWS
// environment and env, and returns the outputs and the events.
func (r *awsRegion) deploy(t *testing.T, ws *workspace, env []string, args ...string) (b build) {
	t.Helper()
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := pipeCmdEnv(ws, append(r.env(), env...), append([]string{"--events", evFile}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	b.code = exitCode(t, cmd.Run())
	b.stdout, b.stderr = out.String(), errb.String()
	t.Logf("pipe %s → %d in %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), b.code, time.Since(start).Round(time.Millisecond), b.stdout, b.stderr)
	if _, err := os.Stat(evFile); err == nil {
		b.events = readEvents(t, evFile)
		b.stackEvents = readStackEvents(t, evFile)
	}
	return b
}

// status returns the status of the event with the mnemonic ("" if none).
func (b build) status(mnemonic string) string {
	for _, ev := range b.events {
		if ev.Mnemonic == mnemonic {
			return ev.Status
		}
	}
	return ""
}

// aws is the region's AWS configuration, straight to moto (no proxy: the
// test's own reads are not counted).
func (r *awsRegion) aws() aws.Config {
	return aws.Config{
		Region:       r.region,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(motoServer.URL),
	}
}

// stackStatuses returns the status of each named stack ("" if absent).
func (r *awsRegion) stackStatuses(t *testing.T, names ...string) map[string]string {
	t.Helper()
	c := cloudformation.NewFromConfig(r.aws())
	out := map[string]string{}
	for _, n := range names {
		res, err := c.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(n)})
		if err != nil || len(res.Stacks) != 1 {
			out[n] = ""
			continue
		}
		out[n] = string(res.Stacks[0].StackStatus)
	}
	return out
}

// lambdaFunction is what GetFunction says of a function.
type lambdaFunction struct {
	Configuration struct {
		FunctionName string
		Handler      string
		Runtime      string
		CodeSha256   string
		Layers       []struct{ Arn string }
		Environment  struct{ Variables map[string]string }
	}
}

func (r *awsRegion) lambdaFunction(t *testing.T, name string) lambdaFunction {
	t.Helper()
	b, err := motoServer.Do("lambda", r.region, http.MethodGet, "/2015-03-31/functions/"+url.PathEscape(name), "", "")
	if err != nil {
		t.Fatalf("GetFunction %s: %v", name, err)
	}
	var f lambdaFunction
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("GetFunction %s: %v: %s", name, err, b)
	}
	return f
}

// s3Object returns an object of the region's bootstrap bucket.
func (r *awsRegion) s3Object(t *testing.T, key string) []byte {
	t.Helper()
	c := s3.NewFromConfig(r.aws(), func(o *s3.Options) { o.UsePathStyle = true })
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testenv.BootstrapBucket(r.region)), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *awsRegion) parameter(t *testing.T, name string) string {
	t.Helper()
	out, err := ssm.NewFromConfig(r.aws()).GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil {
		t.Fatalf("GetParameter %s: %v", name, err)
	}
	return aws.ToString(out.Parameter.Value)
}

// functionCodeKey returns the S3 key of the API function's code in the
// synthesized MyApiStack template: the asset's hash.
func functionCodeKey(t *testing.T, ws *workspace) string {
	t.Helper()
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				Code struct{ S3Key string }
			}
		}
	}
	if err := json.Unmarshal([]byte(ws.read(t, cdkAssemblyDir+"/MyApiStack.template.json")), &tpl); err != nil {
		t.Fatal(err)
	}
	for _, r := range tpl.Resources {
		if r.Type == "AWS::Lambda::Function" {
			return r.Properties.Code.S3Key
		}
	}
	t.Fatal("MyApiStack's template has no AWS::Lambda::Function")
	return ""
}

// hotswappedCodeKey returns the S3 key of the code a hotswap put in
// MyApiStack's function, from the stack's hotswap record; "" when there
// is none: the function runs the code its template names.
func hotswappedCodeKey(t *testing.T, ws *workspace, region string) string {
	t.Helper()
	data, err := os.ReadFile(recordFile(ws, region, "MyApiStack"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var rec deploy.HotswapRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	for id, f := range rec.Functions {
		if strings.HasPrefix(id, "Handler") && f.Code != nil {
			return f.Code.Key
		}
	}
	return ""
}

// zipFiles returns a zip's regular files (name → content).
func zipFiles(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = string(b)
	}
	return out
}

func sha256Base64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// checkFunction checks that the API's function runs the bundle's run.sh
// behind the Web Adapter layer, from the code object whose key the
// template names, and that the object holds the bundle with main.py as
// given. It returns the function's CodeSha256.
func checkFunction(t *testing.T, r *awsRegion, ws *workspace, name, mainPy string) string {
	t.Helper()
	f := r.lambdaFunction(t, name).Configuration
	if f.Handler != "run.sh" || f.Runtime != "python3.12" {
		t.Errorf("function %s: handler %q runtime %q, want run.sh and python3.12", name, f.Handler, f.Runtime)
	}
	if len(f.Layers) != 1 || f.Layers[0].Arn != webAdapterLayer(r.region) {
		t.Errorf("function %s: layers %+v, want the Web Adapter's %s", name, f.Layers, webAdapterLayer(r.region))
	}
	want := map[string]string{"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "PORT": "8000", "AWS_LWA_INVOKE_MODE": "buffered", "STAGE": "dev"}
	for k, v := range want {
		if f.Environment.Variables[k] != v {
			t.Errorf("function %s: %s = %q, want %q", name, k, f.Environment.Variables[k], v)
		}
	}
	key := functionCodeKey(t, ws)
	if hot := hotswappedCodeKey(t, ws, r.region); hot != "" {
		key = hot
	}
	code := r.s3Object(t, key)
	if got := sha256Base64(code); f.CodeSha256 != got {
		t.Errorf("function %s: CodeSha256 %s, but the code object %s has %s", name, f.CodeSha256, key, got)
	}
	files := zipFiles(t, code)
	if files["my_api/main.py"] != mainPy || files["tinydep/__init__.py"] != "VALUE = 1\n" || !strings.Contains(files["run.sh"], runShLine) {
		t.Errorf("the function's code is not the bundle: main.py %q, tinydep %q, run.sh %q", files["my_api/main.py"], files["tinydep/__init__.py"], files["run.sh"])
	}
	return f.CodeSha256
}

// outputsOf reads an --outputs-file.
func outputsOf(t *testing.T, ws *workspace, rel string) map[string]map[string]string {
	t.Helper()
	var out map[string]map[string]string
	if err := json.Unmarshal([]byte(ws.read(t, rel)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCdkStackDeployEndToEnd: `pipe deploy //...` builds the bundle,
// synthesizes the app and deploys its three stacks to moto; deploying again
// changes nothing (no write call, synth a cache hit); an app-only Python
// edit deploys MyApiStack alone, uploading one asset.
func TestCdkStackDeployEndToEnd(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "eu-west-1", true)
	ws, env := cdkDeployWorkspace(t, nm)

	b := r.deploy(t, ws, env, "deploy", "//...", "--require-approval", "never", "--outputs-file", "outputs.json")
	if b.code != 0 {
		t.Fatalf("first deploy: exit %d", b.code)
	}
	if !strings.Contains(b.stderr, "3 stacks: 3 deployed") {
		t.Errorf("first deploy: no `3 stacks: 3 deployed`")
	}
	for _, m := range []string{"PyDeps", "PyApp", "PyBundle", "CdkBundle", "CdkSynth"} {
		if st := b.status(m); st != "executed" {
			t.Errorf("first deploy: %s %q, want executed", m, st)
		}
	}
	for s, st := range r.stackStatuses(t, cdkStacks...) {
		if st != "CREATE_COMPLETE" {
			t.Errorf("stack %s: status %q, want CREATE_COMPLETE", s, st)
		}
	}
	// --events holds the build's actions and then each stack's events.
	if done := doneEvents(b.stackEvents); len(done) != 3 || done["MyApiStack"] != "deployed" || done["MyApiMonitoringStack"] != "deployed" || done["SharedStack"] != "deployed" {
		t.Errorf("first deploy: done events %v, want the three stacks deployed", done)
	}
	resources := 0
	for _, ev := range b.stackEvents {
		if ev.Event == "resource" && ev.Stack == "MyApiStack" && ev.Resource != "" && ev.Status != "" {
			resources++
		}
		if ev.Event == "deploying" && strings.Join(ev.Reasons, ",") != "new stack" {
			t.Errorf("first deploy: %s deploying for %q, want new stack", ev.Stack, ev.Reasons)
		}
	}
	if resources == 0 {
		t.Errorf("first deploy: no resource events for MyApiStack")
	}
	outs := outputsOf(t, ws, "outputs.json")
	fn, apiURL := outs["MyApiStack"]["FunctionName"], outs["MyApiStack"]["ApiUrl"]
	if fn == "" || !strings.HasPrefix(apiURL, "https://") || !strings.HasSuffix(apiURL, ".execute-api."+r.region+".amazonaws.com/dev/") {
		t.Fatalf("MyApiStack outputs %v: want FunctionName and ApiUrl https://ID.execute-api.%s.amazonaws.com/dev/", outs["MyApiStack"], r.region)
	}
	firstCode := checkFunction(t, r, ws, fn, cdkAppMain)
	// pipe uploads the bundle's own zip for the asset.
	if zipSum := sha256Base64([]byte(ws.read(t, "dist/packages/my-api/bundle.zip"))); firstCode != zipSum {
		t.Errorf("the function's code (%s) is not dist/packages/my-api/bundle.zip (%s)", firstCode, zipSum)
	}
	// The dependent stack got the API's URL through the export.
	if got := r.parameter(t, "/my-api/dev/url"); got != apiURL {
		t.Errorf("/my-api/dev/url = %q, want the API's URL %q", got, apiURL)
	}
	if got := r.parameter(t, "/shared/dev/stage"); got != "dev" {
		t.Errorf("/shared/dev/stage = %q", got)
	}

	// Nothing changed: reads only, and the synth is a cache hit.
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...")
	if b.code != 0 {
		t.Fatalf("second deploy: exit %d", b.code)
	}
	for _, s := range cdkStacks {
		if !strings.Contains(b.stderr, "✓ "+s+" (no changes)\n") {
			t.Errorf("second deploy: no `✓ %s (no changes)`", s)
		}
	}
	if w := r.proxy.Writes(); len(w) > 0 {
		t.Errorf("an unchanged deploy made write calls: %v", w)
	}
	if st := b.status("CdkSynth"); st != "cached" {
		t.Errorf("second deploy: CdkSynth %q, want cached", st)
	}
	if done := doneEvents(b.stackEvents); len(done) != 3 || len(b.stackEvents) != 3 || done["MyApiStack"] != "unchanged" {
		t.Errorf("second deploy: stack events %+v, want three unchanged", b.stackEvents)
	}
	if ex := b.mnemonics("executed"); len(ex) > 0 {
		t.Errorf("second deploy executed %v, want nothing", ex)
	}

	// An app-only edit: a new bundle, a new asset, MyApiStack alone.
	edited := cdkAppMain + "\nVERSION = 2\n"
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...")
	if b.code != 0 {
		t.Fatalf("deploy after the edit: exit %d", b.code)
	}
	if !strings.Contains(b.stderr, "✓ MyApiStack (deployed") || !strings.Contains(b.stderr, "3 stacks: 1 deployed, 2 unchanged") {
		t.Errorf("deploy after the edit: want MyApiStack deployed, the others unchanged")
	}
	for _, s := range []string{"MyApiMonitoringStack", "SharedStack"} {
		if !strings.Contains(b.stderr, "✓ "+s+" (no changes)\n") {
			t.Errorf("deploy after the edit: no `✓ %s (no changes)`", s)
		}
	}
	if got := b.status("PyDeps"); got != "cached" {
		t.Errorf("deploy after the edit: PyDeps %q, want cached (only the app changed)", got)
	}
	if got := b.status("CdkSynth"); got != "executed" {
		t.Errorf("deploy after the edit: CdkSynth %q, want executed (the asset changed)", got)
	}
	published := 0
	for _, ev := range b.stackEvents {
		if ev.Event == "published" && ev.Stack == "MyApiStack" {
			published += ev.Uploaded
		}
	}
	if done := doneEvents(b.stackEvents); published != 1 || done["MyApiStack"] != "deployed" || done["SharedStack"] != "unchanged" {
		t.Errorf("deploy after the edit: %d uploads, done %v; want one upload and MyApiStack alone deployed", published, done)
	}
	var uploads []string
	for _, c := range r.proxy.Writes() {
		if c.Service == "s3" {
			uploads = append(uploads, c.Path)
		}
		if c.Stack != "" && c.Stack != "MyApiStack" {
			t.Errorf("write call for an unchanged stack: %v", c)
		}
	}
	key := functionCodeKey(t, ws)
	if len(uploads) != 1 || !strings.HasSuffix(uploads[0], "/"+key) {
		t.Errorf("uploads %v, want the new code asset %s once", uploads, key)
	}
	if code := checkFunction(t, r, ws, fn, edited); code == firstCode {
		t.Errorf("the function still runs the old code")
	}
	if got := r.parameter(t, "/my-api/dev/url"); got != apiURL {
		t.Errorf("after the update /my-api/dev/url = %q, want %q", got, apiURL)
	}
}

// cdkCLIEnv is the environment the CDK CLI runs with against the region's
// proxy: moto's credentials and endpoint, template URLs on localhost (moto
// reads 127.0.0.1:PORT as a bucket name), no version check, no telemetry,
// a private HOME (the CLI keeps caches there).
func (r *awsRegion) cdkCLIEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "CDK_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(append(env, r.env()...),
		"AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION="+strings.Replace(r.proxy.URL, "127.0.0.1", "localhost", 1),
		"CDK_DISABLE_VERSION_CHECK=1",
		"CDK_DISABLE_CLI_TELEMETRY=1",
		"HOME="+t.TempDir(),
	)
}

// TestRealCdkCliDeploysPipeAssembly: the cloud assembly `pipe build` leaves
// is one the CDK CLI deploys (`cdk deploy --all --app cdk.out`), and pipe
// then finds the stacks the CLI deployed up to date.
func TestRealCdkCliDeploysPipeAssembly(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "eu-central-1", true)
	ws, env := cdkDeployWorkspace(t, nm)
	ws.buildEnvOK(t, env, "//...")

	cdk := func() (string, time.Duration, error) {
		cmd := exec.Command(filepath.Join(nm, ".bin", "cdk"), "deploy", "--all", "--app", ws.path(cdkAssemblyDir), "--require-approval", "never")
		cmd.Dir = t.TempDir() // no cdk.json of anyone's
		cmd.Env = r.cdkCLIEnv(t)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return string(out), time.Since(start), err
	}
	out, took, err := cdk()
	t.Logf("cdk deploy --all (first) in %v:\n%s", took.Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("cdk deploy --all --app %s: %v", cdkAssemblyDir, err)
	}
	for s, st := range r.stackStatuses(t, cdkStacks...) {
		if st != "CREATE_COMPLETE" {
			t.Errorf("stack %s: status %q, want CREATE_COMPLETE", s, st)
		}
	}
	c := cloudformation.NewFromConfig(r.aws())
	res, err := c.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String("MyApiStack")})
	if err != nil {
		t.Fatal(err)
	}
	var fn, apiURL string
	for _, o := range res.Stacks[0].Outputs {
		switch aws.ToString(o.OutputKey) {
		case "FunctionName":
			fn = aws.ToString(o.OutputValue)
		case "ApiUrl":
			apiURL = aws.ToString(o.OutputValue)
		}
	}
	f := r.lambdaFunction(t, fn).Configuration
	if f.Handler != "run.sh" || len(f.Layers) != 1 || f.Layers[0].Arn != webAdapterLayer(r.region) {
		t.Errorf("function %q: handler %q, layers %+v", fn, f.Handler, f.Layers)
	}
	if got := r.parameter(t, "/my-api/dev/url"); got != apiURL || !strings.HasSuffix(apiURL, "/dev/") {
		t.Errorf("/my-api/dev/url = %q, want the API's URL %q", got, apiURL)
	}

	// Nothing changed, both ways: the CLI and pipe agree that the stacks
	// are up to date, and pipe writes nothing.
	out, took, err = cdk()
	if err != nil || strings.Count(out, "(no changes)") != len(cdkStacks) {
		t.Errorf("cdk deploy --all again: %v, want every stack `(no changes)`:\n%s", err, out)
	}
	r.proxy.Reset()
	b := r.deploy(t, ws, env, "deploy", "//...")
	if b.code != 0 {
		t.Fatalf("pipe deploy after cdk deploy: exit %d", b.code)
	}
	for _, s := range cdkStacks {
		if !strings.Contains(b.stderr, "✓ "+s+" (no changes)\n") {
			t.Errorf("pipe deploy after cdk deploy: no `✓ %s (no changes)`", s)
		}
	}
	if w := r.proxy.Writes(); len(w) > 0 {
		t.Errorf("pipe deploy after cdk deploy made write calls: %v", w)
	}
	t.Logf("nothing changed: cdk deploy --all --app cdk.out %v; pipe deploy //... see the summary line above", took.Round(time.Millisecond))
}

// TestCdkStackStacksRestrictsDeploy: cdk_stack(stacks = …) chooses the stacks
// pipe deploy and pipe diff work on for that target, with the stacks they
// depend on; --stacks narrows the choice further.
func TestCdkStackStacksRestrictsDeploy(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "ca-central-1", true)
	ws, env := cdkDeployWorkspace(t, nm)
	ws.write(t, "packages/infra/BUILD.star", `cdk_stack(
    name = "infra",
    app = "src/main.ts",
    srcs = glob(["src/**/*.ts"]),
    deps = ["//packages/my-api:bundle"],
    stacks = ["MyApiMonitoring*"],
)
`)
	// MyApiMonitoringStack and MyApiStack, which it depends on; never
	// SharedStack.
	b := r.deploy(t, ws, env, "diff", "//...")
	if b.code != 0 {
		t.Fatalf("pipe diff: exit %d", b.code)
	}
	for _, s := range []string{"MyApiStack", "MyApiMonitoringStack"} {
		if !strings.Contains(b.stdout, "Stack "+s+" (not deployed)\n") {
			t.Errorf("pipe diff does not show %s", s)
		}
	}
	if strings.Contains(b.stdout, "SharedStack") {
		t.Errorf("pipe diff shows SharedStack, which stacks = [\"MyApiMonitoring*\"] leaves out")
	}

	b = r.deploy(t, ws, env, "deploy", "//...", "--dry-run")
	if b.code != 0 || !strings.Contains(b.stderr, "2 stacks: 2 would deploy") || strings.Contains(b.stderr, "SharedStack") {
		t.Errorf("pipe deploy --dry-run: exit %d, want MyApiStack and MyApiMonitoringStack only", b.code)
	}
	// --stacks narrows the target's choice.
	b = r.deploy(t, ws, env, "deploy", "//...", "--dry-run", "--stacks", "MyApiStack")
	if b.code != 0 || !strings.Contains(b.stderr, "1 stack: 1 would deploy") || !strings.Contains(b.stderr, "• MyApiStack would be deployed") {
		t.Errorf("--stacks MyApiStack: exit %d, want MyApiStack alone", b.code)
	}
	b = r.deploy(t, ws, env, "deploy", "//...", "--dry-run", "--stacks", "SharedStack")
	if b.code == 0 || !strings.Contains(b.stderr, `--stacks "SharedStack" matches no stack`) {
		t.Errorf("--stacks outside the target's stacks: exit %d, want an error", b.code)
	}
	if w := r.proxy.Writes(); len(w) > 0 {
		t.Errorf("diff and --dry-run made write calls: %v", w)
	}
}

// stackEvent is one of pipe deploy's lines in the --events file.
type stackEvent struct {
	Kind       string   `json:"kind"`
	Stack      string   `json:"stack"`
	StackName  string   `json:"stack_name"`
	Event      string   `json:"event"`
	Status     string   `json:"status"`
	TimeMs     float64  `json:"time_ms"`
	DurationMs float64  `json:"duration_ms"`
	Reasons    []string `json:"reasons"`
	Uploaded   int      `json:"uploaded"`
	Changes    int      `json:"changes"`
	Resource   string   `json:"resource"`
	Dependency string   `json:"dependency"`
	Error      string   `json:"error"`
}

// readStackEvents returns the deploy lines of an --events file.
func readStackEvents(t *testing.T, file string) []stackEvent {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	var out []stackEvent
	for _, line := range strings.Split(string(b), "\n") {
		var ev stackEvent
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events line %q: %v", line, err)
		}
		if ev.Kind == "stack" {
			out = append(out, ev)
		}
	}
	return out
}

// doneEvents maps each stack to the status of its "done" event.
func doneEvents(evs []stackEvent) map[string]string {
	m := map[string]string{}
	for _, ev := range evs {
		if ev.Event == "done" {
			m[ev.Stack] = ev.Status
		}
	}
	return m
}

// TestDeployHoldsWorkspaceLock: pipe deploy takes the workspace lock once,
// before building, and holds it until the deployment ends, so no other pipe
// rewrites dist/ between the build and the deployment reading it: a pipe
// build started while the stacks are being read waits for the deploy.
func TestDeployHoldsWorkspaceLock(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "sa-east-1", true)
	ws, env := cdkDeployWorkspace(t, nm)
	ws.buildEnvOK(t, env, "//...")

	// Every acquisition opens .pipe/lock and every release closes it: count
	// the opens from the deploy's start to its first CloudFormation call,
	// when it has built and is deploying. Closes are watched too because
	// the kernel merges identical events in a row.
	lockFile := ws.path(".pipe/lock")
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, lockFile, unix.IN_OPEN|unix.IN_CLOSE); err != nil {
		t.Fatal(err)
	}

	// While the deploy reads the stacks, a build must wait for the lock.
	var (
		once     sync.Once
		other    *exec.Cmd
		otherErr lockedBuffer
		waited   bool
		otherRun = make(chan error, 1)
		opens    int
		countErr error
	)
	r.proxy.OnRequest = func(c testenv.Call) {
		if c.Service != "cloudformation" {
			return
		}
		once.Do(func() {
			opens, countErr = countInotify(fd)
			other = pipeCmdEnv(ws, env, "build", "//packages/my-api:bundle")
			other.Stderr = &otherErr
			if err := other.Start(); err != nil {
				otherRun <- err
				return
			}
			go func() { otherRun <- other.Wait() }()
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if waited = strings.Contains(otherErr.String(), "waiting for the workspace lock"); waited {
					return
				}
				select {
				case err := <-otherRun:
					otherRun <- err
					return // it finished without waiting
				default:
				}
			}
		})
	}
	b := r.deploy(t, ws, env, "deploy", "//...", "--dry-run")
	r.proxy.OnRequest = nil
	if b.code != 0 {
		t.Fatalf("pipe deploy --dry-run: exit %d", b.code)
	}
	if countErr != nil {
		t.Fatal(countErr)
	}
	if opens != 1 {
		t.Errorf("pipe deploy opened the workspace lock %d times, want once: it must keep the lock from the build to the end", opens)
	}
	if other == nil {
		t.Fatal("the deploy made no CloudFormation call")
	}
	select {
	case err := <-otherRun:
		if err != nil {
			t.Errorf("the concurrent pipe build: %v\n%s", err, otherErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the concurrent pipe build did not finish after the deploy")
	}
	if !waited {
		t.Errorf("a pipe build started during the deploy did not wait for the lock:\n%s", otherErr.String())
	}
}

// lockedBuffer is a buffer a running command writes to while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// countInotify counts the queued IN_OPEN events of a non-blocking inotify
// descriptor.
func countInotify(fd int) (int, error) {
	n := 0
	buf := make([]byte, 64<<10)
	for {
		got, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read inotify events: %w", err)
		}
		// struct inotify_event: wd int32, mask uint32, cookie uint32,
		// len uint32, then len bytes of name.
		for off := 0; off+unix.SizeofInotifyEvent <= got; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			if mask&unix.IN_OPEN != 0 {
				n++
			}
			off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
		}
	}
}
