// Package authority is certkeeper's cluster CA on the admin host: a
// directory holding the CA's key and certificate, a bbolt database of every
// certificate issued, and one publish directory per node that pull and push
// read from. It decides with pure functions (records.go) and does the
// x509 work with package pki; this package is the thin layer of files,
// locks and transactions around them.
//
// Layout of a CA directory (mode 0700):
//
//	cluster.key   0600  the CA's private key (PKCS#8, optionally encrypted)
//	cluster.crt   0644  the CA certificate every node trusts
//	cluster.crl   0644  the revocation list, from `ca crl`
//	ca.db         0600  the database (bbolt)
//	ca.toml       0600  settings (settings.go)
//	nodes/<id>/         node.crt, node.key (0600), cluster.crt
//	nodes/control-<host>/  control-service.crt, control-service.key, cluster.crt
package authority

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// File names in a CA directory. Other parts of certkeeper (push, pull)
// rely on NodesDir and the per-kind file names; do not change them.
const (
	CertFile     = "cluster.crt"
	KeyFile      = "cluster.key"
	CRLFile      = "cluster.crl"
	DBFile       = "ca.db"
	SettingsFile = "ca.toml"
	NodesDir     = "nodes"
)

// Modes of what a CA directory holds.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// PassphraseFunc asks a person for the CA key's passphrase. It is nil when
// nobody can be asked (an SSH forced command, a timer).
type PassphraseFunc func(prompt string, confirm bool) ([]byte, error)

// Options are what every command may set; the zero value works.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness for keys and serials; nil means crypto/rand.
	Rand io.Reader
	// LockTimeout bounds the wait for another command holding the
	// database; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
	// Workers bounds the goroutines that make keys and sign; 0 means one
	// per CPU.
	Workers int
	// PassphraseFile overrides the settings' passphrase_file.
	PassphraseFile string
	// Passphrase prompts when the key is encrypted and no file is given.
	Passphrase PassphraseFunc
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) rand() io.Reader {
	if o.Rand != nil {
		return o.Rand
	}
	return rand.Reader
}

func (o Options) lockTimeout() time.Duration {
	if o.LockTimeout > 0 {
		return o.LockTimeout
	}
	return DefaultLockTimeout
}

func (o Options) workers(jobs int) int {
	w := o.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return max(1, min(w, jobs))
}

// Authority is an opened CA directory. The key is read only by the commands
// that sign, and only once.
type Authority struct {
	Dir         string
	Cert        *x509.Certificate
	Settings    Settings
	opts        Options
	fingerprint string
	issuer      *pki.Issuer
	// trust is the two-CA trust file while a CA rotation runs
	// (carotate.go): what nodes are given as cluster.crt.
	trust []byte
}

func (a *Authority) path(name string) string { return filepath.Join(a.Dir, name) }

// ErrNoCA means the directory holds no CA.
var ErrNoCA = errors.New("no CA here")

// Load opens the CA in dir: its certificate and settings. It fails with a
// hint when the directory holds no CA or an unfinished one.
func Load(dir string, o Options) (*Authority, error) {
	a := &Authority{Dir: dir, opts: o}
	certPEM, err := os.ReadFile(a.path(CertFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if _, kerr := os.Stat(a.path(KeyFile)); kerr == nil {
			return nil, fmt.Errorf("%s: %s is missing but %s exists: an interrupted `ca init`? Remove %s, %s and %s and run `certkeeper ca init` again",
				dir, CertFile, KeyFile, KeyFile, DBFile, SettingsFile)
		}
		return nil, fmt.Errorf("%w: %s has no %s; create a CA with `certkeeper ca init --dir %s --name CLUSTER`", ErrNoCA, dir, CertFile, dir)
	}
	c, err := pki.Parse(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.path(CertFile), err)
	}
	if len(c.Certificates) == 0 || !pki.IsCACert(c.Certificates[0]) {
		return nil, fmt.Errorf("%s: not a CA certificate", a.path(CertFile))
	}
	a.Cert = c.Certificates[0]
	a.fingerprint = pki.Fingerprint(a.Cert)
	if a.trust, err = os.ReadFile(a.path(filepath.FromSlash(TrustFile))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if a.Settings, err = ReadSettings(a.path(SettingsFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (ca init writes it; restore it or write one, see docs/ca.md)", err)
		}
		return nil, err
	}
	return a, nil
}

// Issuer reads the CA key (asking for its passphrase if it is encrypted)
// and checks it belongs to the CA certificate and the CA is usable.
func (a *Authority) Issuer() (*pki.Issuer, error) {
	if a.issuer != nil {
		return a.issuer, nil
	}
	if now := a.opts.now(); !now.Before(a.Cert.NotAfter) {
		return nil, fmt.Errorf("%s: %w on %s; it can not issue certificates any more (make a new CA with `certkeeper ca init` in another directory and issue every node again)",
			a.path(CertFile), pki.ErrCAExpired, a.Cert.NotAfter.UTC().Format(time.DateTime+" MST"))
	}
	path := a.path(KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (the CA key; without it this host can not sign. If you keep it offline, bring it back for this command)", path, err)
	}
	if err := privateEnough(path, fi); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if pki.KeyIsEncrypted(data) {
		if pass, err = a.passphrase(); err != nil {
			return nil, err
		}
	}
	key, err := pki.DecryptKey(data, pass)
	if errors.Is(err, pki.ErrWrongPassphrase) {
		return nil, fmt.Errorf("%s: wrong passphrase", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !pki.KeyMatches(a.Cert, key) {
		return nil, fmt.Errorf("%s does not belong to %s (the public keys differ)", path, a.path(CertFile))
	}
	a.issuer = &pki.Issuer{Cert: a.Cert, Key: key}
	return a.issuer, nil
}

func (a *Authority) passphrase() ([]byte, error) {
	file := a.opts.PassphraseFile
	if file == "" && a.Settings.PassphraseFile != "" {
		// In ca.toml, a relative path is relative to the CA directory,
		// not to wherever the command happens to run.
		file = a.Settings.PassphraseFile
		if !filepath.IsAbs(file) {
			file = filepath.Join(a.Dir, file)
		}
	}
	if file != "" {
		return ReadPassphraseFile(file)
	}
	if a.opts.Passphrase != nil {
		return a.opts.Passphrase(fmt.Sprintf("Passphrase for %s: ", a.path(KeyFile)), false)
	}
	return nil, fmt.Errorf("%s is encrypted and there is no one to ask for its passphrase: give --passphrase-file FILE, or set passphrase_file in %s", a.path(KeyFile), a.path(SettingsFile))
}

// ReadPassphraseFile reads a passphrase from a file: its first line,
// without the line ending. The file must not be readable by others.
func ReadPassphraseFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	if err := privateEnough(path, fi); err != nil {
		return nil, err
	}
	if fi.Size() > 4096 {
		return nil, fmt.Errorf("passphrase file %s is larger than 4 KiB; it should hold one line", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return []byte(line), nil
}

// privateEnough refuses a secret that group or others may read, as ssh
// refuses such a private key. Windows has no such bits to check.
func privateEnough(path string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: group or others may read this secret; run `chmod 600 %s`", path, m, path)
	}
	return nil
}

// CACertPEM is the CA certificate as published in every bundle: during a
// CA rotation, the trust file with both CAs.
func (a *Authority) CACertPEM() []byte {
	if a.trust != nil {
		return a.trust
	}
	return pki.EncodeCertificates(a.Cert)
}
