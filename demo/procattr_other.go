//go:build unix && !linux

package demo

import "syscall"

// procAttr puts a child in its own process group, so that a Ctrl-C on the
// terminal reaches the demo alone, which stops its children in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
