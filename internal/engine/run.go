package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/internal/process"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/sandbox"
)

// execute runs a in a fresh scratch directory, stores its outputs in the
// CAS and moves them into the workspace.
//
// With place false (verify mode) the outputs are stored and described but
// left out of the workspace, which keeps the cached ones.
func (e *Executor) execute(ctx context.Context, a *Action, place bool) (_ *cache.ActionResult, _ string, err error) {
	scratch, err := os.MkdirTemp(ensureDir(filepath.Join(e.WS.StateDir(), "sandbox")), strconv.Itoa(a.id)+"-")
	if err != nil {
		return nil, "", err
	}
	defer func() {
		// With KeepFailedScratch the user gets the directory the action
		// failed in, to look at and to run the command in by hand.
		if err != nil && e.KeepFailedScratch && ctx.Err() == nil {
			err = &KeptScratchError{Dir: scratch, Err: err}
			return
		}
		removeTree(scratch)
	}()
	ec := &ExecContext{Dir: scratch, ws: e.WS, a: a, cache: e.Cache, Stdout: newLimitedBuffer(), Stderr: newLimitedBuffer()}
	if pr, ok := e.Reporter.(ProgressReporter); ok {
		ec.progress = func(msg string) { pr.ActionProgress(a, msg) }
	}
	output := func() string {
		// Paths in tracebacks and compiler messages name the scratch copy,
		// which is gone when the user reads them: print them as workspace
		// paths.
		return strings.ReplaceAll(ec.Stdout.String()+ec.Stderr.String(), scratch+"/", "")
	}
	ec.sandbox, err = e.namespaces(ctx)
	if err != nil {
		return nil, "", err
	}
	// A command of a sandboxed action in the namespace sandbox sees its
	// inputs bind-mounted read-only; everywhere else they are copied.
	isolated := ec.sandbox != nil && a.Sandbox && a.Argv != nil
	if a.Sandbox && !isolated {
		if err := stageInputs(e.WS, a, scratch); err != nil {
			return nil, "", err
		}
	}
	for _, o := range a.Outputs {
		dir := joinSlash(scratch, o.Path)
		if !o.Dir {
			dir = path.Dir(dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, "", err
		}
	}
	if isolated {
		err = e.runIsolated(ctx, ec, a)
		if err != nil && e.KeepFailedScratch && ctx.Err() == nil {
			// The kept directory holds empty mount points where the
			// inputs were: put copies there, so the command can be run by
			// hand in it.
			for _, in := range a.Inputs {
				os.RemoveAll(joinSlash(scratch, in.Path))
			}
			if serr := stageInputs(e.WS, a, scratch); serr != nil {
				ec.Logf("pipe: copying the inputs into the kept scratch directory: %v", serr)
			}
		}
	} else if a.Argv != nil {
		err = ec.Run(ctx, Command{Argv: a.Argv, Env: a.Env})
	} else if a.Run != nil {
		err = a.Run(ctx, ec)
	} else {
		err = fmt.Errorf("action has neither a command nor a step")
	}
	if err != nil && e.KeepFailedScratch && ctx.Err() == nil && len(ec.mounted) > 0 {
		if serr := ec.stageMounted(); serr != nil {
			ec.Logf("pipe: copying the inputs into the kept scratch directory: %v", serr)
		}
	}
	// A test that ran and failed still leaves its logs and reports: they
	// are put in place like any output (never cached; see runOne), so CI
	// and the user can read why.
	var testErr *TestFailedError
	if err != nil && !(a.Test && ctx.Err() == nil && errors.As(err, &testErr)) {
		return nil, output(), err
	}
	r, err := e.collect(a, scratch, place)
	if err != nil {
		return nil, output(), err
	}
	if testErr != nil {
		return r, output(), testErr
	}
	return r, output(), nil
}

// collect stores a's outputs from the scratch directory in the CAS and,
// with place, moves them into the workspace.
func (e *Executor) collect(a *Action, scratch string, place bool) (*cache.ActionResult, error) {
	r := &cache.ActionResult{}
	for _, o := range a.Outputs {
		src := joinSlash(scratch, o.Path)
		fi, err := os.Lstat(src)
		if err != nil {
			return nil, fmt.Errorf("declared output %s was not created", outputName(a, o))
		}
		if o.Dir {
			if !fi.IsDir() {
				return nil, fmt.Errorf("declared output directory %s is not a directory", outputName(a, o))
			}
			if err := e.collectDir(r, scratch, o.Path); err != nil {
				return nil, err
			}
			r.Dirs = append(r.Dirs, o.Path)
			continue
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("declared output %s is not a regular file", outputName(a, o))
		}
		d, size, err := e.Cache.PutFile(src)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", o.Path, err)
		}
		r.Outputs = append(r.Outputs, cache.OutputFile{Path: o.Path, Digest: d, Size: size, Executable: fi.Mode()&0o111 != 0})
	}
	if !place {
		return r, nil
	}
	// Every blob is stored; now move the outputs into the workspace, each
	// with one rename, so the workspace never holds a half-written file.
	for _, o := range a.Outputs {
		if err := e.moveIntoPlace(joinSlash(scratch, o.Path), o); err != nil {
			return nil, fmt.Errorf("write %s: %w", o.Path, err)
		}
	}
	for _, of := range r.Outputs {
		if fi, err := os.Stat(e.WS.Abs(of.Path)); err == nil {
			e.Digests.Record(of.Path, fi, of.Digest)
		}
	}
	e.pruneOwn(a, true)
	return r, nil
}

