//go:build unix

package demo

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/distribute"
)

// server is an embedded SSH server for a test, with a login key and a
// known_hosts file for the client side, as the demo sets them up.
type server struct {
	*sshServer
	dir, identity, knownHosts string
	signs                     []signEvent
	mu                        sync.Mutex
}

func startServer(t *testing.T, accounts func(key ssh.PublicKey) []account, sign forcedSign) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{dir: dir, identity: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	key, err := writeIdentity(s.identity, "test")
	if err != nil {
		t.Fatal(err)
	}
	host, err := newHostKey()
	if err != nil {
		t.Fatal(err)
	}
	s.sshServer, err = startSSHServer(host, accounts(key.PublicKey()), sign, func(e signEvent) {
		s.mu.Lock()
		s.signs = append(s.signs, e)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := distribute.Pin(s.knownHosts, s.Addr, s.HostKey); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *server) target(user string) distribute.Target {
	return distribute.Target{Address: s.Addr, User: user, IdentityFile: s.identity, KnownHosts: s.knownHosts, Timeout: 5 * time.Second}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A pull account sees its own nodes/<id>/ and nothing else, read-only,
// through certkeeper's own SFTP client: what `certkeeper sshd-config`'s
// chroot with internal-sftp -R gives a node on a real admin host.
func TestPullAccountReadsOnlyItsBundle(t *testing.T) {
	ca := t.TempDir()
	writeFiles(t, filepath.Join(ca, "nodes", "node2"), map[string]string{"node.crt": "cert", "node.key": "key", "cluster.crt": "ca"})
	writeFiles(t, filepath.Join(ca, "nodes", "node3"), map[string]string{"node.key": "node3's key"})
	if err := os.Symlink(filepath.Join(ca, "nodes", "node3", "node.key"), filepath.Join(ca, "nodes", "node2", "link")); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(k ssh.PublicKey) []account {
		return []account{{User: "ck-node2", Key: k, SFTPDir: filepath.Join(ca, "nodes", "node2"), SFTPPrefix: "nodes/node2", ReadOnly: true}}
	}, nil)
	ctx := context.Background()
	c, err := distribute.Dial(ctx, s.target("ck-node2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The listing has the link: the pull refuses the whole bundle for it.
	if _, err := c.Fetch(ctx, "nodes/node2", distribute.DefaultLimits, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("a bundle directory with a symlink: %v", err)
	}
	os.Remove(filepath.Join(ca, "nodes", "node2", "link"))
	in, err := c.Fetch(ctx, "nodes/node2", distribute.DefaultLimits, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range in {
		names = append(names, f.Name+"="+string(f.Data))
	}
	if got := strings.Join(names, " "); got != "cluster.crt=ca node.crt=cert node.key=key" {
		t.Fatalf("fetched %s", got)
	}
	for _, dir := range []string{"nodes/node3", "nodes", "/", "nodes/node2/../node3", "/etc", "../../.."} {
		if in, err := c.Fetch(ctx, dir, distribute.DefaultLimits, nil); err == nil {
			t.Errorf("fetched %s: %v", dir, in)
		}
	}
	if err := c.Upload(ctx, "nodes/node2", []distribute.UploadFile{{Name: "x", Data: []byte("x"), Mode: 0o600}}); err == nil {
		t.Error("a read-only account wrote a file")
	}
	if _, err := os.Stat(filepath.Join(ca, "nodes", "node2", "x")); err == nil {
		t.Error("the file is there")
	}
	// A pull account runs no command.
	if _, err := distribute.RequestCertificate(ctx, s.target("ck-node2"), []byte("csr")); err == nil {
		t.Error("a pull account ran a command")
	}
}

// The node's sshd takes a push into the inbox with certkeeper's own
// client (exclusive create, 0600, posix-rename) and keeps every path
// inside the node's directory.
func TestNodeSSHTakesAPush(t *testing.T) {
	root := t.TempDir()
	inbox := filepath.Join(root, "var", "lib", "certkeeper", "inbox", "flocker")
	if err := os.MkdirAll(inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(k ssh.PublicKey) []account {
		return []account{{User: "root", Key: k, SFTPDir: root}}
	}, nil)
	ctx := context.Background()
	c, err := distribute.Dial(ctx, s.target("root"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	files := []distribute.UploadFile{{Name: "node.crt", Data: []byte("cert"), Mode: 0o644}, {Name: "node.key", Data: []byte("key"), Mode: 0o600}}
	if err := c.Upload(ctx, "/var/lib/certkeeper/inbox/flocker", files); err != nil {
		t.Fatal(err)
	}
	// Again: the renames replace.
	files[1].Data = []byte("key2")
	if err := c.Upload(ctx, "/var/lib/certkeeper/inbox/flocker", files); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(inbox)
	var got []string
	for _, e := range ents {
		fi, _ := e.Info()
		data, _ := os.ReadFile(filepath.Join(inbox, e.Name()))
		got = append(got, e.Name()+" "+fi.Mode().Perm().String()+" "+string(data))
	}
	if strings.Join(got, ", ") != "node.crt -rw-r--r-- cert, node.key -rw------- key2" {
		t.Fatalf("inbox: %v", got)
	}
	outside := filepath.Dir(root)
	for _, dir := range []string{"../..", "/../..", "/var/../../"} {
		err := c.Upload(ctx, dir, []distribute.UploadFile{{Name: "escaped", Data: []byte("x")}})
		if _, serr := os.Stat(filepath.Join(outside, "escaped")); serr == nil {
			t.Fatalf("a push to %s wrote outside the node's directory (err %v)", dir, err)
		}
	}
	// A key for root is no key for another user.
	if _, err := distribute.Dial(ctx, s.target("admin")); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("another user: %v", err)
	}
}

// The CA account runs the forced command for the key's node, whatever
// the client asks to run; its answer (stdout, exit status, stderr) comes
// back as from OpenSSH.
func TestCAAccountRunsTheForcedCommand(t *testing.T) {
	var asked []string
	sign := func(ctx context.Context, node, _ string, stdin io.Reader, stdout, stderr io.Writer) int {
		req, _ := io.ReadAll(stdin)
		asked = append(asked, node+":"+string(req))
		if string(req) == "bad" {
			io.WriteString(stderr, "certkeeper ca sign: node node3: not a certificate request\n")
			return 1
		}
		io.WriteString(stdout, "chain for "+node)
		return 0
	}
	s := startServer(t, func(k ssh.PublicKey) []account {
		return []account{{User: "certkeeper-ca", Key: k, SignNode: "node3"}}
	}, sign)
	ctx := context.Background()
	out, err := distribute.RequestCertificate(ctx, s.target("certkeeper-ca"), []byte("csr"))
	if err != nil || string(out) != "chain for node3" {
		t.Fatalf("answer %q, %v", out, err)
	}
	_, err = distribute.RequestCertificate(ctx, s.target("certkeeper-ca"), []byte("bad"))
	var refused *distribute.SignRefusedError
	if !errors.As(err, &refused) || refused.Status != 1 || !strings.Contains(refused.Reason, "not a certificate request") {
		t.Fatalf("a refusal: %v", err)
	}
	if strings.Join(asked, " ") != "node3:csr node3:bad" {
		t.Fatalf("the forced command ran for %v", asked)
	}
	s.mu.Lock()
	signs := s.signs
	s.mu.Unlock()
	if len(signs) != 2 || signs[0].Asked != distribute.SignCommand || signs[1].Status != 1 {
		t.Fatalf("sign events: %+v", signs)
	}
	// No SFTP for the CA account.
	if _, err := distribute.Dial(ctx, s.target("certkeeper-ca")); err == nil {
		t.Fatal("the CA account opened an SFTP session")
	}
}

// Close ends every connection and forced command, and returns.
func TestServerCloseEndsEverything(t *testing.T) {
	started := make(chan struct{})
	sign := func(ctx context.Context, node, _ string, stdin io.Reader, stdout, stderr io.Writer) int {
		close(started)
		<-ctx.Done()
		return 1
	}
	s := startServer(t, func(k ssh.PublicKey) []account {
		return []account{{User: "certkeeper-ca", Key: k, SignNode: "node3"}}
	}, sign)
	errc := make(chan error, 1)
	go func() {
		_, err := distribute.RequestCertificate(context.Background(), s.target("certkeeper-ca"), []byte("csr"))
		errc <- err
	}()
	<-started
	t0 := time.Now()
	if err := s.sshServer.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Close took %s", took)
	}
	if err := <-errc; err == nil {
		t.Error("the request succeeded on a closed server")
	}
}

func TestMapPath(t *testing.T) {
	cases := []struct {
		prefix, p, want string
		ok              bool
	}{
		{"", "/", ".", true},
		{"", "/var/lib/x", "var/lib/x", true},
		{"", "/../../etc/passwd", "etc/passwd", true},
		{"nodes/node2", "/nodes/node2", ".", true},
		{"nodes/node2", "/nodes/node2/node.crt", "node.crt", true},
		{"nodes/node2", "nodes/node2/node.crt", "node.crt", true},
		{"nodes/node2", "/nodes/node2/../node3/node.key", "", false},
		{"nodes/node2", "/nodes/node22/x", "", false},
		{"nodes/node2", "/nodes", "", false},
		{"nodes/node2", "/", "", false},
		{"nodes/node2", "/../nodes/node2/x", "x", true},
	}
	for _, c := range cases {
		got, ok := mapPath(c.prefix, c.p)
		if got != c.want || ok != c.ok {
			t.Errorf("mapPath(%q, %q) = %q, %v; want %q, %v", c.prefix, c.p, got, ok, c.want, c.ok)
		}
	}
}

// Whatever a client sends, the path stays inside the served directory:
// "." or a relative path without "..", and under the prefix.
func FuzzMapPath(f *testing.F) {
	for _, s := range []string{"/", "../..", "/nodes/node2/../../x", "nodes/node2/x", "//nodes//node2/./x", "/nodes/node2/..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		for _, prefix := range []string{"", "nodes/node2"} {
			rel, ok := mapPath(prefix, p)
			if !ok {
				continue
			}
			if rel == "" || strings.HasPrefix(rel, "/") || rel != "." && filepath.Clean(rel) != rel {
				t.Fatalf("mapPath(%q, %q) = %q", prefix, p, rel)
			}
			for _, part := range strings.Split(rel, "/") {
				if part == ".." {
					t.Fatalf("mapPath(%q, %q) = %q leaves the directory", prefix, p, rel)
				}
			}
		}
	})
}
