package authority

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
)

// InitParams describe a new CA.
type InitParams struct {
	Settings Settings    // Name and node defaults; see DefaultSettings
	KeyType  pki.KeyType // the CA's own key
	Days     int         // the CA's validity; 0 means DefaultCADays
	PathLen  int         // intermediates allowed below the CA; -1 for no limit
	// Passphrase, when set, encrypts cluster.key with it; it must have
	// MinPassphrase characters at least.
	Passphrase []byte
}

// DefaultCADays is the CA's default validity: ten years, as flocker-ca and
// the Glow and reign recipes choose. Renewing a CA means touching every
// node, so it is long; node certificates are short instead.
const DefaultCADays = 3650

// Init creates a CA in dir: the directory (0700), the key (0600), the
// self-signed certificate, the settings and the database. It refuses to
// touch a directory that already holds any of them.
func Init(dir string, p InitParams, o Options) (*Authority, error) {
	if err := p.Settings.Check(); err != nil {
		return nil, err
	}
	if p.Days == 0 {
		p.Days = DefaultCADays
	}
	if p.Days < 1 || p.Days > 36500 {
		return nil, fmt.Errorf("--days %d: a CA's validity is 1 to 36500 days", p.Days)
	}
	if p.Passphrase != nil && len(p.Passphrase) < MinPassphrase {
		return nil, fmt.Errorf("the passphrase is shorter than %d characters; the CA key deserves a long one", MinPassphrase)
	}
	if p.PathLen < -1 {
		return nil, fmt.Errorf("--path-len %d: use 0 or more, or -1 for no limit", p.PathLen)
	}
	// Missing parents are made 0755, as mkdir -p would: made 0700 they
	// would lock out the account that signs (certkeeper-ca) from a CA
	// outside /var/lib/certkeeper. Only the CA directory itself is 0700.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != dirMode {
		// Nobody else may list a CA directory. An empty one (made by hand
		// for the CA) is tightened before the key exists; one that holds
		// other things is the admin's to fix: chmod-ing a home directory
		// behind their back would surprise more than it protects.
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 {
			return nil, fmt.Errorf("%s has mode %04o and holds other files; a CA directory must be 0700: use a new directory, or run `chmod 700 %s` first", dir, fi.Mode().Perm(), dir)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			return nil, err
		}
	}
	a := &Authority{Dir: dir, opts: o, Settings: p.Settings}
	for _, name := range []string{CertFile, KeyFile, DBFile, SettingsFile} {
		if _, err := os.Lstat(a.path(name)); err == nil {
			return nil, fmt.Errorf("%s already exists: %s holds a CA (or part of one), and ca init never overwrites one. Use another --dir, or remove it yourself if you really mean to throw that CA away", a.path(name), dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	kt := p.KeyType
	if kt == "" {
		kt = pki.DefaultKeyType
	}
	key, err := pki.GenerateKey(kt, o.rand())
	if err != nil {
		return nil, err
	}
	now := o.now()
	cert, err := pki.NewCA(pki.CAProfile{
		Name:       p.Settings.Name,
		Key:        key,
		NotBefore:  now.Add(-pki.Backdate),
		NotAfter:   now.Add(time.Duration(p.Days) * 24 * time.Hour),
		MaxPathLen: p.PathLen,
	}, o.rand())
	if err != nil {
		return nil, err
	}
	var keyPEM []byte
	if len(p.Passphrase) > 0 {
		keyPEM, err = pki.EncryptKey(key, p.Passphrase)
	} else {
		keyPEM, err = pki.MarshalKey(key)
	}
	if err != nil {
		return nil, err
	}
	a.Cert, a.fingerprint = cert, pki.Fingerprint(cert)
	// The database's lock makes two concurrent inits of the same directory
	// take turns; the second one then finds the first's CA and stops.
	db, err := openBolt(a.path(DBFile), false, o.lockTimeout())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initDB(tx, a.fingerprint); err != nil {
			return fmt.Errorf("%s: %w", a.path(DBFile), err)
		}
		// cluster.crt goes last: Load takes a directory without it for an
		// unfinished init and says so.
		if err := publish(dir, []pubFile{{KeyFile, keyPEM, keyMode}, {SettingsFile, p.Settings.Encode(), keyMode}}); err != nil {
			return err
		}
		return publish(dir, []pubFile{{CertFile, pki.EncodeCertificates(cert), certMode}})
	})
	if err != nil {
		return nil, err
	}
	a.issuer = &pki.Issuer{Cert: cert, Key: key}
	return a, nil
}
