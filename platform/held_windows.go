package platform

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"
)

// Windows refuses to rename a file over one that another process holds
// open without FILE_SHARE_DELETE (many daemons open their certificate and
// key that way), and no retry on this side can change that: the holder has
// to close it. Measured under Wine 8, a rename over a file held open with
// share mode FILE_SHARE_READ only (or READ|WRITE, as Go's os.Open does)
// fails with ERROR_ACCESS_DENIED (5), and a remove of it with
// ERROR_SHARING_VIOLATION (32); Wine refuses the rename even when the
// holder shares delete. Real Windows answers ERROR_ACCESS_DENIED or
// ERROR_SHARING_VIOLATION, and lets the rename through when the holder
// shares delete (os.Root.Rename asks for POSIX semantics).

const (
	errorSharingViolation syscall.Errno = 32
	errorLockViolation    syscall.Errno = 33
)

// RenameBusy reports whether err, from a rename over an existing file,
// may mean that another process holds the target open: worth retrying
// while it closes it.
func RenameBusy(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno == syscall.ERROR_ACCESS_DENIED || errno == errorSharingViolation || errno == errorLockViolation
}

// HeldOpen reports whether another process holds path open without
// sharing delete: opening it for DELETE, sharing everything, then fails
// with a sharing violation.
func HeldOpen(path string) bool {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return false
	}
	const deleteAccess = 0x00010000
	h, err := syscall.CreateFile(p, deleteAccess, syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_FLAG_BACKUP_SEMANTICS|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return errors.Is(err, errorSharingViolation)
	}
	syscall.CloseHandle(h)
	return false
}

var (
	rstrtmgr                = syscall.NewLazyDLL("rstrtmgr.dll")
	procRmStartSession      = rstrtmgr.NewProc("RmStartSession")
	procRmRegisterResources = rstrtmgr.NewProc("RmRegisterResources")
	procRmGetList           = rstrtmgr.NewProc("RmGetList")
	procRmEndSession        = rstrtmgr.NewProc("RmEndSession")
)

// rmProcessInfo is RM_PROCESS_INFO.
type rmProcessInfo struct {
	PID              uint32
	StartTime        syscall.Filetime
	AppName          [256]uint16 // CCH_RM_MAX_APP_NAME+1
	ServiceShortName [64]uint16  // CCH_RM_MAX_SVC_NAME+1
	AppType          uint32
	AppStatus        uint32
	TSSessionID      uint32
	Restartable      int32
}

// Holders names the processes that hold path open, as Windows' Restart
// Manager knows them ("nginx.exe (pid 4242, service nginx)"); nil when it
// cannot say (Wine 8's Restart Manager always answers an empty list).
func Holders(path string) []string {
	if procRmStartSession.Find() != nil {
		return nil
	}
	var session uint32
	var key [33]uint16 // CCH_RM_SESSION_KEY+1
	if r, _, _ := procRmStartSession.Call(uintptr(unsafe.Pointer(&session)), 0, uintptr(unsafe.Pointer(&key[0]))); r != 0 {
		return nil
	}
	defer procRmEndSession.Call(uintptr(session))
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil
	}
	files := []*uint16{p}
	if r, _, _ := procRmRegisterResources.Call(uintptr(session), 1, uintptr(unsafe.Pointer(&files[0])), 0, 0, 0, 0); r != 0 {
		return nil
	}
	infos := make([]rmProcessInfo, 8)
	var needed, reasons uint32
	n := uint32(len(infos))
	if r, _, _ := procRmGetList.Call(uintptr(session), uintptr(unsafe.Pointer(&needed)), uintptr(unsafe.Pointer(&n)),
		uintptr(unsafe.Pointer(&infos[0])), uintptr(unsafe.Pointer(&reasons))); r != 0 || n > uint32(len(infos)) {
		return nil
	}
	var out []string
	for _, i := range infos[:n] {
		s := fmt.Sprintf("%s (pid %d", syscall.UTF16ToString(i.AppName[:]), i.PID)
		if svc := syscall.UTF16ToString(i.ServiceShortName[:]); svc != "" {
			s += ", service " + svc
		}
		out = append(out, s+")")
	}
	return out
}
