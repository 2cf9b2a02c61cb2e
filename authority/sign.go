package authority

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
	// HandedIn: the request is one the admin hands in (ca sign run by
	// hand), not the node's agent renewing through its forced command.
	// For a node whose key is made here (push or pull: ca issue, ca
	// renew), the certificate is recorded as its current one and the
	// node keeps that mode: its publish directory is left as it is, and
	// ca renew re-issues it in its window. Without it, a request converts
	// such a node to CSR mode (a pull+csr node's first renewal by CSR).
	HandedIn bool
}

// Signed is a certificate made from a node's request.
type Signed struct {
	Chain  []*x509.Certificate // the leaf, then intermediates; never the root
	Capped bool
	// Reused: the request was for the key of the node's current
	// certificate, signed earlier and not installed since (ReuseSigned),
	// and that certificate was handed back; nothing new was recorded.
	Reused bool
	// Mode is the node's mode after the request when it was not CSR mode
	// before: KeptMode (HandedIn) or ConvertedToCSR; "" otherwise.
	Mode ModeChange
	// Was is the node's source before the request (issue or renew) when
	// Mode is set.
	Was Source
}

// ModeChange says what a request did to a node whose key was made here.
type ModeChange string

const (
	KeptMode       ModeChange = "kept"
	ConvertedToCSR ModeChange = "converted"
)

// SignMode decides what a request does to the node's recorded mode (its
// Source): a new node, or one in CSR mode, is (stays) in CSR mode; a node
// whose key is made here (issue, renew) keeps that mode when the admin
// hands the request in, and turns to CSR mode when its own agent sends it
// (through the forced command: the node renews by CSR from now on). It
// returns the node's source after the request and what changed.
func SignMode(n *NodeRecord, handedIn bool) (Source, ModeChange) {
	switch {
	case n == nil || n.Source == SourceCSR || n.Source == "":
		return SourceCSR, ""
	case handedIn:
		return n.Source, KeptMode
	}
	return SourceCSR, ConvertedToCSR
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
	reused := false
	var mode ModeChange
	var was Source
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
		if c, err := a.reusable(tx, n, csr.PublicKey, carried, issuer.Cert, nb, na, now); err != nil || c != nil {
			if err != nil {
				return err
			}
			cert, reused = c, true
			if n.Source == SourceCSR || n.Source == "" {
				// Nothing new is recorded; the publish directory gets
				// the current trust file and CRL again.
				return a.publishSigned(id, kind, append([]*x509.Certificate{cert}, issuer.Chain...))
			}
			return nil
		}
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
		node.KeyType, node.Current = rec.KeyType, rec.Serial
		node.Source, mode = SignMode(n, o.HandedIn)
		if mode == KeptMode {
			// Its key is made here, as before: the next ca renew
			// makes one of the recorded type.
			node.KeyType, was = n.KeyType, n.Source
		} else if mode == ConvertedToCSR {
			was = n.Source
		}
		if err := putNode(tx, node); err != nil {
			return err
		}
		if mode == KeptMode {
			// What push and pull deliver stays the bundle made here.
			return nil
		}
		return a.publishSigned(id, kind, append([]*x509.Certificate{cert}, issuer.Chain...))
	})
	if err != nil {
		return nil, err
	}
	if reused {
		capped = false
	}
	return &Signed{Chain: append([]*x509.Certificate{cert}, issuer.Chain...), Capped: capped, Reused: reused, Mode: mode, Was: was}, nil
}

// reusable returns the node's current certificate when ReuseSigned says a
// request for pub gets it back, else nil.
func (a *Authority) reusable(tx *bolt.Tx, n *NodeRecord, pub any, names Names, issuer *x509.Certificate, nb, na, now time.Time) (*x509.Certificate, error) {
	if n == nil {
		return nil, nil
	}
	cur, c, err := currentCert(tx, n)
	if err != nil && cur == nil {
		return nil, err
	}
	if c == nil || !ReuseSigned(cur, c, pub, names, issuer, nb, na, now) {
		return nil, nil // one that does not parse is signed anew
	}
	return c, nil
}

// publishSigned puts a certificate made from a node's request into its
// publish directory, in place of the bundle `ca issue` left there: the
// chain as node.crt (or control-service.crt), the current cluster.crt and
// cluster.crl, and no key (the node's key lives on the node, and the one
// `ca issue` made no longer matches). So what `certkeeper push` (or a
// pull account) delivers to a CSR-mode node is its own live certificate
// with the current trust file and CRL, which its agent installs with the
// live key: a CA rotation's trust files and new CRLs reach it, and a push
// never brings back the certificate its last request replaced (which the
// agent would refuse as older, trust file and all). The key goes first:
// a push in between carries a certificate without its key, which the
// agent refuses unless it matches the live key, and the next push is
// whole. Called under the database lock, inside the request's
// transaction: what is published is what is recorded.
func (a *Authority) publishSigned(id string, kind Kind, chain []*x509.Certificate) error {
	certName, keyName := kind.Files()
	dir := path.Join(NodesDir, id)
	root, err := os.OpenRoot(a.Dir)
	if err != nil {
		return err
	}
	err = root.Remove(path.Join(dir, keyName))
	root.Close()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w (the key ca issue published for a node that now renews by CSR)", filepath.Join(a.Dir, dir, keyName), err)
	}
	files := []pubFile{
		{path.Join(dir, certName), pki.EncodeCertificates(chain...), certMode},
		{path.Join(dir, CertFile), a.CACertPEM(), certMode},
	}
	if crl := a.currentCRL(); crl != nil {
		files = append(files, pubFile{path.Join(dir, CRLFile), crl, certMode})
	}
	return publish(a.Dir, files)
}
