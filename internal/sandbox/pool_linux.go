package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

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
		if s, err = p.get(spec.Isolate, start); err != nil {
			return &noSupervisorError{err}
		}
		// An idle supervisor that cannot take the command is gone (its
		// helper died): the command never started, try another.
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

func (p *pool) get(isolate bool, start func(isolate bool) (*pooled, error)) (*pooled, error) {
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
		return s, nil
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
	return s, err
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

// servePooled is a pooled supervisor's whole life: make the namespaces
// once, then run the commands pipe sends until it goes away.
func servePooled(isolate bool) int {
	// Long-lived: collect garbage (the one-shot supervisor does not).
	debug.SetGCPercent(100)
	syscall.CloseOnExec(specFD)
	conn := os.NewFile(specFD, "pipe")
	baseErr := poolBase(isolate)
	forwardSignals()
	for {
		spec, files, err := readRequest(conn)
		if err != nil {
			return 0 // pipe is gone, or let go of this supervisor
		}
		var rep reply
		undo := func() error { return nil }
		switch {
		case baseErr != nil:
			rep = reply{result: result{Setup: baseErr.Error()}, Retire: true}
		case len(files) != 2:
			rep = reply{result: result{Setup: "the supervisor got no output descriptors"}, Retire: true}
		case spec.Isolate != isolate:
			rep = reply{result: result{Setup: "a command of the wrong kind for this supervisor"}, Retire: true}
		default:
			rep, undo = runPooled(spec, files[0], files[1])
		}
		closeAll(files)
		if err := writeMessage(conn, rep); err != nil || rep.Retire {
			return 0
		}
		// Ready for the next command once the namespaces are as they were.
		uerr := undo()
		if err := writeMessage(conn, reply{Retire: uerr != nil}); err != nil || uerr != nil {
			return 0
		}
	}
}

// poolBase makes what every command of a pooled supervisor shares: the
// mounts private, everything read-only (isolated), a /proc of the PID
// namespace, and the limits on what the commands' execve may gain.
func poolBase(isolate bool) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if isolate {
		if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make the file system read-only: %w", err)
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := loopbackUp(); err != nil && isolate {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return limitExec()
}

// readRequest reads one command: the header with the output descriptors
// attached, then the spec.
func readRequest(conn *os.File) (Spec, []*os.File, error) {
	fd := int(conn.Fd())
	var spec Spec
	var hdr [8]byte
	oob := make([]byte, syscall.CmsgSpace(2*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = syscall.Recvmsg(fd, hdr[:], oob, syscall.MSG_CMSG_CLOEXEC)
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		return spec, nil, err
	}
	files, err := receivedFiles(oob[:oobn])
	if err != nil {
		closeAll(files)
		return spec, nil, err
	}
	if _, err := io.ReadFull(conn, hdr[n:]); err != nil {
		closeAll(files)
		return spec, nil, err
	}
	body, err := readBody(conn, binary.LittleEndian.Uint64(hdr[:]))
	if err != nil {
		closeAll(files)
		return spec, nil, err
	}
	if err := json.Unmarshal(body, &spec); err != nil {
		closeAll(files)
		return spec, nil, err
	}
	return spec, files, nil
}

// runPooled runs one command in the pooled supervisor's namespaces;
// undo leaves them as they were before it.
func runPooled(spec Spec, stdout, stderr *os.File) (_ reply, undo func() error) {
	undo = func() error { return nil }
	if spec.Isolate {
		var err error
		undo, err = mountCommand(spec)
		if err != nil {
			undo()
			return reply{result: result{Setup: err.Error()}, Retire: true}, undo
		}
	}
	return reply{result: runCommand(spec, stdout, stderr)}, undo
}

// runCommand starts the command, waits for it, then kills and reaps
// whatever it left running.
func runCommand(spec Spec, stdout, stderr *os.File) result {
	if len(spec.Argv) == 0 {
		return result{} // a probe
	}
	prog, err := lookPath(spec.Argv[0], spec.Env, spec.Dir)
	if err != nil {
		return result{Start: err.Error()}
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return result{Start: err.Error()}
	}
	// syscall.ForkExec rather than os.StartProcess: the latter checks
	// once per process, with a fork of its own, that pidfds work.
	pid, err := syscall.ForkExec(prog, spec.Argv, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{devNull.Fd(), stdout.Fd(), stderr.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	devNull.Close()
	if err != nil {
		return result{Start: err.Error()}
	}
	var res result
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			res = result{Start: fmt.Sprintf("wait: %v", err)}
			break
		}
		if wpid != pid {
			continue
		}
		res = result{Code: ws.ExitStatus()}
		if ws.Signaled() {
			res = result{Code: -1, Signal: int(ws.Signal())}
		}
		break
	}
	killAll()
	return res
}

// killAll kills and reaps every process in the PID namespace but the
// supervisor.
func killAll() {
	syscall.Kill(-1, syscall.SIGKILL)
	for {
		_, err := unix.Wait4(-1, nil, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return // ECHILD: none left
		}
	}
}

// mountCommand makes the mounts of one isolated command on top of
// poolBase's read-only file system, and returns how to undo them: a
// private /tmp and /dev/shm, the workspace hidden by a read-only tmpfs
// holding only the scratch directory (writable) and the inputs
// (read-only) at their places in it.
func mountCommand(spec Spec) (undo func() error, err error) {
	var mounted []string
	undo = func() error {
		var first error
		for i := len(mounted) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounted[i], unix.MNT_DETACH); err != nil && first == nil {
				first = fmt.Errorf("unmount %s: %w", mounted[i], err)
			}
		}
		mounted = nil
		return first
	}
	if spec.Scratch == "" || spec.Hide == "" {
		return undo, errors.New("an isolated command needs a scratch directory and a directory to hide")
	}
	// Detached copies of the scratch directory and the inputs, taken
	// while they are visible: the tmpfs mounts below hide them.
	scratch, err := unix.OpenTree(unix.AT_FDCWD, spec.Scratch, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return undo, fmt.Errorf("open the scratch directory: %w", err)
	}
	defer unix.Close(scratch)
	if err := unix.MountSetattr(scratch, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return undo, fmt.Errorf("make the scratch directory writable: %w", err)
	}
	inputs := make([]int, 0, len(spec.Inputs))
	defer func() {
		for _, fd := range inputs {
			unix.Close(fd)
		}
	}()
	for _, m := range spec.Inputs {
		fd, err := unix.OpenTree(unix.AT_FDCWD, m.Src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return undo, fmt.Errorf("bind input %s: %w", m.Src, err)
		}
		inputs = append(inputs, fd)
		// Read-only already (poolBase), and said again for each input:
		// it is the guarantee that matters most.
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return undo, fmt.Errorf("make input %s read-only: %w", m.Src, err)
		}
	}
	for _, d := range []string{"/tmp", "/dev/shm"} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return undo, fmt.Errorf("mount a private %s: %w", d, err)
		}
		mounted = append(mounted, d)
	}
	// (When the workspace lies under /tmp it is already gone, and made
	// again in the private /tmp.)
	if err := os.MkdirAll(spec.Hide, 0o755); err != nil {
		return undo, fmt.Errorf("hide %s: %w", spec.Hide, err)
	}
	if err := unix.Mount("tmpfs", spec.Hide, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return undo, fmt.Errorf("hide %s: %w", spec.Hide, err)
	}
	mounted = append(mounted, spec.Hide)
	if err := os.MkdirAll(spec.Scratch, 0o755); err != nil {
		return undo, fmt.Errorf("make the scratch directory's place: %w", err)
	}
	if err := unix.MoveMount(scratch, "", unix.AT_FDCWD, spec.Scratch, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return undo, fmt.Errorf("bind the scratch directory: %w", err)
	}
	if filepath.Clean(spec.Hide) == filepath.Clean(spec.Scratch) {
		// Mounted on top of the tmpfs, not inside it: a detach of the
		// path takes only the top one.
		mounted = append(mounted, spec.Scratch)
	}
	// The inputs' mount points are made through the writable scratch
	// directory, in the directory pipe made for the command, by paths
	// relative to it: most inputs share a few directories, which are
	// then made (or found) once, and no path is walked from the root.
	points, err := newMountPoints(spec.Scratch)
	if err != nil {
		return undo, err
	}
	defer points.close()
	for i, m := range spec.Inputs {
		dir, rel, err := points.make(m.Dst, m.Dir)
		if err != nil {
			return undo, fmt.Errorf("input %s: %w", m.Src, err)
		}
		if err := unix.MoveMount(inputs[i], "", dir, rel, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return undo, fmt.Errorf("bind input %s: %w", m.Src, err)
		}
	}
	if filepath.Clean(spec.Hide) != filepath.Clean(spec.Scratch) {
		if err := unix.MountSetattr(-1, spec.Hide, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return undo, fmt.Errorf("make %s read-only: %w", spec.Hide, err)
		}
	}
	return undo, nil
}

