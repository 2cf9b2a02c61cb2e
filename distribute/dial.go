// Package distribute moves bundles over SSH/SFTP, the transport cluster
// admins already trust: dialling with known_hosts, pulling a node's bundle
// from the admin host, pushing bundles to many nodes at once, pinning host
// keys, and the admin host's sshd set-up that lets each node read only its
// own files.
//
// Every phase of a connection has a deadline (TCP dial, SSH handshake,
// session, each SFTP operation) and honours its context, so a server that
// accepts a connection and then says nothing can not hang certkeeper. Host
// keys are always verified against known_hosts; there is no option to turn
// that off.
package distribute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// DefaultTimeout bounds each phase of a connection when a Target sets none:
// long enough for a loaded admin host, short enough that a dead one is
// reported in a reasonable time.
const DefaultTimeout = 30 * time.Second

// Target is an SSH server to connect to and how to log in.
type Target struct {
	// Address is "host", "host:port" or "[v6]:port". Port is used when the
	// address has none (22 when zero).
	Address string
	Port    int
	User    string
	// IdentityFile is a private key (ed25519, ecdsa or rsa, unencrypted).
	// Empty means the ssh-agent at $SSH_AUTH_SOCK.
	IdentityFile string
	// KnownHosts is required: host keys are always verified.
	KnownHosts string
	// Timeout bounds each phase: dial, handshake, session open, and each
	// SFTP operation. Zero means DefaultTimeout.
	Timeout time.Duration
	// Keepalive is the interval of keepalive@openssh.com requests on an
	// open connection; zero means a third of Timeout. A server that does
	// not answer one within Timeout is dropped.
	Keepalive time.Duration
}

// HostPort returns the target's address with its port, as known_hosts and
// net.Dial want it.
func (t Target) HostPort() (string, error) { return hostPort(t.Address, t.Port) }

func (t Target) timeout() time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return DefaultTimeout
}

func hostPort(address string, port int) (string, error) {
	if port == 0 {
		port = 22
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("port %d is out of range", port)
	}
	if address == "" {
		return "", errors.New("empty address")
	}
	if h, p, err := net.SplitHostPort(address); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || h == "" {
			return "", fmt.Errorf("address %q: bad port or host", address)
		}
		return address, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(address, "["), "]")
	if strings.ContainsAny(host, " \t\n/@") {
		return "", fmt.Errorf("address %q is not a host name or IP address", address)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// KeyExchanges is certkeeper's key exchange preference: x/crypto's
// default without diffie-hellman-group14-sha1. The ~60 ms a connection
// that OpenSSH's client spends on sntrup761x25519 does not arise here
// (x/crypto does not implement it; against OpenSSH 9.2 this negotiates
// curve25519). mlkem768x25519 stays first: BenchmarkKeyExchange measures it
// at about 0.3 ms more than curve25519 a connection, a fair price for a
// post-quantum exchange when private keys travel (OpenSSH 9.9 and later).
var KeyExchanges = []string{
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeCurve25519,
	ssh.KeyExchangeECDHP256,
	ssh.KeyExchangeECDHP384,
	ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH14SHA256,
}

// HostKeyChangedError is the loud refusal when a server offers a host key
// that differs from the one pinned in known_hosts.
type HostKeyChangedError struct {
	Host    string
	Offered ssh.PublicKey
	Pinned  []xknownhosts.KnownKey
}

func (e *HostKeyChangedError) Error() string {
	var pins []string
	file := ""
	for _, k := range e.Pinned {
		pins = append(pins, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		file = k.Filename
	}
	return fmt.Sprintf("HOST KEY CHANGED for %s: the server offered %s %s but known_hosts pins %s; refusing to connect. "+
		"Someone may be intercepting the connection, or the host was reinstalled: if you know why the key changed, "+
		"remove the old entry (ssh-keygen -R %s -f %s) and pin the new key with `certkeeper trust`",
		e.Host, e.Offered.Type(), ssh.FingerprintSHA256(e.Offered), strings.Join(pins, ", "),
		shellQuote(knownhosts.Normalize(e.Host)), shellQuote(file))
}

// UnknownHostError says a host has no entry in known_hosts.
type UnknownHostError struct {
	Host, KnownHosts string
}

func (e *UnknownHostError) Error() string {
	return fmt.Sprintf("%s is not in known_hosts %s; check its host key fingerprint and pin it with `certkeeper trust %s --known-hosts %s`",
		e.Host, e.KnownHosts, e.Host, e.KnownHosts)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// hostKeys loads known_hosts and returns a callback that checks hostPort's
// key, and the host key algorithms to offer: exactly the types
// known_hosts holds for it, so a server that would prefer an ecdsa key
// still shows the ed25519 key that was pinned.
func hostKeys(path, hp string) (ssh.HostKeyCallback, []string, error) {
	if path == "" {
		return nil, nil, errors.New("no known_hosts file given; host keys are always verified (pin one with `certkeeper trust HOST --known-hosts FILE`)")
	}
	db, err := knownhosts.NewDB(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("known_hosts %s does not exist; pin the host's key with `certkeeper trust %s --known-hosts %s`", path, hp, path)
		}
		return nil, nil, fmt.Errorf("known_hosts %s: %w", path, err)
	}
	algos := db.HostKeyAlgorithms(hp)
	if len(algos) == 0 {
		return nil, nil, &UnknownHostError{Host: hp, KnownHosts: path}
	}
	inner := db.HostKeyCallback()
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := inner(hostname, remote, key)
		var ke *xknownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) > 0 {
				return &HostKeyChangedError{Host: hp, Offered: key, Pinned: ke.Want}
			}
			return &UnknownHostError{Host: hp, KnownHosts: path}
		}
		return err
	}
	return cb, algos, nil
}

