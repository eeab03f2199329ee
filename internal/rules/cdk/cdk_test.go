package cdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/buildfile"
	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/apimeta"
	"github.com/pipebuild/pipe/internal/rules/cdk"
	"github.com/pipebuild/pipe/internal/rules/core"
	"github.com/pipebuild/pipe/internal/rules/python"
	"github.com/pipebuild/pipe/internal/testenv"
)

type testWS struct {
	root  string
	cache *cache.Cache
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newWS writes a workspace whose node_modules setting is nm ("" for the
// default).
func newWS(t *testing.T, nm string, files map[string]string) *testWS {
	t.Helper()
	root := t.TempDir()
	ws := `workspace(name = "t")` + "\n"
	if nm != "" {
		ws = `workspace(name = "t", node_modules = "` + nm + `")` + "\n"
	}
	write(t, filepath.Join(root, "WORKSPACE.star"), ws)
	for rel, content := range files {
		write(t, filepath.Join(root, rel), content)
	}
	c, err := cache.Open(filepath.Join(root, ".cache"))
	if err != nil {
		t.Fatal(err)
	}
	return &testWS{root: root, cache: c}
}

func (w *testWS) write(t *testing.T, rel, content string) {
	write(t, filepath.Join(w.root, rel), content)
}

func (w *testWS) read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func registry() *engine.Registry {
	reg := engine.NewRegistry()
	core.Register(reg)
	apimeta.Register(reg)
	cdk.Register(reg)
	return reg
}

// plan loads and analyses //... as a fresh pipe process would: a new
// Workspace, so nothing memoized survives from an earlier build.
func (w *testWS) plan() (*engine.Workspace, *engine.Plan, error) {
	reg := registry()
	ev := buildfile.NewEvaluator(w.root, reg)
	settings, err := ev.EvalWorkspace()
	if err != nil {
		return nil, nil, err
	}
	ws := &engine.Workspace{Root: w.root, Settings: settings}
	pat, _ := engine.ParsePattern("//...", "")
	p, err := engine.PlanBuild(context.Background(), ws, ev, []engine.Pattern{pat})
	return ws, p, err
}

type result struct {
	sum    engine.Summary
	err    error
	events []*engine.ActionEvent
}

type recorder struct{ events chan *engine.ActionEvent }

func (r *recorder) ActionStarted(*engine.Action, int)     {}
func (r *recorder) ActionFinished(ev *engine.ActionEvent) { r.events <- ev }

func (w *testWS) build(t *testing.T) result {
	t.Helper()
	ws, p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{events: make(chan *engine.ActionEvent, len(p.Needed))}
	digests := engine.LoadFileDigests(filepath.Join(ws.StateDir(), "digests"))
	ex := &engine.Executor{WS: ws, Cache: w.cache, Digests: digests, Jobs: 4, Graph: p.Actions, Reporter: rec, PipeVersion: "test"}
	sum, err := ex.Execute(context.Background(), p.Needed)
	digests.Save()
	close(rec.events)
	var evs []*engine.ActionEvent
	for ev := range rec.events {
		evs = append(evs, ev)
	}
	return result{sum, err, evs}
}

func (w *testWS) buildOK(t *testing.T) result {
	t.Helper()
	r := w.build(t)
	var bf *engine.BuildFailedError
	if errors.As(r.err, &bf) {
		t.Fatalf("build failed: %v\n%s", bf.Failed[0].Err, bf.Failed[0].Output)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r
}

// executed lists "Mnemonic" of the actions that ran, sorted.
func (r result) executed() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Status == engine.StatusExecuted {
			out = append(out, ev.Action.Mnemonic)
		}
	}
	sort.Strings(out)
	return out
}

// failure returns the failed action's error and output.
func (r result) failure(t *testing.T) (string, string) {
	t.Helper()
	var bf *engine.BuildFailedError
	if !errors.As(r.err, &bf) {
		t.Fatalf("build error %v, want a failed action", r.err)
	}
	return bf.Failed[0].Err.Error(), bf.Failed[0].Output
}

func actionOf(t *testing.T, p *engine.Plan, mnemonic string) *engine.Action {
	t.Helper()
	for _, a := range p.Actions.Actions {
		if a.Mnemonic == mnemonic {
			return a
		}
	}
	t.Fatalf("no %s action", mnemonic)
	return nil
}

// exampleInfra copies the example's CDK app into files, with stand-ins for
// what it depends on: a genrule in place of the python_bundle (the real one
// needs wheels from PyPI) and an OpenAPI spec for api_metadata.
func exampleInfra(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	src := "../../../examples/fastapi/packages/infra"
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if de.IsDir() {
			if de.Name() == "node_modules" || de.Name() == "cdk.out" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(filepath.Join("packages/infra", rel))] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files["packages/my-api/BUILD.star"] = `
genrule(
    name = "bundle",
    outs = ["run.sh", "my_api/main.py"],
    cmd = "printf '#!/bin/sh\\nexec python -m uvicorn my_api.main:app\\n' > $(location run.sh); echo 'app = None' > $(location my_api/main.py)",
)
genrule(name = "openapi", srcs = ["spec.json"], outs = ["openapi.json"], cmd = "cp $< $@")
`
	files["packages/my-api/spec.json"] = testSpec
	files["packages/common/constructs/BUILD.star"] = `
api_metadata(
    name = "my-api-metadata",
    spec = "//packages/my-api:openapi",
    out = "src/generated/my-api/metadata.gen.ts",
)
`
	return files
}

const testSpec = `{"openapi": "3.1.0", "info": {"title": "my-api", "version": "0.1.0"}, "paths": {
  "/items/{item_id}": {"get": {"operationId": "get_item", "tags": ["items"]}},
  "/items": {"get": {"operationId": "list", "tags": ["items"]}, "post": {"operationId": "create_item", "tags": ["items"]}},
  "/events": {"get": {"operationId": "stream_events", "x-streaming": true}}
}}`

type manifestJSON struct {
	Artifacts map[string]struct {
		Type         string   `json:"type"`
		Environment  string   `json:"environment"`
		Dependencies []string `json:"dependencies"`
	} `json:"artifacts"`
}

func stacksOf(t *testing.T, w *testWS, dir string) map[string][]string {
	t.Helper()
	var m manifestJSON
	if err := json.Unmarshal([]byte(w.read(t, dir+"/manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	stacks := map[string][]string{}
	for id, a := range m.Artifacts {
		if a.Type == "aws:cloudformation:stack" {
			var deps []string
			for _, d := range a.Dependencies {
				if !strings.HasSuffix(d, ".assets") {
					deps = append(deps, d)
				}
			}
			sort.Strings(deps)
			stacks[id] = deps
		}
	}
	return stacks
}

// TestSynthExample builds the example's CDK app: three stacks, the bundle
// as a zip asset staged into the assembly, context from cdk.json and the
// target, a cache hit when nothing changed, and bundle + synth again after
// a TypeScript edit. The real CDK CLI reads the assembly.
func TestSynthExample(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	files := exampleInfra(t, map[string]string{})
	files["packages/infra/BUILD.star"] = `
cdk_stack(
    name = "infra",
    app = "src/main.ts",
    srcs = glob(["src/**/*.ts"]),
    deps = ["//packages/my-api:bundle", "//packages/common/constructs:my-api-metadata"],
    context = {"stage": "prod"},
    account = "123456789012",
    region = "eu-west-1",
    stacks = ["MyApi*", "SharedStack"],
    typecheck = True,
)
`
	w := newWS(t, nm, files)
	start := time.Now()
	r := w.buildOK(t)
	t.Logf("cold build: %v (%v)", time.Since(start), r.executed())
	if got := strings.Join(r.executed(), " "); got != "ApiMetadata CdkBundle CdkSynth CdkTypecheck Genrule Genrule" {
		t.Errorf("executed %s", got)
	}
	out := "dist/packages/infra/infra/cdk.out"
	stacks := stacksOf(t, w, out)
	want := map[string][]string{"MyApiStack": nil, "MyApiMonitoringStack": {"MyApiStack"}, "SharedStack": nil}
	for name, deps := range want {
		got, ok := stacks[name]
		if !ok {
			t.Errorf("manifest has no stack %s (it has %v)", name, stacks)
			continue
		}
		if strings.Join(got, ",") != strings.Join(deps, ",") {
			t.Errorf("%s depends on %v, want %v", name, got, deps)
		}
	}
	if len(stacks) != 3 {
		t.Errorf("stacks %v, want 3", stacks)
	}

	// The bundle directory is a zip file asset, copied into the assembly.
	var assets struct {
		Files map[string]struct {
			Source struct {
				Path      string `json:"path"`
				Packaging string `json:"packaging"`
			} `json:"source"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(w.read(t, out+"/MyApiStack.assets.json")), &assets); err != nil {
		t.Fatal(err)
	}
	var zipAsset string
	for _, a := range assets.Files {
		if a.Source.Packaging == "zip" {
			zipAsset = a.Source.Path
		}
	}
	if zipAsset == "" {
		t.Fatalf("MyApiStack.assets.json has no directory asset: %+v", assets)
	}
	if got := w.read(t, out+"/"+zipAsset+"/run.sh"); !strings.Contains(got, "uvicorn") {
		t.Errorf("%s/run.sh = %q", zipAsset, got)
	}

	// Context: "stage" from the target (overriding cdk.json's "dev"), the
	// environment from account/region, and the keys the CLI adds.
	tmpl := w.read(t, out+"/MyApiStack.template.json")
	for _, s := range []string{`"STAGE": "prod"`, `"AWS_LWA_INVOKE_MODE": "response_stream"`, `"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap"`,
		`"Handler": "run.sh"`, `"Runtime": "python3.14"`, `"aws:cdk:path": "MyApiStack/Handler/Resource"`, `"aws:asset:path": "` + zipAsset + `"`,
		`arn:aws:lambda:eu-west-1:753240598075:layer:LambdaAdapterLayerX86:25`, `"PathPart": "events"`, `"ResponseTransferMode": "STREAM"`} {
		if !strings.Contains(tmpl, s) {
			t.Errorf("MyApiStack.template.json lacks %s", s)
		}
	}
	if m := w.read(t, out+"/manifest.json"); !strings.Contains(m, `"environment": "aws://123456789012/eu-west-1"`) {
		t.Errorf("manifest.json does not place the stacks in aws://123456789012/eu-west-1")
	}
	if s := w.read(t, out+"/SharedStack.template.json"); !strings.Contains(s, "/shared/prod/stage") {
		t.Errorf("SharedStack does not use the stage from context:\n%s", s)
	}
	// Nothing in the assembly may name the scratch directory it was made in.
	filepath.WalkDir(filepath.Join(w.root, out), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), ".pipe/") || strings.Contains(string(b), w.root) {
				t.Errorf("%s names a local path", p)
			}
		}
		return nil
	})

	start = time.Now()
	if r := w.buildOK(t); r.sum.Executed != 0 {
		t.Errorf("warm build executed %v", r.executed())
	}
	t.Logf("warm build: %v", time.Since(start))

	// A change to a TypeScript file: bundle and synth again.
	api := "packages/infra/src/stacks/shared-stack.ts"
	w.write(t, api, strings.Replace(w.read(t, api), "stringValue: props.stage,", "stringValue: `shared-${props.stage}`,", 1))
	start = time.Now()
	r = w.buildOK(t)
	t.Logf("build after a TS edit: %v", time.Since(start))
	if got := strings.Join(r.executed(), " "); got != "CdkBundle CdkSynth CdkTypecheck" {
		t.Errorf("after a TS edit executed %q, want CdkBundle CdkSynth CdkTypecheck", got)
	}
	if s := w.read(t, out+"/SharedStack.template.json"); !strings.Contains(s, "shared-prod") {
		t.Errorf("SharedStack not updated")
	}

	// The CDK CLI reads the assembly as it is.
	cli := exec.Command(filepath.Join(nm, ".bin", "cdk"), "ls", "--app", out, "--no-notices")
	cli.Dir = w.root
	cli.Env = append(os.Environ(), "CDK_DISABLE_VERSION_CHECK=1", "CDK_DISABLE_CLI_TELEMETRY=true", "HOME="+t.TempDir())
	b, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("cdk ls: %v\n%s", err, b)
	}
	if got := strings.Fields(string(b)); strings.Join(got, " ") != "MyApiStack MyApiMonitoringStack SharedStack" && strings.Join(got, " ") != "MyApiStack SharedStack MyApiMonitoringStack" {
		t.Errorf("cdk ls printed %q", b)
	}

	// pipe deploy finds the assembly through the target's info.
	_, p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := engine.ParseLabel("//packages/infra:infra", "")
	info, ok := engine.TargetInfo(p.Actions, l, cdk.AssemblyKey)
	if !ok || info.Dir != out {
		t.Errorf("%s = %+v (%t), want Dir %s", cdk.AssemblyKey, info, ok, out)
	}
	if strings.Join(info.Stacks, ",") != "MyApi*,SharedStack" {
		t.Errorf("%s Stacks = %q", cdk.AssemblyKey, info.Stacks)
	}
}

// minimal is a one-stack app for tests that need a synth, not the example.
func minimal(build string, files map[string]string) map[string]string {
	files["p/BUILD.star"] = build
	if _, ok := files["p/src/main.ts"]; !ok {
		files["p/src/main.ts"] = `import { App, Stack } from 'aws-cdk-lib';
import { Topic } from './topic';

const app = new App();
const stack = new Stack(app, 'Only');
new Topic(stack, 'T', app.node.tryGetContext('topic') ?? 'none');
`
	}
	if _, ok := files["p/src/topic.ts"]; !ok {
		files["p/src/topic.ts"] = `import { CfnResource } from 'aws-cdk-lib';
import { Construct } from 'constructs';

export class Topic extends Construct {
  constructor(scope: Construct, id: string, name: string) {
    super(scope, id);
    new CfnResource(this, 'Resource', { type: 'AWS::SNS::Topic', properties: { TopicName: name } });
  }
}
`
	}
	return files
}

// TestSynthContext: cdk.json's context reaches the app, the target's
// context overrides it, and the CLI's own keys are set.
func TestSynthContext(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))`+"\n", map[string]string{
		"p/cdk.json": `{"app": "ignored", "context": {"topic": "from-cdk-json"}}`,
	}))
	w.buildOK(t)
	tmpl := w.read(t, "dist/p/app/cdk.out/Only.template.json")
	for _, s := range []string{`"TopicName": "from-cdk-json"`, `"aws:cdk:path": "Only/T/Resource"`, `"CDKMetadata"`} {
		if !strings.Contains(tmpl, s) {
			t.Errorf("template lacks %s:\n%s", s, tmpl)
		}
	}
	w.write(t, "p/BUILD.star", `cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]), context = {"topic": "from-build"})`+"\n")
	if got := strings.Join(w.buildOK(t).executed(), " "); got != "CdkSynth" {
		t.Errorf("a context change executed %q, want the synth only", got)
	}
	if tmpl := w.read(t, "dist/p/app/cdk.out/Only.template.json"); !strings.Contains(tmpl, `"TopicName": "from-build"`) {
		t.Errorf("context attribute did not override cdk.json:\n%s", tmpl)
	}
	// cdk.json's settings switch the CLI's keys off, as with the CLI.
	w.write(t, "p/cdk.json", `{"pathMetadata": false, "versionReporting": false, "context": {"topic": "x"}}`)
	w.buildOK(t)
	if tmpl := w.read(t, "dist/p/app/cdk.out/Only.template.json"); strings.Contains(tmpl, "aws:cdk:path") || strings.Contains(tmpl, "CDKMetadata") {
		t.Errorf("pathMetadata/versionReporting false ignored:\n%s", tmpl)
	}
}

// TestSynthErrorShowsTypeScript: an exception in the app is reported at its
// TypeScript position, through the bundle's source map.
func TestSynthErrorShowsTypeScript(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))`+"\n", map[string]string{
		"p/src/topic.ts": `import { Construct } from 'constructs';

export class Topic extends Construct {
  constructor(scope: Construct, id: string, name: string) {
    super(scope, id);
    if (name === 'none') {
      throw new Error('topic name missing: set context "topic"');
    }
  }
}
`,
	}))
	// Reached through a symlink, the workspace's paths differ from the
	// physical ones node prints; both must become workspace paths.
	link := filepath.Join(t.TempDir(), "ws")
	if err := os.Symlink(w.root, link); err != nil {
		t.Fatal(err)
	}
	w.root = link
	msg, out := w.build(t).failure(t)
	if want := `synth failed at p/src/topic.ts:7:13: Error: topic name missing: set context "topic"`; msg != want {
		t.Errorf("error\n  %s\nwant\n  %s", msg, want)
	}
	if !strings.Contains(out, "at new Topic (p/src/topic.ts:7:13)") || !regexp.MustCompile(`p/src/main\.ts:6:\d+`).MatchString(out) {
		t.Errorf("output does not show the TypeScript stack:\n%s", out)
	}
	if strings.Contains(out, "app.js:") || strings.Contains(out, ".pipe/") {
		t.Errorf("output still names bundle positions or the scratch directory:\n%s", out)
	}
}

// TestSynthNeedsDeclaredAssets: node runs on a copy of the workspace that
// holds only the declared inputs, so an asset directory that is not in
// deps fails the synth instead of being read behind the cache's back.
func TestSynthNeedsDeclaredAssets(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	files := minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))`+"\n", map[string]string{
		"p/src/main.ts": `import { App, Stack } from 'aws-cdk-lib';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';

const app = new App();
const stack = new Stack(app, 'Only');
new s3assets.Asset(stack, 'Code', { path: 'dist/q/code' });
`,
		"q/BUILD.star": `genrule(name = "code", outs = ["index.txt"], cmd = "echo hi > $@")` + "\n",
	})
	w := newWS(t, nm, files)
	// Built first, so dist/q/code exists in the workspace.
	msg, out := w.build(t).failure(t)
	if want := "synth failed at p/src/main.ts:6:1: CannotFindAsset: Cannot find asset at dist/q/code (node sees only the declared inputs: add the target that builds it to deps of //p:app)"; msg != want {
		t.Errorf("error %q\n%s", msg, out)
	}
	w.write(t, "p/BUILD.star", `cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]), deps = ["//q:code"])`+"\n")
	w.buildOK(t)
}

// TestSynthStacksMustExist: a stacks entry naming no stack is an error.
func TestSynthStacksMustExist(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]), stacks = ["Onl"])`+"\n", map[string]string{}))
	msg, _ := w.build(t).failure(t)
	if want := `stacks: "Onl" matches no stack of the assembly (it has Only)`; msg != want {
		t.Errorf("error %q, want %q", msg, want)
	}
}

// TestTypecheck runs tsc over the declared sources.
func TestTypecheck(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	tsconfig := `{
  // comments are allowed, as tsc allows them
  "compilerOptions": {"strict": true, "noEmit": true, "module": "commonjs", "target": "ES2022", "skipLibCheck": true, "types": []},
  "include": ["src/**/*.ts"],
}
`
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]), typecheck = True)`+"\n", map[string]string{
		"p/tsconfig.json": tsconfig,
	}))
	r := w.buildOK(t)
	if got := strings.Join(r.executed(), " "); got != "CdkBundle CdkSynth CdkTypecheck" {
		t.Errorf("executed %q", got)
	}
	w.write(t, "p/src/main.ts", w.read(t, "p/src/main.ts")+"const port: number = '8000';\nconsole.log(port);\n")
	msg, out := w.build(t).failure(t)
	if !strings.HasPrefix(msg, "type error: p/src/main.ts:7:7: error TS2322:") {
		t.Errorf("error %q\n%s", msg, out)
	}
}

