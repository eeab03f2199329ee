package main

// pipe deploy --hotswap without the synth: a Python edit changes only the
// bundle, which the CDK app stages as the function's code, so the assembly
// kept from the last synth is deployed with the new bundle in place and
// node never runs; any other change to the synth's inputs synthesizes.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

const skipNote = "//packages/infra:infra: only dist/packages/my-api/bundle changed: the synth is skipped"

// keptAssemblies lists the assemblies kept for hotswaps.
func keptAssemblies(t *testing.T, ws *workspace) []string {
	t.Helper()
	m, err := filepath.Glob(ws.path(filepath.Join(".pipe", "hotswap", "synth", "*", "base.json")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hotswapNoSynth deploys with --hotswap and checks that the synth did not
// run, the note said why, MyApiStack was hotswapped without a
// CloudFormation write, and the function runs mainPy. It returns the
// function's CodeSha256.
func hotswapNoSynth(t *testing.T, r *awsRegion, ws *workspace, env []string, fn, mainPy string) string {
	t.Helper()
	r.proxy.Reset()
	b := r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || !strings.Contains(b.stderr, "3 stacks: 1 hotswapped, 2 unchanged") {
		t.Fatalf("deploy --hotswap of a Python edit: exit %d, want MyApiStack hotswapped", b.code)
	}
	if st := b.status("CdkSynth"); st != "" {
		t.Errorf("the synth is %s, want it left out of the build", st)
	}
	if !strings.Contains(b.stderr, skipNote) {
		t.Errorf("no %q note", skipNote)
	}
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("a hotswap made CloudFormation write calls: %v", w)
	}
	return checkFunction(t, r, ws, fn, mainPy)
}

// TestHotswapSkipsSynth: after a deploy --hotswap kept the assembly, a
// Python edit is hotswapped without running the synth, again and again;
// an edit of the CDK app, of cdk.json, or both with a Python edit, runs
// the synth; a stack that cannot be hotswapped from the kept assembly is
// synthesized before it is deployed with a change set; the next plain
// deploy puts the function back in line with its template.
func TestHotswapSkipsSynth(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "ap-south-1", true)
	ws, env := cdkDeployWorkspace(t, nm)

	b := r.deploy(t, ws, env, "deploy", "//...", "--require-approval", "never", "--outputs-file", "outputs.json")
	if b.code != 0 {
		t.Fatalf("first deploy: exit %d", b.code)
	}
	fn := outputsOf(t, ws, "outputs.json")["MyApiStack"]["FunctionName"]
	first := checkFunction(t, r, ws, fn, cdkAppMain)
	if k := keptAssemblies(t, ws); len(k) != 0 {
		t.Errorf("a plain deploy kept assemblies for hotswaps: %v", k)
	}

	// Nothing changed: the synth's result comes from the cache, and its
	// assembly is kept.
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || b.status("CdkSynth") != "cached" || !strings.Contains(b.stderr, "3 stacks: 3 unchanged") {
		t.Fatalf("deploy --hotswap, nothing changed: exit %d, synth %q; want the cached synth and no changes", b.code, b.status("CdkSynth"))
	}
	if k := keptAssemblies(t, ws); len(k) != 1 {
		t.Errorf("kept assemblies %v, want the infra app's", k)
	}

	// Python edits: no synth, new code every time.
	v2 := cdkAppMain + "\nVERSION = 2\n"
	ws.write(t, "packages/my-api/my_api/main.py", v2)
	code2 := hotswapNoSynth(t, r, ws, env, fn, v2)
	if code2 == first {
		t.Errorf("CodeSha256 did not change: the function runs the old code")
	}
	v3 := cdkAppMain + "\nVERSION = 3\n"
	ws.write(t, "packages/my-api/my_api/main.py", v3)
	if code3 := hotswapNoSynth(t, r, ws, env, fn, v3); code3 == code2 || code3 == first {
		t.Errorf("CodeSha256 did not change on the second edit")
	}

	// An edit of the CDK app (with a Python edit) synthesizes: the
	// environment and the code are hotswapped from the new assembly.
	v4 := cdkAppMain + "\nVERSION = 4\n"
	ws.write(t, "packages/my-api/my_api/main.py", v4)
	editAPIStack(t, ws, apiEnvLine, apiEnvFeature)
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || b.status("CdkSynth") != "executed" || !strings.Contains(b.stderr, "//packages/infra:infra: synthesizing: input dist/packages/infra/infra/app.js changed") ||
		!strings.Contains(b.stderr, "): code, environment (FEATURE) (") || strings.Contains(b.stderr, skipNote) {
		t.Fatalf("deploy --hotswap of a .ts edit: exit %d, synth %q; want the synth run and code and environment hotswapped", b.code, b.status("CdkSynth"))
	}
	wantNoCfnWrites(t, r)
	checkFunction(t, r, ws, fn, v4)
	if vars := r.lambdaFunction(t, fn).Configuration.Environment.Variables; vars["FEATURE"] != "on" {
		t.Errorf("environment %v, want FEATURE=on", vars)
	}

	// cdk.json is an input of the synth, not an asset: its change (with a
	// Python edit) synthesizes.
	v5 := cdkAppMain + "\nVERSION = 5\n"
	ws.write(t, "packages/my-api/my_api/main.py", v5)
	ws.write(t, "packages/infra/cdk.json", strings.Replace(ws.read(t, "packages/infra/cdk.json"), `"stage": "dev",`, `"stage": "dev",
    "unused": "1",`, 1))
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap")
	if b.code != 0 || b.status("CdkSynth") != "executed" || !strings.Contains(b.stderr, "//packages/infra:infra: synthesizing: input packages/infra/cdk.json changed") ||
		!strings.Contains(b.stderr, "3 stacks: 1 hotswapped, 2 unchanged") {
		t.Fatalf("deploy --hotswap of a cdk.json edit: exit %d, synth %q; want the synth run", b.code, b.status("CdkSynth"))
	}
	wantNoCfnWrites(t, r)
	checkFunction(t, r, ws, fn, v5)

	// And once more a Python edit alone, from the assembly that synth
	// kept: the environment hotswapped before stays.
	v6 := cdkAppMain + "\nVERSION = 6\n"
	ws.write(t, "packages/my-api/my_api/main.py", v6)
	hotswapNoSynth(t, r, ws, env, fn, v6)
	if vars := r.lambdaFunction(t, fn).Configuration.Environment.Variables; vars["FEATURE"] != "on" {
		t.Errorf("environment %v after a hotswap from the kept assembly, want FEATURE=on", vars)
	}

	// pipe diff says the stack drifted, and how.
	b = r.deploy(t, ws, env, "diff", "--app", cdkAssemblyDir, "--fail")
	if b.code != 1 || !strings.Contains(b.stdout, "Stack MyApiStack\n  Hotswapped since its last deployment") ||
		!regexp.MustCompile(`\[~\] AWS::Lambda::Function Handler\w+: code \(s3://[^)]+\), environment \(FEATURE\)\n`).MatchString(b.stdout) ||
		!strings.Contains(b.stdout, "Stack SharedStack\n  There were no differences") {
		t.Errorf("pipe diff --fail after hotswaps: exit %d, want 1 and MyApiStack's function's code and FEATURE named", b.code)
	}

	// The next plain deploy synthesizes, deploys and converges: the
	// function runs the code its template names, the record is gone.
	r.proxy.Reset()
	b = r.deploy(t, ws, env, "deploy", "//...", "--require-approval", "never")
	if b.code != 0 || b.status("CdkSynth") != "executed" || !strings.Contains(b.stderr, "3 stacks: 1 deployed, 2 unchanged") {
		t.Fatalf("plain deploy after hotswaps: exit %d, synth %q; want MyApiStack deployed", b.code, b.status("CdkSynth"))
	}
	if _, err := os.Stat(recordFile(ws, r.region, "MyApiStack")); !os.IsNotExist(err) {
		t.Errorf("the record outlived the deploy: %v", err)
	}
	checkFunction(t, r, ws, fn, v6)
	r.proxy.Reset()
	if b = r.deploy(t, ws, env, "deploy", "//..."); b.code != 0 || !strings.Contains(b.stderr, "3 stacks: 3 unchanged") || len(r.proxy.Writes()) > 0 {
		t.Errorf("deploy after converging: exit %d, writes %v; want no changes", b.code, r.proxy.Writes())
	}
	if b = r.deploy(t, ws, env, "diff", "--app", cdkAssemblyDir, "--fail"); b.code != 0 || strings.Contains(b.stdout, "Hotswapped") {
		t.Errorf("pipe diff --fail after converging: exit %d, want 0 and no drift", b.code)
	}

	// The deployed stack moves on without pipe deploy --hotswap (an IAM
	// change deployed plainly, then undone in the sources): the kept
	// assembly, older, differs from it in IAM, so a Python edit cannot be
	// hotswapped from it. pipe synthesizes, then deploys the change set.
	if b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap"); b.code != 0 {
		t.Fatalf("deploy --hotswap: exit %d", b.code)
	}
	before := ws.read(t, "packages/infra/src/stacks/api-stack.ts")
	editAPIStack(t, ws, apiImports, apiImportsIAM)
	editAPIStack(t, ws, apiRoleAnchor, apiRolePolicy)
	if b = r.deploy(t, ws, env, "deploy", "//...", "--require-approval", "never"); b.code != 0 {
		t.Fatalf("plain deploy of an IAM change: exit %d", b.code)
	}
	ws.write(t, "packages/infra/src/stacks/api-stack.ts", before)
	v7 := cdkAppMain + "\nVERSION = 7\n"
	ws.write(t, "packages/my-api/my_api/main.py", v7)
	b = r.deploy(t, ws, env, "deploy", "//...", "--hotswap", "--require-approval", "never")
	if b.code != 0 || !strings.Contains(b.stderr, skipNote) || !strings.Contains(b.stderr, "stack MyApiStack cannot be hotswapped: synthesizing") ||
		b.status("CdkSynth") != "executed" || !strings.Contains(b.stderr, fallbackPrefix+"  HandlerServiceRole") || !strings.Contains(b.stderr, "3 stacks: 1 deployed, 2 unchanged") {
		t.Fatalf("deploy --hotswap against a stack that moved on: exit %d, synth %q; want a synth, then the change set naming the role", b.code, b.status("CdkSynth"))
	}
	checkFunction(t, r, ws, fn, v7)
}

func wantNoCfnWrites(t *testing.T, r *awsRegion) {
	t.Helper()
	if w := r.cfnWrites(); len(w) > 0 {
		t.Errorf("CloudFormation write calls: %v", w)
	}
}