// auth returns the login method: the identity file, or the ssh-agent. The
// returned closer releases the agent connection.
func auth(ctx context.Context, t Target) (ssh.AuthMethod, func(), error) {
	if t.IdentityFile != "" {
		s, err := LoadIdentity(t.IdentityFile)
		if err != nil {
			return nil, nil, err
		}
		return ssh.PublicKeys(s), func() {}, nil
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, errors.New("no identity_file set and no ssh-agent ($SSH_AUTH_SOCK is empty): set identity_file to the private key to log in with")
	}
	d := net.Dialer{Timeout: t.timeout()}
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent at %s: %w", sock, err)
	}
	ag := agent.NewClient(c)
	return ssh.PublicKeysCallback(ag.Signers), func() { c.Close() }, nil
}

// LoadIdentity reads an unencrypted OpenSSH, PKCS#1, PKCS#8 or SEC 1
// private key. Like ssh, it refuses a key file others can read.
func LoadIdentity(path string) (ssh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity file %s has mode %04o: a private key must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	if fi.Size() > 64<<10 {
		return nil, fmt.Errorf("identity file %s is larger than 64 KiB; is it a private key?", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("identity file %s is encrypted with a passphrase; load it into ssh-agent (ssh-add %s) and leave identity_file unset, or use an unencrypted key readable only by certkeeper", path, path)
		}
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// clientConfig is the SSH client configuration for a target.
func clientConfig(t Target, hp string, am ssh.AuthMethod) (*ssh.ClientConfig, error) {
	cb, algos, err := hostKeys(t.KnownHosts, hp)
	if err != nil {
		return nil, err
	}
	if t.User == "" {
		return nil, fmt.Errorf("%s: no user to log in as", hp)
	}
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{am},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: algos,
		Timeout:           t.timeout(),
		ClientVersion:     "SSH-2.0-certkeeper",
	}
	cfg.KeyExchanges = KeyExchanges
	return cfg, nil
}

// dialTCP opens the TCP connection, bounded by the timeout and ctx.
func dialTCP(ctx context.Context, hp string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, "tcp", hp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: connect: %w", hp, ctx.Err())
		}
		if isTimeout(err) {
			return nil, fmt.Errorf("%s: connect: no answer within %s", hp, timeout)
		}
		return nil, fmt.Errorf("%s: %w", hp, unwrapOp(err))
	}
	return c, nil
}

// handshake runs the SSH handshake under a deadline: x/crypto's Timeout
// covers only the TCP dial, and a server that accepts and never speaks
// would otherwise hold the caller forever.
func handshake(ctx context.Context, raw net.Conn, hp string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	var expired atomic.Bool
	timer := time.AfterFunc(timeout, func() { expired.Store(true); raw.Close() })
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(raw, hp, cfg)
	timer.Stop()
	stop()
	if err == nil && expired.Load() {
		sc.Close()
		err = os.ErrDeadlineExceeded
	}
	if err != nil {
		raw.Close()
		var hk *HostKeyChangedError
		var uh *UnknownHostError
		switch {
		case errors.As(err, &hk):
			return nil, hk
		case errors.As(err, &uh):
			return nil, uh
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: SSH handshake: %w", hp, ctx.Err())
		case expired.Load() || isTimeout(err):
			return nil, fmt.Errorf("%s: SSH handshake timed out after %s (the server accepted the connection but did not complete the handshake)", hp, timeout)
		case strings.Contains(err.Error(), "no common algorithm for host key"):
			return nil, fmt.Errorf("%s: the server offers none of the host key types known_hosts holds for it (%s): its host keys changed, or known_hosts pins the wrong host; check, then re-pin with `certkeeper trust`: %w",
				hp, strings.Join(cfg.HostKeyAlgorithms, ", "), err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%s: login as %q refused: the server does not accept this key (check authorized_keys on the server and identity_file here)", hp, cfg.User)
		}
		return nil, fmt.Errorf("%s: SSH handshake: %w", hp, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unwrapOp drops net.OpError's repetition of the address.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
