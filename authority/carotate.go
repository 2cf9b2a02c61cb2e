package authority

// Replacing the cluster CA without a flag day (docs/ca.md, "Replacing the
// cluster CA"). A rotation moves a CA directory from one CA (From) to
// another (To) in phases, each recorded in the database before and after
// its file work, so a process killed at any instant leaves a phase that
// RotationStatus explains and that the next command completes:
//
//	started    To's key and certificate are in rotation/; every node's
//	           published cluster.crt holds From and To; leaves are From's.
//	swapping   cluster.key/cluster.crt are being replaced by To's (From's
//	           are kept in rotation/ first).
//	issuing    To signs; every node's leaf is being re-issued by To.
//	issued     every node made here has a leaf from To (CSR-mode nodes get
//	           theirs at their next `ca sign`).
//	finishing  From is being dropped from every published cluster.crt.
//
// Abort turns the record around (From and To swap places): before the
// swap it goes straight to finishing; after it, the same swap and re-issue
// steps bring the directory back to the old CA.
//
// Files, besides the usual ones:
//
//	rotation/<sha256>.crt, .key   both CAs, by fingerprint
//	rotation/trust.crt            the two-CA trust file published as
//	                              nodes/<id>/cluster.crt while it exists

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
)

// RotationDir holds a rotation's files inside the CA directory.
const RotationDir = "rotation"

// TrustFile is the trust file published while a rotation runs.
const TrustFile = RotationDir + "/trust.crt"

var metaRotation = []byte("rotation")

// Phase is a rotation's step.
type Phase string

const (
	PhaseNone      Phase = ""
	PhaseStarted   Phase = "started"
	PhaseSwapping  Phase = "swapping"
	PhaseIssuing   Phase = "issuing"
	PhaseIssued    Phase = "issued"
	PhaseFinishing Phase = "finishing"
)

// Rotation is the record of a rotation in the database.
type Rotation struct {
	Phase   Phase     `json:"phase"`
	From    string    `json:"from"` // sha256 of the CA being replaced
	To      string    `json:"to"`   // sha256 of the CA replacing it
	Started time.Time `json:"started"`
	// Aborted is set once `ca rotate abort` turned the record around: To
	// is then the original CA.
	Aborted bool `json:"aborted,omitempty"`
}

func getRotation(tx *bolt.Tx) (*Rotation, error) {
	v := tx.Bucket(bucketMeta).Get(metaRotation)
	if v == nil {
		return nil, nil
	}
	var r Rotation
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("damaged rotation record: %w", err)
	}
	return &r, nil
}

