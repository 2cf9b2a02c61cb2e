package demo

import "syscall"

// procAttr puts a child in its own process group and has the kernel send
// it SIGTERM if the demo dies without stopping it (kill -9).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
