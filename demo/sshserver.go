//go:build unix

package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// The embedded SSH servers stand in for OpenSSH's sshd: the admin host's
// (nodes pull from it and send it certificate requests) and the nodes'
// (the admin pushes to them). They do what the sshd set-up of docs/ssh.md
// makes OpenSSH do, no more: key logins only, each key tied to one
// account, SFTP confined to one directory (a chroot with internal-sftp),
// read-only where the set-up says -R, and an exec request from a CSR
// node's key answered by the forced command `certkeeper ca sign --node
// ID`, whatever the node asked to run.

// account is what one key may do as one user.
type account struct {
	User string
	Key  ssh.PublicKey
	// SFTPDir, when set, is served over SFTP, shown under SFTPPrefix
	// (nothing else is visible), read-only when ReadOnly.
	SFTPDir    string
	SFTPPrefix string
	ReadOnly   bool
	// SignNode, when set, answers every exec request with the forced
	// command `ca sign --node SignNode` (restrict,command="…" in
	// authorized_keys).
	SignNode string
}

// forcedSign runs `ca sign` for node with the request on stdin, the chain
// to stdout and reasons to stderr, and returns its exit status.
type forcedSign func(ctx context.Context, node, asked string, stdin io.Reader, stdout, stderr io.Writer) int

// signEvent is one run of the forced command, for the narration.
type signEvent struct {
	User, Node, Asked string
	Status            int
	Stderr            string
}

// connLifetime bounds every connection: the demo's are short (a pull, a
// push, a request), and nothing may hold a server open.
const connLifetime = 2 * time.Minute

type sshServer struct {
	Addr     string
	HostKey  ssh.PublicKey
	accounts []account
	sign     forcedSign
	signed   func(signEvent)

	ln     net.Listener
	cfg    *ssh.ServerConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool

	closeOnce sync.Once
	closeErr  error
}

// newHostKey makes an ed25519 host key, kept in memory only.
func newHostKey() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// writeIdentity makes an ed25519 login key and writes it to path in
// OpenSSH's format, 0600 from its creation, as ssh-keygen would.
func writeIdentity(path, comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// startSSHServer listens on a free port of 127.0.0.1 and serves accounts
// until Close.
func startSSHServer(hostKey ssh.Signer, accounts []account, sign forcedSign, signed func(signEvent)) (*sshServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sshServer{Addr: ln.Addr().String(), HostKey: hostKey.PublicKey(), accounts: accounts, sign: sign, signed: signed,
		ln: ln, conns: map[net.Conn]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cfg = &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-certkeeper-demo",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for i, a := range s.accounts {
				if a.User == meta.User() && bytes.Equal(a.Key.Marshal(), key.Marshal()) {
					return &ssh.Permissions{Extensions: map[string]string{"account": strconv.Itoa(i)}}, nil
				}
			}
			return nil, ssh.ErrNoAuth
		},
	}
	s.cfg.AddHostKey(hostKey)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *sshServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil { // closing
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// Close stops listening, closes every connection, ends the forced
// commands running, and waits for all of it, at most 10 seconds. Calls
// after the first return its result.
func (s *sshServer) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *sshServer) close() error {
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return os.ErrDeadlineExceeded
	}
	return err
}

func (s *sshServer) serve(raw net.Conn) {
	defer s.wg.Done()
	defer func() {
		raw.Close()
		s.mu.Lock()
		if s.conns != nil {
			delete(s.conns, raw)
		}
		s.mu.Unlock()
	}()
	raw.SetDeadline(time.Now().Add(connLifetime))
	sc, chans, reqs, err := ssh.NewServerConn(raw, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// keepalive@openssh.com and the like: answered "no", as sshd
		// answers requests it does not know.
		ssh.DiscardRequests(reqs)
	}()
	i, _ := strconv.Atoi(sc.Permissions.Extensions["account"])
	a := s.accounts[i]
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go s.session(a, ch, creqs)
	}
}

func (s *sshServer) session(a account, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	defer ch.Close()
	for req := range reqs {
		var arg struct{ Value string }
		ssh.Unmarshal(req.Payload, &arg)
		switch {
		case req.Type == "subsystem" && arg.Value == "sftp" && a.SFTPDir != "":
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			exit(ch, s.sftp(a, ch))
			return
		case req.Type == "exec" && a.SignNode != "":
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			exit(ch, s.forced(a, arg.Value, ch))
			return
		case req.WantReply:
			// No shell, no PTY, no environment: `restrict`.
			req.Reply(false, nil)
		}
	}
}

func exit(ch ssh.Channel, status int) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
}

func (s *sshServer) sftp(a account, ch ssh.Channel) int {
	root, err := os.OpenRoot(a.SFTPDir)
	if err != nil {
		return 1
	}
	defer root.Close()
	fs := &rootedFS{root: root, prefix: a.SFTPPrefix, readOnly: a.ReadOnly}
	srv := sftp.NewRequestServer(ch, fs.handlers(), sftp.WithStartDirectory("/"))
	srv.Serve()
	srv.Close()
	return 0
}

// forced runs the forced command for a's key: `ca sign` for its node,
// whatever the client asked (sshd passes that on as
// SSH_ORIGINAL_COMMAND, which ca sign reads only to know that a node's
// own agent asked, not an admin by hand).
func (s *sshServer) forced(a account, asked string, ch ssh.Channel) int {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var reason bytes.Buffer
	status := s.sign(ctx, a.SignNode, asked, ch, ch, io.MultiWriter(ch.Stderr(), &limited{w: &reason, n: 4096}))
	if s.signed != nil {
		s.signed(signEvent{User: a.User, Node: a.SignNode, Asked: asked, Status: status, Stderr: reason.String()})
	}
	return status
}

// limited writes at most n bytes to w and swallows the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
