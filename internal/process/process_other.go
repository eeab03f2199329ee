//go:build !linux

package process

import "syscall"

// GroupAttr puts a child in a process group of its own, so cancelling
// kills everything it started. Only Linux can have the kernel kill a child
// when its parent dies; elsewhere a kill -9 of pipe leaves it running.
func GroupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
