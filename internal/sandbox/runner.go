package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Runner runs commands in the sandbox through a helper process, started
// once and used for every command of a build.
//
// Making a user namespace needs a real fork (the child waits for its ID
// maps before it may exec), which copies the page tables of the process
// that forks: from pipe, whose heap holds a whole build graph, that cost
// several milliseconds per command. The helper is pipe's binary doing
// nothing else, small and cheap to fork from. It dies with pipe (Pdeathsig),
// and every supervisor it started dies with it.
type Runner struct {
	mu     sync.Mutex
	helper *exec.Cmd
	addr   *net.UnixAddr
	dir    string
	err    error
	closed bool
}

// Run is Run through the helper; where the helper cannot be started, the
// supervisor is started from pipe itself.
func (r *Runner) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) error {
	addr, err := r.start()
	if err != nil {
		return Run(ctx, spec, stdout, stderr)
	}
	return runVia(ctx, addr, spec, stdout, stderr)
}

// Close stops the helper.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.helper != nil {
		r.helper.Process.Kill()
		r.helper.Wait()
		r.helper = nil
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
	return nil
}

func (r *Runner) start() (*net.UnixAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("runner closed")
	}
	if r.helper != nil || r.err != nil {
		return r.addr, r.err
	}
	r.err = r.startLocked()
	return r.addr, r.err
}

func (r *Runner) startLocked() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pipe-sandbox-")
	if err != nil {
		return err
	}
	r.dir = dir
	r.addr = &net.UnixAddr{Name: dir + "/helper.sock", Net: "unix"}
	ln, err := net.ListenUnix("unix", r.addr)
	if err != nil {
		return err
	}
	lf, err := ln.File()
	// The helper listens on it now; closing pipe's copy must not remove it.
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(self)
	cmd.Args = []string{"pipe-sandbox-helper"}
	cmd.Env = []string{helperMarker + "=" + protocol}
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.helper = cmd
	return nil
}

// helperMarker, in the helper's environment, makes the package's init
// run the helper instead of the program.
const helperMarker = "PIPE_SANDBOX_HELPER"

// A request is a header (the spec's length, with the command's stdout and
// stderr descriptors attached), the spec as JSON, then the result as
// JSON back. Closing the connection cancels the command.

func runVia(ctx context.Context, addr *net.UnixAddr, spec Spec, stdout, stderr io.Writer) error {
	conn, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		return Run(ctx, spec, stdout, stderr)
	}
	defer conn.Close()
	outW, closeW, wait, err := outputFiles(stdout, stderr)
	if err != nil {
		return err
	}
	body, err := json.Marshal(spec)
	if err != nil {
		closeW()
		wait()
		return err
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(body)))
	_, _, err = conn.WriteMsgUnix(hdr[:], syscall.UnixRights(int(outW[0].Fd()), int(outW[1].Fd())), nil)
	// The helper holds its own copies now (or never will).
	closeW()
	if err == nil {
		_, err = conn.Write(body)
	}
	if err != nil {
		wait()
		return &SetupError{Msg: fmt.Sprintf("send the command to the sandbox helper: %v", err)}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var res result
	decErr := json.NewDecoder(conn).Decode(&res)
	wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if decErr != nil {
		return &SetupError{Msg: fmt.Sprintf("the sandbox helper ended without a result: %v", decErr)}
	}
	return res.err(spec)
}

// outputFiles gives descriptors for stdout and stderr: the files
// themselves, or pipes copied into the writers. closeW closes the pipes'
// write ends; wait returns once the copies are done.
func outputFiles(ws ...io.Writer) (files []*os.File, closeW, wait func(), err error) {
	var pipes []*os.File
	var wg sync.WaitGroup
	closeW = func() { closeAll(pipes); pipes = nil }
	for i, w := range ws {
		if f, ok := w.(*os.File); ok {
			files = append(files, f)
			continue
		}
		// One writer for both streams gets one pipe, as os/exec does: two
		// copies into it at once would interleave (or race).
		if i > 0 && sameWriter(w, ws[0]) {
			files = append(files, files[0])
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			closeW()
			wg.Wait()
			return nil, nil, nil, err
		}
		files = append(files, pw)
		pipes = append(pipes, pw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(w, pr)
			pr.Close()
		}()
	}
	return files, closeW, wg.Wait, nil
}

func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

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

// toResult is the inverse of result.err.
func toResult(err error) result {
	var ee *ExitError
	var se *SetupError
	switch {
	case err == nil:
		return result{}
	case errors.As(err, &ee):
		return result{Code: ee.Code, Signal: int(ee.Signal)}
	case errors.As(err, &se):
		return result{Setup: se.Msg}
	}
	return result{Start: err.Error()}
}

// serveHelper is the helper's whole life: run each request in the
// sandbox until pipe kills it.
func serveHelper() int {
	f := os.NewFile(3, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pipe sandbox helper: %v\n", err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return 1
		}
		go serveOne(c.(*net.UnixConn))
	}
}

func serveOne(conn *net.UnixConn) {
	defer conn.Close()
	var hdr [8]byte
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(hdr[:], oob)
	if err != nil {
		return
	}
	files, err := receivedFiles(oob[:oobn])
	if err != nil || len(files) != 2 {
		closeAll(files)
		json.NewEncoder(conn).Encode(result{Setup: fmt.Sprintf("the helper got no output descriptors (%v)", err)})
		return
	}
	defer func() { closeAll(files) }()
	if _, err := io.ReadFull(conn, hdr[n:]); err != nil {
		return
	}
	body := make([]byte, binary.LittleEndian.Uint64(hdr[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return
	}
	var spec Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		json.NewEncoder(conn).Encode(result{Setup: fmt.Sprintf("read the command: %v", err)})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// pipe says nothing more: a read that ends means it closed the
		// connection (cancelled) or died.
		var b [1]byte
		conn.Read(b[:])
		cancel()
	}()
	res := toResult(Run(ctx, spec, files[0], files[1]))
	closeAll(files)
	files = nil
	if ctx.Err() == nil {
		json.NewEncoder(conn).Encode(res)
	}
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			return files, err
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "output"))
		}
	}
	return files, nil
}
