package authority

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
)

// SignOptions tune ca sign.
type SignOptions struct {
	// Days is the validity; 0 uses the settings' node_days.
	Days int
	// Extra are names the node may ask for besides its recorded ones (the
	// forced command's --dns and --ip).
	Extra Names
}

// Signed is a certificate made from a node's request.
type Signed struct {
	Chain  []*x509.Certificate // the leaf, then intermediates; never the root
	Capped bool
}

// Sign signs a node's certificate signing request. It is what an SSH forced
// command runs for a node's agent, so it trusts nothing in the request: it
// checks the signature, the key's strength, that the CN is the node id and
// that every name is one the CA allows the node (SignPolicy), refuses a
// revoked node, and records the certificate before returning it. It never
// prompts: an encrypted CA key needs a passphrase file.
func (a *Authority) Sign(id string, csrData []byte, o SignOptions) (*Signed, error) {
	kind := KindNode
	if strings.HasPrefix(id, ControlPrefix) {
		kind = KindControl
	}
	if err := ValidateID(id, kind); err != nil {
		return nil, fmt.Errorf("--node: %w", err)
	}
	if err := o.Extra.ForNode(id); err != nil {
		return nil, err
	}
	csr, err := pki.ParseCSR(csrData)
	if err != nil {
		return nil, err
	}
	a.opts.Passphrase = nil
	issuer, err := a.Issuer()
	if err != nil {
		return nil, err
	}
	now := a.opts.now()
	nb, na, capped, err := a.leafValidity(now, o.Days)
	if err != nil {
		return nil, err
	}
	db, err := a.openDB(false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var cert *x509.Certificate
	// One transaction from the check to the record: a node revoked a moment
	// ago is refused, and nothing leaves this process unrecorded.
	err = db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		n, err := getNode(tx, id)
		if err != nil {
			return err
		}
		if n != nil && n.Revoked != nil {
			return fmt.Errorf("node %q was revoked on %s; the CA signs nothing for it (the admin can take it back with `certkeeper ca issue node %s --force`)", id, n.Revoked.At.Format(time.DateOnly), id)
		}
		asked, err := pki.CheckCSR(csr, SignPolicy(id, n, o.Extra))
		if err != nil {
			return err
		}
		names := SignNames(asked, n, o.Extra)
		carried := WithID(id, kind, names)
		cert, err = issuer.Issue(pki.LeafProfile{
			CommonName:   id,
			Organization: a.Settings.Name,
			DNSNames:     carried.DNS,
			IPAddresses:  carried.IPs,
			PublicKey:    csr.PublicKey,
			NotBefore:    nb,
			NotAfter:     na,
		}, a.opts.rand())
		if err != nil {
			return err
		}
		rec := newCertRecord(id, kind, cert, SourceCSR, now)
		if err := putCert(tx, cert.SerialNumber, &rec, false); err != nil {
			return err
		}
		node := &NodeRecord{ID: id, Kind: kind, Created: now}
		if n != nil {
			node.Created = n.Created
			names.Add(n.Names())
		}
		names.Add(o.Extra)
		node.DNSNames, node.IPs = names.DNS, ipStrings(names.IPs)
		node.KeyType, node.Current, node.Source = rec.KeyType, rec.Serial, SourceCSR
		return putNode(tx, node)
	})
	if err != nil {
		return nil, err
	}
	return &Signed{Chain: append([]*x509.Certificate{cert}, issuer.Chain...), Capped: capped}, nil
}
