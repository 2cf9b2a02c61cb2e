package distribute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/pkg/sftp"
)

// UploadFile is one file to write into a remote directory.
type UploadFile struct {
	Name string
	Data []byte
	// Mode is the file's final mode; every file is 0600 while it is written.
	Mode fs.FileMode
}

// TempPrefix starts the names of the private directory a push writes in,
// and of the files in it. An agent watching the directory skips names
// starting with "." and directories; one left by an interrupted push has
// this prefix and mode 0700.
const TempPrefix = ".certkeeper-upload-"

// Upload writes files into dir on the server. The SFTP open carries no
// mode in pkg/sftp, so sshd creates a file with its umask's mode (0644):
// a key created in dir itself would be readable, for a round trip, by any
// local user who can enter dir, and a descriptor opened then reads it
// afterwards. So the files are written in a fresh directory made in dir
// and set to 0700 before any file is created in it (checked: a directory,
// not a link, mode 0700): each file is created exclusively there, set to
// 0600 before its first byte, written, flushed to disk when the server
// offers fsync@openssh.com, set to its final mode, and then renamed over
// its final name in dir with posix-rename@openssh.com, which replaces
// atomically. The files are written concurrently on the one connection;
// the renames come last, in the order given, so a failure before them
// leaves the directory's visible names untouched. Each rename is atomic;
// the set is not (a reader between two renames sees one new file and one
// old). A failure names the node, the file and what the server said, with
// the file system's state when the server can tell it (full, read-only).
func (c *Conn) Upload(ctx context.Context, dir string, files []UploadFile) error {
	if err := CheckRemoteDir(dir); err != nil {
		return fmt.Errorf("%s: %w", c.Host, err)
	}
	if !c.HasExtension("posix-rename@openssh.com") {
		return fmt.Errorf("%s: the SFTP server lacks posix-rename@openssh.com, which certkeeper needs to replace files atomically (OpenSSH has it)", c.Host)
	}
	for _, f := range files {
		if err := CheckRemoteName(f.Name); err != nil {
			return fmt.Errorf("%s: %w", c.Host, err)
		}
	}
	private := remoteJoin(dir, TempPrefix+randomHex())
	if err := c.privateDir(ctx, private); err != nil {
		return c.explain(dir, err)
	}
	fsync := c.HasExtension("fsync@openssh.com")
	temps := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		temps[i] = remoteJoin(private, TempPrefix+f.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.writeTemp(ctx, temps[i], f, fsync)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.removeTemps(private, temps)
		return c.explain(dir, err)
	}
	for i, f := range files {
		final := remoteJoin(dir, f.Name)
		err := c.do(ctx, "renaming into place "+final, func() error { return c.sftp.PosixRename(temps[i], final) })
		if err != nil {
			c.removeTemps(private, temps[i:])
			return c.explain(dir, err)
		}
	}
	c.removeTemps(private, nil)
	return nil
}

// privateDir makes the directory the files are written in, sets it to
// 0700 and checks that it is that: pkg/sftp's mkdir, like its open, sends
// no mode, so it is created with the server's umask for one round trip,
// empty.
func (c *Conn) privateDir(ctx context.Context, p string) error {
	err := c.do(ctx, "creating "+p, func() error {
		err := c.sftp.Mkdir(p)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the directory does not exist on the node (create it, or fix target): %w", err)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := c.do(ctx, "setting mode 0700 on "+p, func() error { return c.sftp.Chmod(p, 0o700) }); err != nil {
		c.removeTemps(p, nil)
		return err
	}
	fi, err := c.Lstat(ctx, p)
	if err == nil && (!fi.IsDir() || fi.Mode().Perm() != 0o700) {
		err = fmt.Errorf("%s: %s is %s after it was made and set to 0700; someone else writes in this directory (fix its owner and mode on the node)", c.Host, p, fi.Mode())
	}
	if err != nil {
		c.removeTemps(p, nil)
	}
	return err
}

// explain adds, to a failure the server gave only as a status ("Failure"
// is what OpenSSH says for a full disk or a read-only file system), what
// statvfs@openssh.com tells of dir's file system.
func (c *Conn) explain(dir string, err error) error {
	var se *sftp.StatusError
	if !errors.As(err, &se) || !c.HasExtension("statvfs@openssh.com") {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var st *sftp.StatVFS
	if c.do(ctx, "checking the file system of "+dir, func() error {
		var err error
		st, err = c.sftp.StatVFS(dir)
		return err
	}) != nil {
		return err
	}
	const stRdonly = 1 // ST_RDONLY in statvfs@openssh.com's flag
	switch {
	case st.Flag&stRdonly != 0:
		return fmt.Errorf("%w (the file system holding %s on the node is mounted read-only)", err, dir)
	case st.Bavail*st.Frsize < 64<<10:
		return fmt.Errorf("%w (the file system holding %s on the node is full: %d bytes free of %d)", err, dir, st.Bavail*st.Frsize, st.Blocks*st.Frsize)
	case st.Favail == 0 && st.Files > 0:
		return fmt.Errorf("%w (the file system holding %s on the node has no free inodes)", err, dir)
	}
	return err
}

func (c *Conn) writeTemp(ctx context.Context, p string, f UploadFile, fsync bool) error {
	var h interface {
		Chmod(fs.FileMode) error
		Write([]byte) (int, error)
		Sync() error
		Close() error
	}
	as := " (" + f.Name + ")"
	err := c.do(ctx, "creating "+p+as, func() error {
		file, err := c.sftp.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("the directory does not exist on the node (create it, or fix target): %w", err)
			}
			return err
		}
		h = file
		return nil
	})
	if err != nil {
		return err
	}
	steps := []struct {
		what string
		fn   func() error
	}{
		{"setting mode 0600 on " + p + as, func() error { return h.Chmod(0o600) }},
		{"writing " + p + as, func() error {
			n, err := h.Write(f.Data)
			if err == nil && n != len(f.Data) {
				err = fmt.Errorf("short write: %d of %d bytes", n, len(f.Data))
			}
			return err
		}},
	}
	if fsync {
		steps = append(steps, struct {
			what string
			fn   func() error
		}{"flushing " + p + as + " to disk", h.Sync})
	}
	if f.Mode != 0 && f.Mode != 0o600 {
		steps = append(steps, struct {
			what string
			fn   func() error
		}{fmt.Sprintf("setting mode %04o on %s", f.Mode, p+as), func() error { return h.Chmod(f.Mode) }})
	}
	for _, s := range steps {
		if err := c.do(ctx, s.what, s.fn); err != nil {
			h.Close()
			return err
		}
	}
	return c.do(ctx, "closing "+p+as, h.Close)
}

// removeTemps removes temporary files and then the private directory, if
// the connection still works; with a dead connection they stay (a 0700
// directory whose name starts with TempPrefix).
func (c *Conn) removeTemps(private string, temps []string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, t := range temps {
		if c.do(ctx, "removing "+t, func() error { return c.sftp.Remove(t) }) != nil && ctx.Err() != nil {
			return
		}
	}
	_ = c.do(ctx, "removing "+private, func() error { return c.sftp.RemoveDirectory(private) })
}

// Lstat returns the remote file's attributes, not following a symlink.
func (c *Conn) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := c.do(ctx, "checking "+p, func() error {
		var err error
		fi, err = c.sftp.Lstat(p)
		return err
	})
	return fi, err
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
