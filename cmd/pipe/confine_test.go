package main

// The namespace sandbox for the programs in-process steps start: pytest,
// node for cdk synth, terraform validate. Each test tries, from inside
// the program, what a hostile or careless test, app or module could do
// (write into the workspace or the home directory, read pipe's
// environment or an undeclared file, reach a server on the host, leave a
// process behind) and checks from outside that none of it happened.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
)

// hostListener is a server on the host's 127.0.0.1 that counts the
// connections it accepted.
type hostListener struct {
	port     int
	accepted atomic.Int32
}

func newHostListener(t *testing.T) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &hostListener{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			c.Write([]byte("from the host\n"))
			c.Close()
		}
	}()
	return h
}

// escapeTestPy tries each escape from a pytest test; every test passes
// only when the escape is refused. PIPE_TEST_* come from the target's env.
const escapeTestPy = `import os
import pwd
import socket
import subprocess

import pytest

WS = os.environ["PIPE_TEST_WS"]
MARK = os.environ["PIPE_TEST_MARK"]


def test_cannot_write_a_source_file():
    with pytest.raises(OSError):
        with open(os.path.join(WS, "packages/my-api/my_api/main.py"), "a") as f:
            f.write("# changed by a test\n")


def test_cannot_create_a_file_in_the_workspace():
    with pytest.raises(OSError):
        with open(os.path.join(WS, "packages/my-api", MARK), "w") as f:
            f.write("escaped\n")


def test_cannot_read_an_undeclared_file():
    with pytest.raises(OSError):
        with open(os.path.join(WS, "packages/my-api/undeclared.txt")) as f:
            f.read()


def test_cannot_write_home():
    home = pwd.getpwuid(os.getuid()).pw_dir
    with pytest.raises(OSError):
        with open(os.path.join(home, MARK), "w") as f:
            f.write("escaped\n")


def test_cannot_read_pipes_environment():
    # The parent is the sandbox's supervisor: its environment holds
    # nothing of pipe's, or (a supervisor that keeps its capabilities to
    # mount for the next command) it cannot be read at all.
    try:
        with open("/proc/%d/environ" % os.getppid(), "rb") as f:
            env = f.read()
    except PermissionError:
        env = b""
    assert b"hunter2-confine" not in env
    assert "PIPE_TEST_SECRET" not in os.environ


def test_host_network():
    want = os.environ["PIPE_TEST_NETWORK"] == "open"
    try:
        with socket.create_connection(("127.0.0.1", int(os.environ["PIPE_TEST_PORT"])), timeout=10) as s:
            got = s.recv(100)
    except OSError:
        got = None
    assert (got == b"from the host\n") == want, got


def test_leave_a_sleeper():
    # It outlives pytest unless the sandbox kills it with the test.
    subprocess.Popen(["sleep", os.environ["PIPE_TEST_NAP"]], start_new_session=True)
`

