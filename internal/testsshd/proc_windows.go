//go:build windows

package testsshd

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

func kill(int, syscall.Signal) error { return syscall.EWINDOWS }
