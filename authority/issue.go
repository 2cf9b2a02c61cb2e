package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
)

// Request asks for one certificate with a key made here.
type Request struct {
	ID    string
	Kind  Kind
	Names Names
	// KeyType of the new key; "" keeps the node's recorded type, or uses
	// the settings' node_key_type for a new node.
	KeyType pki.KeyType
}

// NodeRequest checks a node id and returns its request.
func NodeRequest(id string, names Names, kt pki.KeyType) (Request, error) {
	if err := ValidateID(id, KindNode); err != nil {
		return Request{}, err
	}
	if err := names.ForNode(id); err != nil {
		return Request{}, err
	}
	return Request{ID: id, Kind: KindNode, Names: names, KeyType: kt}, nil
}

// ControlRequest returns the request for a control service on host: id
// control-HOST, the host itself as a subject alternative name (HTTPS clients
// check it), plus any other names.
func ControlRequest(host string, names Names, kt pki.KeyType) (Request, error) {
	hn, err := ParseName(host)
	if err != nil {
		return Request{}, fmt.Errorf("control hostname: %w", err)
	}
	id := ControlPrefix + host
	if err := ValidateID(id, KindControl); err != nil {
		return Request{}, fmt.Errorf("control hostname %q can not name a directory (give its DNS name; add addresses with --ip): %w", host, err)
	}
	if err := names.ForNode(host); err != nil {
		return Request{}, err
	}
	hn.Add(names)
	return Request{ID: id, Kind: KindControl, Names: hn, KeyType: kt}, nil
}

// IssueOptions tune ca issue.
type IssueOptions struct {
	Days         int  // validity; 0 means the settings' node_days
	Force        bool // issue again for ids that exist
	SkipExisting bool // leave ids that exist alone
}

// Issued is one certificate made and published.
type Issued struct {
	ID      string
	Kind    Kind
	Dir     string // the publish directory
	Cert    *x509.Certificate
	KeyType pki.KeyType
	KeptKey bool
	Note    string
}

// Failed is an id that could not be issued.
type Failed struct {
	ID  string
	Err error
}

// Result is what a batch did, id by id.
type Result struct {
	Issued  []Issued
	Skipped []Skip
	Failed  []Failed
	// Capped is set when the CA's expiry cut the validity short.
	Capped   bool
	NotAfter time.Time
}

// Err summarises failures, or is nil.
func (r *Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	var s []string
	for _, f := range r.Failed {
		s = append(s, fmt.Sprintf("%s: %v", f.ID, f.Err))
	}
	return fmt.Errorf("%d of %d failed:\n  %s", len(r.Failed), len(r.Failed)+len(r.Issued), strings.Join(s, "\n  "))
}

// job is one certificate on its way: planned under a read lock, signed
// with no lock held, recorded and published under the write lock.
type job struct {
	req     Request
	keyType pki.KeyType
	expect  string // the node's current serial when planned; "" for a new node
	created time.Time
	key     crypto.Signer // a key to sign again (renew_key = keep), or nil
	source  Source
	note    string

	cert *x509.Certificate
	out  crypto.Signer
	err  error
	// skip is set instead of err when the job became moot: a renewal
	// whose certificate another command (an agent's ca sign, a ca issue
	// --force) replaced meanwhile. The node has a newer certificate
	// than the one that was due, so a timer running ca renew must not
	// report that as a failure.
	skip string
}

// RefusedError lists the ids a batch refused before doing anything.
type RefusedError struct{ Problems []string }

func (e *RefusedError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d ids refused, nothing issued:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// MinPassphrase is the shortest passphrase an encrypted CA key gets.
const MinPassphrase = 8

// DuplicateID refuses a batch naming one id twice: which of the two
// certificates would be the node's is anyone's guess. Issue checks it;
// commands may too, before they open the CA, to call it a usage error.
func DuplicateID(ids []string) error {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return fmt.Errorf("id %q is given twice", id)
		}
		seen[id] = true
	}
	return nil
}

