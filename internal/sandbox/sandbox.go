// Package sandbox runs a command in Linux namespaces, the way Bazel's
// linux-sandbox does: a user namespace, new PID and mount namespaces (and
// a network namespace with only loopback), where the command sees the
// root file system read-only, the workspace hidden except its declared
// inputs (bind-mounted read-only), its scratch directory writable, a
// private /tmp and a /proc that shows only its own processes.
//
// pipe runs itself again as the namespaces' first process (the
// supervisor, see supervisor_linux.go); the init function of this package
// recognises that run, so every binary that imports the package (pipe,
// and the test binaries of the packages that use it) can be the
// supervisor. When pipe dies, the kernel kills the supervisor
// (Pdeathsig) and with it every process in its PID namespace. In a build
// the supervisors are started by helpers (Runner) that hold the user and
// network namespaces for the whole build; Run alone makes all four
// namespaces per command.
package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Mode is how pipe isolates the commands of actions (--sandbox).
type Mode string

const (
	// Auto uses namespaces where they work and falls back to None with
	// one warning where they do not.
	Auto Mode = "auto"
	// None runs commands as plain child processes in a scratch directory
	// holding copies of their inputs.
	None Mode = "none"
	// Namespace requires the namespace sandbox.
	Namespace Mode = "namespace"
)

// ParseMode reads a --sandbox value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, None, Namespace:
		return m, nil
	}
	return "", fmt.Errorf("--sandbox=%s: want none, namespace or auto", s)
}

// Mount is an input bind-mounted read-only into the sandbox.
type Mount struct {
	// Src is the file or directory to show; Dst is where the command
	// sees it (inside Spec.Scratch).
	Src, Dst string
	Dir      bool
}

// Spec is one command to run in the sandbox.
type Spec struct {
	Argv []string
	// Env is the command's whole environment ("K=V"): nothing of pipe's
	// own environment is passed on.
	Env []string
	// Dir is the working directory.
	Dir string
	// Isolate hides the file system: the root becomes read-only, Hide is
	// replaced by an empty read-only directory, and only Scratch (writable)
	// and Inputs (read-only) are visible inside it. Without Isolate the
	// command gets only its own PID namespace and /proc, so it dies with
	// pipe and cannot read pipe's environment, and sees the file system
	// and network as pipe does.
	Isolate bool
	Hide    string
	Scratch string
	Inputs  []Mount
	// Network keeps the host's network; otherwise an isolated command
	// gets a network namespace with only loopback.
	Network bool
}

// ExitError is a command that ran in the sandbox and did not succeed.
type ExitError struct {
	// Code is the exit status; -1 when a signal killed the command.
	Code   int
	Signal syscall.Signal
}

func (e *ExitError) Error() string {
	if e.Code < 0 {
		return fmt.Sprintf("command killed by signal %s", e.Signal)
	}
	return fmt.Sprintf("command exited with status %d", e.Code)
}

// result is what the supervisor reports on its result pipe.
type result struct {
	// Setup is set when the sandbox could not be made; the command never
	// ran.
	Setup  string `json:"setup,omitempty"`
	Start  string `json:"start,omitempty"`
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
}

// SetupError is a sandbox that could not be made.
type SetupError struct{ Msg string }

func (e *SetupError) Error() string { return "sandbox: " + e.Msg }

// envMarker, in the supervisor's environment, makes the package's init
// run the supervisor instead of the program. Its value is the version of
// the protocol, so a stray variable of another meaning is not taken for it.
const envMarker = "PIPE_SANDBOX_SUPERVISOR"

// protocol must change whenever Spec, result or the descriptors they
// travel on do: a pipe-sandbox of another build then ignores the marker
// and fails plainly instead of misreading the spec.
const protocol = "2"

