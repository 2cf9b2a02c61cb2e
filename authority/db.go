package authority

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The database is bbolt: one file, copy-on-write B+trees with a checksummed
// meta page, so a process killed at any instant leaves either the old or the
// new state; an exclusive file lock for writers and a shared one for
// readers, so concurrent `ca` commands take turns. Values are JSON.
var (
	bucketMeta  = []byte("meta")
	bucketCerts = []byte("certs") // serial (big-endian bytes) -> CertRecord
	bucketNodes = []byte("nodes") // id -> NodeRecord
)

var (
	metaVersion   = []byte("version")
	metaCA        = []byte("ca_sha256")
	metaCRLNumber = []byte("crl_number")
)

const schemaVersion = "1"

// DefaultLockTimeout is how long a command waits for another one holding
// the database. Writers hold it for milliseconds per batch (signing happens
// outside the lock), so a wait this long means something is stuck.
const DefaultLockTimeout = 15 * time.Second

func (a *Authority) openDB(readOnly bool) (*bolt.DB, error) {
	path := a.path(DBFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no CA database (this directory was not made by `certkeeper ca init`, or ca.db was removed)", path)
		}
		return nil, err
	}
	return openBolt(path, readOnly, a.opts.lockTimeout())
}

func openBolt(path string, readOnly bool, timeout time.Duration) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is in use by another certkeeper ca command (waited %s); try again when it has finished", path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: open the CA database: %w", path, err)
	}
	return db, nil
}

// checkMeta makes sure the database belongs to this CA certificate, so a
// cluster.crt swapped under an old database is noticed before anything is
// signed or revoked in the wrong CA's name.
func (a *Authority) checkMeta(tx *bolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return fmt.Errorf("%s: not a certkeeper CA database (no meta bucket); an interrupted `ca init`?", a.path(DBFile))
	}
	if v := string(m.Get(metaVersion)); v != schemaVersion {
		return fmt.Errorf("%s: database version %q; this certkeeper reads version %s", a.path(DBFile), v, schemaVersion)
	}
	if fp := string(m.Get(metaCA)); fp != a.fingerprint && !midSwap(tx, a.fingerprint) {
		return fmt.Errorf("%s belongs to another CA (sha256 %s), not to %s (sha256 %s); was cluster.crt replaced?", a.path(DBFile), fp, a.path(CertFile), a.fingerprint)
	}
	return nil
}

func getNode(tx *bolt.Tx, id string) (*NodeRecord, error) {
	v := tx.Bucket(bucketNodes).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var n NodeRecord
	if err := json.Unmarshal(v, &n); err != nil {
		return nil, fmt.Errorf("node %q: damaged record: %w", id, err)
	}
	return &n, nil
}

func putNode(tx *bolt.Tx, n *NodeRecord) error {
	v, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketNodes).Put([]byte(n.ID), v)
}

// currentCert reads a node's current certificate: its record and the
// certificate parsed. Both are nil for a node with none recorded; a record
// whose certificate does not parse comes back with the error.
func currentCert(tx *bolt.Tx, n *NodeRecord) (*CertRecord, *x509.Certificate, error) {
	serial, err := ParseSerial(n.Current)
	if err != nil {
		return nil, nil, nil
	}
	c, err := getCert(tx, serial)
	if err != nil || c == nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return c, nil, fmt.Errorf("certificate %s: %w", c.Serial, err)
	}
	return c, leaf, nil
}

func getCert(tx *bolt.Tx, serial *big.Int) (*CertRecord, error) {
	v := tx.Bucket(bucketCerts).Get(serialKey(serial))
	if v == nil {
		return nil, nil
	}
	var c CertRecord
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("certificate %s: damaged record: %w", FormatSerial(serial), err)
	}
	return &c, nil
}

// putCert stores a certificate; a serial already present is an error,
// never an overwrite.
func putCert(tx *bolt.Tx, serial *big.Int, c *CertRecord, replace bool) error {
	b := tx.Bucket(bucketCerts)
	k := serialKey(serial)
	if !replace && b.Get(k) != nil {
		return fmt.Errorf("serial %s is already in the database; not issuing a repeat", c.Serial)
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func allNodes(tx *bolt.Tx) ([]NodeRecord, error) {
	var out []NodeRecord
	err := tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
		var n NodeRecord
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("node %q: damaged record: %w", k, err)
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

func allCerts(tx *bolt.Tx) ([]CertRecord, error) {
	var out []CertRecord
	err := tx.Bucket(bucketCerts).ForEach(func(k, v []byte) error {
		var c CertRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("certificate %x: damaged record: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func nextCRLNumber(tx *bolt.Tx) (*big.Int, error) {
	m := tx.Bucket(bucketMeta)
	n := int64(0)
	if v := m.Get(metaCRLNumber); v != nil {
		var err error
		if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return nil, fmt.Errorf("damaged CRL number %q", v)
		}
	}
	n++
	if err := m.Put(metaCRLNumber, []byte(strconv.FormatInt(n, 10))); err != nil {
		return nil, err
	}
	return big.NewInt(n), nil
}

func initDB(tx *bolt.Tx, fingerprint string) error {
	for _, b := range [][]byte{bucketMeta, bucketCerts, bucketNodes} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	m := tx.Bucket(bucketMeta)
	if m.Get(metaCA) != nil {
		return errors.New("the CA database is already initialised")
	}
	if err := m.Put(metaVersion, []byte(schemaVersion)); err != nil {
		return err
	}
	return m.Put(metaCA, []byte(fingerprint))
}

// midSwap reports that a CA rotation is replacing cluster.crt (carotate.go)
// and fp is one of its two CAs: either may be in place for a moment.
func midSwap(tx *bolt.Tx, fp string) bool {
	r, err := getRotation(tx)
	return err == nil && r != nil && r.Phase == PhaseSwapping && (fp == r.From || fp == r.To)
}
