package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"
)

// A Runner keeps the supervisors its helpers started once their command
// is done, and gives each the next command of the same kind (isolated or
// not): a supervisor's start (a Go program's start-up, the fork and exec,
// new PID and mount namespaces, the read-only remount of every mount and
// a new /proc) then happens a few times per build and job slot instead
// of once per command. What belongs to one command is made before it and undone
// after it, all inside the supervisor's namespaces: the private /tmp and
// /dev/shm are new tmpfs mounts each time, and the hidden workspace (with
// the scratch directory and the inputs under it) is a tmpfs mounted for
// the command; every process the command left is killed and reaped
// before the result is sent, and the mounts are detached right after it,
// before the supervisor is given another command. A supervisor that fails
// to make or undo any of this, or whose command is cancelled, is not used
// again.
//
// The supervisor keeps its capabilities for the mounts, but the command
// gets none: before the first command the supervisor's thread clears its
// ambient, bounding and inheritable sets and sets no_new_privs and
// SECBIT_NOROOT (locked), so the command's execve yields empty capability
// sets, root or not, file capabilities or not. Holding more capabilities
// than the command, the supervisor cannot be traced or read through /proc
// by it.

// serveMarker, in the supervisor's environment, starts it as a pooled
// supervisor reading commands from descriptor 3; its value, "isolate" or
// "pid", is the kind of command it serves. (The environment, not the
// arguments: /proc/1/cmdline, which the command can read, stays the
// supervisor's path alone.)
const serveMarker = "PIPE_SANDBOX_SERVE"

// pool is the supervisors of a helper, by Spec.Isolate: idle ones, and
// how many are running a command (busy), undoing one's mounts (pending)
// and alive in all. A command without an idle supervisor starts another
// one while there are fewer than two per busy one, and otherwise waits
// for a pending one: so that undoing mounts, which waits for the kernel
// (an RCU grace period, long on a loaded machine), is not on the way of
// the next command, while the supervisors stay few.
type pool struct {
	mu      sync.Mutex
	changed *sync.Cond
	idle    [2][]*pooled
	busy    [2]int
	pending [2]int
	live    [2]int
}

// pooled is a supervisor a helper started for pipe: pipe's end of its
// connection, and a pidfd to kill it by (it is the helper's child).
type pooled struct {
	conn *os.File
	mu   sync.Mutex // guards pidfd, which a cancellation may use while stop closes it
	// pidfd is -1 once stopped.
	pidfd int
}

// kill kills the supervisor and with it whatever runs in its namespaces.
func (s *pooled) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd >= 0 {
		unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
	}
}

// stop kills the supervisor and lets go of it.
func (s *pooled) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pidfd < 0 {
		return
	}
	unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
	unix.Close(s.pidfd)
	s.pidfd = -1
	s.conn.Close()
}

func isolateIndex(isolate bool) int {
	if isolate {
		return 1
	}
	return 0
}

// reply is a pooled supervisor's answer to one command.
type reply struct {
	result
	// Retire says the supervisor exits after this reply: its namespaces
	// could not be made or restored.
	Retire bool `json:"retire,omitempty"`
}

// run runs spec in an idle supervisor of the right kind, or one start
// gives; sent is called once the supervisor holds stdout and stderr.
func (p *pool) run(ctx context.Context, spec Spec, stdout, stderr *os.File, sent func(), start func(isolate bool) (*pooled, error)) error {
	body, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(body)))
	i := isolateIndex(spec.Isolate)
	var s *pooled
	for {
		var fresh bool
		if s, fresh, err = p.get(spec.Isolate, start); err != nil {
			return &noSupervisorError{err}
		}
		if err = sendWithFiles(s.conn, hdr[:], stdout, stderr); err == nil {
			_, err = s.conn.Write(body)
		}
		if err == nil {
			break
		}
		p.mu.Lock()
		p.busy[i]--
		p.live[i]--
		s.stop()
		p.cond().Broadcast()
		p.mu.Unlock()
		// An idle supervisor that cannot take the command is gone (its
		// helper died): the command never started, try another. One just
		// started that cannot is broken (a pipe-sandbox of another
		// version?): trying again would start the same.
		if fresh {
			return &SetupError{Msg: fmt.Sprintf("send the command to a new supervisor: %v (is %s next to pipe of the same version?)", err, SupervisorName)}
		}
	}
	sent()
	// Cancelling kills the supervisor, the PID namespace's init, and so
	// every process of the command; it is not used again.
	stop := context.AfterFunc(ctx, s.kill)
	var rep reply
	rerr := readMessage(s.conn, &rep)
	cancelled := !stop()
	p.mu.Lock()
	p.busy[i]--
	if cancelled || rerr != nil || rep.Retire {
		p.live[i]--
		s.stop()
	} else {
		p.pending[i]++
		go p.whenReady(spec.Isolate, s)
	}
	p.cond().Broadcast()
	p.mu.Unlock()
	if cancelled {
		return ctx.Err()
	}
	if rerr != nil {
		return &SetupError{Msg: fmt.Sprintf("the supervisor ended without a result (%v)", rerr)}
	}
	return rep.result.err(spec)
}

