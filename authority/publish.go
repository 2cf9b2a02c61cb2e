package authority

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/certkeeper/certkeeper/platform"
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
//
// The work is done per directory, on an os.Root opened on that directory,
// so each file costs a create, a write and a rename rather than a walk of
// its whole path; a batch of 1,000 bundles is mostly the kernel creating
// 4,000 inodes.
func publish(dir string, files []pubFile) error {
	failed, err := publishEach(dir, files)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(failed)) {
		errs = append(errs, failed[d])
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// publishEach is publish, directory by directory: a directory that can not
// be written or renamed into is reported in failed (by its path inside
// dir) and leaves no temporary file, while the others are published. err
// is for what fails them all (nodes/ can not be made, the final sync).
func publishEach(dir string, files []pubFile) (failed map[string]error, err error) {
	if len(files) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	byDir := map[string][]int{}
	var dirs []string
	for i, f := range files {
		d := path.Dir(f.rel)
		if _, ok := byDir[d]; !ok {
			dirs = append(dirs, d)
		}
		byDir[d] = append(byDir[d], i)
	}
	sort.Strings(dirs)
	made := map[string]bool{".": true}
	for _, d := range dirs {
		// Parents first (nodes/), once each, before the parallel part.
		if p := path.Dir(d); !made[p] {
			if err := root.MkdirAll(p, dirMode); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(dir, p), err)
			}
			made[p] = true
		}
	}

	batch := canSyncFS && len(files) > batchThreshold
	workers := min(16, 4*runtime.GOMAXPROCS(0))
	temps := make([]string, len(files))
	errs := make([]error, len(dirs))
	cleanup := func(d string) {
		for _, i := range byDir[d] {
			if temps[i] != "" {
				_ = root.Remove(path.Join(d, temps[i]))
				temps[i] = ""
			}
		}
	}
	parallel(len(dirs), workers, func(k int) {
		if errs[k] = writeDir(root, dirs[k], byDir[dirs[k]], files, temps, !batch); errs[k] != nil {
			cleanup(dirs[k])
		}
	})
	var rootFile *os.File
	if batch {
		if rootFile, err = root.Open("."); err == nil {
			defer rootFile.Close()
			err = syncFS(rootFile)
		}
		if err != nil {
			for _, d := range dirs {
				cleanup(d)
			}
			return nil, fmt.Errorf("%s: sync: %w", dir, err)
		}
	}
	parallel(len(dirs), workers, func(k int) {
		if errs[k] != nil {
			return
		}
		if errs[k] = renameDir(root, dirs[k], byDir[dirs[k]], files, temps, !batch); errs[k] != nil {
			cleanup(dirs[k])
		}
	})
	for k, e := range errs {
		if e != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[dirs[k]] = e
		}
	}
	if batch {
		if err := syncFS(rootFile); err != nil {
			return failed, fmt.Errorf("%s: sync: %w", dir, err)
		}
	}
	return failed, nil
}

// openDir creates d (0700) if needed and opens it as a root of its own.
// fresh reports that it was just created: empty, with the right mode.
func openDir(root *os.Root, d string) (sub *os.Root, fresh bool, err error) {
	if d != "." {
		switch err := root.Mkdir(d, dirMode); {
		case err == nil:
			fresh = true
		case !errors.Is(err, fs.ErrExist):
			return nil, false, err
		}
	}
	sub, err = root.OpenRoot(d)
	if err != nil {
		return nil, false, err
	}
	if !fresh && d != "." && runtime.GOOS != "windows" {
		fi, err := sub.Stat(".")
		if err == nil && fi.Mode().Perm() != dirMode {
			err = sub.Chmod(".", dirMode)
		}
		if err != nil {
			sub.Close()
			return nil, false, err
		}
	}
	return sub, fresh, nil
}

func writeDir(root *os.Root, d string, idx []int, files []pubFile, temps []string, sync bool) error {
	sub, fresh, err := openDir(root, d)
	if err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	defer sub.Close()
	if !fresh {
		if err := removeStale(sub); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	for _, i := range idx {
		if temps[i], err = writeTemp(sub, files[i], sync); err != nil {
			return err
		}
	}
	return nil
}

func renameDir(root *os.Root, d string, idx []int, files []pubFile, temps []string, sync bool) error {
	sub, err := root.OpenRoot(d)
	if err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	defer sub.Close()
	for _, i := range idx {
		if err := sub.Rename(temps[i], path.Base(files[i].rel)); err != nil {
			return fmt.Errorf("%s: %w", files[i].rel, err)
		}
		temps[i] = ""
	}
	if sync {
		if err := platform.SyncDirIn(sub, "."); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	return nil
}

// removeStale removes temporary files a killed run left behind.
func removeStale(dir *os.Root) error {
	f, err := dir.Open(".")
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
			if err := dir.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// writeTemp writes one file's content under a temporary name in dir and
// returns that name.
func writeTemp(dir *os.Root, pf pubFile, sync bool) (string, error) {
	tmp := platform.TempName(path.Base(pf.rel))
	if err := platform.WriteNewFile(dir, tmp, pf.data, pf.mode, platform.NoOwner, sync); err != nil {
		return "", fmt.Errorf("%s: %w", pf.rel, err)
	}
	return tmp, nil
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
