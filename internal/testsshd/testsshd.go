// Package testsshd runs real OpenSSH servers (/usr/sbin/sshd) for tests:
// each in its own temporary directory, with its own host key, config and
// loopback port, stopped and checked gone when the test ends.
//
// Options.Namespace runs sshd in a private mount namespace (unshare, as
// root), so a test can give it system accounts and root-owned chroot paths
// without changing the machine.
package testsshd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the OpenSSH server the tests run.
const SSHD = "/usr/sbin/sshd"

// Require skips the test when sshd is missing (scripts/test installs it;
// `go test` on a laptop without it still runs everything else).
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("sshd tests run on Linux")
	}
	if _, err := os.Stat(SSHD); err != nil {
		t.Skipf("%s is missing (Debian: apt-get install openssh-server)", SSHD)
	}
	if os.Geteuid() == 0 {
		// As root, sshd wants its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// Key is an SSH key pair written as OpenSSH files.
type Key struct {
	Signer  ssh.Signer
	Path    string // private key, mode 0600
	Public  ssh.PublicKey
	private any
}

// AuthorizedLine is the key's authorized_keys / known_hosts key part.
func (k *Key) AuthorizedLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.Public)))
}

// NewKey makes a key of type "ed25519" (default), "ecdsa" or "rsa" and
// writes it in OpenSSH format to dir/name.
func NewKey(t testing.TB, dir, name, typ string) *Key {
	t.Helper()
	var priv any
	var err error
	switch typ {
	case "", "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("testsshd: unknown key type %q", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Signer: s, Path: p, Public: s.PublicKey(), private: priv}
}

// Options shape a server. The zero value is an sshd with one ed25519 host
// key that lets Client log in as the current user and serves SFTP.
type Options struct {
	// HostKeys to use, in the order sshd lists them; default one new
	// ed25519 key.
	HostKeys []*Key
	// Client is the key allowed to log in (authorized_keys); default new.
	Client *Key
	// AuthorizedKeys replaces the authorized_keys content when set.
	AuthorizedKeys string
	// Port to listen on; 0 picks a free one.
	Port int
	// Config is appended to the generated sshd_config (Match blocks, say).
	Config string
	// StrictModes turns sshd's ownership checks of authorized_keys files
	// on; off by default since temporary directories fail them.
	StrictModes bool
	// SFTP is the sftp subsystem's command; default "internal-sftp". A
	// command other than internal-sftp runs through the shell, so it may
	// redirect: "/usr/lib/openssh/sftp-server -e -l DEBUG3 2>>LOG".
	SFTP string
	// Namespace runs sshd in a private mount namespace with these bind
	// mounts (target path -> source path), made before sshd starts.
	Namespace map[string]string
}

// Server is a running sshd.
type Server struct {
	t        testing.TB
	Dir      string
	Addr     string // 127.0.0.1:port
	Port     int
	HostKeys []*Key
	Client   *Key
	// KnownHosts is a file pinning the server's host keys.
	KnownHosts string
	User       string
	Config     string // path of sshd_config

	opts Options
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *lockedWriter
	done chan struct{}
}

// Start runs sshd and waits until it accepts connections.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	s := &Server{t: t, Dir: dir, opts: o, User: currentUser(t)}
	if len(o.HostKeys) == 0 {
		o.HostKeys = []*Key{NewKey(t, dir, "host_ed25519", "ed25519")}
	}
	if o.Client == nil {
		o.Client = NewKey(t, dir, "id_ed25519", "ed25519")
	}
	s.HostKeys, s.Client, s.opts = o.HostKeys, o.Client, o
	auth := o.AuthorizedKeys
	if auth == "" {
		auth = o.Client.AuthorizedLine() + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		port := o.Port
		if port == 0 {
			port = FreePort(t)
		}
		if lastErr = s.start(port); lastErr == nil {
			break
		}
		if o.Port != 0 {
			break
		}
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	var kh strings.Builder
	for _, k := range s.HostKeys {
		fmt.Fprintf(&kh, "[127.0.0.1]:%d %s\n", s.Port, k.AuthorizedLine())
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(s.KnownHosts, []byte(kh.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func currentUser(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) writeConfig(port int) error {
	sftp, strict := s.opts.SFTP, "no"
	if s.opts.StrictModes {
		strict = "yes"
	}
	if sftp == "" {
		sftp = "internal-sftp"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ListenAddress 127.0.0.1\nPort %d\n", port)
	for _, k := range s.HostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k.Path)
	}
	fmt.Fprintf(&b, `PidFile %s
AuthorizedKeysFile %s
UsePAM no
StrictModes %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp %s
SetEnv HOME=%s
MaxStartups 100:30:200
LogLevel ERROR
`, filepath.Join(s.Dir, "sshd.pid"), filepath.Join(s.Dir, "authorized_keys"), strict, sftp, s.Dir)
	b.WriteString(s.opts.Config)
	s.Config = filepath.Join(s.Dir, "sshd_config")
	return os.WriteFile(s.Config, []byte(b.String()), 0o600)
}

// start launches sshd on port; an error means it did not come up.
func (s *Server) start(port int) error {
	if err := s.writeConfig(port); err != nil {
		return err
	}
	if out, err := exec.Command(SSHD, "-t", "-f", s.Config).CombinedOutput(); err != nil {
		return fmt.Errorf("sshd -t: %v\n%s", err, out)
	}
	var cmd *exec.Cmd
	if len(s.opts.Namespace) > 0 {
		var script strings.Builder
		for target, source := range s.opts.Namespace {
			fmt.Fprintf(&script, "mount --bind %s %s && ", shq(source), shq(target))
		}
		fmt.Fprintf(&script, "exec %s -D -e -f %s", SSHD, shq(s.Config))
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script.String())
	} else {
		cmd = exec.Command(SSHD, "-D", "-e", "-f", s.Config)
	}
	log := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd on port %d exited at start: %s", port, log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("sshd on port %d did not accept connections within 20s: %s", port, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.log, s.done, s.Port, s.Addr = cmd, log, done, port, addr
	s.mu.Unlock()
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Kill ends sshd and every session process it forked (they run in their
// own sessions, so a process group kill would miss them), at once, with
// SIGKILL: what a crash of the admin host looks like mid-transfer.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Stop ends sshd and its sessions and checks that they are gone. It is
// registered with t.Cleanup; calling it twice is harmless.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	procs := append(Descendants(pid), pid)
	for _, p := range procs {
		kill(p, sig)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, p := range procs {
			kill(p, syscall.SIGKILL)
		}
		<-done
	}
	// The listener is reaped; its sessions were reparented and must go too.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs[:len(procs)-1] {
		for alive(p) {
			if time.Now().After(deadline) {
				s.t.Errorf("testsshd: sshd session process %d is still running after stop", p)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		s.t.Errorf("testsshd: sshd %d is still running after stop", pid)
	}
}

// alive reports whether pid runs and is not a zombie waiting for its
// (foreign) parent.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || len(data) < i+3 || data[i+2] != 'Z'
}

// Descendants lists the processes below pid, from /proc.
func Descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < 10000 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Restart starts sshd again on the same port with the same keys and
// config, after Stop or Kill.
func (s *Server) Restart() {
	s.t.Helper()
	var err error
	for try := 0; try < 50; try++ {
		if err = s.start(s.Port); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	s.t.Fatal(err)
}

// Log is what sshd printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}