// Issue makes a key and certificate for every request and publishes each
// in nodes/<id>/. Requests are checked first (an id that exists is refused
// without Force or SkipExisting), and if any is refused nothing is issued.
// Keys are made and signed on every CPU; the records are written in one
// transaction, and the files published under the same lock.
func (a *Authority) Issue(ctx context.Context, reqs []Request, o IssueOptions) (*Result, error) {
	if len(reqs) == 0 {
		return nil, errors.New("nothing to issue")
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	if err := DuplicateID(ids); err != nil {
		return nil, err
	}
	now := a.opts.now()
	nb, na, capped, err := a.leafValidity(now, o.Days)
	if err != nil {
		return nil, err
	}
	res := &Result{Capped: capped, NotAfter: na}

	var (
		jobs    []*job
		refused []string
	)
	err = a.view(func(tx *bolt.Tx) error {
		for _, r := range reqs {
			n, err := getNode(tx, r.ID)
			if err != nil {
				return err
			}
			// A certificate an admin handed in (ca sign by hand) is
			// current and not published, on purpose: not an
			// interrupted issue.
			published := n != nil && (a.published(n) || a.handedIn(tx, n))
			switch what, why := DecideExisting(n, published, o.Force, o.SkipExisting); what {
			case RefuseExisting:
				refused = append(refused, fmt.Sprintf("%s %s", r.ID, why))
			case SkipExisting:
				res.Skipped = append(res.Skipped, Skip{r.ID, why})
			default:
				jobs = append(jobs, a.planIssue(r, n, why, now))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(refused) > 0 {
		return nil, &RefusedError{refused}
	}
	if len(jobs) == 0 {
		return res, nil // everything skipped: the CA key is not needed
	}
	// The key (and its passphrase) only once the batch is known to go ahead.
	issuer, err := a.Issuer()
	if err != nil {
		return nil, err
	}
	a.sign(ctx, issuer, jobs, nb, na)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted before anything was recorded: %w", err)
	}
	if err := a.commit(jobs, now); err != nil {
		return nil, err
	}
	a.collect(res, jobs)
	return res, nil
}

func (a *Authority) planIssue(r Request, n *NodeRecord, note string, now time.Time) *job {
	j := &job{req: r, keyType: r.KeyType, source: SourceIssue, note: note, created: now}
	if n != nil {
		j.expect, j.created = n.Current, n.Created
		if r.Names.Empty() && len(n.DNSNames)+len(n.IPs) > 0 {
			j.req.Names = n.Names()
			j.note = strings.TrimPrefix(j.note+"; names kept from the previous certificate", "; ")
		}
		if j.keyType == "" {
			if kt, err := pki.ParseKeyType(n.KeyType); err == nil {
				j.keyType = kt
			}
		}
	}
	if j.keyType == "" {
		j.keyType, _ = pki.ParseKeyType(a.Settings.NodeKeyType)
	}
	return j
}

// sign makes keys and certificates on every CPU. Nothing is locked: the
// expensive part of a batch (RSA keys take up to a second each) never
// holds up another command.
func (a *Authority) sign(ctx context.Context, issuer *pki.Issuer, jobs []*job, nb, na time.Time) {
	random := a.opts.rand()
	parallel(len(jobs), a.opts.workers(len(jobs)), func(i int) {
		j := jobs[i]
		if j.err = ctx.Err(); j.err != nil {
			return
		}
		key := j.key
		if key == nil {
			if key, j.err = pki.GenerateKey(j.keyType, random); j.err != nil {
				return
			}
		}
		names := WithID(j.req.ID, j.req.Kind, j.req.Names)
		j.cert, j.err = issuer.Issue(pki.LeafProfile{
			CommonName:   j.req.ID,
			Organization: a.Settings.Name,
			DNSNames:     names.DNS,
			IPAddresses:  names.IPs,
			PublicKey:    key.Public(),
			NotBefore:    nb,
			NotAfter:     na,
		}, random)
		j.out = key
	})
}

// commit records every signed job in one transaction, then publishes their
// files while still holding the lock, so two commands publishing for the
// same node can not interleave their files. A node that changed since it
// was planned (another command issued for it meanwhile) is not touched.
// A record is written before its files: a certificate that exists is always
// in the database, even if the process dies before publishing it.
func (a *Authority) commit(jobs []*job, now time.Time) error {
	pending := 0
	for _, j := range jobs {
		if j.err == nil {
			pending++
		}
	}
	if pending == 0 {
		return nil
	}
	db, err := a.openDB(false)
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		for _, j := range jobs {
			if j.err != nil {
				continue
			}
			n, err := getNode(tx, j.req.ID)
			if err != nil {
				return err
			}
			cur := ""
			if n != nil {
				cur = n.Current
			}
			if cur != j.expect && j.source == SourceRenew {
				j.skip = fmt.Sprintf("renewed meanwhile by another certkeeper command (its current certificate is now %s)", orNone(cur))
				continue
			}
			if cur != j.expect {
				j.err = fmt.Errorf("changed by another certkeeper command meanwhile (its current certificate is now %s); run again", orNone(cur))
				continue
			}
			rec := newCertRecord(j.req.ID, j.req.Kind, j.cert, j.source, now)
			if j.err = putCert(tx, j.cert.SerialNumber, &rec, false); j.err != nil {
				continue
			}
			node := &NodeRecord{
				ID: j.req.ID, Kind: j.req.Kind, DNSNames: j.req.Names.DNS, IPs: ipStrings(j.req.Names.IPs),
				KeyType: string(j.keyType), Current: rec.Serial, Source: j.source, Created: j.created,
			}
			if err := putNode(tx, node); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var files []pubFile
	caPEM := a.CACertPEM()
	crlPEM := a.currentCRL()
	for _, j := range jobs {
		if j.err != nil || j.skip != "" {
			continue
		}
		keyPEM, err := pki.MarshalKey(j.out)
		if err != nil {
			j.err = err
			continue
		}
		certName, keyName := j.req.Kind.Files()
		dir := path.Join(NodesDir, j.req.ID)
		files = append(files,
			pubFile{path.Join(dir, certName), pki.EncodeCertificates(append([]*x509.Certificate{j.cert}, a.chain()...)...), certMode},
			pubFile{path.Join(dir, keyName), keyPEM, keyMode},
			pubFile{path.Join(dir, CertFile), caPEM, certMode},
		)
		if crlPEM != nil {
			files = append(files, pubFile{path.Join(dir, CRLFile), crlPEM, certMode})
		}
	}
	failed, err := publishEach(a.Dir, files)
	for _, j := range jobs {
		if j.err != nil || j.skip != "" {
			continue
		}
		perr := err
		if perr == nil {
			perr = failed[path.Join(NodesDir, j.req.ID)]
		}
		if perr != nil {
			j.err = fmt.Errorf("recorded as serial %s but not published (%w); run the same command again: it re-issues what was never published", FormatSerial(j.cert.SerialNumber), perr)
		}
	}
	return nil
}

func (a *Authority) chain() []*x509.Certificate {
	if a.issuer != nil {
		return a.issuer.Chain
	}
	return nil
}

func (a *Authority) collect(res *Result, jobs []*job) {
	for _, j := range jobs {
		if j.skip != "" {
			res.Skipped = append(res.Skipped, Skip{j.req.ID, j.skip})
			continue
		}
		if j.err != nil {
			res.Failed = append(res.Failed, Failed{j.req.ID, j.err})
			continue
		}
		res.Issued = append(res.Issued, Issued{
			ID: j.req.ID, Kind: j.req.Kind, Dir: filepath.Join(a.Dir, NodesDir, j.req.ID), Cert: j.cert,
			KeyType: j.keyType, KeptKey: j.key != nil, Note: j.note,
		})
	}
	sort.Slice(res.Failed, func(i, k int) bool { return res.Failed[i].ID < res.Failed[k].ID })
}

func (a *Authority) view(fn func(tx *bolt.Tx) error) error {
	db, err := a.openDB(true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// published reports whether a node's current certificate and its key are
// in its publish directory. A run killed between renaming the certificate
// and the key leaves a new certificate beside the old key: not published.
func (a *Authority) published(n *NodeRecord) bool {
	certName, _ := n.Kind.Files()
	dir := filepath.Join(a.Dir, NodesDir, n.ID)
	data, err := os.ReadFile(filepath.Join(dir, certName))
	if err != nil {
		return false
	}
	c, err := pki.Parse(data)
	if err != nil || len(c.Certificates) == 0 || FormatSerial(c.Certificates[0].SerialNumber) != n.Current {
		return false
	}
	_, err = a.publishedKey(*n, c.Certificates[0])
	return err == nil
}

// handedIn reports whether a node whose key is made here has as its
// current certificate one signed from a request the admin handed in.
func (a *Authority) handedIn(tx *bolt.Tx, n *NodeRecord) bool {
	if n.Source == SourceCSR {
		return false
	}
	c, _, _ := currentCert(tx, n)
	return c != nil && c.Source == SourceCSR
}

// publishedKey reads a node's published key, for renewal with renew_key =
// keep, and checks it belongs to the node's current certificate.
func (a *Authority) publishedKey(n NodeRecord, cur *x509.Certificate) (crypto.Signer, error) {
	_, keyName := n.Kind.Files()
	p := filepath.Join(a.Dir, NodesDir, n.ID, keyName)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	c, err := pki.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(c.Keys) != 1 {
		return nil, fmt.Errorf("%s: expected one private key", p)
	}
	if !pki.KeyMatches(cur, c.Keys[0].Signer) {
		return nil, fmt.Errorf("%s does not match the current certificate", p)
	}
	return c.Keys[0].Signer, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// leafValidity is a new node certificate's validity from now: days when
// given (--days), else the CA's node lifetime, never past the CA's own
// expiry (capped says it was cut short).
func (a *Authority) leafValidity(now time.Time, days int) (notBefore, notAfter time.Time, capped bool, err error) {
	lifetime := a.Settings.NodeLifetime()
	if days != 0 {
		lifetime = time.Duration(days) * 24 * time.Hour
	}
	return pki.LeafValidity(now, lifetime, a.Cert)
}