// TestToolsInKey: node's version and the versions of aws-cdk-lib and
// constructs are part of the synth's key, and of nothing else's.
func TestToolsInKey(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))`+"\n", map[string]string{}))
	_, p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	synth := actionOf(t, p, "CdkSynth")
	node, _ := exec.Command("node", "--version").Output()
	tools := strings.Join(synth.Tools, "\n")
	for _, want := range []string{"node " + strings.TrimSpace(string(node)), "aws-cdk-lib 2.276.0", "constructs 10.8.1", "node_modules " + nm + " "} {
		if !strings.Contains(tools, want) {
			t.Errorf("synth tools lack %q:\n%s", want, tools)
		}
	}
	bundle := actionOf(t, p, "CdkBundle")
	if !strings.Contains(bundle.Identity, "esbuild=v0.") || len(bundle.Tools) != 0 {
		t.Errorf("bundle identity %q tools %q: want esbuild's version and no node tools", bundle.Identity, bundle.Tools)
	}
	if bundle.Run == nil || bundle.Argv != nil || synth.Run == nil || synth.Argv != nil {
		t.Errorf("want in-process steps")
	}

	// Another aws-cdk-lib (a different node_modules) changes the tools.
	other := t.TempDir()
	write(t, filepath.Join(other, "aws-cdk-lib", "package.json"), `{"name": "aws-cdk-lib", "version": "2.200.0"}`)
	write(t, filepath.Join(other, "constructs", "package.json"), `{"name": "constructs", "version": "10.8.1"}`)
	w.write(t, "WORKSPACE.star", `workspace(name = "t", node_modules = "`+other+`")`+"\n")
	_, p, err = w.plan()
	if err != nil {
		t.Fatal(err)
	}
	if tools := strings.Join(actionOf(t, p, "CdkSynth").Tools, "\n"); !strings.Contains(tools, "aws-cdk-lib 2.200.0") {
		t.Errorf("tools with another node_modules:\n%s", tools)
	}
}

// TestExampleBuildFile analyses the example workspace as it is: the synth
// stages the Python bundle and the generated metadata; the bundler reads
// the metadata but not the bundle.
func TestExampleBuildFile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := "../../../examples/fastapi"
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if de.IsDir() {
			switch de.Name() {
			case "dist", ".pipe", "node_modules", ".venv":
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		write(t, filepath.Join(root, rel), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry()
	python.Register(reg)
	ev := buildfile.NewEvaluator(root, reg)
	settings, err := ev.EvalWorkspace()
	if err != nil {
		t.Fatal(err)
	}
	ws := &engine.Workspace{Root: root, Settings: settings}
	pat, _ := engine.ParsePattern("//packages/infra", "")
	p, err := engine.PlanBuild(context.Background(), ws, ev, []engine.Pattern{pat})
	if err != nil {
		if strings.Contains(err.Error(), "python") {
			testenv.Need(t, "a Python interpreter for the example's openapi_schema", err.Error())
		}
		t.Fatal(err)
	}
	paths := func(a *engine.Action) string {
		var ps []string
		for _, f := range a.Inputs {
			ps = append(ps, f.Path)
		}
		return strings.Join(ps, " ")
	}
	meta := "packages/common/constructs/src/generated/my-api/metadata.gen.ts"
	bundle := paths(actionOf(t, p, "CdkBundle"))
	for _, want := range []string{"packages/infra/src/main.ts", "packages/infra/src/stacks/api-stack.ts", meta, "packages/infra/tsconfig.json", "packages/infra/package.json"} {
		if !strings.Contains(bundle, want) {
			t.Errorf("bundle inputs lack %s: %s", want, bundle)
		}
	}
	if strings.Contains(bundle, "dist/packages/my-api/") {
		t.Errorf("bundle inputs hold the Python bundle: %s", bundle)
	}
	synth := paths(actionOf(t, p, "CdkSynth"))
	for _, want := range []string{"dist/packages/infra/infra/app.js", "dist/packages/my-api/bundle ", "dist/packages/my-api/bundle.zip", meta, "packages/infra/cdk.json"} {
		if !strings.Contains(synth, want) {
			t.Errorf("synth inputs lack %s: %s", want, synth)
		}
	}
}

// TestSynthAnnotations: like the CDK CLI, warnings are shown and errors
// fail the synth.
func TestSynthAnnotations(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	main := `import { App, Stack, Annotations } from 'aws-cdk-lib';

const app = new App();
const stack = new Stack(app, 'Only');
Annotations.of(stack).addWarningV2('pipe:test', 'mind the gap');
if (app.node.tryGetContext('fail') === 'yes') {
  Annotations.of(stack).addError('this stack cannot deploy');
}
`
	w := newWS(t, nm, minimal(`cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))`+"\n", map[string]string{"p/src/main.ts": main}))
	r := w.buildOK(t)
	var out string
	for _, ev := range r.events {
		if ev.Action.Mnemonic == "CdkSynth" {
			out = ev.Output
		}
	}
	if !strings.Contains(out, "[Warning at /Only] mind the gap [ack: pipe:test]") {
		t.Errorf("synth output does not show the warning:\n%s", out)
	}
	w.write(t, "p/BUILD.star", `cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]), context = {"fail": "yes"})`+"\n")
	if msg, _ := w.build(t).failure(t); msg != "the app reported 1 error(s):\n  [Error at /Only] this stack cannot deploy" {
		t.Errorf("error %q", msg)
	}
}
