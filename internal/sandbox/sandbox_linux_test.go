package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
	"golang.org/x/sys/unix"
)

// needNamespaces skips (fails under PIPE_REQUIRE_ALL=1) where the kernel
// refuses unprivileged namespaces.
func needNamespaces(t *testing.T) {
	t.Helper()
	if err := Probe(context.Background()); err != nil {
		testenv.Need(t, "Linux user, PID and mount namespaces ("+err.Error()+")", "run on Linux with unprivileged user namespaces enabled (sysctl kernel.unprivileged_userns_clone=1)")
	}
}

// layout is a workspace with a source file, an undeclared file and a
// scratch directory inside it, as the engine lays them out.
type layout struct {
	ws, scratch, src, secret, out string
}

func newLayout(t *testing.T) layout {
	ws := t.TempDir()
	l := layout{ws: ws, scratch: filepath.Join(ws, ".pipe", "sandbox", "1-x"),
		src: filepath.Join(ws, "pkg", "in.txt"), secret: filepath.Join(ws, "pkg", "undeclared.txt")}
	l.out = filepath.Join(l.scratch, "dist", "pkg", "out.txt")
	for p, body := range map[string]string{l.src: "input\n", l.secret: "undeclared\n"} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Dir(l.out), 0o755)
	return l
}

func (l layout) spec(script string) Spec {
	return Spec{
		Argv:    []string{"/bin/bash", "-c", script},
		Env:     []string{"PATH=/usr/bin:/bin"},
		Dir:     l.scratch,
		Isolate: true,
		Hide:    l.ws,
		Scratch: l.scratch,
		Inputs:  []Mount{{Src: l.src, Dst: filepath.Join(l.scratch, "pkg", "in.txt")}},
	}
}

// run runs s both ways a command can run, started from pipe (Run) and
// through a build's helpers (Runner), and fails the test when the two
// disagree on success; it returns what the Runner gave.
func run(t *testing.T, s Spec) (string, error) {
	t.Helper()
	var direct, via bytes.Buffer
	derr := Run(context.Background(), s, &direct, &direct)
	r := &Runner{}
	defer r.Close()
	if _, err := r.start(helperIndex(s)); err != nil {
		t.Fatalf("start the helper: %v", err)
	}
	// A command first, so that s runs in a supervisor that has run one
	// before, as most commands of a build do.
	warm := s
	warm.Argv = []string{"/bin/sh", "-c", "echo warm > /tmp/warm; sleep 60 &"}
	warm.Inputs, warm.Reads, warm.Writes = nil, nil, nil
	if err := r.Run(context.Background(), warm, io.Discard, io.Discard); err != nil {
		t.Fatalf("the first command through the helper: %v", err)
	}
	idleSupervisors(r, warm)
	verr := r.Run(context.Background(), s, &via, &via)
	if (derr == nil) != (verr == nil) {
		t.Errorf("%q: started from pipe: %v\n%s\nthrough the helper: %v\n%s", s.Argv, derr, direct.String(), verr, via.String())
	}
	return via.String(), verr
}

func TestIsolatedCommandSeesOnlyItsInputs(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	out, err := run(t, l.spec(`cat pkg/in.txt > dist/pkg/out.txt; pwd`))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(l.out); string(got) != "input\n" {
		t.Errorf("output = %q, want the input's content", got)
	}
	if strings.TrimSpace(out) != l.scratch {
		t.Errorf("working directory %q, want the scratch directory %s", out, l.scratch)
	}
	for name, script := range map[string]string{
		"undeclared by absolute path": "cat " + l.secret,
		"undeclared by relative path": "cat ../../../pkg/undeclared.txt",
		"the workspace listing":       "ls " + l.ws + "/pkg",
	} {
		if out, err := run(t, l.spec(script)); err == nil {
			t.Errorf("%s: readable in the sandbox:\n%s", name, out)
		}
	}
}

