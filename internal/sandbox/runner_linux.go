package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Runner runs commands in the sandbox through helper processes, started
// once per build and used for every command of it.
//
// A helper is pipe's binary doing nothing else, started in a user
// namespace of its own (the user's uid and gid mapped, holding
// CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_SETPCAP there as ambient
// capabilities) and, for commands without the network, in a network
// namespace with only loopback, brought up once. Each command's
// supervisor is forked by a helper into new PID and mount namespaces
// only: no user namespace per command (whose fork cannot be a vfork and
// copies the forking process's page tables, and whose ID maps must be
// written before the child may exec) and no network namespace per command
// (whose creation and teardown are slow in the kernel). The isolated
// commands and programs of in-process steps without the network go to
// the helper in the loopback-only network namespace; the others
// (requires-network, terraform init fetching providers) to a helper in
// the host's network namespace. Helpers die with pipe (Pdeathsig), and every
// supervisor a helper started dies with it.
type Runner struct {
	mu      sync.Mutex
	helpers [2]helper // by helperIndex
	pools   [2]pool   // the supervisors each helper started, by helperIndex
	closed  bool
}

type helper struct {
	cmd  *exec.Cmd
	addr string // the helper's socket
	dir  string
	err  error
}

// helperIndex chooses the helper for spec: 0 keeps the host's network,
// 1 has only loopback.
func helperIndex(spec Spec) int {
	if spec.Isolate && !spec.Network {
		return 1
	}
	return 0
}

// Run is Run through a helper; where the helper cannot be started, the
// supervisor is started from pipe itself.
//
// A helper only starts supervisors (pooled, see pool_linux.go) and hands
// pipe the connection to each: the commands go from pipe to a supervisor
// directly.
func (r *Runner) Run(ctx context.Context, spec Spec, stdout, stderr io.Writer) error {
	i := helperIndex(spec)
	addr, err := r.start(i)
	if err != nil {
		return Run(ctx, spec, stdout, stderr)
	}
	outW, closeW, wait, err := outputFiles(stdout, stderr)
	if err != nil {
		return err
	}
	err = r.pools[i].run(ctx, spec, outW[0], outW[1], closeW, func(isolate bool) (*pooled, error) {
		return requestSupervisor(addr, isolate)
	})
	// The supervisor holds its own copies of the outputs (or never will).
	closeW()
	wait()
	var none *noSupervisorError
	if errors.As(err, &none) {
		// The helper could not give a supervisor (it died?): pipe starts
		// one itself, as without a helper.
		return Run(ctx, spec, stdout, stderr)
	}
	return err
}

// Close stops the helpers.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for i := range r.pools {
		r.pools[i].close()
	}
	for i := range r.helpers {
		h := &r.helpers[i]
		if h.cmd != nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
			h.cmd = nil
		}
		if h.dir != "" {
			os.RemoveAll(h.dir)
		}
	}
	return nil
}

func (r *Runner) start(i int) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", errors.New("runner closed")
	}
	h := &r.helpers[i]
	if h.cmd != nil || h.err != nil {
		return h.addr, h.err
	}
	h.err = h.start(i == 1)
	return h.addr, h.err
}

func (h *helper) start(loopback bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pipe-sandbox-")
	if err != nil {
		return err
	}
	h.dir = dir
	h.addr = dir + "/helper.sock"
	lf, err := listenUnix(h.addr)
	if err != nil {
		return err
	}
	defer lf.Close()
	// The helper says on this pipe that it is ready (or why not).
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	cmd := exec.Command(self)
	cmd.Args = []string{"pipe-sandbox-helper"}
	if loopback {
		cmd.Args = append(cmd.Args, "loopback")
	}
	cmd.Env = []string{helperMarker + "=" + protocol}
	cmd.ExtraFiles = []*os.File{lf, readyW}
	cmd.SysProcAttr = helperProcAttr(loopback)
	if cmd.SysProcAttr == nil {
		return errors.New("namespaces are a Linux feature")
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return err
	}
	var msg [256]byte
	n, _ := io.ReadFull(readyR, msg[:])
	if n == 0 || msg[0] != '+' {
		cmd.Process.Kill()
		cmd.Wait()
		if n == 0 {
			return errors.New("the sandbox helper ended before it was ready")
		}
		return fmt.Errorf("sandbox helper: %s", msg[:n])
	}
	h.cmd = cmd
	return nil
}

// inHelper is set in a helper: the supervisors it starts need only new
// PID and mount namespaces (see Runner).
var inHelper bool

// helperMarker, in the helper's environment, makes the package's init
// run the helper instead of the program.
const helperMarker = "PIPE_SANDBOX_HELPER"

