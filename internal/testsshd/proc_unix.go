//go:build unix

package testsshd

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func kill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