// Run runs spec's command in the namespace sandbox, with its output going
// to stdout and stderr. An unsuccessful exit is an *ExitError, a sandbox
// that could not be made a *SetupError; when ctx ends the whole sandbox
// is killed and ctx.Err() returned.
func Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) error {
	if !supported {
		return &SetupError{Msg: "namespaces are a Linux feature; this is " + runtime.GOOS}
	}
	self, err := supervisorPath()
	if err != nil {
		return &SetupError{Msg: fmt.Sprintf("find pipe's own executable to start the supervisor: %v", err)}
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer specR.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return err
	}
	defer resR.Close()

	cmd := exec.CommandContext(ctx, self)
	// /proc/1/cmdline in the sandbox names the supervisor that runs.
	cmd.Args = []string{self}
	// The supervisor's environment is visible to the command (it is
	// /proc/1/environ there): it holds the marker and nothing else.
	cmd.Env = []string{envMarker + "=" + protocol, "GOMAXPROCS=1", "GOGC=off"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{specR, resW}
	cmd.SysProcAttr = sysProcAttr(spec)
	// Killing the supervisor, the namespace's init, kills every process
	// in the namespace.
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		specW.Close()
		resW.Close()
		return &SetupError{Msg: fmt.Sprintf("start the supervisor in new namespaces: %v", err)}
	}
	resW.Close()
	specR.Close()
	encErr := json.NewEncoder(specW).Encode(spec)
	specW.Close()
	var res result
	decErr := json.NewDecoder(resR).Decode(&res)
	if decErr == nil && isFile(stdout) && isFile(stderr) {
		// The supervisor reports once the command and everything it
		// started are gone and the output is closed; its own exit (the
		// namespaces' teardown) need not be waited for.
		go cmd.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return res.err(spec)
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if encErr != nil && decErr != nil {
		return &SetupError{Msg: fmt.Sprintf("send the command to the supervisor: %v (supervisor: %v)", encErr, waitErr)}
	}
	if decErr != nil {
		return &SetupError{Msg: fmt.Sprintf("the supervisor ended without a result (%v)", waitErr)}
	}
	return res.err(spec)
}

// err is the error a result stands for: nil for a successful exit.
func (res result) err(spec Spec) error {
	switch {
	case res.Setup != "":
		return &SetupError{Msg: res.Setup}
	case res.Start != "":
		return fmt.Errorf("run %s: %s", spec.Argv[0], res.Start)
	case res.Signal != 0:
		return &ExitError{Code: -1, Signal: syscall.Signal(res.Signal)}
	case res.Code != 0:
		return &ExitError{Code: res.Code}
	}
	return nil
}

// SupervisorName is the program pipe starts as the supervisor when it lies
// next to pipe's executable (cmd/pipe-sandbox). It holds nothing but this
// package, and starts in about a third of the time pipe's own binary
// takes, whose many packages all initialise before the supervisor can
// run; without it pipe starts itself.
const SupervisorName = "pipe-sandbox"

func supervisorPath() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), SupervisorName)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	return self, nil
}

// Probe makes one sandbox with the isolation a command gets and runs
// nothing in it; an error says why namespaces cannot be used here.
//
// PIPE_SANDBOX_UNAVAILABLE=1 makes it fail, so tests can check what auto
// mode does on a machine without namespaces.
func Probe(ctx context.Context) error {
	if os.Getenv("PIPE_SANDBOX_UNAVAILABLE") == "1" {
		return &SetupError{Msg: "unavailable (PIPE_SANDBOX_UNAVAILABLE=1)"}
	}
	dir, err := os.MkdirTemp("", "pipe-sandbox-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spec := Spec{Isolate: true, Hide: dir, Scratch: dir, Dir: dir}
	var out limited
	err = Run(ctx, spec, &out, &out)
	if err != nil && out.Len() > 0 {
		return fmt.Errorf("%w: %s", err, out.String())
	}
	return err
}

// Resolve turns Auto into Namespace or None by probing once; warn gets
// the one warning a fallback gives. Namespace fails when the probe does.
func Resolve(ctx context.Context, m Mode, warn func(string)) (Mode, error) {
	switch m {
	case None:
		return None, nil
	case Namespace:
		if err := Probe(ctx); err != nil {
			return "", fmt.Errorf("--sandbox=namespace: %w; run with --sandbox=none on a machine without user namespaces", err)
		}
		return Namespace, nil
	}
	if err := Probe(ctx); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if warn != nil {
			warn(fmt.Sprintf("commands run without the namespace sandbox (they can read and write outside their inputs and outputs): %v; pass --sandbox=none to silence this", err))
		}
		return None, nil
	}
	return Namespace, nil
}

// limited keeps the first 4 KiB written to it.
type limited struct{ b []byte }

func (l *limited) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
func (l *limited) Len() int       { return len(l.b) }
func (l *limited) String() string { return string(l.b) }

func isFile(w io.Writer) bool {
	_, ok := w.(*os.File)
	return ok
}
