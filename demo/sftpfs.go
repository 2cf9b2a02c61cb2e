//go:build unix

package demo

import (
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
)

// rootedFS serves one directory over SFTP the way sshd's ChrootDirectory
// with internal-sftp does: every path resolves inside it (an os.Root
// refuses "..", absolute links and links that lead out), optionally
// read-only (internal-sftp -R), and optionally shown under a prefix
// ("nodes/node2", where `certkeeper sshd-config --sync` puts a node's
// bundle in its chroot) with nothing else visible.
type rootedFS struct {
	root     *os.Root
	prefix   string
	readOnly bool
}

// mapPath turns a client's path (the SFTP server makes it absolute and
// clean) into a path inside the served directory, or reports that it lies
// outside the prefix. The result is "." or a relative path without "..".
func mapPath(prefix, p string) (string, bool) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	switch {
	case prefix == "" && rel == "":
		return ".", true
	case prefix == "":
		return rel, true
	case rel == prefix:
		return ".", true
	case strings.HasPrefix(rel, prefix+"/"):
		return rel[len(prefix)+1:], true
	}
	return "", false
}

func (f *rootedFS) resolve(r *sftp.Request) (string, error) {
	rel, ok := mapPath(f.prefix, r.Filepath)
	if !ok {
		return "", &fs.PathError{Op: strings.ToLower(r.Method), Path: r.Filepath, Err: fs.ErrNotExist}
	}
	return rel, nil
}

func (f *rootedFS) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: f, FilePut: f, FileCmd: f, FileList: f}
}

// Fileread opens a file to read.
func (f *rootedFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	rel, err := f.resolve(r)
	if err != nil {
		return nil, err
	}
	file, err := f.root.Open(rel)
	if err != nil {
		return nil, err
	}
	if fi, err := file.Stat(); err != nil || fi.IsDir() {
		file.Close()
		return nil, sftp.ErrSSHFxFailure
	}
	return file, nil
}

// Filewrite opens a file to write. A file it creates is 0600 from the
// start, whatever the client asks, until the client sets its mode.
func (f *rootedFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return f.open(r, os.O_WRONLY)
}

// OpenFile opens a file to read and write.
func (f *rootedFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return f.open(r, os.O_RDWR)
}

func (f *rootedFS) open(r *sftp.Request, mode int) (*os.File, error) {
	if f.readOnly {
		return nil, sftp.ErrSSHFxPermissionDenied
	}
	rel, err := f.resolve(r)
	if err != nil {
		return nil, err
	}
	fl := r.Pflags()
	if fl.Creat {
		mode |= os.O_CREATE
	}
	if fl.Trunc {
		mode |= os.O_TRUNC
	}
	if fl.Excl {
		mode |= os.O_EXCL
	}
	return f.root.OpenFile(rel, mode, 0o600)
}

// Filecmd changes the tree: set a mode, rename, remove, make a directory.
func (f *rootedFS) Filecmd(r *sftp.Request) error {
	if f.readOnly {
		return sftp.ErrSSHFxPermissionDenied
	}
	rel, err := f.resolve(r)
	if err != nil {
		return err
	}
	switch r.Method {
	case "Setstat":
		fl := r.AttrFlags()
		if fl.Size || fl.UidGid || fl.Acmodtime {
			return sftp.ErrSSHFxOpUnsupported
		}
		if fl.Permissions {
			return f.root.Chmod(rel, r.Attributes().FileMode().Perm())
		}
		return nil
	case "Rename":
		// SFTP's own rename never replaces; posix-rename does.
		to, err := f.target(r)
		if err != nil {
			return err
		}
		if _, err := f.root.Lstat(to); err == nil {
			return fs.ErrExist
		}
		return f.root.Rename(rel, to)
	case "Remove", "Rmdir":
		fi, err := f.root.Lstat(rel)
		if err != nil {
			return err
		}
		if fi.IsDir() != (r.Method == "Rmdir") {
			return sftp.ErrSSHFxFailure
		}
		return f.root.Remove(rel)
	case "Mkdir":
		return f.root.Mkdir(rel, 0o700)
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename replaces the target atomically (posix-rename@openssh.com,
// which `certkeeper push` needs).
func (f *rootedFS) PosixRename(r *sftp.Request) error {
	if f.readOnly {
		return sftp.ErrSSHFxPermissionDenied
	}
	rel, err := f.resolve(r)
	if err != nil {
		return err
	}
	to, err := f.target(r)
	if err != nil {
		return err
	}
	return f.root.Rename(rel, to)
}

func (f *rootedFS) target(r *sftp.Request) (string, error) {
	to, ok := mapPath(f.prefix, r.Target)
	if !ok {
		return "", &fs.PathError{Op: "rename", Path: r.Target, Err: fs.ErrNotExist}
	}
	return to, nil
}

// Filelist lists a directory or stats a path (following links).
func (f *rootedFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	rel, err := f.resolve(r)
	if err != nil {
		return nil, err
	}
	switch r.Method {
	case "List":
		d, err := f.root.Open(rel)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		ents, err := d.ReadDir(-1)
		if err != nil {
			return nil, err
		}
		var out listing
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				continue // removed since the listing
			}
			out = append(out, fi)
		}
		return out, nil
	case "Stat":
		fi, err := f.root.Stat(rel)
		if err != nil {
			return nil, err
		}
		return listing{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat stats a path without following a link (what a pull's listing
// checks rely on).
func (f *rootedFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	rel, err := f.resolve(r)
	if err != nil {
		return nil, err
	}
	fi, err := f.root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	return listing{fi}, nil
}

type listing []fs.FileInfo

func (l listing) ListAt(dst []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}
