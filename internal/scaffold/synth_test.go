package scaffold

// Every valid combination of `pipe new fastapi` options generated into
// one workspace, type-checked with tsc and synthesized once with node and
// aws-cdk-lib from the npm fixture: the generated CDK code itself, without
// pipe's build (cmd/pipe's tests build and deploy it end to end). The
// Python side is not needed: the operations come from a small OpenAPI
// document through api_metadata's generator, and each bundle is a
// directory holding run.sh.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/evanw/esbuild/pkg/api"

	"github.com/pipebuild/pipe/internal/rules/apimeta"
	"github.com/pipebuild/pipe/internal/testenv"
)

// synthSpec has the generated app's two operations.
const synthSpec = `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
  "/echo": {"get": {"operationId": "echo", "responses": {"200": {"description": "ok"}}}},
  "/stream": {"get": {"operationId": "stream", "responses": {"200": {"description": "ok",
    "content": {"application/jsonl": {"schema": {"type": "object"}}}}}}}}}`

// synthRuntime is the runtime the test gives one service, so the other
// services show the default and this one shows that runtime.gen.ts is
// what decides it.
var synthRuntime = map[string]apimeta.Runtime{"rest-none-shared": {PythonVersion: "3.13", Architecture: "arm64"}}

func comboName(o FastAPIOptions) string {
	return o.ComputeType + "-" + o.Auth + "-" + o.IntegrationPattern
}

type cfnTemplate struct {
	Resources map[string]struct {
		Type       string         `json:"Type"`
		Properties map[string]any `json:"Properties"`
	} `json:"Resources"`
}

