package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The supervisor gets the spec on this descriptor and reports the result
// on the next (Run's ExtraFiles).
const (
	specFD   = 3
	resultFD = 4
)

func init() {
	if os.Getenv(helperMarker) == protocol {
		os.Exit(serveHelper())
	}
	if os.Getenv(envMarker) != protocol {
		return
	}
	// Package initialisation runs on the main thread, locked to it; the
	// privileges dropped below belong to this thread, and the command is
	// started from it, so it stays locked.
	runtime.LockOSThread()
	if kind := os.Getenv(serveMarker); kind != "" {
		os.Exit(servePooled(kind == "isolate"))
	}
	os.Exit(supervise())
}

const supported = true

func sysProcAttr(spec Spec) *syscall.SysProcAttr {
	if inHelper {
		// The helper's user namespace (with its capabilities, inherited
		// as ambient ones) and network namespace serve every command:
		// without CLONE_NEWUSER the fork is a vfork.
		return &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
			Pdeathsig:  syscall.SIGKILL,
		}
	}
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS)
	if spec.Isolate && !spec.Network {
		flags |= syscall.CLONE_NEWNET
	}
	// If pipe dies, so does the supervisor, and with it (the PID
	// namespace's init) every process of the command.
	return userNamespaceAttr(flags)
}

// userNamespaceAttr starts a process in a new user namespace (and the
// other namespaces flags names) as the user who runs pipe, so files it
// writes are the user's, holding the capabilities a supervisor needs to
// build the mounts and bring up loopback when the user is not root inside
// the namespace. Ambient capabilities survive execve, so a helper's
// supervisors inherit them; a supervisor drops every capability before it
// starts the command. The process dies with its parent.
func userNamespaceAttr(flags uintptr) *syscall.SysProcAttr {
	uid, gid := os.Getuid(), os.Getgid()
	return &syscall.SysProcAttr{
		Cloneflags:                 flags,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		AmbientCaps:                []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETPCAP},
		Pdeathsig:                  syscall.SIGKILL,
	}
}

// helperProcAttr starts a helper (see Runner) in a user namespace of its
// own, and with loopback a network namespace with only loopback.
func helperProcAttr(loopback bool) *syscall.SysProcAttr {
	flags := uintptr(syscall.CLONE_NEWUSER)
	if loopback {
		flags |= syscall.CLONE_NEWNET
	}
	attr := userNamespaceAttr(flags)
	attr.Setpgid = true
	return attr
}

// supervise is the supervisor's whole life: read the spec, build the
// sandbox, run the command, reap every process, report.
func supervise() int {
	syscall.CloseOnExec(specFD)
	syscall.CloseOnExec(resultFD)
	out := os.NewFile(resultFD, "result")
	report := func(r result) int {
		json.NewEncoder(out).Encode(r)
		return 0
	}
	var spec Spec
	if err := json.NewDecoder(os.NewFile(specFD, "spec")).Decode(&spec); err != nil {
		return report(result{Setup: fmt.Sprintf("read the command: %v", err)})
	}
	if err := setup(spec); err != nil {
		return report(result{Setup: err.Error()})
	}
	if err := dropPrivileges(); err != nil {
		return report(result{Setup: err.Error()})
	}
	forwardSignals()
	// As the namespace's init, the supervisor is the parent of every
	// orphan: runCommand reaps them all, and once the command exits
	// kills and reaps whatever it left running. Its output is let go of
	// before reporting: the result then means that nothing of the
	// command runs any more, and pipe need not wait for the supervisor's
	// own exit, whose teardown of the namespaces waits for the kernel (an
	// RCU grace period, milliseconds).
	res := runCommand(spec, os.Stdout, os.Stderr)
	os.Stdout.Close()
	os.Stderr.Close()
	return report(res)
}

// forwardSignals passes the signals that stop a program on to every
// process of the command.
func forwardSignals() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		// pid -1 from the namespace's init: every other process in it.
		for s := range sigs {
			syscall.Kill(-1, s.(syscall.Signal))
		}
	}()
}

// setup builds the mounts (and network) the command sees.
func setup(spec Spec) error {
	// Nothing done here may reach the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if spec.Isolate {
		if err := isolate(spec); err != nil {
			return err
		}
	}
	// A /proc of the new PID namespace: the command's processes only,
	// so nothing of pipe (its environment) is in reach.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if spec.Isolate && !spec.Network {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring up loopback: %w", err)
		}
	}
	return nil
}