// mountPoints makes the empty files and directories inputs are mounted
// on, inside the scratch directory.
type mountPoints struct {
	scratch string
	fd      int
	made    map[string]bool // directories known to exist, relative
}

func newMountPoints(scratch string) (*mountPoints, error) {
	fd, err := unix.Open(scratch, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the scratch directory: %w", err)
	}
	return &mountPoints{scratch: scratch, fd: fd, made: map[string]bool{".": true}}, nil
}

func (mp *mountPoints) close() { unix.Close(mp.fd) }

// make makes the mount point dst and returns it as a directory
// descriptor and a path relative to it. A dst outside the scratch
// directory is made by its absolute path.
func (mp *mountPoints) make(dst string, dir bool) (int, string, error) {
	rel, err := filepath.Rel(mp.scratch, dst)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return unix.AT_FDCWD, dst, mountPoint(dst, dir)
	}
	if dir {
		return mp.fd, rel, mp.mkdirAll(rel)
	}
	if err := mp.mkdirAll(filepath.Dir(rel)); err != nil {
		return 0, "", err
	}
	fd, err := unix.Openat(mp.fd, rel, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return 0, "", err
	}
	return mp.fd, rel, unix.Close(fd)
}

func (mp *mountPoints) mkdirAll(rel string) error {
	if mp.made[rel] {
		return nil
	}
	err := unix.Mkdirat(mp.fd, rel, 0o755)
	if errors.Is(err, unix.ENOENT) {
		if err = mp.mkdirAll(filepath.Dir(rel)); err == nil {
			err = unix.Mkdirat(mp.fd, rel, 0o755)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	mp.made[rel] = true
	return nil
}