// get gives an idle supervisor, or one start gives (fresh).
func (p *pool) get(isolate bool, start func(isolate bool) (*pooled, error)) (_ *pooled, fresh bool, _ error) {
	i := isolateIndex(isolate)
	p.mu.Lock()
	p.busy[i]++
	for len(p.idle[i]) == 0 && p.pending[i] > 0 && p.live[i] >= 2*p.busy[i] {
		p.cond().Wait()
	}
	if n := len(p.idle[i]); n > 0 {
		s := p.idle[i][n-1]
		p.idle[i] = p.idle[i][:n-1]
		p.mu.Unlock()
		return s, false, nil
	}
	p.live[i]++
	p.mu.Unlock()
	s, err := start(isolate)
	if err != nil {
		p.mu.Lock()
		p.busy[i]--
		p.live[i]--
		p.cond().Broadcast()
		p.mu.Unlock()
	}
	return s, true, err
}

// close stops the idle supervisors.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.idle {
		for _, s := range p.idle[i] {
			s.stop()
		}
		p.live[i] -= len(p.idle[i])
		p.idle[i] = nil
	}
}

// noSupervisorError is a command that never reached a supervisor: none
// could be had from the helper.
type noSupervisorError struct{ err error }

func (e *noSupervisorError) Error() string {
	return fmt.Sprintf("sandbox: start the supervisor in new namespaces: %v", e.err)
}

// whenReady waits for the supervisor to have undone its last command's
// mounts, which it does after reporting the result (the unmounts wait for
// an RCU grace period: a command's result need not), and keeps it for the
// next command.
func (p *pool) whenReady(isolate bool, s *pooled) {
	var ready reply
	err := readMessage(s.conn, &ready)
	i := isolateIndex(isolate)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending[i]--
	if err != nil || ready.Retire {
		p.live[i]--
		s.stop()
	} else {
		p.idle[i] = append(p.idle[i], s)
	}
	p.cond().Broadcast()
}

// cond is the condition of changes to idle and pending; p.mu is held.
func (p *pool) cond() *sync.Cond {
	if p.changed == nil {
		p.changed = sync.NewCond(&p.mu)
	}
	return p.changed
}

// startPooled starts a supervisor (in a helper) and returns its process
// and the other end of its connection.
func startPooled(isolate bool) (*exec.Cmd, *os.File, error) {
	self, err := supervisorPath()
	if err != nil {
		return nil, nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	theirs := os.NewFile(uintptr(fds[1]), "supervisor")
	defer theirs.Close()
	// Non-blocking (pipe gets the same open file), so the Go runtime
	// polls it and a kill of the supervisor ends a read in progress.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, nil, err
	}
	conn := os.NewFile(uintptr(fds[0]), "supervisor")
	cmd := exec.Command(self)
	cmd.Args = []string{self}
	kind := "pid"
	if isolate {
		kind = "isolate"
	}
	// Nothing of pipe's environment: only the markers.
	cmd.Env = []string{envMarker + "=" + protocol, serveMarker + "=" + kind, "GOMAXPROCS=1"}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = sysProcAttr(Spec{Isolate: isolate})
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return cmd, conn, nil
}

// readMessage reads a length-prefixed JSON message.
func readMessage(r io.Reader, v any) error {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	body, err := readBody(r, binary.LittleEndian.Uint64(hdr[:]))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// maxMessage bounds a request or reply: a spec of tens of thousands of
// inputs is a few megabytes.
const maxMessage = 64 << 20

// readBody reads the n bytes of a message, growing its buffer as the
// bytes arrive rather than trusting n for an allocation.
func readBody(r io.Reader, n uint64) ([]byte, error) {
	if n > maxMessage {
		return nil, fmt.Errorf("a message of %d bytes, more than %d", n, maxMessage)
	}
	body, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	if uint64(len(body)) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return body, nil
}

// writeMessage writes v as a length-prefixed JSON message.
func writeMessage(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 8, 8+len(body))
	binary.LittleEndian.PutUint64(buf, uint64(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}