func (tm cfnTemplate) ofType(typ string) []map[string]any {
	var ids []string
	for id, r := range tm.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []map[string]any
	for _, id := range ids {
		out = append(out, tm.Resources[id].Properties)
	}
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestGeneratedAppsSynthesize(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	root := t.TempDir()
	var combos []FastAPIOptions
	for _, o := range everyOption("") {
		o.Name = comboName(o)
		combos = append(combos, o)
	}
	for _, o := range combos {
		if _, err := FastAPI(root, o); err != nil {
			t.Fatalf("%s: %v", o.Name, err)
		}
		meta, err := apimeta.Generate([]byte(synthSpec), "openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		rt, ok := synthRuntime[o.Name]
		if !ok {
			rt = apimeta.Runtime{PythonVersion: PythonVersion, Architecture: "x86_64"}
		}
		gen := filepath.Join(root, ConstructsDir, "src", "generated", o.Name)
		writeTestFile(t, filepath.Join(gen, "metadata.gen.ts"), string(meta))
		writeTestFile(t, filepath.Join(gen, "runtime.gen.ts"), string(apimeta.GenerateRuntime(rt, "//packages/"+o.Name+":bundle")))
		writeTestFile(t, filepath.Join(root, "dist", "packages", o.Name, "bundle", "run.sh"), "#!/bin/sh\n")
	}
	// Callers granted access, to see what grantInvokeAccess grants.
	for _, name := range []string{"function-url-iam-shared", "rest-iam-shared"} {
		stack := filepath.Join(root, InfraDir, "src", "stacks", name+"-stack.ts")
		b, err := os.ReadFile(stack)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), "import { Stack } from 'aws-cdk-lib';",
			"import { Stack } from 'aws-cdk-lib';\nimport { AccountRootPrincipal, Role } from 'aws-cdk-lib/aws-iam';", 1)
		s = strings.TrimSuffix(s, "}\n") + "  readonly caller = new Role(this, 'Caller', {\n    assumedBy: new AccountRootPrincipal(),\n  });\n" +
			"  readonly grant = this.api.grantInvokeAccess(this.caller);\n}\n"
		writeTestFile(t, stack, s)
	}
	// The app's RuntimeConfig (one per stage, and the app is one),
	// resolved, for the checks below.
	mainTS := filepath.Join(root, InfraDir, "src", "main.ts")
	b, err := os.ReadFile(mainTS)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, mainTS, string(b)+`
import { writeFileSync } from 'fs';
import { Stack as CheckedStack } from 'aws-cdk-lib';
import { RuntimeConfig } from '../../common/constructs/src/core/runtime-config';
const checked = app.node.children.find((c) => c instanceof CheckedStack);
const apis = RuntimeConfig.of(checked!)?.config.apis;
writeFileSync(
  process.env.RUNTIME_CONFIG_OUT!,
  JSON.stringify((checked as CheckedStack).resolve(apis)),
);
`)
	if err := os.Symlink(nm, filepath.Join(root, "node_modules")); err != nil {
		t.Fatal(err)
	}

	for _, project := range []string{ConstructsDir, InfraDir} {
		tsc := exec.Command("node", filepath.Join(nm, "typescript", "bin", "tsc"), "--noEmit", "-p", project)
		tsc.Dir = root
		if out, err := tsc.CombinedOutput(); err != nil {
			t.Fatalf("tsc --noEmit -p %s: %v\n%s", project, err, out)
		}
	}

	bundle := filepath.Join(root, "dist", "app.js")
	res := api.Build(api.BuildOptions{
		EntryPoints: []string{mainTS},
		Bundle:      true,
		Platform:    api.PlatformNode,
		Format:      api.FormatCommonJS,
		External:    []string{"aws-cdk-lib", "constructs"},
		Outfile:     bundle,
		Write:       true,
		LogLevel:    api.LogLevelSilent,
	})
	for _, m := range res.Errors {
		t.Fatalf("esbuild: %s (%v)", m.Text, m.Location)
	}
	out := filepath.Join(root, "cdk.out")
	runtimeConfig := filepath.Join(root, "runtime-config.json")
	node := exec.Command("node", bundle)
	node.Dir = root
	node.Env = append(os.Environ(), "CDK_OUTDIR="+out, "RUNTIME_CONFIG_OUT="+runtimeConfig)
	if o, err := node.CombinedOutput(); err != nil {
		t.Fatalf("node synth: %v\n%s", err, o)
	}
	var apis map[string]any
	rc, err := os.ReadFile(runtimeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rc, &apis); err != nil {
		t.Fatal(err)
	}

	for _, o := range combos {
		t.Run(o.Name, func(t *testing.T) {
			pascal := PascalCase(o.Name)
			raw, err := os.ReadFile(filepath.Join(out, pascal+"Stack.template.json"))
			if err != nil {
				t.Fatal(err)
			}
			var tm cfnTemplate
			if err := json.Unmarshal(raw, &tm); err != nil {
				t.Fatal(err)
			}
			checkSynthesized(t, o, tm)
			// The URL is a token of the API's own resources, whose logical
			// ids start with the construct's id.
			if got := jsonText(apis[o.Name]); !strings.Contains(got, `"`+pascal) {
				t.Errorf("RuntimeConfig apis[%q] = %s, want the API's URL", o.Name, got)
			}
		})
	}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkSynthesized(t *testing.T, o FastAPIOptions, tm cfnTemplate) {
	t.Helper()
	rt, ok := synthRuntime[o.Name]
	if !ok {
		rt = apimeta.Runtime{PythonVersion: PythonVersion, Architecture: "x86_64"}
	}
	layer := map[string]string{"x86_64": "LambdaAdapterLayerX86", "arm64": "LambdaAdapterLayerArm64"}[rt.Architecture]
	fns := tm.ofType("AWS::Lambda::Function")
	want := 2 // echo and stream
	if o.IntegrationPattern == "shared" {
		want = 1
	}
	if len(fns) != want {
		t.Fatalf("%d functions, want %d", len(fns), want)
	}
	mode := "response_stream"
	if o.ComputeType == "http" {
		mode = "buffered"
	}
	for _, fn := range fns {
		if fn["Runtime"] != "python"+rt.PythonVersion {
			t.Errorf("function runtime %v, want python%s (runtime.gen.ts)", fn["Runtime"], rt.PythonVersion)
		}
		if a := jsonText(fn["Architectures"]); a != fmt.Sprintf("[%q]", rt.Architecture) {
			t.Errorf("function architectures %s, want [%q]", a, rt.Architecture)
		}
		if l := jsonText(fn["Layers"]); !strings.Contains(l, ":layer:"+layer+":") {
			t.Errorf("function layers %s, want the Web Adapter's %s", l, layer)
		}
		vars := jsonText(fn["Environment"])
		if !strings.Contains(vars, `"AWS_LWA_INVOKE_MODE":"`+mode+`"`) {
			t.Errorf("function environment %s, want AWS_LWA_INVOKE_MODE %s", vars, mode)
		}
	}
	perms := tm.ofType("AWS::Lambda::Permission")
	switch {
	case o.ComputeType == FunctionURL:
		urls := tm.ofType("AWS::Lambda::Url")
		wantAuth := map[string]string{"iam": "AWS_IAM", "none": "NONE"}[o.Auth]
		if len(urls) != 1 || urls[0]["InvokeMode"] != "RESPONSE_STREAM" || urls[0]["AuthType"] != wantAuth {
			t.Errorf("function URLs %s, want one with InvokeMode RESPONSE_STREAM and AuthType %s", jsonText(urls), wantAuth)
		}
		if n := len(tm.ofType("AWS::ApiGateway::RestApi")) + len(tm.ofType("AWS::ApiGatewayV2::Api")); n != 0 {
			t.Errorf("a function URL stack has %d API Gateway APIs", n)
		}
		if o.Auth == "iam" {
			policies := jsonText(tm.ofType("AWS::IAM::Policy"))
			if !strings.Contains(policies, `"Action":"lambda:InvokeFunctionUrl","Condition":{"StringEquals":{"lambda:FunctionUrlAuthType":"AWS_IAM"}}`) {
				t.Errorf("grantInvokeAccess: policies %s, want lambda:InvokeFunctionUrl on the condition lambda:FunctionUrlAuthType AWS_IAM", policies)
			}
			// Function URLs made since October 2025 also need
			// lambda:InvokeFunction, here only through the URL.
			if !strings.Contains(policies, `"Action":"lambda:InvokeFunction","Condition":{"Bool":{"lambda:InvokedViaFunctionUrl":true}}`) {
				t.Errorf("grantInvokeAccess: policies %s, want lambda:InvokeFunction on the condition lambda:InvokedViaFunctionUrl", policies)
			}
			if len(perms) != 0 {
				t.Errorf("an IAM function URL has resource-based permissions %s; callers are granted by identity", jsonText(perms))
			}
		}
	case o.IntegrationPattern == "shared":
		if len(perms) != 1 {
			t.Errorf("%d Lambda permissions, want one for the API (not one per method): %s", len(perms), jsonText(perms))
		}
	}
	switch o.ComputeType {
	case "rest":
		stages := tm.ofType("AWS::ApiGateway::Stage")
		if len(stages) != 1 || stages[0]["TracingEnabled"] != true {
			t.Errorf("REST stages %s, want one with X-Ray tracing", jsonText(stages))
		}
		apis := tm.ofType("AWS::ApiGateway::RestApi")
		if len(apis) != 1 {
			t.Fatalf("%d REST APIs", len(apis))
		}
		policy := jsonText(apis[0]["Policy"])
		opensOptions := strings.Contains(policy, `execute-api:/*/OPTIONS/*`)
		if opensOptions != (o.Auth == "iam") {
			t.Errorf("REST API policy %s: want OPTIONS open to anyone exactly with IAM auth", policy)
		}
		if o.Name == "rest-iam-shared" && !strings.Contains(policy, `"Resource":"execute-api:/*"`) {
			t.Errorf("grantInvokeAccess did not add the caller to the resource policy: %s", policy)
		}
	case "http":
		stages := tm.ofType("AWS::ApiGatewayV2::Stage")
		if len(stages) != 1 || !strings.Contains(jsonText(stages[0]["AccessLogSettings"]), `"DestinationArn":{"Fn::GetAtt":["`) {
			t.Errorf("HTTP API stages %s, want access logs to a log group", jsonText(stages))
		}
	}
	if o.Auth == "cognito" {
		if len(tm.ofType("AWS::Cognito::UserPool")) != 1 || len(tm.ofType("AWS::Cognito::UserPoolClient")) != 1 {
			t.Errorf("a Cognito stack wants a user pool and its client (the identity prop)")
		}
	}
}
