package main

// The namespace sandbox seen from the command line: what a genrule's
// command can no longer do (outlive pipe, read pipe's environment, write
// outside its outputs, read undeclared files, reach the network), and
// --sandbox=none|namespace|auto.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/sandbox"
	"github.com/pipebuild/pipe/internal/testenv"
)

func needNamespaces(t *testing.T) {
	t.Helper()
	if err := sandbox.Probe(context.Background()); err != nil {
		testenv.Need(t, "Linux user, PID and mount namespaces ("+err.Error()+")", "run on Linux with unprivileged user namespaces enabled (sysctl kernel.unprivileged_userns_clone=1)")
	}
}

// processesWith lists the pids whose command line is exactly argv.
func processesWith(argv ...string) []string {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == want {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// TestKillingPipeKillsTheCommandsProcesses: kill -9 of pipe takes every
// process a command started with it, not only the command's shell, so
// nothing writes after pipe died.
func TestKillingPipeKillsTheCommandsProcesses(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	// A duration no other process uses marks the background sleeper.
	nap := fmt.Sprintf("%d.%03d", 2, time.Now().UnixNano()%1000)
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": fmt.Sprintf(`genrule(name = "g", outs = ["o.txt"], cmd = "(sleep %s; echo late > late.txt) & echo started > started.txt; sleep 60; touch $@")`+"\n", nap),
	})
	cmd := pipeCmd(ws, "build", "//a:g")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var scratch string
	for deadline := time.Now().Add(30 * time.Second); scratch == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m, _ := filepath.Glob(ws.path(".pipe/sandbox/*/started.txt")); len(m) > 0 {
			scratch = filepath.Dir(m[0])
		}
	}
	if scratch == "" {
		t.Fatalf("the genrule never started:\n%s", stderr.String())
	}
	if len(processesWith("sleep", nap)) == 0 {
		t.Fatalf("the background sleeper is not running")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The kernel kills the sandbox's processes as pipe's death is
	// noticed: wait for that, well past the sleeper's nap.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = processesWith("sleep", nap); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("the command's background process outlived pipe: pids %v", left)
		for _, p := range left {
			var pid int
			fmt.Sscan(p, &pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(3 * time.Second)
	if _, err := os.Stat(filepath.Join(scratch, "late.txt")); err == nil {
		t.Errorf("a process of the command wrote late.txt after pipe was killed")
	}
}

// TestCommandCannotReadPipesEnvironment: a secret in pipe's environment
// is not in the command's reach through /proc.
func TestCommandCannotReadPipesEnvironment(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": `genrule(name = "g", outs = ["o.txt"], cmd = "{ cat /proc/$$PPID/environ /proc/[0-9]*/environ 2>/dev/null || true; } | tr '\\0' '\\n' > $@")` + "\n",
	})
	cmd := pipeCmd(ws, "build", "//a:g")
	cmd.Env = append(cmd.Env, "PIPE_TEST_SECRET=hunter2-sandbox")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	got := ws.read(t, "dist/a/g/o.txt")
	if strings.Contains(got, "hunter2-sandbox") {
		t.Errorf("the command read pipe's environment:\n%s", got)
	}
	if !strings.Contains(got, "PATH=") {
		t.Errorf("the command did not even see its own environment; the test proves nothing:\n%s", got)
	}
}

// TestCommandCannotWriteOutsideItsOutputs: writes to a source file, the
// workspace root and the home directory fail; the outputs are written.
func TestCommandCannotWriteOutsideItsOutputs(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	inHome := filepath.Join(home, fmt.Sprintf(".pipe-sandbox-test-%d", time.Now().UnixNano()))
	defer os.Remove(inHome)
	ws := newWorkspace(t, map[string]string{"a/src.txt": "source\n"})
	targets := []string{"a/src.txt", ws.path("a/src.txt"), ws.path("escape.txt"), ws.path("dist/a/escape.txt"), inHome}
	var cmd strings.Builder
	for _, p := range targets {
		fmt.Fprintf(&cmd, "echo changed >> %s 2>/dev/null && echo wrote %s >> $@ || echo refused %s >> $@; ", p, p, p)
	}
	ws.write(t, "a/BUILD.star", fmt.Sprintf("genrule(name = \"g\", srcs = [\"src.txt\"], outs = [\"o.txt\"], cmd = %q)\n", cmd.String()))
	b := ws.buildOK(t, "//a:g")
	log := ws.read(t, "dist/a/g/o.txt")
	for _, p := range targets {
		if !strings.Contains(log, "refused "+p) {
			t.Errorf("the command wrote %s (log %q, stderr %s)", p, log, b.stderr)
		}
	}
	if got := ws.read(t, "a/src.txt"); got != "source\n" {
		t.Errorf("the source became %q", got)
	}
	for _, p := range []string{ws.path("escape.txt"), ws.path("dist/a/escape.txt"), inHome} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}

