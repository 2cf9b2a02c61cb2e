package distribute

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// Limits bound what a remote directory may hold. A bundle is three or four
// small files; anything much larger is a mistake or an attack.
type Limits struct {
	MaxFiles    int
	MaxFileSize int64
	MaxTotal    int64
}

// DefaultLimits: a bundle's few files, each at most the 1 MiB every
// certificate and key input is limited to.
var DefaultLimits = Limits{MaxFiles: 16, MaxFileSize: pki.MaxFileSize, MaxTotal: 4 << 20}

// RemoteFile is one entry of a checked remote listing.
type RemoteFile struct {
	Name string
	Size int64
}

// CheckListing decides which entries of a bundle directory listing are
// fetched: regular files with plain names, within limits. A symlink, a
// directory, a device or a bad name is refused, naming the entry; names
// starting with "." are skipped (temporary files of whoever writes the
// directory).
func CheckListing(dir string, entries []fs.FileInfo, lim Limits) ([]RemoteFile, error) {
	if len(entries) > lim.MaxFiles {
		return nil, fmt.Errorf("directory %s holds %d entries, more than the %d a bundle may have", dir, len(entries), lim.MaxFiles)
	}
	var out []RemoteFile
	var total int64
	for _, e := range entries {
		name := e.Name()
		if err := CheckRemoteName(name); err != nil {
			return nil, fmt.Errorf("directory %s: %w", dir, err)
		}
		if strings.HasPrefix(name, ".") {
			continue
		}
		m := e.Mode()
		switch {
		case m&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("%s is a symlink; certkeeper does not follow links in a bundle directory (put the file itself there)", remoteJoin(dir, name))
		case !m.IsRegular():
			return nil, fmt.Errorf("%s is not a regular file (%s)", remoteJoin(dir, name), platform.FileType(m))
		case e.Size() > lim.MaxFileSize:
			return nil, fmt.Errorf("%s is %d bytes, larger than the %d-byte limit for a certificate or key file", remoteJoin(dir, name), e.Size(), lim.MaxFileSize)
		}
		total += e.Size()
		if total > lim.MaxTotal {
			return nil, fmt.Errorf("directory %s holds more than %d bytes; a bundle is a few small files", dir, lim.MaxTotal)
		}
		out = append(out, RemoteFile{Name: name, Size: e.Size()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("directory %s holds no files", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Fetch reads the bundle in a remote directory: it lists dir, checks the
// listing (CheckListing), and reads each file in full. It writes nothing
// anywhere; the caller runs the result through the install pipeline.
// OnFile, when set, is called after each file is read.
func (c *Conn) Fetch(ctx context.Context, dir string, lim Limits, onFile func(name string)) ([]rotate.Input, error) {
	if err := CheckRemoteDir(dir); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Host, err)
	}
	var entries []fs.FileInfo
	err := c.do(ctx, "listing "+dir, func() error {
		var err error
		entries, err = c.sftp.ReadDirContext(ctx, dir)
		return err
	})
	if err != nil {
		return nil, err
	}
	files, err := CheckListing(dir, entries, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Host, err)
	}
	var inputs []rotate.Input
	for _, f := range files {
		data, err := c.readFile(ctx, remoteJoin(dir, f.Name), lim.MaxFileSize)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, rotate.Input{Name: f.Name, Data: data})
		if onFile != nil {
			onFile(f.Name)
		}
	}
	return inputs, nil
}

// readFile reads one listed file. SFTP's open follows symlinks, so the
// open handle is checked again: a name swapped for a link or a device
// between the listing and the open is refused.
func (c *Conn) readFile(ctx context.Context, p string, max int64) ([]byte, error) {
	var data []byte
	err := c.do(ctx, "reading "+p, func() error {
		f, err := c.sftp.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("not a regular file when opened (%s)", platform.FileType(fi.Mode()))
		}
		data, err = io.ReadAll(io.LimitReader(f, max+1))
		if err != nil {
			return err
		}
		if int64(len(data)) > max {
			return fmt.Errorf("larger than the %d-byte limit", max)
		}
		return nil
	})
	return data, err
}

// ReadFile reads one regular file of at most max bytes from the server.
func (c *Conn) ReadFile(ctx context.Context, p string, max int64) ([]byte, error) {
	data, err := c.readFile(ctx, p, max)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.Host, p, err)
	}
	return data, nil
}
