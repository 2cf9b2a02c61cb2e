package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// CSRSource renews a bundle in CSR mode: it makes a new key on this node
// (the type of the live one unless key_type says otherwise), writes it
// 0600 under state_dir before anything else happens, sends a certificate
// signing request for it over SSH to the admin host's CA account, where
// `certkeeper ca sign` answers with the chain, and returns the key and the
// chain for the install pipeline, which takes the cluster CA from the live
// bundle. The key never leaves the node.
//
// The pending key is kept until its certificate is installed (Installed
// deletes it), so a failed exchange is retried with the same key and a
// crash in the middle loses nothing. A failed exchange changes nothing in
// the live directory.
type CSRSource struct {
	// Target is the CA account on the admin host.
	Target distribute.Target
	// StateDir holds the pending keys, in StateDir/csr/ (0700).
	StateDir string
	// Pull, when set, fetches a bundle that has nothing installed yet (the
	// first certificate, from the node's pull account); nil: the first
	// bundle comes by push or through the inbox.
	Pull *SFTPSource
	// Exchange sends a request and returns ca sign's output; nil means
	// distribute.RequestCertificate (tests may stand in for the admin host).
	Exchange func(ctx context.Context, t distribute.Target, csr []byte) ([]byte, error)
	// Rand is the key's randomness; nil means crypto/rand.
	Rand io.Reader
}

// ErrNoFirstBundle is a CSR bundle with nothing installed and no pull
// account: CSR mode renews a certificate; the first one is delivered.
var ErrNoFirstBundle = errors.New("CSR mode renews an installed certificate, and nothing is installed yet")

// NewCSRSource returns the source of a CSR bundle: requests go to
// [source] csr_user (or user); with csr_user set, user is the node's pull
// account, which brings the first bundle.
func NewCSRSource(cfg *Config) (*CSRSource, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("config %s has no [source] section: CSR mode sends requests to the admin host; add its address, user, identity_file and known_hosts", cfg.Path)
	}
	s := cfg.Source
	t := distribute.Target{Address: s.Address, User: s.User, IdentityFile: s.IdentityFile, KnownHosts: s.KnownHosts, Timeout: s.Timeout.Duration}
	src := &CSRSource{Target: t, StateDir: cfg.StateDir}
	if s.CSRUser != "" && s.CSRUser != s.User {
		src.Target.User = s.CSRUser
		pull, err := NewSFTPSource(cfg)
		if err != nil {
			return nil, err
		}
		src.Pull = pull
	}
	return src, nil
}

// Describe names where requests go, for logs and the generation's record.
func (s *CSRSource) Describe(*Bundle) string {
	hp, err := s.Target.HostPort()
	if err != nil {
		hp = s.Target.Address
	}
	return fmt.Sprintf("ssh://%s@%s (ca sign)", s.Target.User, hp)
}

// PendingKeyPath is where a bundle's pending key waits for its
// certificate.
func PendingKeyPath(stateDir string, b *Bundle) string {
	return filepath.Join(stateDir, "csr", b.Name+".key")
}

// Fetch renews the bundle by CSR (or pulls its first bundle, see Pull).
func (s *CSRSource) Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error) {
	m := rotate.NewManager(b.Spec())
	live, _, err := m.Live()
	if err != nil || live == nil || live.Leaf == nil || live.Key == nil || len(live.CAs) == 0 {
		if s.Pull != nil {
			return s.Pull.Fetch(ctx, b)
		}
		return nil, fmt.Errorf("bundle %q: %w in %s: deliver the first bundle by `certkeeper push` or into the inbox %s, or set [source] csr_user so that [source] user pulls it",
			b.Name, ErrNoFirstBundle, b.Resolved.Dir, b.Inbox)
	}
	keyType := pki.KeyTypeOf(live.Key.Signer.Public())
	if b.KeyType != "" {
		if keyType, err = pki.ParseKeyType(b.KeyType); err != nil {
			return nil, fmt.Errorf("bundle %q: key_type: %w", b.Name, err)
		}
	}
	key, keyPEM, err := s.pendingKey(b, keyType, live.Key.Signer)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: %w", b.Name, err)
	}
	// The CN the CA knows the node by: the live certificate's, which the
	// CA set to the node's id (control-HOST for a control service whose
	// node_id is HOST). Without names the CA fills in the recorded ones.
	cn := live.Leaf.Subject.CommonName
	if cn == "" {
		cn = b.NodeID
	}
	der, err := x509.CreateCertificateRequest(s.random(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: make the certificate request: %w", b.Name, err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	exchange := s.Exchange
	if exchange == nil {
		exchange = distribute.RequestCertificate
	}
	out, err := exchange(ctx, s.Target, csr)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: csr: %w", b.Name, err)
	}
	chain, err := ParseSignedChain(out, key.Public())
	if err != nil {
		return nil, fmt.Errorf("bundle %q: csr: %s: %w", b.Name, s.Describe(b), err)
	}
	return []rotate.Input{
		{Name: PendingKeyPath(s.StateDir, b), Data: keyPEM},
		{Name: "ca sign output from " + s.Describe(b), Data: pki.EncodeCertificates(chain...)},
	}, nil
}

