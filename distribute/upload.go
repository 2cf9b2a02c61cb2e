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
)

// UploadFile is one file to write into a remote directory.
type UploadFile struct {
	Name string
	Data []byte
	// Mode is the file's final mode; every file is 0600 while it is written.
	Mode fs.FileMode
}

// TempPrefix starts the names of files being uploaded. An agent watching
// the directory skips names starting with "."; a file left by an
// interrupted push has this prefix and mode 0600.
const TempPrefix = ".certkeeper-upload-"

// Upload writes files into dir on the server: each one under a temporary
// name, created exclusively (a planted file is never reused), set to 0600
// before its first byte, written, flushed to disk when the server offers
// fsync@openssh.com, set to its final mode, and then renamed over the
// final name with posix-rename@openssh.com, which replaces atomically. The
// files are written concurrently on the one connection; the renames come
// last, in the order given, so a failure before them leaves the
// directory's visible names untouched. Each rename is atomic; the set is
// not (a reader between two renames sees one new file and one old).
func (c *Conn) Upload(ctx context.Context, dir string, files []UploadFile) error {
	if err := CheckRemoteDir(dir); err != nil {
		return fmt.Errorf("%s: %w", c.Host, err)
	}
	if !c.HasExtension("posix-rename@openssh.com") {
		return fmt.Errorf("%s: the SFTP server lacks posix-rename@openssh.com, which certkeeper needs to replace files atomically (OpenSSH has it)", c.Host)
	}
	fsync := c.HasExtension("fsync@openssh.com")
	temps := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		if err := CheckRemoteName(f.Name); err != nil {
			return fmt.Errorf("%s: %w", c.Host, err)
		}
		temps[i] = remoteJoin(dir, TempPrefix+f.Name+"-"+randomHex())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.writeTemp(ctx, temps[i], f, fsync)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.removeTemps(temps)
		return err
	}
	for i, f := range files {
		final := remoteJoin(dir, f.Name)
		err := c.do(ctx, "renaming into place "+final, func() error { return c.sftp.PosixRename(temps[i], final) })
		if err != nil {
			c.removeTemps(temps[i:])
			return err
		}
	}
	return nil
}

func (c *Conn) writeTemp(ctx context.Context, p string, f UploadFile, fsync bool) error {
	var h interface {
		Chmod(fs.FileMode) error
		Write([]byte) (int, error)
		Sync() error
		Close() error
	}
	err := c.do(ctx, "creating "+p, func() error {
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
		{"setting mode 0600 on " + p, func() error { return h.Chmod(0o600) }},
		{"writing " + p, func() error {
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
		}{"flushing " + p + " to disk", h.Sync})
	}
	if f.Mode != 0 && f.Mode != 0o600 {
		steps = append(steps, struct {
			what string
			fn   func() error
		}{fmt.Sprintf("setting mode %04o on %s", f.Mode, p), func() error { return h.Chmod(f.Mode) }})
	}
	for _, s := range steps {
		if err := c.do(ctx, s.what, s.fn); err != nil {
			h.Close()
			return err
		}
	}
	return c.do(ctx, "closing "+p, h.Close)
}

// removeTemps removes temporary files after a failure, if the connection
// still works; with a dead connection they stay (mode 0600, names starting
// with TempPrefix).
func (c *Conn) removeTemps(temps []string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, t := range temps {
		if c.do(ctx, "removing "+t, func() error { return c.sftp.Remove(t) }) != nil && ctx.Err() != nil {
			return
		}
	}
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