func isolate(spec Spec) error {
	if spec.Scratch == "" || spec.Hide == "" {
		return errors.New("an isolated command needs a scratch directory and a directory to hide")
	}
	// The inputs first, while their sources are visible: each is bound
	// onto an empty file or directory at its place in the scratch
	// directory, and comes along when the scratch directory is bound
	// into the hidden workspace below.
	for _, m := range spec.Inputs {
		if err := mountPoint(m.Dst, m.Dir); err != nil {
			return fmt.Errorf("input %s: %w", m.Src, err)
		}
		if err := unix.Mount(m.Src, m.Dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind input %s: %w", m.Src, err)
		}
	}
	scratch, err := unix.Open(spec.Scratch, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the scratch directory: %w", err)
	}
	defer unix.Close(scratch)
	// Reads and Writes (confine_linux.go), opened while visible.
	extra, err := openExtra(spec)
	if err != nil {
		return err
	}
	defer closeExtra(extra)
	// The whole file system read-only, inputs included.
	if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make the file system read-only: %w", err)
	}
	// A private, writable /tmp and /dev/shm.
	for _, d := range []string{"/tmp", "/dev/shm"} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("mount a private %s: %w", d, err)
		}
	}
	// The workspace: an empty directory but for the scratch directory.
	// (When it lies under /tmp it is already gone, and made again in the
	// private /tmp.)
	if err := os.MkdirAll(spec.Hide, 0o755); err != nil {
		return fmt.Errorf("hide %s: %w", spec.Hide, err)
	}
	if err := unix.Mount("tmpfs", spec.Hide, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("hide %s: %w", spec.Hide, err)
	}
	if err := os.MkdirAll(spec.Scratch, 0o755); err != nil {
		return fmt.Errorf("make the scratch directory's place: %w", err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", scratch), spec.Scratch, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the scratch directory: %w", err)
	}
	// The scratch directory writable, its inputs (mounts of their own)
	// still read-only; the rest of the hidden workspace read-only.
	if err := unix.MountSetattr(-1, spec.Scratch, 0, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make the scratch directory writable: %w", err)
	}
	if err := mountExtra(extra); err != nil {
		return err
	}
	if spec.Hide != spec.Scratch {
		if err := unix.MountSetattr(-1, spec.Hide, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make %s read-only: %w", spec.Hide, err)
		}
	}
	return nil
}

// mountPoint makes an empty file or directory to bind an input onto.
func mountPoint(p string, dir bool) error {
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// loopbackUp brings up lo, the only interface of a new network
// namespace, so servers the command starts on 127.0.0.1 work.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil // the helper's network namespace: up already
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// limitExec makes every program this thread starts get no capabilities
// from its execve (root or not, file capabilities or not) while the
// thread keeps those it holds: no_new_privs, SECBIT_NOROOT (locked), no
// ambient capabilities and an empty bounding set.
func limitExec() error {
	const (
		secbitNoroot                = 1 << 0
		secbitNorootLocked          = 1 << 1
		secbitNoCapAmbientRaise     = 1 << 6
		secbitNoCapAmbientRaiseLock = 1 << 7
	)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	// Root inside the namespace (pipe run by root) gets no capabilities
	// from execve.
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secbitNoroot|secbitNorootLocked|secbitNoCapAmbientRaise|secbitNoCapAmbientRaiseLock, 0, 0, 0); err != nil {
		return fmt.Errorf("set securebits: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	// The inheritable set too: a program with inheritable file
	// capabilities would otherwise get those of them this thread holds.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear the inheritable capabilities: %w", err)
	}
	return nil
}

// dropPrivileges leaves this thread, and so the command started from it,
// without capabilities and unable to gain any: a command with
// CAP_SYS_ADMIN in the namespace could unmount the read-only inputs or
// the hidden workspace.
func dropPrivileges() error {
	if err := limitExec(); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}

// lookPath finds argv0 on the PATH of the command's own environment.
func lookPath(argv0 string, env []string, dir string) (string, error) {
	if strings.Contains(argv0, "/") {
		if !filepath.IsAbs(argv0) {
			argv0 = filepath.Join(dir, argv0)
		}
		return argv0, nil
	}
	var path string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, argv0)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH=%s", argv0, path)
}
