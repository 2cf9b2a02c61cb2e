package distribute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// PinState is what known_hosts says about a host key.
type PinState int

const (
	// Unpinned: known_hosts has no entry for the host.
	Unpinned PinState = iota
	// Pinned: the key is the one known_hosts holds.
	Pinned
	// Changed: known_hosts holds another key for the host.
	Changed
)

// preferredHostKeyAlgos is the order `trust` asks for a host key in when
// none is pinned yet: ed25519 first, the type OpenSSH itself prefers.
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

var errGotKey = errors.New("host key received")

// FetchHostKey connects to address (port used when it has none) and
// returns the host key the server presents, without logging in. When
// known_hosts already holds keys for the host, the key of those types is
// asked for, so the comparison is like for like.
func FetchHostKey(ctx context.Context, address string, port int, knownHostsPath string, timeout time.Duration) (string, ssh.PublicKey, error) {
	hp, err := hostPort(address, port)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", address, err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	algos := preferredHostKeyAlgos
	if knownHostsPath != "" {
		if db, err := knownhosts.NewDB(knownHostsPath); err == nil {
			if known := db.HostKeyAlgorithms(hp); len(known) > 0 {
				algos = known
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", nil, fmt.Errorf("known_hosts %s: %w", knownHostsPath, err)
		}
	}
	var key ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "certkeeper-trust",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			key = k
			return errGotKey
		},
		Timeout:       timeout,
		ClientVersion: "SSH-2.0-certkeeper",
	}
	cfg.KeyExchanges = KeyExchanges
	raw, err := dialTCP(ctx, hp, timeout)
	if err != nil {
		return hp, nil, err
	}
	_, err = handshake(ctx, raw, hp, cfg, timeout)
	if key != nil {
		return hp, key, nil
	}
	if err == nil {
		err = errors.New("the server completed a handshake without showing a host key")
	}
	return hp, nil, err
}

// CheckPin compares key with what known_hosts holds for hostPort. A
// missing known_hosts file means nothing is pinned.
func CheckPin(knownHostsPath, hostPort string, key ssh.PublicKey) (PinState, []xknownhosts.KnownKey, error) {
	db, err := knownhosts.NewDB(knownHostsPath)
	if errors.Is(err, os.ErrNotExist) {
		return Unpinned, nil, nil
	}
	if err != nil {
		return Unpinned, nil, fmt.Errorf("known_hosts %s: %w", knownHostsPath, err)
	}
	addr, _ := net.ResolveTCPAddr("tcp", hostPort)
	if addr == nil {
		addr = &net.TCPAddr{IP: net.IPv4zero}
	}
	err = db.HostKeyCallback()(hostPort, addr, key)
	var ke *xknownhosts.KeyError
	switch {
	case err == nil:
		return Pinned, nil, nil
	case errors.As(err, &ke) && len(ke.Want) > 0:
		return Changed, ke.Want, nil
	case errors.As(err, &ke):
		return Unpinned, nil, nil
	}
	return Unpinned, nil, err
}

// Pin appends hostPort's key to known_hosts, creating the file (0644: host
// keys are public) and its missing directories (0755) if needed: a first
// `certkeeper trust` on a fresh admin host must not fail after the admin
// typed "yes". It refuses when a different key is pinned: replacing a
// pin is a decision for a person, with ssh-keygen -R.
func Pin(knownHostsPath, hostPort string, key ssh.PublicKey) error {
	state, pinned, err := CheckPin(knownHostsPath, hostPort, key)
	if err != nil {
		return err
	}
	switch state {
	case Pinned:
		return nil
	case Changed:
		return &HostKeyChangedError{Host: hostPort, Offered: key, Pinned: pinned}
	}
	if err := os.MkdirAll(filepath.Dir(knownHostsPath), 0o755); err != nil {
		return fmt.Errorf("known_hosts: create its directory: %w", err)
	}
	f, err := os.OpenFile(knownHostsPath, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	defer f.Close()
	line := knownhosts.Line([]string{hostPort}, key) + "\n"
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil && err != io.EOF {
			return fmt.Errorf("known_hosts %s: %w", knownHostsPath, err)
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("known_hosts %s: %w", knownHostsPath, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("known_hosts %s: %w", knownHostsPath, err)
	}
	return f.Close()
}
