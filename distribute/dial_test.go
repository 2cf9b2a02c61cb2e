package distribute_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

func target(s *testsshd.Server) distribute.Target {
	return distribute.Target{Address: s.Addr, User: s.User, IdentityFile: s.Client.Path, KnownHosts: s.KnownHosts, Timeout: 20 * time.Second}
}

func dial(t *testing.T, tg distribute.Target) *distribute.Conn {
	t.Helper()
	c, err := distribute.Dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialLogsInWithEachKeyType(t *testing.T) {
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			s := testsshd.Start(t, testsshd.Options{Client: testsshd.NewKey(t, dir, "id_"+typ, typ)})
			c := dial(t, target(s))
			if !c.HasExtension("posix-rename@openssh.com") || !c.HasExtension("fsync@openssh.com") {
				t.Error("OpenSSH's SFTP server should offer posix-rename and fsync")
			}
		})
	}
}

// known_hosts holds only the ed25519 key; the server also has an ecdsa key,
// which x/crypto would ask for first. The algorithms offered come from
// known_hosts, so the pinned key is the one shown.
func TestEd25519PinWorksAgainstAServerThatPrefersECDSA(t *testing.T) {
	dir := t.TempDir()
	ec := testsshd.NewKey(t, dir, "host_ecdsa", "ecdsa")
	ed := testsshd.NewKey(t, dir, "host_ed25519", "ed25519")
	s := testsshd.Start(t, testsshd.Options{HostKeys: []*testsshd.Key{ec, ed}})
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte("[127.0.0.1]:"+itoa(s.Port)+" "+ed.AuthorizedLine()+"\n"), 0o644)
	tg := target(s)
	tg.KnownHosts = kh
	dial(t, tg)

	// The same with a hashed entry, as ssh-keygen -H writes them.
	hashed := filepath.Join(dir, "known_hosts_hashed")
	os.WriteFile(hashed, []byte("[127.0.0.1]:"+itoa(s.Port)+" "+ed.AuthorizedLine()+"\n"), 0o644)
	if out, err := exec.Command("ssh-keygen", "-H", "-f", hashed).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, out)
	}
	data, _ := os.ReadFile(hashed)
	if !strings.HasPrefix(string(data), "|1|") {
		t.Fatalf("known_hosts not hashed: %s", data)
	}
	tg.KnownHosts = hashed
	dial(t, tg)
}

func TestAChangedHostKeyIsRefusedWithBothFingerprints(t *testing.T) {
	s := testsshd.Start(t, testsshd.Options{})
	other := testsshd.NewKey(t, t.TempDir(), "other", "ed25519")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("# pinned\n[127.0.0.1]:"+itoa(s.Port)+" "+other.AuthorizedLine()+"\n"), 0o644)
	tg := target(s)
	tg.KnownHosts = kh
	_, err := distribute.Dial(context.Background(), tg)
	var hk *distribute.HostKeyChangedError
	if !errors.As(err, &hk) {
		t.Fatalf("want HostKeyChangedError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"HOST KEY CHANGED", ssh.FingerprintSHA256(s.HostKeys[0].Public), ssh.FingerprintSHA256(other.Public), kh + ":2", "ssh-keygen -R"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
}

func TestAnUnknownHostIsRefusedBeforeConnecting(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	_, err = distribute.Dial(context.Background(), distribute.Target{Address: l.Addr().String(), User: "x", IdentityFile: key.Path, KnownHosts: kh})
	var uh *distribute.UnknownHostError
	if !errors.As(err, &uh) || !strings.Contains(err.Error(), "certkeeper trust") {
		t.Fatalf("want an unknown-host error with a hint, got %v", err)
	}
	if _, err := distribute.Dial(context.Background(), distribute.Target{Address: l.Addr().String(), User: "x", IdentityFile: key.Path}); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("no known_hosts must be refused, got %v", err)
	}
}

// A server that accepts the TCP connection and never speaks: the dial
// fails after the configured timeout instead of hanging.
func TestASilentServerTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})
	key := testsshd.NewKey(t, t.TempDir(), "id", "ed25519")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("[127.0.0.1]:"+itoa(l.Addr().(*net.TCPAddr).Port)+" "+key.AuthorizedLine()+"\n"), 0o644)
	start := time.Now()
	_, err = distribute.Dial(context.Background(), distribute.Target{Address: l.Addr().String(), User: "x", IdentityFile: key.Path, KnownHosts: kh, Timeout: 300 * time.Millisecond})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "handshake timed out after 300ms") {
		t.Fatalf("want a handshake timeout, got %v", err)
	}
	// Generous: the machine is shared. The point is that it ends.
	if took > 10*time.Second {
		t.Fatalf("took %s", took)
	}

	// The context ends it too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	_, err = distribute.Dial(ctx, distribute.Target{Address: l.Addr().String(), User: "x", IdentityFile: key.Path, KnownHosts: kh, Timeout: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the context's deadline, got %v", err)
	}
}

func TestLoginThroughSSHAgent(t *testing.T) {
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("ssh-agent missing (openssh-client)")
	}
	s := testsshd.Start(t, testsshd.Options{})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agentCmd.Process.Kill()
		agentCmd.Wait()
	})
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	add := exec.Command("ssh-add", s.Client.Path)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	tg := target(s)
	tg.IdentityFile = ""
	dial(t, tg)

	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := distribute.Dial(context.Background(), tg); err == nil || !strings.Contains(err.Error(), "identity_file") {
		t.Fatalf("without agent or identity, want a hint, got %v", err)
	}
}

func TestIdentityFileChecks(t *testing.T) {
	dir := t.TempDir()
	k := testsshd.NewKey(t, dir, "id", "ed25519")
	os.Chmod(k.Path, 0o644)
	if _, err := distribute.LoadIdentity(k.Path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key must be refused, got %v", err)
	}
	enc := filepath.Join(dir, "enc")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", enc).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := distribute.LoadIdentity(enc); err == nil || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("an encrypted key needs a hint, got %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
