//go:build !linux

package sandbox

import "syscall"

const supported = false

func sysProcAttr(Spec) *syscall.SysProcAttr { return nil }

func helperProcAttr(bool) *syscall.SysProcAttr { return nil }

func loopbackUp() error { return nil }
