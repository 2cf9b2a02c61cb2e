package authority

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"sync"
)

// pubFile is one file to publish, by its slash-separated path inside the
// CA directory.
type pubFile struct {
	rel  string
	data []byte
	mode fs.FileMode
}

// batchThreshold is the number of files above which one syncfs replaces an
// fsync per file (Linux only). Below it, per-file fsyncs touch only our
// files, not whatever else the file system has pending.
const batchThreshold = 12

// tempPattern matches certkeeper's unfinished writes: hidden, so that a
// listing of a node directory (push, pull) passes over them.
var tempPattern = regexp.MustCompile(`^\..+\.tmp-[0-9a-f]{12}$`)

// publish writes files so that each name always holds either its old or its
// new content, complete: every file is first written to a hidden temporary
// file in its own directory, created with its final mode before its first
// byte, then made durable, then renamed over its name, and the directories
// are made durable last. Directories are created 0700. Everything goes
// through an os.Root, so a symlink planted under nodes/ can not send a key
// outside the CA directory. Callers hold the database lock, so no other
// certkeeper process publishes at the same time, and left-over temporary
// files of a killed run can be removed safely.
func publish(dir string, files []pubFile) error {
	if len(files) == 0 {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	dirs := map[string]bool{}
	for _, f := range files {
		dirs[path.Dir(f.rel)] = true
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		if err := ensureDir(root, d); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, d), err)
		}
	}

	batch := canSyncFS && len(files) > batchThreshold
	temps := make([]string, len(files))
	errs := make([]error, len(files))
	parallel(len(files), min(16, 4*runtime.GOMAXPROCS(0)), func(i int) {
		temps[i], errs[i] = writeTemp(root, files[i], !batch)
	})
	cleanup := func() {
		for _, t := range temps {
			if t != "" {
				_ = root.Remove(t)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		cleanup()
		return err
	}
	var rootFile *os.File
	if batch {
		if rootFile, err = root.Open("."); err == nil {
			defer rootFile.Close()
			err = syncFS(rootFile)
		}
		if err != nil {
			cleanup()
			return fmt.Errorf("%s: sync: %w", dir, err)
		}
	}
	for i, f := range files {
		if err := root.Rename(temps[i], f.rel); err != nil {
			cleanup()
			return fmt.Errorf("%s: %w", filepath.Join(dir, f.rel), err)
		}
		temps[i] = ""
	}
	if batch {
		if err := syncFS(rootFile); err != nil {
			return fmt.Errorf("%s: sync: %w", dir, err)
		}
		return nil
	}
	for _, d := range sorted {
		if err := syncDir(root, d); err != nil {
			return fmt.Errorf("%s: sync: %w", filepath.Join(dir, d), err)
		}
	}
	return nil
}

func ensureDir(root *os.Root, d string) error {
	if d == "." {
		return removeStale(root, d)
	}
	if err := root.MkdirAll(d, dirMode); err != nil {
		return err
	}
	fi, err := root.Lstat(d)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != dirMode {
		if err := root.Chmod(d, dirMode); err != nil {
			return err
		}
	}
	return removeStale(root, d)
}

// removeStale removes temporary files a killed run left behind.
func removeStale(root *os.Root, d string) error {
	f, err := root.Open(d)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if tempPattern.MatchString(n) {
			if err := root.Remove(path.Join(d, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

func writeTemp(root *os.Root, pf pubFile, sync bool) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmp := path.Join(path.Dir(pf.rel), "."+path.Base(pf.rel)+".tmp-"+hex.EncodeToString(b[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, pf.mode)
	if err != nil {
		return "", err
	}
	// The umask may have narrowed the mode; set it exactly, still before
	// the first byte. It is never widened past what was asked.
	err = f.Chmod(pf.mode)
	if err == nil {
		_, err = f.Write(pf.data)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(tmp)
		return "", fmt.Errorf("%s: %w", pf.rel, err)
	}
	return tmp, nil
}

func syncDir(root *os.Root, d string) error {
	if runtime.GOOS == "windows" {
		return nil // directories can not be fsynced there; renames are durable once they return
	}
	f, err := root.Open(d)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// parallel runs fn(0..n-1) on at most workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