// Installed deletes the pending key once its certificate is live: the
// live generation holds the key now, and the next renewal makes a new one.
func (s *CSRSource) Installed(b *Bundle) {
	_ = os.Remove(PendingKeyPath(s.StateDir, b))
}

func (s *CSRSource) random() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

// pendingKey returns the bundle's pending key: the one kept from an
// earlier attempt when it is still usable (the wanted type, and not the
// live key, which would mean its certificate was installed before the
// agent could delete it), else a new one, written before it is used.
func (s *CSRSource) pendingKey(b *Bundle, t pki.KeyType, live crypto.Signer) (crypto.Signer, []byte, error) {
	path := PendingKeyPath(s.StateDir, b)
	if data, err := readPrivateFile(path); err == nil {
		if c, err := pki.Parse(data); err == nil && len(c.Keys) == 1 && len(c.Certificates) == 0 {
			k := c.Keys[0].Signer
			if pki.KeyTypeOf(k.Public()) == t && !pki.KeyMatchesKey(k, live) {
				return k, data, nil
			}
		}
	}
	k, err := pki.GenerateKey(t, s.random())
	if err != nil {
		return nil, nil, fmt.Errorf("make a %s key: %w (set key_type to one of ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-4096)", t, err)
	}
	data, err := pki.MarshalKey(k)
	if err != nil {
		return nil, nil, err
	}
	if err := writePrivateFile(path, data); err != nil {
		return nil, nil, fmt.Errorf("keep the new key: %w", err)
	}
	return k, data, nil
}

// readPrivateFile reads a pending key: a regular file (not a link), small,
// and not readable by others; anything else is ignored and replaced.
func readPrivateFile(path string) ([]byte, error) {
	f, err := platform.OpenInput(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > 64<<10 {
		return nil, fmt.Errorf("%s is not a key file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o", path, fi.Mode().Perm())
	}
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// writePrivateFile writes a private key so that nobody but its owner can
// ever read it: its directory is 0700 (made so, or refused when it is a
// link), the file is created 0600 under a name nobody could have prepared
// (exclusively), synced, then renamed into place.
func writePrivateFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink?); certkeeper keeps pending keys only in a real directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	if err := platform.SecureDir(dir, 0o700); err != nil {
		return err
	}
	return platform.WriteFileAtomic(path, data, 0o600, platform.NoOwner)
}

// maxChain bounds the certificates ca sign may answer with: the leaf and
// a few intermediates.
const maxChain = 8

// ParseSignedChain reads what `ca sign` wrote: PEM certificates only, the
// leaf first and for the key this node sent (pub), at most maxChain of
// them, nothing else (no private key, no stray text). It is the agent's
// only parser of data the admin host sends back in CSR mode.
func ParseSignedChain(out []byte, pub crypto.PublicKey) ([]*x509.Certificate, error) {
	if len(out) > distribute.MaxSignOutput {
		return nil, fmt.Errorf("the answer is larger than %d bytes", distribute.MaxSignOutput)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, errors.New("ca sign answered with nothing (no certificate on its standard output)")
	}
	var chain []*x509.Certificate
	rest := out
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("the answer holds a %q PEM block; ca sign writes certificates only", block.Type)
		}
		if len(block.Headers) > 0 {
			return nil, errors.New("the answer's certificate has PEM headers; ca sign writes none")
		}
		if len(chain) == maxChain {
			return nil, fmt.Errorf("the answer holds more than %d certificates", maxChain)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate in the answer does not parse: %w", err)
		}
		chain = append(chain, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("the answer holds something other than PEM certificates (%q…); is the forced command `certkeeper ca sign`?", distribute.Printable(string(head(rest, 60))))
	}
	if len(chain) == 0 {
		return nil, errors.New("the answer holds no certificate")
	}
	if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(chain[0].PublicKey) {
		return nil, errors.New("the certificate in the answer is not for the key this node sent")
	}
	return chain, nil
}

func head(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return b[:n]
	}
	return b
}
