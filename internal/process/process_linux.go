package process

import "syscall"

// GroupAttr puts a child in a process group of its own, so cancelling
// kills everything it started, and has the kernel kill it when pipe dies
// (kill -9 included), so no command outlives the build that ran it.
func GroupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
