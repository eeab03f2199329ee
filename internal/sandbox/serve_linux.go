package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The supervisor's side of reuse (pool_linux.go): make the namespaces
// once, then for each command make its mounts, run it, report, and undo
// the mounts.

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
	// Reads and Writes (confine_linux.go), taken while visible.
	extra, err := cloneExtra(spec)
	if err != nil {
		return undo, err
	}
	defer closeExtra(extra)
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
	// Their mount points are made while the tmpfs mounts are writable.
	if err := moveExtra(extra, func(p string) { mounted = append(mounted, p) }); err != nil {
		return undo, err
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