func putRotation(tx *bolt.Tx, r *Rotation) error {
	if r == nil {
		return tx.Bucket(bucketMeta).Delete(metaRotation)
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(metaRotation, v)
}

// caFileName is where a rotation keeps a CA's certificate or key.
func caFileName(fp, ext string) string {
	return path.Join(RotationDir, strings.ReplaceAll(fp, ":", "")+ext)
}

// NextStep says which command moves a rotation on from its phase.
func (r *Rotation) NextStep() string {
	if r == nil {
		return "certkeeper ca rotate start"
	}
	switch r.Phase {
	case PhaseStarted:
		if r.Aborted {
			return "certkeeper ca rotate abort"
		}
		return "certkeeper ca rotate issue (once every node runs with the two-CA trust file)"
	case PhaseSwapping, PhaseIssuing:
		if r.Aborted {
			return "certkeeper ca rotate abort"
		}
		return "certkeeper ca rotate issue"
	case PhaseIssued:
		return "certkeeper ca rotate finish (once every node runs with its new leaf)"
	case PhaseFinishing:
		return "certkeeper ca rotate finish"
	}
	return ""
}

// RotateOptions tune the rotate commands.
type RotateOptions struct {
	// Days is the new CA's validity for start; 0 keeps the old CA's.
	Days int
	// Force lets finish drop the old CA while nodes still hold its leaves.
	Force bool
}

// StillOld is returned by finish when nodes still hold a leaf from the CA
// being dropped.
type StillOld struct{ IDs []string }

func (e *StillOld) Error() string {
	return fmt.Sprintf("%d node(s) still hold a certificate from the old CA: %s; dropping the old CA now would cut them off. Re-issue them (`certkeeper ca rotate issue`; CSR-mode nodes must run `certkeeper renew`), or give --force",
		len(e.IDs), strings.Join(e.IDs, ", "))
}

// rotation reads the rotation record (nil when none runs).
func (a *Authority) rotation() (*Rotation, error) {
	var r *Rotation
	err := a.view(func(tx *bolt.Tx) error {
		var err error
		r, err = getRotation(tx)
		return err
	})
	return r, err
}

// update runs fn in a write transaction after the meta check.
func (a *Authority) update(fn func(tx *bolt.Tx) error) error {
	db, err := a.openDB(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		if err := a.checkMeta(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// RotateStart makes the new CA (once; a second run reuses it) and
// publishes the trust file with both CAs to every node. Leaves stay the
// old CA's.
func (a *Authority) RotateStart(o RotateOptions) (*Rotation, error) {
	r, err := a.rotation()
	if err != nil {
		return nil, err
	}
	if r != nil && (r.Phase != PhaseStarted || r.Aborted) {
		return nil, fmt.Errorf("%s: a CA rotation is already at phase %q; run `%s` (see `certkeeper ca rotate status`)", a.Dir, r.Phase, r.NextStep())
	}
	if r == nil {
		if r, err = a.makeNextCA(o); err != nil {
			return nil, err
		}
	}
	from, to, err := a.rotationCAs(r)
	if err != nil {
		return nil, err
	}
	if err := a.publishTrust(pki.EncodeCertificates(from, to)); err != nil {
		return nil, err
	}
	// Both CAs are trusted now: cluster.crl holds a CRL from each.
	if err := a.refreshCRL(); err != nil {
		return nil, err
	}
	return r, nil
}

// makeNextCA makes To's key and certificate and records the rotation. A
// run killed before the record leaves files nobody uses; they are made
// again.
func (a *Authority) makeNextCA(o RotateOptions) (*Rotation, error) {
	keyData, err := os.ReadFile(a.path(KeyFile))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (the CA key; a rotation makes the new CA beside it)", a.path(KeyFile), err)
	}
	old, err := a.Issuer()
	if err != nil {
		return nil, err
	}
	kt := pki.KeyTypeOf(old.Key.Public())
	key, err := pki.GenerateKey(kt, a.opts.rand())
	if err != nil {
		return nil, err
	}
	now := a.opts.now()
	life := a.Cert.NotAfter.Sub(a.Cert.NotBefore)
	if o.Days > 0 {
		life = time.Duration(o.Days) * 24 * time.Hour
	}
	pathLen := a.Cert.MaxPathLen
	if pathLen == 0 && !a.Cert.MaxPathLenZero {
		pathLen = -1
	}
	cert, err := pki.NewCA(pki.CAProfile{
		// A name of its own, so people and chain builders tell the two apart.
		Name:       a.Settings.Name + " " + now.UTC().Format("2006-01-02T15:04:05Z"),
		Key:        key,
		NotBefore:  now.Add(-pki.Backdate),
		NotAfter:   now.Add(life),
		MaxPathLen: pathLen,
	}, a.opts.rand())
	if err != nil {
		return nil, err
	}
	var keyPEM []byte
	if pki.KeyIsEncrypted(keyData) {
		// The same passphrase as the old key: whatever unlocks the CA today
		// (a passphrase file, a person) unlocks it after the rotation.
		pass, err := a.passphrase()
		if err != nil {
			return nil, err
		}
		keyPEM, err = pki.EncryptKey(key, pass)
		if err != nil {
			return nil, err
		}
	} else if keyPEM, err = pki.MarshalKey(key); err != nil {
		return nil, err
	}
	r := &Rotation{Phase: PhaseStarted, From: a.fingerprint, To: pki.Fingerprint(cert), Started: now.UTC()}
	err = a.update(func(tx *bolt.Tx) error {
		if cur, err := getRotation(tx); err != nil || cur != nil {
			if err == nil {
				err = fmt.Errorf("another command started a rotation meanwhile (phase %q); see `certkeeper ca rotate status`", cur.Phase)
			}
			return err
		}
		if err := os.MkdirAll(a.path(RotationDir), dirMode); err != nil {
			return err
		}
		if err := publish(a.Dir, []pubFile{
			{caFileName(r.To, ".key"), keyPEM, keyMode},
			{caFileName(r.To, ".crt"), pki.EncodeCertificates(cert), certMode},
			{caFileName(r.From, ".key"), keyData, keyMode},
			{caFileName(r.From, ".crt"), pki.EncodeCertificates(a.Cert), certMode},
		}); err != nil {
			return err
		}
		return putRotation(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// rotationCAs reads From's and To's certificates from rotation/.
func (a *Authority) rotationCAs(r *Rotation) (from, to *x509.Certificate, err error) {
	if from, err = a.readCA(r.From); err != nil {
		return nil, nil, err
	}
	if to, err = a.readCA(r.To); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}

func (a *Authority) readCA(fp string) (*x509.Certificate, error) {
	p := filepath.Join(a.Dir, filepath.FromSlash(caFileName(fp, ".crt")))
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (a CA of the rotation under way; restore it from a backup of the CA directory)", p, err)
	}
	c, err := pki.Parse(data)
	if err != nil || len(c.Certificates) != 1 || pki.Fingerprint(c.Certificates[0]) != fp {
		return nil, fmt.Errorf("%s is not the CA certificate with sha256 %s the rotation record names", p, fp)
	}
	return c.Certificates[0], nil
}

// publishTrust writes the trust file (or, with nil, removes it) and then
// publishes what CACertPEM now gives as every node's cluster.crt, under
// the database lock.
func (a *Authority) publishTrust(trust []byte) error {
	return a.update(func(tx *bolt.Tx) error {
		if trust != nil {
			if err := publish(a.Dir, []pubFile{{TrustFile, trust, certMode}}); err != nil {
				return err
			}
			a.trust = trust
		} else {
			if err := os.Remove(a.path(filepath.FromSlash(TrustFile))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			a.trust = nil
		}
		nodes, err := allNodes(tx)
		if err != nil {
			return err
		}
		caPEM := a.CACertPEM()
		var files []pubFile
		for _, n := range nodes {
			dir := path.Join(NodesDir, n.ID)
			if _, err := os.Stat(filepath.Join(a.Dir, filepath.FromSlash(dir))); err != nil {
				continue // a CSR-mode node with nothing published
			}
			files = append(files, pubFile{path.Join(dir, CertFile), caPEM, certMode})
		}
		return publish(a.Dir, files)
	})
}

// IssueResult is what `ca rotate issue` did.
type IssueResult struct {
	Rotation *Rotation
	Issued   []string // re-issued from the new CA now
	Done     []string // already on the new CA
	Waiting  []string // CSR-mode nodes: new-CA leaf at their next `ca sign`
	Failed   []Failed
}

// RotateIssue makes the new CA the signing one (keeping the old one in
// rotation/) and re-issues every node's leaf from it. Run again, it picks
// up where a killed run stopped.
func (a *Authority) RotateIssue(ctx context.Context) (*IssueResult, error) {
	r, err := a.rotation()
	if err != nil {
		return nil, err
	}
	switch {
	case r == nil:
		return nil, fmt.Errorf("%s: no CA rotation is under way; start one with `certkeeper ca rotate start`", a.Dir)
	case r.Aborted:
		return nil, fmt.Errorf("%s: this rotation is being aborted; run `certkeeper ca rotate abort` to complete that", a.Dir)
	case r.Phase == PhaseFinishing:
		return nil, fmt.Errorf("%s: the rotation is finishing; run `certkeeper ca rotate finish` to complete it", a.Dir)
	}
	return a.swapAndIssue(ctx, r)
}

func (a *Authority) swapAndIssue(ctx context.Context, r *Rotation) (*IssueResult, error) {
	if r.Phase == PhaseStarted {
		// The trust file with both CAs, before anything is signed by To
		// (again, in case a start was killed while publishing it).
		from, to, err := a.rotationCAs(r)
		if err != nil {
			return nil, err
		}
		if err := a.publishTrust(pki.EncodeCertificates(from, to)); err != nil {
			return nil, err
		}
		r.Phase = PhaseSwapping
		if err := a.update(func(tx *bolt.Tx) error { return putRotation(tx, r) }); err != nil {
			return nil, err
		}
	}
	if r.Phase == PhaseSwapping {
		if err := a.swap(r); err != nil {
			return nil, err
		}
	}
	// Signing is To's from here on.
	b, err := Load(a.Dir, a.opts)
	if err != nil {
		return nil, err
	}
	if b.fingerprint != r.To {
		return nil, fmt.Errorf("%s is not the new CA (sha256 %s) after the swap; run the command again", b.path(CertFile), r.To)
	}
	*a = *b
	// A CRL from each CA, before leaves of the new signing one go out (a
	// start killed before it wrote them, or an abort turning back).
	if err := a.refreshCRL(); err != nil {
		return nil, err
	}
	res := &IssueResult{Rotation: r}
	var reqs []Request
	err = a.view(func(tx *bolt.Tx) error {
		nodes, err := allNodes(tx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Revoked != nil {
				continue
			}
			on, err := a.onCA(tx, &n, a.Cert)
			if err != nil {
				return err
			}
			switch {
			case on:
				res.Done = append(res.Done, n.ID)
			case n.Source == SourceCSR:
				res.Waiting = append(res.Waiting, n.ID)
			default:
				reqs = append(reqs, Request{ID: n.ID, Kind: n.Kind, Names: n.Names()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(reqs) > 0 {
		ir, err := a.Issue(ctx, reqs, IssueOptions{Force: true})
		if err != nil {
			return nil, err
		}
		for _, i := range ir.Issued {
			res.Issued = append(res.Issued, i.ID)
		}
		res.Failed = ir.Failed
	}
	if len(res.Failed) == 0 && r.Phase != PhaseIssued {
		r.Phase = PhaseIssued
		if err := a.update(func(tx *bolt.Tx) error { return putRotation(tx, r) }); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// swap replaces cluster.key and cluster.crt by To's. From's are in
// rotation/ since start, so a run killed half-way (a new key beside the
// old certificate) is completed by the next one.
func (a *Authority) swap(r *Rotation) error {
	toCrt := filepath.Join(a.Dir, filepath.FromSlash(caFileName(r.To, ".crt")))
	toKey := filepath.Join(a.Dir, filepath.FromSlash(caFileName(r.To, ".key")))
	if _, err := a.readCA(r.From); err != nil {
		return err
	}
	crt, err := os.ReadFile(toCrt)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(toKey)
	if err != nil {
		return fmt.Errorf("%s: %w (the new CA's key)", toKey, err)
	}
	return a.update(func(tx *bolt.Tx) error {
		if err := publish(a.Dir, []pubFile{{KeyFile, key, keyMode}, {CertFile, crt, certMode}}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(metaCA, []byte(r.To)); err != nil {
			return err
		}
		r.Phase = PhaseIssuing
		return putRotation(tx, r)
	})
}

// onCA reports whether a node's current certificate was signed by ca and,
// for a node whose key is made here, is published with its key: a run
// killed between recording and publishing left neither on the new CA.
func (a *Authority) onCA(tx *bolt.Tx, n *NodeRecord, ca *x509.Certificate) (bool, error) {
	on, err := a.recordedOnCA(tx, n, ca)
	if err != nil || !on || n.Source == SourceCSR {
		return on, err
	}
	return a.published(n), nil
}

func (a *Authority) recordedOnCA(tx *bolt.Tx, n *NodeRecord, ca *x509.Certificate) (bool, error) {
	_, leaf, err := currentCert(tx, n)
	if err != nil || leaf == nil {
		return false, err
	}
	return leaf.CheckSignatureFrom(ca) == nil, nil
}

// RotateFinish drops the old CA: every node's cluster.crt holds the new
// one only, and the rotation's files are removed. It refuses (a
// *StillOld) while nodes hold leaves from the old CA, unless Force.
func (a *Authority) RotateFinish(o RotateOptions) (*Rotation, error) {
	r, err := a.rotation()
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%s: no CA rotation is under way (nothing to finish); `certkeeper ca rotate status` shows the CA", a.Dir)
	}
	if r.Phase != PhaseIssued && r.Phase != PhaseFinishing {
		return nil, fmt.Errorf("%s: the rotation is at phase %q, not yet issued; run `%s` first", a.Dir, r.Phase, r.NextStep())
	}
	return r, a.finish(r, o.Force)
}

func (a *Authority) finish(r *Rotation, force bool) error {
	if r.Phase != PhaseFinishing {
		var old []string
		err := a.view(func(tx *bolt.Tx) error {
			nodes, err := allNodes(tx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.Revoked != nil {
					continue
				}
				on, err := a.onCA(tx, &n, a.Cert)
				if err != nil {
					return err
				}
				if !on {
					old = append(old, n.ID)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		sort.Strings(old)
		if len(old) > 0 && !force {
			return &StillOld{old}
		}
		if a.fingerprint != r.To {
			return fmt.Errorf("%s is not the CA the rotation moves to (sha256 %s); run `%s`", a.path(CertFile), r.To, r.NextStep())
		}
		r.Phase = PhaseFinishing
		if err := a.update(func(tx *bolt.Tx) error { return putRotation(tx, r) }); err != nil {
			return err
		}
	}
	// The CRL of the CA that stays, alone, before the trust file drops the
	// other: a node never gets a CRL from a CA it does not trust.
	if err := a.refreshCRL(); err != nil {
		return err
	}
	if err := a.publishTrust(nil); err != nil {
		return err
	}
	return a.update(func(tx *bolt.Tx) error {
		if err := os.RemoveAll(a.path(RotationDir)); err != nil {
			return err
		}
		return putRotation(tx, nil)
	})
}

// RotateAbort goes back to the old CA. Before `ca rotate issue` it drops
// the new CA at once. After, it makes the old CA the signing one again
// and re-issues every node from it, then drops the new CA, unless
// CSR-mode nodes hold a new-CA leaf: the rotation then waits at phase
// issued (turned around) for their next request and `ca rotate finish`.
func (a *Authority) RotateAbort(ctx context.Context) (*Rotation, *IssueResult, error) {
	r, err := a.rotation()
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		return nil, nil, fmt.Errorf("%s: no CA rotation is under way (nothing to abort)", a.Dir)
	}
	if r.Phase == PhaseFinishing && !r.Aborted {
		return nil, nil, fmt.Errorf("%s: the rotation is finishing (the old CA is being dropped) and can not be aborted; run `certkeeper ca rotate finish` to complete it", a.Dir)
	}
	if !r.Aborted {
		back := &Rotation{From: r.To, To: r.From, Started: r.Started, Aborted: true}
		switch r.Phase {
		case PhaseStarted:
			// Nothing was signed by the new CA: the old one still signs.
			back.Phase = PhaseIssued
		default:
			back.Phase = PhaseSwapping
		}
		if err := a.update(func(tx *bolt.Tx) error { return putRotation(tx, back) }); err != nil {
			return nil, nil, err
		}
		r = back
	}
	var res *IssueResult
	if r.Phase == PhaseSwapping || r.Phase == PhaseIssuing || r.Phase == PhaseStarted {
		if r.Phase == PhaseStarted {
			r.Phase = PhaseSwapping
		}
		if res, err = a.swapAndIssue(ctx, r); err != nil {
			return r, res, err
		}
		if len(res.Failed) > 0 || len(res.Waiting) > 0 {
			return r, res, nil
		}
	}
	if r.Phase == PhaseIssued || r.Phase == PhaseFinishing {
		if err := a.finish(r, false); err != nil {
			return r, res, err
		}
		r.Phase = PhaseNone
	}
	return r, res, nil
}

// NodeRotation is one node's part in a rotation.
type NodeRotation struct {
	ID     string `json:"id"`
	Source Source `json:"source"`
	// Leaf says which CA signed the node's current certificate: "old",
	// "new" or "" (none recorded).
	Leaf string `json:"leaf"`
	// Published is the CAs in its published cluster.crt: "old", "new",
	// "old+new", "" (nothing published) or "other".
	Published string `json:"published"`
	// PublishedLeaf is which CA signed the published leaf.
	PublishedLeaf string `json:"published_leaf,omitempty"`
	// Installed is what the node reports it runs with, when a fleet
	// report is available (RotationStatusOptions.Installed).
	Installed string `json:"installed,omitempty"`
	Revoked   bool   `json:"revoked,omitempty"`
}

// RotationStatus is `ca rotate status`.
type RotationStatus struct {
	Phase   Phase     `json:"phase"`
	Aborted bool      `json:"aborted,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Signing pki.Info  `json:"signing_ca"`
	Old     *pki.Info `json:"old_ca,omitempty"`
	New     *pki.Info `json:"new_ca,omitempty"`
	Next    string    `json:"next_step,omitempty"`
	Explain string    `json:"explain"`
	// Problem is what keeps the rotation from going on, if anything.
	Problem  string         `json:"problem,omitempty"`
	Nodes    []NodeRotation `json:"nodes"`
	OldLeafs []string       `json:"nodes_on_old_ca,omitempty"`
}

// InstalledFunc reports what a node installed (from a fleet report):
// "old", "new", "old+new", or "" when unknown.
type InstalledFunc func(id string, old, new *x509.Certificate) string

// RotationState reads the rotation's phase and each node's part. It needs
// no key and takes only the read lock.
func (a *Authority) RotationState(installed InstalledFunc) (*RotationStatus, error) {
	st := &RotationStatus{Signing: pki.Describe(a.Cert)}
	var r *Rotation
	var nodes []NodeRecord
	leafs := map[string]*x509.Certificate{}
	err := a.view(func(tx *bolt.Tx) error {
		var err error
		if r, err = getRotation(tx); err != nil {
			return err
		}
		if nodes, err = allNodes(tx); err != nil {
			return err
		}
		for _, n := range nodes {
			if serial, err := ParseSerial(n.Current); err == nil {
				if c, err := getCert(tx, serial); err == nil && c != nil {
					if leaf, err := x509.ParseCertificate(c.DER); err == nil {
						leafs[n.ID] = leaf
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var oldCA, newCA *x509.Certificate
	if r == nil {
		newCA = a.Cert
		st.Explain = "no CA rotation is under way; every node is to trust " + a.fingerprint
	} else {
		st.Phase, st.Aborted, st.Started, st.Next = r.Phase, r.Aborted, r.Started, r.NextStep()
		st.Explain = explainPhase(r)
		from, to, err := a.rotationCAs(r)
		switch {
		case err == nil:
			oldCA, newCA = from, to
			fi, ti := pki.Describe(from), pki.Describe(to)
			st.Old, st.New = &fi, &ti
		case r.Phase == PhaseFinishing && a.fingerprint == r.To:
			// A finish killed while removing rotation/: the old CA's
			// files may be gone already; the new one signs.
			newCA = a.Cert
		default:
			st.Problem = err.Error()
			if a.fingerprint == r.To {
				newCA = a.Cert
			}
		}
	}
	which := func(c *x509.Certificate) string {
		switch {
		case c == nil:
			return ""
		case newCA != nil && c.CheckSignatureFrom(newCA) == nil:
			return "new"
		case oldCA != nil && c.CheckSignatureFrom(oldCA) == nil:
			return "old"
		}
		return "other"
	}
	for _, n := range nodes {
		nr := NodeRotation{ID: n.ID, Source: n.Source, Leaf: which(leafs[n.ID]), Revoked: n.Revoked != nil}
		certName, _ := n.Kind.Files()
		dir := filepath.Join(a.Dir, NodesDir, n.ID)
		if data, err := os.ReadFile(filepath.Join(dir, CertFile)); err == nil {
			nr.Published = trustWhich(data, oldCA, newCA)
		}
		if data, err := os.ReadFile(filepath.Join(dir, certName)); err == nil {
			if c, err := pki.Parse(data); err == nil && len(c.Certificates) > 0 {
				nr.PublishedLeaf = which(c.Certificates[0])
			}
		}
		if installed != nil {
			nr.Installed = installed(n.ID, oldCA, newCA)
		}
		if !nr.Revoked && nr.Leaf != "new" {
			st.OldLeafs = append(st.OldLeafs, n.ID)
		}
		st.Nodes = append(st.Nodes, nr)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	sort.Strings(st.OldLeafs)
	if r == nil {
		st.OldLeafs = nil
	}
	return st, nil
}

// trustWhich names the CAs a trust file holds.
func trustWhich(data []byte, oldCA, newCA *x509.Certificate) string {
	c, err := pki.Parse(data)
	if err != nil {
		return "other"
	}
	var hasOld, hasNew, other bool
	for _, x := range c.Certificates {
		switch {
		case newCA != nil && x.Equal(newCA):
			hasNew = true
		case oldCA != nil && x.Equal(oldCA):
			hasOld = true
		default:
			other = true
		}
	}
	switch {
	case other:
		return "other"
	case hasOld && hasNew:
		return "old+new"
	case hasNew:
		return "new"
	case hasOld:
		return "old"
	}
	return ""
}

// TrustOf names the CAs in a trust file for a fleet report hook.
func TrustOf(data []byte, oldCA, newCA *x509.Certificate) string {
	return trustWhich(data, oldCA, newCA)
}

func explainPhase(r *Rotation) string {
	if r.Aborted {
		switch r.Phase {
		case PhaseSwapping:
			return "aborting: the old CA is being made the signing CA again (an interrupted run); `certkeeper ca rotate abort` completes it"
		case PhaseIssuing:
			return "aborting: the old CA signs again; nodes are being re-issued from it (an interrupted run); `certkeeper ca rotate abort` completes it"
		case PhaseIssued:
			return "aborting: every node made here is back on the old CA; the new CA is dropped by `certkeeper ca rotate abort` (or `finish` once CSR-mode nodes have renewed)"
		case PhaseFinishing:
			return "aborting: the new CA is being dropped from every node's cluster.crt (an interrupted run); `certkeeper ca rotate abort` completes it"
		}
	}
	switch r.Phase {
	case PhaseStarted:
		return "started: the new CA exists and every node is sent a cluster.crt with both CAs; leaves are still the old CA's. Once every node installed it, run `certkeeper ca rotate issue`"
	case PhaseSwapping:
		return "issue interrupted while the new CA was being made the signing CA; `certkeeper ca rotate issue` completes it"
	case PhaseIssuing:
		return "issuing: the new CA signs; node leaves are being re-issued from it (an interrupted run shows here); `certkeeper ca rotate issue` completes it"
	case PhaseIssued:
		return "issued: every node made here has a leaf from the new CA (CSR-mode nodes get one at their next `ca sign`); once every node runs with it, `certkeeper ca rotate finish` drops the old CA"
	case PhaseFinishing:
		return "finishing: the old CA is being dropped from every node's cluster.crt (an interrupted run); `certkeeper ca rotate finish` completes it"
	}
	return string(r.Phase)
}