// stageInputs copies a's inputs into the scratch directory at their
// workspace paths.
func stageInputs(ws *Workspace, a *Action, scratch string) error {
	for _, in := range a.Inputs {
		if err := stage(ws.Abs(in.Path), joinSlash(scratch, in.Path), in.Dir); err != nil {
			return fmt.Errorf("stage input %s: %w", in.Path, err)
		}
	}
	return nil
}

// namespaces returns the runner of the namespace sandbox, or nil when
// this build runs commands without it: --sandbox=auto probes once per
// build and warns once when it cannot.
func (e *Executor) namespaces(ctx context.Context) (*sandbox.Runner, error) {
	e.sandboxOnce.Do(func() {
		m := e.Sandbox
		if m == "" {
			m = sandbox.Auto
		}
		m, e.sandboxError = sandbox.Resolve(ctx, m, e.Warn)
		if m == sandbox.Namespace {
			e.sandboxRunner = &sandbox.Runner{}
		}
	})
	return e.sandboxRunner, e.sandboxError
}

// closeSandbox stops the sandbox's helper process at the end of a build.
func (e *Executor) closeSandbox() {
	if e.sandboxRunner != nil {
		e.sandboxRunner.Close()
	}
}

// runIsolated runs a's command in the namespace sandbox: the workspace
// hidden but for the scratch directory, the inputs bind-mounted read-only
// at the paths a copy would have, the rest of the file system read-only,
// no network unless the action asks for it.
func (e *Executor) runIsolated(ctx context.Context, ec *ExecContext, a *Action) error {
	spec := sandbox.Spec{
		Argv:    a.Argv,
		Env:     envList(a.Env),
		Dir:     ec.Dir,
		Isolate: true,
		Hide:    e.WS.Root,
		Scratch: ec.Dir,
		Network: a.Network,
	}
	for _, in := range inputMounts(a.Inputs) {
		spec.Inputs = append(spec.Inputs, sandbox.Mount{Src: e.WS.Abs(in.Path), Dst: joinSlash(ec.Dir, in.Path), Dir: in.Dir})
	}
	return commandError(ec.sandbox.Run(ctx, spec, ec.Stdout, ec.Stderr))
}

