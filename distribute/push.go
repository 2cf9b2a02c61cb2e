package distribute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// DefaultConcurrency is how many nodes a push works on at once.
const DefaultConcurrency = 32

// PushOptions shape a push.
type PushOptions struct {
	// CADir holds nodes/<id>/ for each node.
	CADir string
	// Install writes the layout's canonical names and modes straight into
	// the target directory (no agent on the node); otherwise the files go
	// as they are named into the target (an agent's inbox).
	Install bool
	// DryRun connects (host key, login), checks the target, and writes
	// nothing.
	DryRun      bool
	Concurrency int
	Limits      Limits
	Now         func() time.Time
	// Done is called as each node finishes, one call at a time.
	Done func(NodeResult)
}

// NodeResult is how the push to one node went.
type NodeResult struct {
	Node  Node
	Files []string // remote names written (or, in a dry run, to be written)
	Err   error
	Took  time.Duration
}

// Push sends each node its bundle, at most Concurrency nodes at a time,
// and returns one result per node in the order given. A node's failure
// never stops the others.
func Push(ctx context.Context, nodes []Node, o PushOptions) []NodeResult {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	results := make([]NodeResult, len(nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = NodeResult{Node: nodes[i], Err: fmt.Errorf("%s: not started: %w", nodes[i].ID, ctx.Err())}
				mu.Lock()
				if o.Done != nil {
					o.Done(results[i])
				}
				mu.Unlock()
				return
			}
			start := time.Now()
			files, err := PushNode(ctx, nodes[i], o)
			<-sem
			results[i] = NodeResult{Node: nodes[i], Files: files, Err: err, Took: time.Since(start)}
			mu.Lock()
			if o.Done != nil {
				o.Done(results[i])
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

// PushNode pushes one node's bundle over one SSH connection and returns
// the remote names written.
func PushNode(ctx context.Context, n Node, o PushOptions) ([]string, error) {
	files, err := PlanNode(n, o)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	c, err := Dial(ctx, n.SSH)
	if err != nil {
		return names, err
	}
	defer c.Close()
	fi, err := c.Lstat(ctx, n.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return names, fmt.Errorf("%s: target %s does not exist on the node; create it (mode 0700) or fix target", c.Host, n.Dir)
		}
		return names, err
	}
	if !fi.IsDir() {
		return names, fmt.Errorf("%s: target %s is not a directory (%s)", c.Host, n.Dir, platform.FileType(fi.Mode()))
	}
	if o.Install {
		// The agent's store keeps its files as links into ..data; writing
		// regular files over them would fight it.
		if _, err := c.Lstat(ctx, path.Join(n.Dir, "..data")); err == nil {
			return names, fmt.Errorf("%s: %s is managed by a certkeeper agent (it has ..data); push to the agent's inbox instead of using --install", c.Host, n.Dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return names, err
		}
	}
	if o.DryRun {
		return names, nil
	}
	return names, c.Upload(ctx, n.Dir, files)
}

// PlanNode decides what a push writes to a node. For an inbox, the files
// of <ca-dir>/nodes/<id>/ as they are named, each 0600 (the agent gives
// them their final names and modes). With Install, the bundle is
// classified and validated here (it must be a whole, valid bundle for
// NodeID) and planned in the layout's canonical names and modes, the CA
// first and the key last.
func PlanNode(n Node, o PushOptions) ([]UploadFile, error) {
	lim := o.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	dir := filepath.Join(o.CADir, "nodes", n.ID)
	inputs, err := ReadLocalBundle(dir, lim)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.ID, err)
	}
	if !o.Install {
		var files []UploadFile
		for _, in := range inputs {
			files = append(files, UploadFile{Name: in.Name, Data: in.Data, Mode: 0o600})
		}
		return files, nil
	}
	if n.Layout == "" {
		return nil, fmt.Errorf("node %s: --install needs a layout (set layout in [defaults] or the node) to know the file names", n.ID)
	}
	if !strings.HasPrefix(n.Dir, "/") {
		return nil, fmt.Errorf("node %s: with --install, target must be an absolute path (got %q)", n.ID, n.Dir)
	}
	l, err := rotate.ResolveLayout(n.Layout, n.NodeID, rotate.Overrides{Dir: &n.Dir})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.ID, err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	b, err := rotate.Validate(rotate.Classify(inputs), rotate.Policy{Layout: l, NodeID: n.NodeID, Now: now()}, nil)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", n.ID, dir, err)
	}
	var files []UploadFile
	for _, f := range rotate.Plan(b, l) {
		files = append(files, UploadFile{Name: f.Name, Data: f.Data, Mode: f.Mode})
	}
	// Certificates first, the key last. Each rename is atomic, the set is
	// not: between the certificate's rename and the key's, a reader sees
	// the new certificate with the old key. Renaming them one after the
	// other on an open connection keeps that to one round trip.
	sort.SliceStable(files, func(i, j int) bool { return files[i].Mode > files[j].Mode })
	return files, nil
}

// ReadLocalBundle reads the regular files of a bundle directory on the
// admin host, refusing symlinks and other file types, skipping names that
// start with ".", within limits.
func ReadLocalBundle(dir string, lim Limits) ([]rotate.Input, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: issue the node's certificate first (certkeeper ca issue)", dir)
		}
		return nil, err
	}
	var infos []fs.FileInfo
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		infos = append(infos, fi)
	}
	files, err := CheckListing(dir, infos, lim)
	if err != nil {
		return nil, err
	}
	var out []rotate.Input
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		data, err := readRegular(p, lim.MaxFileSize)
		if err != nil {
			return nil, err
		}
		out = append(out, rotate.Input{Name: f.Name, Data: data})
	}
	return out, nil
}

func readRegular(p string, max int64) ([]byte, error) {
	f, err := platform.OpenInput(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while being opened", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than the %d-byte limit", p, max)
	}
	return data, nil
}