// TestPyTestConfined: a py_test cannot write the workspace or the home
// directory, read an undeclared workspace file or pipe's environment,
// reach the host's network without requires-network (and can with it),
// or leave a process running.
func TestPyTestConfined(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	requirePyenv(t, "3.11")
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	mark := fmt.Sprintf(".pipe-confine-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join(home, mark)) })
	h := newHostListener(t)
	nap := fmt.Sprintf("%d.%03d", 41, time.Now().UnixNano()%1000)
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11"})
	target := func(name, network, tags string) string {
		return fmt.Sprintf(`
py_test(
    name = %q,
    srcs = ["escape_tests/test_escape.py"],
    python_version = "3.11",
    env = {"PIPE_TEST_WS": %q, "PIPE_TEST_MARK": %q, "PIPE_TEST_PORT": "%d", "PIPE_TEST_NETWORK": %q, "PIPE_TEST_NAP": %q},%s
)
`, name, a.ws.Root, mark, h.port, network, nap, tags)
	}
	build := a.ws.read(t, "packages/my-api/BUILD.star")
	a.ws.write(t, "packages/my-api/BUILD.star", build+target("escape", "closed", "")+target("net", "open", "\n    tags = [\"requires-network\"],"))
	a.ws.write(t, "packages/my-api/escape_tests/test_escape.py", escapeTestPy)
	a.ws.write(t, "packages/my-api/undeclared.txt", "undeclared\n")
	a.env = append(a.env, "PIPE_TEST_SECRET=hunter2-confine")

	r := a.pipe(t, "test", "//packages/my-api:escape")
	if r.code != 0 || r.status("//packages/my-api:escape") != "PASSED" {
		t.Errorf("the escapes were not all refused: exit %d\n%s\n%s", r.code, r.stderr, a.ws.read(t, "dist/packages/my-api/escape/test.log"))
	}
	if n := h.accepted.Load(); n != 0 {
		t.Errorf("without requires-network the test reached the host's server (%d connections)", n)
	}
	if got := a.ws.read(t, "packages/my-api/my_api/main.py"); got != fastAPIMain {
		t.Errorf("the source file changed:\n%s", got)
	}
	for _, p := range []string{a.ws.path("packages/my-api/" + mark), filepath.Join(home, mark)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	if left := processesWith("sleep", nap); len(left) > 0 {
		t.Errorf("a process the test started outlived it: pids %v", left)
		killAll(left)
	}

	r = a.pipe(t, "test", "//packages/my-api:net")
	if r.code != 0 || r.status("//packages/my-api:net") != "PASSED" {
		t.Errorf("with requires-network: exit %d\n%s\n%s", r.code, r.stderr, a.ws.read(t, "dist/packages/my-api/net/test.log"))
	}
	if h.accepted.Load() == 0 {
		t.Errorf("with requires-network the test did not reach the host's server")
	}
	if left := processesWith("sleep", nap); len(left) > 0 {
		t.Errorf("a process the test started outlived it: pids %v", left)
		killAll(left)
	}
}

func killAll(pids []string) {
	for _, p := range pids {
		var pid int
		fmt.Sscan(p, &pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestPyTestConfinedDiesWithPipe: kill -9 of pipe during a test kills
// the test's background processes too.
func TestPyTestConfinedDiesWithPipe(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	requirePyenv(t, "3.11")
	nap := fmt.Sprintf("%d.%03d", 3, time.Now().UnixNano()%1000)
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", build: `
py_test(
    name = "hang",
    srcs = ["hang_tests/test_hang.py"],
    python_version = "3.11",
)
`})
	a.ws.write(t, "packages/my-api/hang_tests/test_hang.py", fmt.Sprintf(`import subprocess
import time


def test_hang():
    subprocess.Popen(["sh", "-c", "sleep %s; echo late > late.txt"], start_new_session=True)
    with open("started.txt", "w") as f:
        f.write("started\n")
    time.sleep(60)
`, nap))
	cmd := pipeCmdEnv(a.ws, a.env, "test", "//packages/my-api:hang")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var cwd string
	for deadline := time.Now().Add(120 * time.Second); cwd == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, _ := filepath.Glob(a.ws.path(".pipe/sandbox/*/packages/my-api/started.txt")); len(m) > 0 {
			cwd = filepath.Dir(m[0])
		}
	}
	if cwd == "" {
		t.Fatalf("the test never started:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = processesWith("sleep", nap); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("the test's background process outlived pipe: pids %v", left)
		killAll(left)
	}
	time.Sleep(4 * time.Second)
	if _, err := os.Stat(filepath.Join(cwd, "late.txt")); err == nil {
		t.Errorf("a process of the test wrote late.txt after pipe was killed")
	}
}

// confineCdkApp is a CDK app that tries its escapes at synth and records
// what happened in the assembly (escape.json): writes through its staged
// cdk.json and into the workspace, pipe's environment, a process left
// behind, the host's network.
const confineCdkApp = `import { App, Stack } from 'aws-cdk-lib';
import * as child_process from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

const results: Record<string, string> = {};
function attempt(name: string, f: () => void) {
  try {
    f();
    results[name] = 'done';
  } catch (e) {
    results[name] = 'refused: ' + (e as Error).message;
  }
}

attempt('staged-input', () => fs.appendFileSync(path.join(process.cwd(), 'infra/cdk.json'), ' '));
attempt('workspace', () => fs.writeFileSync(path.join(WS, 'infra', MARK), 'escaped\n'));
attempt('environ', () => {
  const env = fs.readFileSync('/proc/' + process.ppid + '/environ', 'utf8');
  if (env.includes('hunter2-confine')) {
    throw new Error('only a refusal may be recorded');
  }
  results['environ-clean'] = 'yes';
});
child_process.spawn('sleep', [NAP], { detached: true, stdio: 'ignore' }).unref();

const app = new App();
new Stack(app, 'ConfineStack');
app.synth();

const record = () => fs.writeFileSync(path.join(process.env.CDK_OUTDIR!, 'escape.json'), JSON.stringify(results));
const s = net.connect(PORT, '127.0.0.1');
s.on('data', () => { results['network'] = 'reached'; s.destroy(); record(); });
s.on('error', (e) => { results['network'] = 'refused: ' + e.message; record(); });
`

// TestCdkSynthConfined: node at synth cannot write through its staged
// inputs or into the workspace, read pipe's environment, leave a
// process running or reach the host's network without requires-network.
func TestCdkSynthConfined(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	h := newHostListener(t)
	mark := fmt.Sprintf("escape-%d.txt", time.Now().UnixNano())
	nap := fmt.Sprintf("%d.%03d", 43, time.Now().UnixNano()%1000)
	ws := newWorkspace(t, nil)
	ws.write(t, "WORKSPACE.star", "workspace(name = \"t\", node_modules = \"node_modules\")\n")
	// The project's node_modules in the workspace, as npm installs it:
	// the sandbox must show it although it hides the workspace.
	if err := os.Symlink(nm, ws.path("node_modules")); err != nil {
		t.Fatal(err)
	}
	const cdkJSON = "{\"context\": {}}\n"
	ws.write(t, "infra/cdk.json", cdkJSON)
	app := strings.NewReplacer("WS", fmt.Sprintf("%q", ws.Root), "MARK", fmt.Sprintf("%q", mark), "NAP", fmt.Sprintf("%q", nap), "PORT", fmt.Sprint(h.port)).Replace(confineCdkApp)
	ws.write(t, "infra/src/main.ts", app)
	ws.write(t, "infra/BUILD.star", `cdk_stack(name = "infra", app = "src/main.ts", srcs = ["src/main.ts"])
cdk_stack(name = "net", app = "src/main.ts", srcs = ["src/main.ts"], tags = ["requires-network"])
`)
	cmd := pipeCmd(ws, "build", "//infra:infra")
	cmd.Env = append(cmd.Env, "PIPE_TEST_SECRET=hunter2-confine")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var results map[string]string
	if err := json.Unmarshal([]byte(ws.read(t, "dist/infra/infra/cdk.out/escape.json")), &results); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"staged-input", "workspace", "network"} {
		if !strings.HasPrefix(results[k], "refused: ") {
			t.Errorf("%s: %q, want refused", k, results[k])
		}
	}
	// The supervisor's environment holds nothing of pipe's, or, kept
	// with its capabilities for the next command, cannot be read at all.
	readClean := results["environ"] == "done" && results["environ-clean"] == "yes"
	if !readClean && !strings.HasPrefix(results["environ"], "refused: EACCES") {
		t.Errorf("the app read pipe's environment: %q", results["environ"])
	}
	if got := ws.read(t, "infra/cdk.json"); got != cdkJSON {
		t.Errorf("the workspace's cdk.json became %q", got)
	}
	if _, err := os.Stat(ws.path("infra/" + mark)); err == nil {
		t.Errorf("the app wrote into the workspace")
	}
	if n := h.accepted.Load(); n != 0 {
		t.Errorf("without requires-network the app reached the host's server (%d connections)", n)
	}
	if left := processesWith("sleep", nap); len(left) > 0 {
		t.Errorf("a process the app started outlived the synth: pids %v", left)
		killAll(left)
	}

	cmd = pipeCmd(ws, "build", "//infra:net")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(ws.read(t, "dist/infra/net/cdk.out/escape.json")), &results); err != nil {
		t.Fatal(err)
	}
	if results["network"] != "reached" || h.accepted.Load() == 0 {
		t.Errorf("with requires-network: network %q, %d connections", results["network"], h.accepted.Load())
	}
	killAll(processesWith("sleep", nap))
}

// TestTerraformValidateConfined: validate of a module that reads an
// undeclared workspace file by its absolute path fails, naming the file
// and line, instead of reading it.
func TestTerraformValidateConfined(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	tofu := testenv.Tofu(t)
	ws := newWorkspace(t, nil)
	ws.write(t, "WORKSPACE.star", fmt.Sprintf("workspace(name = \"tf\", terraform = %q)\n", tofu))
	ws.write(t, "secrets/key.txt", "undeclared\n")
	ws.write(t, "modules/m/BUILD.star", `terraform_module(name = "m", srcs = glob(["*.tf"]))`+"\n")
	ws.write(t, "modules/m/main.tf", fmt.Sprintf("locals {\n  key = file(%q)\n}\n\noutput \"key\" {\n  value = local.key\n}\n", ws.path("secrets/key.txt")))
	b := ws.build(t, "//modules/m")
	if b.code != 1 || !strings.Contains(b.stderr, "modules/m/main.tf:2:") || !strings.Contains(b.stderr, "no file exists") {
		t.Errorf("exit %d, want 1 and the undeclared read refused at main.tf:2\n%s", b.code, b.stderr)
	}
	// Without the read the module validates in the sandbox.
	ws.write(t, "modules/m/main.tf", "locals {\n  key = \"declared\"\n}\n\noutput \"key\" {\n  value = local.key\n}\n")
	ws.buildOK(t, "//modules/m")
}

// TestConfinedStepsWithoutSandbox: --sandbox=none and the fallback of
// auto (PIPE_SANDBOX_UNAVAILABLE=1) run the programs of steps as before:
// a py_test reads an undeclared workspace file, with one warning in auto.
func TestConfinedStepsWithoutSandbox(t *testing.T) {
	t.Parallel()
	requirePyenv(t, "3.11")
	a := newHermeticApp(t, hermeticOptions{pythonVersion: "3.11", build: `
py_test(
    name = "reads",
    srcs = ["reads_tests/test_reads.py"],
    python_version = "3.11",
)
`})
	a.ws.write(t, "packages/my-api/undeclared.txt", "undeclared\n")
	a.ws.write(t, "packages/my-api/reads_tests/test_reads.py", fmt.Sprintf(`def test_reads():
    with open(%q) as f:
        assert f.read() == "undeclared\n"
`, a.ws.path("packages/my-api/undeclared.txt")))
	const label = "//packages/my-api:reads"
	r := a.pipe(t, "test", "--sandbox=none", label)
	if r.code != 0 || r.status(label) != "PASSED" || strings.Contains(r.stderr, "warning") {
		t.Errorf("--sandbox=none: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}
	a.env = append(a.env, "PIPE_SANDBOX_UNAVAILABLE=1")
	r = a.pipe(t, "test", "--cache-test-results=no", label)
	if r.code != 0 || r.status(label) != "PASSED" {
		t.Errorf("auto without namespaces: exit %d, status %q\n%s", r.code, r.status(label), r.stderr)
	}
	if n := strings.Count(r.stderr, "pipe: warning: commands run without the namespace sandbox"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, r.stderr)
	}
}

// executedAs lists the labels of the executed actions of a mnemonic.
func (b build) executedAs(mnemonic string) []string {
	var out []string
	for _, ev := range b.events {
		if ev.Mnemonic == mnemonic && ev.Status == "executed" {
			out = append(out, ev.Label)
		}
	}
	return out
}

// TestCdkSynthSandboxDebugKeepsInputs: a failed synth's kept scratch
// directory holds copies of the inputs node saw bound there, not the
// empty files they were bound onto.
func TestCdkSynthSandboxDebugKeepsInputs(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	ws := newWorkspace(t, nil)
	ws.write(t, "WORKSPACE.star", fmt.Sprintf("workspace(name = \"t\", node_modules = %q)\n", nm))
	const cdkJSON = "{\"context\": {\"stage\": \"dev\"}}\n"
	ws.write(t, "infra/cdk.json", cdkJSON)
	ws.write(t, "infra/src/main.ts", "throw new Error('broken app');\n")
	ws.write(t, "infra/BUILD.star", `cdk_stack(name = "infra", app = "src/main.ts", srcs = ["src/main.ts"])`+"\n")
	b := ws.build(t, "--sandbox-debug", "//infra")
	m := regexp.MustCompile(`(?m)^  scratch directory kept: (\S+) \(the next build removes it\)`).FindStringSubmatch(b.stderr)
	if b.code != 1 || !strings.Contains(b.stderr, "broken app") || m == nil {
		t.Fatalf("exit %d, want 1, the app's error and the kept directory:\n%s", b.code, b.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(m[1], "infra", "cdk.json")); err != nil || string(got) != cdkJSON {
		t.Errorf("the kept directory's infra/cdk.json: %q, %v; want the input", got, err)
	}
}

// TestTerraformInitNetwork: terraform init reaches the host's network to
// fetch providers, unless a provider mirror is configured in the cache;
// fmt never does. The terraform here is a script that says whether a
// server on the host's loopback answers, and fails init so the build
// shows what it said.
func TestTerraformInitNetwork(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	tofu := testenv.Tofu(t)
	h := newHostListener(t)
	ws := newWorkspace(t, nil)
	ws.write(t, "WORKSPACE.star", "workspace(name = \"tf\", terraform = \"tools/tf.sh\")\n")
	ws.write(t, "tools/tf.sh", fmt.Sprintf(`#!/bin/bash
if (exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null; then net=reached; else net=refused; fi
case "$1" in
fmt) [ $net = refused ] || { echo "fmt: network $net" >&2; exit 1; } ;;
init) echo "init: network $net" >&2; exit 1 ;;
esac
exec %q "$@"
`, h.port, tofu))
	ws.write(t, "modules/m/BUILD.star", `terraform_module(name = "m", srcs = glob(["*.tf"]))`+"\n")
	ws.write(t, "modules/m/main.tf", "output \"x\" {\n  value = 1\n}\n")
	b := ws.build(t, "//modules/m")
	if b.code != 1 || !strings.Contains(b.stderr, "init: network reached") || strings.Contains(b.stderr, "fmt: network") {
		t.Errorf("without a mirror: exit %d, want init to reach the network and fmt not\n%s", b.code, b.stderr)
	}
	if err := os.MkdirAll(filepath.Join(ws.Cache, "terraform", "mirror"), 0o755); err != nil {
		t.Fatal(err)
	}
	ws.write(t, "modules/m/main.tf", "output \"x\" {\n  value = 2\n}\n")
	b = ws.build(t, "//modules/m")
	if b.code != 1 || !strings.Contains(b.stderr, "init: network refused") {
		t.Errorf("with a mirror: exit %d, want init without the network\n%s", b.code, b.stderr)
	}
}

// TestCdkSynthDiesWithPipe: kill -9 of pipe during a synth kills what
// the app started too, so nothing of it writes afterwards.
func TestCdkSynthDiesWithPipe(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	nap := fmt.Sprintf("%d.%03d", 3, time.Now().UnixNano()%1000)
	ws := newWorkspace(t, nil)
	ws.write(t, "WORKSPACE.star", fmt.Sprintf("workspace(name = \"t\", node_modules = %q)\n", nm))
	ws.write(t, "infra/src/main.ts", fmt.Sprintf(`import * as child_process from 'child_process';
import * as fs from 'fs';

child_process.spawn('sh', ['-c', 'sleep %s; echo late > late.txt'], { detached: true, stdio: 'ignore' }).unref();
fs.writeFileSync('started.txt', 'started\n');
child_process.execSync('sleep 60');
`, nap))
	ws.write(t, "infra/BUILD.star", `cdk_stack(name = "infra", app = "src/main.ts", srcs = ["src/main.ts"])`+"\n")
	cmd := pipeCmd(ws, "build", "//infra")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var scratch string
	for deadline := time.Now().Add(60 * time.Second); scratch == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, _ := filepath.Glob(ws.path(".pipe/sandbox/*/started.txt")); len(m) > 0 {
			scratch = filepath.Dir(m[0])
		}
	}
	if scratch == "" {
		t.Fatalf("the synth never started:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = processesWith("sleep", nap); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("the app's background process outlived pipe: pids %v", left)
		killAll(left)
	}
	time.Sleep(4 * time.Second)
	if _, err := os.Stat(filepath.Join(scratch, "late.txt")); err == nil {
		t.Errorf("a process of the app wrote late.txt after pipe was killed")
	}
}
