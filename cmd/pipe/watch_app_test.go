package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
)

// TestWatchAppDeploysAssembly: pipe watch --deploy --hotswap --app DIR
// deploys the assembly at start, and hotswaps the new code each time a
// build writes the assembly again, without building anything itself; a
// change elsewhere starts nothing; --app needs --deploy and no patterns.
func TestWatchAppDeploysAssembly(t *testing.T) {
	nm := testenv.CDKNodeModules(t)
	r := newAWSRegion(t, "eu-west-3", true)
	ws, env := cdkDeployWorkspace(t, nm)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--app", cdkAssemblyDir}, "--app needs --deploy"},
		{[]string{"watch", "//...", "--deploy", "--app", cdkAssemblyDir}, "give patterns or --app, not both"},
	} {
		if b := r.deploy(t, ws, env, c.args...); b.code != 2 || !strings.Contains(b.stderr, c.want) {
			t.Errorf("pipe %s: exit %d, want 2 and %q", strings.Join(c.args, " "), b.code, c.want)
		}
	}
	if b := r.deploy(t, ws, env, "build", "//..."); b.code != 0 {
		t.Fatalf("pipe build: exit %d", b.code)
	}
	w := startWatch(t, ws, append(r.env(), env...), "--deploy", "--hotswap", "--app", cdkAssemblyDir, "--require-approval", "never", "--debounce", "500ms")
	l := w.cycle(t, 2*time.Minute)
	if !regexp.MustCompile(`\] start · deploy \d+\.\d\ds \(3 deployed\) · ok$`).MatchString(l) {
		t.Fatalf("first cycle: %q, want the three stacks deployed", l)
	}
	fn := r.stackOutput(t, "MyApiStack", "FunctionName")
	first := checkFunction(t, r, ws, fn, cdkAppMain)

	// A source edit is no change to the assembly until a build writes it.
	edited := cdkAppMain + "\nVERSION = 2\n"
	ws.write(t, "packages/my-api/my_api/main.py", edited)
	w.quiet(t, 2*time.Second)

	r.proxy.Reset()
	if b := r.deploy(t, ws, env, "build", "//..."); b.code != 0 || b.status("CdkSynth") != "executed" {
		t.Fatalf("pipe build: exit %d, synth %q", b.code, b.status("CdkSynth"))
	}
	l = w.cycle(t, 2*time.Minute)
	if !regexp.MustCompile(`\] cdk\.out\b.* changed · deploy \d+\.\d\ds \(1 hotswapped, 2 unchanged\) · ok$`).MatchString(l) {
		t.Errorf("after the build: %q, want the assembly's change hotswapped", l)
	}
	if code := checkFunction(t, r, ws, fn, edited); code == first {
		t.Errorf("the function still runs the first code")
	}
	if cw := r.cfnWrites(); len(cw) > 0 {
		t.Errorf("the watch's hotswap made CloudFormation write calls: %v", cw)
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