// TestUndeclaredReadFails: a file of the workspace the genrule does not
// declare cannot be read, by absolute or relative path.
func TestUndeclaredReadFails(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	for _, path := range []string{"ABS/a/other.txt", "../../../a/other.txt"} {
		ws := newWorkspace(t, map[string]string{"a/in.txt": "declared\n", "a/other.txt": "undeclared\n"})
		p := strings.Replace(path, "ABS", ws.Root, 1)
		ws.write(t, "a/BUILD.star", fmt.Sprintf("genrule(name = \"g\", srcs = [\"in.txt\"], outs = [\"o.txt\"], cmd = \"cat $< %s > $@\")\n", p))
		b := ws.build(t, "//a:g")
		if b.code != 1 || !strings.Contains(b.stderr, "other.txt: No such file or directory") {
			t.Errorf("%s: exit %d; want the build to fail on the undeclared read:\n%s", p, b.code, b.stderr)
		}
	}
}

// TestNoNetworkWithoutRequiresNetwork: a server on the host's loopback is
// out of reach unless the target has tags = ["requires-network"].
func TestNoNetworkWithoutRequiresNetwork(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("from the host\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	rule := func(name, tags string) string {
		return fmt.Sprintf("genrule(name = %q, outs = [\"%s.txt\"], cmd = \"exec 3<>/dev/tcp/127.0.0.1/%d && cat <&3 > $@\"%s)\n", name, name, port, tags)
	}
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": rule("closed", "") + rule("open", `, tags = ["requires-network"]`),
	})
	if b := ws.build(t, "//a:closed"); b.code != 1 {
		t.Errorf("without requires-network the command reached the host: exit %d\n%s", b.code, b.stderr)
	}
	ws.buildOK(t, "//a:open")
	if got := ws.read(t, "dist/a/open/open.txt"); got != "from the host\n" {
		t.Errorf("with requires-network: read %q", got)
	}
}

// TestSandboxNoneKeepsWorking: --sandbox=none runs commands as before:
// read-only copies of the inputs in a scratch directory.
func TestSandboxNoneKeepsWorking(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/in.txt":     "input\n",
		"a/BUILD.star": `genrule(name = "g", srcs = ["in.txt"], outs = ["o.txt"], cmd = "cat $< > $@ && stat -c %a $< >> $@ && readlink /proc/$$PPID/exe >> $@")` + "\n",
	})
	b := ws.build(t, "--sandbox=none", "//a:g")
	if b.code != 0 {
		t.Fatalf("exit %d\n%s", b.code, b.stderr)
	}
	got := ws.read(t, "dist/a/g/o.txt")
	// Without the sandbox the command's parent is pipe itself.
	if !strings.HasPrefix(got, "input\n444\n") || !strings.HasSuffix(strings.TrimSpace(got), "/pipe") {
		t.Errorf("output %q; want the input, its read-only mode and pipe as the parent", got)
	}
	if b := ws.build(t, "--sandbox=sometimes"); b.code != 2 || !strings.Contains(b.stderr, "--sandbox=sometimes: want none, namespace or auto") {
		t.Errorf("bad --sandbox: exit %d\n%s", b.code, b.stderr)
	}
}

// TestSandboxAutoFallsBackWithOneWarning: where namespaces are
// unavailable (simulated with PIPE_SANDBOX_UNAVAILABLE=1), auto builds
// without them and says so once; namespace refuses.
func TestSandboxAutoFallsBackWithOneWarning(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": `genrule(name = "g", outs = ["o.txt"], cmd = "echo 1 > $@")` + "\n" +
			`genrule(name = "h", outs = ["p.txt"], cmd = "echo 2 > $@")` + "\n",
	})
	cmd := pipeCmd(ws, "build", "//a:all")
	cmd.Env = append(cmd.Env, "PIPE_SANDBOX_UNAVAILABLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("auto without namespaces: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "pipe: warning: commands run without the namespace sandbox"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, out)
	}
	ws.write(t, "a/BUILD.star", `genrule(name = "g", outs = ["o.txt"], cmd = "echo 3 > $@")`+"\n")
	cmd = pipeCmd(ws, "build", "--sandbox=namespace", "//a:g")
	cmd.Env = append(cmd.Env, "PIPE_SANDBOX_UNAVAILABLE=1")
	out, err = cmd.CombinedOutput()
	if exitCode(t, err) != 1 || !strings.Contains(string(out), "--sandbox=none") {
		t.Errorf("namespace without namespaces: exit %d, want 1 and advice:\n%s", exitCode(t, err), out)
	}
}

// TestSupervisorNextToPipe: with pipe-sandbox installed next to pipe (as
// TestMain does), it is the supervisor, PID 1 of the command's namespace.
func TestSupervisorNextToPipe(t *testing.T) {
	needNamespaces(t)
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": `genrule(name = "g", outs = ["o.txt"], cmd = "tr '\\0' '\\n' < /proc/1/cmdline > $@")` + "\n",
	})
	ws.buildOK(t, "//a:g")
	want := filepath.Join(filepath.Dir(pipeBin), sandbox.SupervisorName) + "\n"
	if got := ws.read(t, "dist/a/g/o.txt"); got != want {
		t.Errorf("PID 1 is %q, want %q", got, want)
	}
}