// inputMounts is inputs in path order without those inside an input
// directory, which the directory's mount already shows: a mount point
// made inside a mounted directory would be made in its source.
func inputMounts(inputs []*File) []*File {
	sorted := append([]*File(nil), inputs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	out := sorted[:0]
	var dir string
	for _, in := range sorted {
		if dir != "" && (in.Path == dir || strings.HasPrefix(in.Path, dir+"/")) {
			continue
		}
		out = append(out, in)
		if in.Dir {
			dir = in.Path
		}
	}
	return out
}

// commandError turns the sandbox's exit error into the engine's.
func commandError(err error) error {
	var ee *sandbox.ExitError
	if errors.As(err, &ee) {
		return &CommandError{ExitCode: ee.Code, Signal: ee.Signal}
	}
	return err
}

func envList(m map[string]string) []string {
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// Command is a program an in-process step runs (ExecContext.Run).
type Command struct {
	Argv []string
	// Env is the program's whole environment: nothing of pipe's own
	// environment is passed on.
	Env map[string]string
	// Dir is the working directory (default: the scratch directory).
	Dir string
	// Stdout and Stderr default to the action's output.
	Stdout, Stderr io.Writer
	// Confinement in the namespace sandbox (confine.go).
	Confinement
}

// CommandError is a program that ran and did not succeed.
type CommandError struct {
	// ExitCode is the program's exit status; -1 when a signal killed it.
	ExitCode int
	Signal   syscall.Signal
}

func (e *CommandError) Error() string {
	if e.ExitCode < 0 {
		return fmt.Sprintf("command killed by signal %s", e.Signal)
	}
	return fmt.Sprintf("command exited with status %d", e.ExitCode)
}

// Run runs a program the way command actions run theirs: in its own
// process group, killed with everything it started when ctx is cancelled.
// An unsuccessful exit is a *CommandError; a cancelled ctx gives ctx.Err().
func (ec *ExecContext) Run(ctx context.Context, c Command) error {
	if c.Dir == "" {
		c.Dir = ec.Dir
	}
	if c.Stdout == nil {
		c.Stdout = ec.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = ec.Stderr
	}
	if ec.sandbox != nil {
		// The namespace sandbox, as a command action's (confine.go).
		return commandError(ec.sandbox.Run(ctx, ec.confine(c), c.Stdout, c.Stderr))
	}
	return runProcess(ctx, c)
}

// RunCommand runs c as ExecContext.Run does, for work outside an action
// (readying a runnable target's environment). c.Dir, c.Stdout and
// c.Stderr must be set.
func RunCommand(ctx context.Context, c Command) error { return runProcess(ctx, c) }

func runProcess(ctx context.Context, c Command) error {
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = envList(c.Env)
	cmd.Stdout = c.Stdout
	cmd.Stderr = c.Stderr
	// Pdeathsig kills the command if pipe itself is killed (kill -9), so
	// no orphan keeps writing into a scratch directory.
	cmd.SysProcAttr = process.GroupAttr()
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return &CommandError{ExitCode: -1, Signal: st.Signal()}
		}
		return &CommandError{ExitCode: exit.ExitCode()}
	}
	return fmt.Errorf("run %s: %w", c.Argv[0], err)
}

// KeptScratchError is an action's failure when its scratch directory was
// kept (Executor.KeepFailedScratch): Dir holds its staged inputs and what
// it wrote, until the next build clears the sandbox.
type KeptScratchError struct {
	Dir string
	Err error
}

func (e *KeptScratchError) Error() string { return e.Err.Error() }
func (e *KeptScratchError) Unwrap() error { return e.Err }

// limitedBuffer keeps the first and last parts of a long output.
type limitedBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int64
}

const outputLimit = 64 << 10

func newLimitedBuffer() *limitedBuffer { return &limitedBuffer{} }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := outputLimit - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if len(b.tail) > outputLimit {
			cut := len(b.tail) - outputLimit
			b.dropped += int64(cut)
			b.tail = append(b.tail[:0], b.tail[cut:]...)
		}
	}
	return n, nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return b.head.String() + string(b.tail)
	}
	return fmt.Sprintf("%s\n… %d bytes omitted …\n%s", b.head.String(), b.dropped, b.tail)
}