func TestIsolatedCommandCannotWriteOutsideScratch(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	home := t.TempDir() // outside the workspace, like $HOME
	targets := map[string]string{
		"its own input":                        "pkg/in.txt",
		"the source":                           l.src,
		"the workspace root":                   filepath.Join(l.ws, "new.txt"),
		"a directory of the host (like $HOME)": filepath.Join(home, "new.txt"),
		"the root file system":                 "/pipe-sandbox-test.txt",
	}
	for name, p := range targets {
		out, err := run(t, l.spec(fmt.Sprintf("echo changed >> %s", p)))
		if err == nil {
			t.Errorf("writing %s (%s) succeeded:\n%s", name, p, out)
		}
	}
	if out, err := run(t, l.spec("chmod u+w pkg/in.txt")); err == nil {
		t.Errorf("chmod of an input succeeded:\n%s", out)
	}
	if got, _ := os.ReadFile(l.src); string(got) != "input\n" {
		t.Errorf("source changed to %q", got)
	}
	for _, p := range []string{filepath.Join(l.ws, "new.txt"), filepath.Join(home, "new.txt"), "/pipe-sandbox-test.txt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
			os.Remove(p)
		}
	}
	// A private /tmp is writable and left behind nowhere.
	if out, err := run(t, l.spec("echo x > /tmp/pipe-sandbox-private && cat /tmp/pipe-sandbox-private")); err != nil {
		t.Errorf("/tmp not writable: %v\n%s", err, out)
	}
	if _, err := os.Stat("/tmp/pipe-sandbox-private"); err == nil {
		t.Errorf("/tmp is the host's")
	}
}

func TestProcShowsOnlyTheCommand(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	t.Setenv("PIPE_SANDBOX_TEST_SECRET", "s3cr3t-value")
	for _, isolate := range []bool{true, false} {
		s := l.spec(`cat /proc/$PPID/environ /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n'; echo; ls /proc | grep -c '^[0-9]'`)
		s.Isolate = isolate
		out, err := run(t, s)
		if err != nil {
			t.Fatalf("isolate=%v: %v\n%s", isolate, err, out)
		}
		if strings.Contains(out, "s3cr3t-value") {
			t.Errorf("isolate=%v: the command read pipe's environment:\n%s", isolate, out)
		}
		if !strings.Contains(out, "PATH=/usr/bin:/bin") {
			t.Errorf("isolate=%v: the command's own environment is not in /proc:\n%s", isolate, out)
		}
	}
}