// A request to a helper is one byte, the kind of supervisor wanted
// ('i' isolated, 'p' PID namespace only); the answer is '+' with the
// connection to a new supervisor and a pidfd of it attached, or '-' and
// why not.

// requestSupervisor asks the helper at addr for a new supervisor.
func requestSupervisor(addr string, isolate bool) (*pooled, error) {
	conn, err := dialUnix(addr)
	if err != nil {
		return nil, fmt.Errorf("reach the sandbox helper: %w", err)
	}
	defer conn.Close()
	kind := []byte{'p'}
	if isolate {
		kind[0] = 'i'
	}
	if _, err := conn.Write(kind); err != nil {
		return nil, fmt.Errorf("ask the sandbox helper for a supervisor: %w", err)
	}
	var msg [512]byte
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, err := recvWithFiles(conn, msg[:1], oob)
	if err != nil {
		return nil, fmt.Errorf("the sandbox helper ended without a supervisor: %w", err)
	}
	files, ferr := receivedFiles(oob[:oobn])
	if msg[0] != '+' || ferr != nil || len(files) != 2 {
		closeAll(files)
		m, _ := io.ReadFull(conn, msg[n:])
		return nil, fmt.Errorf("sandbox helper: %s", msg[1:n+m])
	}
	// The pidfd as a plain descriptor: an *os.File would close it when
	// collected.
	pidfd, err := unix.FcntlInt(files[1].Fd(), unix.F_DUPFD_CLOEXEC, 0)
	files[1].Close()
	if err != nil {
		files[0].Close()
		return nil, fmt.Errorf("keep the supervisor's pidfd: %w", err)
	}
	return &pooled{conn: files[0], pidfd: pidfd}, nil
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

// serveHelper is the helper's whole life: run each request in the
// sandbox until pipe kills it.
func serveHelper() int {
	inHelper = true
	ready := os.NewFile(4, "ready")
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	fail := func(err error) int {
		fmt.Fprintf(ready, "%v", err)
		return 1
	}
	if len(os.Args) > 1 && os.Args[1] == "loopback" {
		if err := loopbackUp(); err != nil {
			return fail(fmt.Errorf("bring up loopback: %w", err))
		}
	}
	ready.Write([]byte("+"))
	ready.Close()
	for {
		// Blocking, on a thread of its own; the connection is pollable.
		fd, _, err := syscall.Accept4(3, syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
		if err == syscall.EINTR || err == syscall.ECONNABORTED {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "pipe sandbox helper: accept: %v\n", err)
			return 1
		}
		go serveOne(os.NewFile(uintptr(fd), "conn"))
	}
}

// serveOne answers one request for a supervisor.
func serveOne(conn *os.File) {
	defer conn.Close()
	var kind [1]byte
	if _, err := io.ReadFull(conn, kind[:]); err != nil {
		return
	}
	fail := func(err error) {
		fmt.Fprintf(conn, "-%v", err)
	}
	cmd, sup, err := startPooled(kind[0] == 'i')
	if err != nil {
		fail(fmt.Errorf("start the supervisor in new namespaces: %w", err))
		return
	}
	defer sup.Close()
	// The helper reaps its supervisors; pipe kills them by pidfd (a
	// supervisor not yet reaped keeps its pid, so this one is right).
	go cmd.Wait()
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		cmd.Process.Kill()
		fail(fmt.Errorf("pidfd of the supervisor: %w", err))
		return
	}
	pf := os.NewFile(uintptr(pidfd), "pidfd")
	defer pf.Close()
	if err := sendWithFiles(conn, []byte{'+'}, sup, pf); err != nil {
		cmd.Process.Kill()
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

// The helper's socket is used through plain descriptors rather than
// package net, which would make pipe-sandbox, a binary of this package
// alone, link the C library (its resolver) and start ~0.5 ms slower.

// listenUnix makes a listening Unix socket at path.
func listenUnix(path string) (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		f.Close()
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		f.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return f, nil
}

// dialUnix connects to the socket at path; the connection is pollable,
// so closing it ends a read in progress.
func dialUnix(path string) (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// sendWithFiles writes b with the descriptors of fs attached.
func sendWithFiles(conn *os.File, b []byte, fs ...*os.File) error {
	var fds []int
	for _, f := range fs {
		fds = append(fds, int(f.Fd()))
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), b, syscall.UnixRights(fds...), nil, 0)
		return serr != syscall.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

// recvWithFiles reads into b and oob, where descriptors arrive.
func recvWithFiles(conn *os.File, b, oob []byte) (n, oobn int, err error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), b, oob, syscall.MSG_CMSG_CLOEXEC)
		return rerr != syscall.EAGAIN
	})
	if err != nil {
		return 0, 0, err
	}
	if rerr == nil && n == 0 {
		rerr = io.EOF
	}
	return n, oobn, rerr
}
