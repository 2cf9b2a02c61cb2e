package distribute_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// BenchmarkUpload is one push's upload of a bundle (three files) on an
// open connection to a real sshd: what the private 0700 directory costs
// (a mkdir, a chmod, an lstat and an rmdir more than writing in place).
func BenchmarkUpload(b *testing.B) {
	s := testsshd.Start(b, testsshd.Options{})
	target := filepath.Join(s.Dir, "t")
	os.Mkdir(target, 0o755)
	c, err := distribute.Dial(context.Background(), distribute.Target{Address: s.Addr, User: s.User, IdentityFile: s.Client.Path, KnownHosts: s.KnownHosts})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	files := []distribute.UploadFile{
		{Name: "node.crt", Data: make([]byte, 800), Mode: 0o644},
		{Name: "node.key", Data: make([]byte, 240), Mode: 0o600},
		{Name: "cluster.crt", Data: make([]byte, 700), Mode: 0o644},
	}
	for b.Loop() {
		if err := c.Upload(context.Background(), target, files); err != nil {
			b.Fatal(err)
		}
	}
}