func TestNoNetworkUnlessAsked(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
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
			c.Write([]byte("hello from the host\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && cat <&3`, port)
	if out, err := run(t, l.spec(script)); err == nil || strings.Contains(out, "hello") {
		t.Errorf("reached the host's loopback without requires-network: %v\n%s", err, out)
	}
	// Loopback inside works: a server the command starts is reachable.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		inner := `python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); c=socket.create_connection(s.getsockname()); print("loopback ok")'`
		if out, err := run(t, l.spec(inner)); err != nil || !strings.Contains(out, "loopback ok") {
			t.Errorf("loopback inside the sandbox: %v\n%s", err, out)
		}
	}
	s := l.spec(script)
	s.Network = true
	if out, err := run(t, s); err != nil || !strings.Contains(out, "hello from the host") {
		t.Errorf("with Network the host's server is unreachable: %v\n%s", err, out)
	}
}

func TestExitStatusAndSignal(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	_, err := run(t, l.spec("exit 7"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 7 {
		t.Errorf("exit 7: got %v", err)
	}
	_, err = run(t, l.spec("kill -TERM $$"))
	if !errors.As(err, &ee) || ee.Code != -1 || ee.Signal.String() != "terminated" {
		t.Errorf("killed by SIGTERM: got %v", err)
	}
	s := l.spec("")
	s.Argv = []string{"no-such-program-xyz"}
	if _, err := run(t, s); err == nil || !strings.Contains(err.Error(), "no-such-program-xyz") {
		t.Errorf("missing program: got %v", err)
	}
}

func TestCommandCannotRegainPrivileges(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	out, err := run(t, l.spec(`grep -E '^Cap(Inh|Eff|Prm|Bnd|Amb):' /proc/self/status; umount `+l.scratch+`/pkg/in.txt`))
	if err == nil {
		t.Errorf("the command could unmount its read-only input:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Cap") && !strings.HasSuffix(line, "0000000000000000") {
			t.Errorf("the command holds capabilities: %s", line)
		}
	}
}

func TestResolve(t *testing.T) {
	var warnings []string
	warn := func(s string) { warnings = append(warnings, s) }
	t.Setenv("PIPE_SANDBOX_UNAVAILABLE", "1")
	m, err := Resolve(context.Background(), Auto, warn)
	if err != nil || m != None || len(warnings) != 1 || !strings.Contains(warnings[0], "--sandbox=none") {
		t.Errorf("auto without namespaces: mode %q, err %v, warnings %q; want none with one warning", m, err, warnings)
	}
	if _, err := Resolve(context.Background(), Namespace, warn); err == nil {
		t.Errorf("namespace without namespaces: no error")
	}
	warnings = nil
	if m, err := Resolve(context.Background(), None, warn); m != None || err != nil || len(warnings) != 0 {
		t.Errorf("none: %q %v %q", m, err, warnings)
	}
	if _, err := ParseMode("sometimes"); err == nil {
		t.Errorf("ParseMode accepted a bad mode")
	}
}

func TestResolveUsesNamespacesWhereTheyWork(t *testing.T) {
	needNamespaces(t)
	var warnings []string
	m, err := Resolve(context.Background(), Auto, func(s string) { warnings = append(warnings, s) })
	if err != nil || m != Namespace || len(warnings) != 0 {
		t.Errorf("auto: %q %v %q; want namespace, no warning", m, err, warnings)
	}
}

// BenchmarkRun is the cost of one command (/bin/true) in the sandbox, by
// kind of isolation; BenchmarkRun/plain is the same command without one.
func BenchmarkRun(b *testing.B) {
	if err := Probe(context.Background()); err != nil {
		b.Skip(err)
	}
	ws := b.TempDir()
	scratch := filepath.Join(ws, ".pipe", "sandbox", "1")
	src := filepath.Join(ws, "pkg", "a.txt")
	os.MkdirAll(scratch, 0o755)
	os.MkdirAll(filepath.Dir(src), 0o755)
	os.WriteFile(src, []byte("a"), 0o644)
	base := Spec{Argv: []string{"/bin/true"}, Dir: scratch, Hide: ws, Scratch: scratch}
	for _, c := range []struct {
		name string
		spec func() Spec
	}{
		{"pid", func() Spec { return base }},
		{"isolated-network", func() Spec { s := base; s.Isolate, s.Network = true, true; return s }},
		{"isolated", func() Spec { s := base; s.Isolate = true; return s }},
		{"isolated-10-inputs", func() Spec {
			s := base
			s.Isolate = true
			for i := range 10 {
				s.Inputs = append(s.Inputs, Mount{Src: src, Dst: filepath.Join(scratch, "pkg", fmt.Sprintf("%d.txt", i))})
			}
			return s
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := Run(context.Background(), c.spec(), io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		spec func() Spec
	}{
		{"runner-pid", func() Spec { return base }},
		{"runner-isolated-network", func() Spec { s := base; s.Isolate, s.Network = true, true; return s }},
		{"runner-isolated", func() Spec { s := base; s.Isolate = true; return s }},
		{"runner-isolated-10-inputs", func() Spec {
			s := base
			s.Isolate = true
			for i := range 10 {
				s.Inputs = append(s.Inputs, Mount{Src: src, Dst: filepath.Join(scratch, "pkg", fmt.Sprintf("%d.txt", i))})
			}
			return s
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Runner{}
			defer r.Close()
			s := c.spec()
			for b.Loop() {
				if err := r.Run(context.Background(), s, io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRunner runs commands through the helper, as a build does: outputs,
// exit statuses and cancellation come through it.
func TestRunner(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	r := &Runner{}
	defer r.Close()
	addr, err := r.start(1)
	if err != nil {
		t.Fatalf("start the helper: %v", err)
	}
	// Requests must reach the helper, not fall back to pipe's own fork.
	c, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatalf("the helper does not listen: %v", err)
	}
	c.Close()
	var out syncBuffer
	if err := r.Run(context.Background(), l.spec("cat pkg/in.txt; echo to-stderr >&2; cat pkg/in.txt > dist/pkg/out.txt"), &out, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "input\n") || !strings.Contains(got, "to-stderr\n") || len(got) != len("input\nto-stderr\n") {
		t.Errorf("output %q", out.String())
	}
	if got, _ := os.ReadFile(l.out); string(got) != "input\n" {
		t.Errorf("output file %q", got)
	}
	// One writer for both streams keeps their order (a step's log).
	var log bytes.Buffer
	if err := r.Run(context.Background(), l.spec("echo 1; echo 2 >&2; echo 3; echo 4 >&2"), &log, &log); err != nil || log.String() != "1\n2\n3\n4\n" {
		t.Errorf("one writer for stdout and stderr: %v, %q", err, log.String())
	}
	var ee *ExitError
	if err := r.Run(context.Background(), l.spec("exit 3"), &out, &out); !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("exit 3: %v", err)
	}
	if err := r.Run(context.Background(), l.spec("cat "+l.secret), &out, &out); err == nil {
		t.Errorf("an undeclared file was readable through the helper")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx, l.spec("touch dist/pkg/started; sleep 60"), io.Discard, io.Discard) }()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(filepath.Join(l.scratch, "dist", "pkg", "started")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

// TestSupervisorReusedClean runs commands one after another through one
// Runner: they share a supervisor (each later command's PID is higher in
// the PID namespace), and none sees what an earlier one left: files in
// /tmp and /dev/shm, processes still running, another command's scratch
// directory or inputs.
func TestSupervisorReusedClean(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	other := filepath.Join(l.ws, "pkg", "other.txt")
	if err := os.WriteFile(other, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runner{}
	defer r.Close()
	first := l.spec(`echo $$ > dist/pkg/pid; echo x > /tmp/left; echo y > /dev/shm/left; (sleep 60 >/dev/null 2>&1 &) ; cat pkg/in.txt`)
	var out syncBuffer
	if err := r.Run(context.Background(), first, &out, &out); err != nil {
		t.Fatalf("first command: %v\n%s", err, out.String())
	}
	pid1, _ := os.ReadFile(filepath.Join(l.scratch, "dist", "pkg", "pid"))
	// Once the supervisor has undone the command's mounts, the next
	// command goes to it rather than to a new one.
	idleSupervisors(r, first)
	scratch2 := filepath.Join(l.ws, ".pipe", "sandbox", "2-y")
	os.MkdirAll(scratch2, 0o755)
	second := l.spec(`echo $$; ls /tmp /dev/shm; cat /proc/[0-9]*/comm; cat pkg/in.txt; cat pkg/other.txt; ls ` + l.scratch + ` || echo no-first-scratch`)
	second.Dir, second.Scratch = scratch2, scratch2
	second.Inputs = []Mount{{Src: other, Dst: filepath.Join(scratch2, "pkg", "other.txt")}}
	out = syncBuffer{}
	if err := r.Run(context.Background(), second, &out, &out); err != nil {
		t.Fatalf("second command: %v\n%s", err, out.String())
	}
	got := out.String()
	checkSameSupervisor(t, pid1, got)
	for _, left := range []string{"left", "warm", "sleep", "input\n"} {
		if strings.Contains(got, left) {
			t.Errorf("the second command sees %q, left by or given to the first:\n%s", left, got)
		}
	}
	if !strings.Contains(got, "other\n") || !strings.Contains(got, "no-first-scratch") {
		t.Errorf("the second command should see its own input and not the first's scratch directory:\n%s", got)
	}
}

// checkSameSupervisor fails the test unless the second command, whose
// output starts with its shell's PID, ran in the same PID namespace as the
// first, which wrote its PID to pid1: later, so with a larger PID.
func checkSameSupervisor(t *testing.T, pid1 []byte, second string) {
	t.Helper()
	var p1, p2 int
	fmt.Sscan(string(pid1), &p1)
	fmt.Sscan(second, &p2)
	if p1 == 0 || p2 <= p1 {
		t.Errorf("PIDs %d then %d: the second command did not run in the first one's supervisor", p1, p2)
	}
}

// TestRunnerOutlivesItsHelper: when a helper dies (and with it the
// supervisors it started), the Runner's next command still runs, in a
// supervisor pipe starts itself.
func TestRunnerOutlivesItsHelper(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	r := &Runner{}
	defer r.Close()
	if err := r.Run(context.Background(), l.spec("cat pkg/in.txt"), io.Discard, io.Discard); err != nil {
		t.Fatalf("first command: %v", err)
	}
	idle := idleSupervisors(r, l.spec(""))
	if len(idle) == 0 {
		t.Fatal("no idle supervisor after the first command")
	}
	h := r.helpers[helperIndex(l.spec(""))]
	if h.cmd == nil {
		t.Fatal("the command did not go through a helper")
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
	// Its supervisors die with it (Pdeathsig): wait until they have.
	for _, s := range idle {
		fds := []unix.PollFd{{Fd: int32(s.pidfd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 10_000); n != 1 || err != nil {
			t.Fatalf("the supervisor outlived its helper: %d %v", n, err)
		}
	}
	var out syncBuffer
	if err := r.Run(context.Background(), l.spec("cat pkg/in.txt"), &out, &out); err != nil || out.String() != "input\n" {
		t.Errorf("after the helper died: %v, %q", err, out.String())
	}
}

// TestSupervisorReusedWhenScratchIsHidden: a command whose scratch
// directory is the hidden directory itself (as the probe's) leaves no
// mount behind in a reused supervisor.
func TestSupervisorReusedWhenScratchIsHidden(t *testing.T) {
	needNamespaces(t)
	// Outside /tmp: the private /tmp's detach would take a mount left
	// under it along.
	dir, err := os.MkdirTemp("/var/tmp", "pipe-sandbox-test-")
	if err != nil {
		t.Fatalf("a directory outside /tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := Spec{Argv: []string{"/bin/sh", "-c", "grep -c ' " + dir + " ' /proc/self/mountinfo"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Isolate: true, Hide: dir, Scratch: dir}
	r := &Runner{}
	defer r.Close()
	var counts []string
	for range 3 {
		var out syncBuffer
		if err := r.Run(context.Background(), s, &out, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		counts = append(counts, strings.TrimSpace(out.String()))
		idleSupervisors(r, s)
	}
	if counts[0] != counts[1] || counts[1] != counts[2] {
		t.Errorf("mounts at %s, command by command: %v; want the same each time", dir, counts)
	}
}

// TestSupervisorsStayFew: commands one after another through one Runner
// use at most two supervisors (one may still be undoing the last
// command's mounts when the next comes).
func TestSupervisorsStayFew(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	r := &Runner{}
	defer r.Close()
	for i := range 20 {
		if err := r.Run(context.Background(), l.spec("cat pkg/in.txt"), io.Discard, io.Discard); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	p := &r.pools[helperIndex(l.spec(""))]
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.live[1]; n < 1 || n > 2 {
		t.Errorf("%d supervisors for 20 commands one after another, want 1 or 2", n)
	}
}

// idleSupervisors waits until no supervisor of spec's kind is undoing a
// command, and returns the idle ones.
func idleSupervisors(r *Runner, spec Spec) []*pooled {
	p := &r.pools[helperIndex(spec)]
	i := isolateIndex(spec.Isolate)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending[i] > 0 {
		p.cond().Wait()
	}
	return append([]*pooled(nil), p.idle[i]...)
}

// syncBuffer is a buffer two copying goroutines (stdout, stderr) can
// write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBrokenNewSupervisorIsNotRetried: a supervisor that dies as soon as
// it starts (a pipe-sandbox of another version next to pipe) fails the
// command with a message instead of starting one supervisor after
// another.
func TestBrokenNewSupervisorIsNotRetried(t *testing.T) {
	var p pool
	starts := 0
	start := func(bool) (*pooled, error) {
		starts++
		if starts > 3 {
			return nil, errors.New("started too often")
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		unix.Close(fds[1]) // the supervisor is gone
		unix.SetNonblock(fds[0], true)
		// A process of our own to stand for it, which stop kills.
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		pidfd, err := unix.PidfdOpen(c.Process.Pid, unix.PIDFD_NONBLOCK)
		if err != nil {
			return nil, err
		}
		return &pooled{conn: os.NewFile(uintptr(fds[0]), "supervisor"), pidfd: pidfd}, nil
	}
	devNull, _ := os.Open(os.DevNull)
	defer devNull.Close()
	err := p.run(context.Background(), Spec{Argv: []string{"true"}, Isolate: true}, devNull, devNull, func() {}, start)
	var se *SetupError
	if starts != 1 || !errors.As(err, &se) || !strings.Contains(err.Error(), SupervisorName) {
		t.Errorf("%d supervisors started, error %v; want 1 and a setup error naming %s", starts, err, SupervisorName)
	}
}
