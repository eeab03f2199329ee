//go:build !linux

package sandbox

import "syscall"

const supported = false

func sysProcAttr(Spec) *syscall.SysProcAttr { return nil }
