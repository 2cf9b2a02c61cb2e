package authority

import (
	"crypto/x509"
	"math/big"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// Source says how a certificate came to be.
type Source string

const (
	SourceIssue Source = "issue" // ca issue: key made on the admin host
	SourceRenew Source = "renew" // ca renew
	SourceCSR   Source = "csr"   // ca sign: key made on the node
)

// Revocation records when and why a certificate or node was revoked.
type Revocation struct {
	At     time.Time `json:"at"`
	Reason int       `json:"reason"`
}

// CertRecord is one issued certificate in the CA database.
type CertRecord struct {
	Serial    string      `json:"serial"`
	ID        string      `json:"id"`
	Kind      Kind        `json:"kind"`
	DNSNames  []string    `json:"dns_names,omitempty"`
	IPs       []string    `json:"ip_addresses,omitempty"`
	KeyType   string      `json:"key_type"`
	NotBefore time.Time   `json:"not_before"`
	NotAfter  time.Time   `json:"not_after"`
	IssuedAt  time.Time   `json:"issued_at"`
	Source    Source      `json:"source"`
	SHA256    string      `json:"sha256_fingerprint"`
	Revoked   *Revocation `json:"revoked,omitempty"`
	DER       []byte      `json:"der"`
}

// NodeRecord is what the CA knows about a node (or control service): its
// names, its key type, and which certificate is its current one.
type NodeRecord struct {
	ID       string   `json:"id"`
	Kind     Kind     `json:"kind"`
	DNSNames []string `json:"dns_names,omitempty"`
	IPs      []string `json:"ip_addresses,omitempty"`
	KeyType  string   `json:"key_type"`
	// Current is the serial of the newest certificate issued to the node.
	Current string      `json:"current"`
	Source  Source      `json:"source"`
	Created time.Time   `json:"created"`
	Revoked *Revocation `json:"revoked,omitempty"`
}

// RenewsByCSR says whether the node is in CSR mode (its key lives on the
// node and its agent renews through ca sign): its recorded source, or,
// for a record without one, its current certificate's c.
func (n *NodeRecord) RenewsByCSR(c CertRecord) bool {
	if n.Source != "" {
		return n.Source == SourceCSR
	}
	return c.Source == SourceCSR
}

// Names are the node's recorded subject alternative names.
func (n *NodeRecord) Names() Names {
	var out Names
	out.DNS = append(out.DNS, n.DNSNames...)
	for _, s := range n.IPs {
		if ip := net.ParseIP(s); ip != nil {
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

func newCertRecord(id string, kind Kind, c *x509.Certificate, src Source, now time.Time) CertRecord {
	return CertRecord{
		Serial:    FormatSerial(c.SerialNumber),
		ID:        id,
		Kind:      kind,
		DNSNames:  c.DNSNames,
		IPs:       ipStrings(c.IPAddresses),
		KeyType:   string(pki.KeyTypeOf(c.PublicKey)),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		IssuedAt:  now.UTC(),
		Source:    src,
		SHA256:    pki.Fingerprint(c),
		DER:       c.Raw,
	}
}

// Status is a certificate's state as `ca list` shows it.
type Status string

const (
	StatusValid      Status = "valid"
	StatusExpired    Status = "expired"
	StatusRevoked    Status = "revoked"
	StatusSuperseded Status = "superseded" // a newer certificate was issued for the node
)

// StatusOf decides a certificate's status at now. Revocation outranks
// expiry: a revoked certificate stays "revoked" in the list.
func StatusOf(c CertRecord, current bool, now time.Time) Status {
	switch {
	case c.Revoked != nil:
		return StatusRevoked
	case !now.Before(c.NotAfter):
		return StatusExpired
	case !current:
		return StatusSuperseded
	}
	return StatusValid
}

// Due is a node whose current certificate needs renewing.
type Due struct {
	Node NodeRecord
	Cert CertRecord
	// Unpublished: the certificate is recorded but its files in the
	// publish directory are missing or older (a publish that failed), so
	// it is re-issued whatever its expiry.
	Unpublished bool
}

// Skip is a node left alone, and why.
type Skip struct {
	ID     string
	Reason string
}

// DueForRenewal decides which nodes `ca renew --within` re-issues: those
// whose current certificate is within the window (Window.Due; an expired
// one always is), and those whose current certificate never made it to
// their publish directory (unpublished, by id), unless the node or that
// certificate is revoked. Nodes whose key lives on the node (CSR mode,
// NodeRecord.RenewsByCSR) are left to the node's agent, which renews by
// CSR; so are nodes that will renew by CSR but still hold their first
// certificate from ca issue (csr, by id: the inventory's mode "csr" or
// "pull+csr", `ca renew --inventory`): re-issuing it would put a key made
// here in their publish directory, which a pull+csr node pulls between
// renewals and installs, and it would never renew by CSR. Their first
// bundle is still re-published when it was lost (unpublished). Both are
// reported as skipped when due. A node whose current certificate an admin
// handed in (ca sign by hand) keeps its mode, and is renewed here in its
// window like any other.
func DueForRenewal(nodes []NodeRecord, certs map[string]CertRecord, unpublished, csr map[string]bool, now time.Time, within Window) (due []Due, skipped []Skip) {
	for _, n := range nodes {
		c, ok := certs[n.Current]
		if !ok {
			skipped = append(skipped, Skip{n.ID, "its current certificate " + n.Current + " is not in the database"})
			continue
		}
		byCSR := n.RenewsByCSR(c)
		lost := unpublished[n.ID] && !byCSR
		if !lost && !within.Due(c.NotBefore, c.NotAfter, now) {
			continue
		}
		switch {
		case n.Revoked != nil:
			// A revoked node is retired; renewing it would undo that, and
			// listing it every hour until the end would be noise.
		case c.Revoked != nil:
			skipped = append(skipped, Skip{n.ID, "its current certificate " + c.Serial + " is revoked; issue a new one with `ca issue --force`"})
		case byCSR:
			skipped = append(skipped, Skip{n.ID, "its key lives on the node (CSR mode): the node's agent renews it with `ca sign`"})
		case csr[n.ID] && !lost:
			skipped = append(skipped, Skip{n.ID, "the inventory has it renew by CSR: its agent asks `ca sign` for its first renewal, in its own window"})
		default:
			due = append(due, Due{Node: n, Cert: c, Unpublished: lost})
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Cert.NotAfter.Equal(due[j].Cert.NotAfter) {
			return due[i].Cert.NotAfter.Before(due[j].Cert.NotAfter)
		}
		return due[i].Node.ID < due[j].Node.ID
	})
	return due, skipped
}

// CRLEntries are the certificates a CRL lists at now: every revoked one
// that has not expired (an expired certificate fails verification anyway,
// and RFC 5280 lets a CRL drop it), in serial order.
func CRLEntries(certs []CertRecord, now time.Time) []pki.Revoked {
	var out []pki.Revoked
	for _, c := range certs {
		if c.Revoked == nil || !now.Before(c.NotAfter) {
			continue
		}
		n, err := ParseSerial(c.Serial)
		if err != nil {
			continue
		}
		out = append(out, pki.Revoked{Serial: n, At: c.Revoked.At, Reason: c.Revoked.Reason})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial.Cmp(out[j].Serial) < 0 })
	return out
}

// Existing is what ca issue does with an id the CA already knows.
type Existing int

const (
	IssueNew       Existing = iota // unknown id: issue
	IssueAgain                     // known, and allowed: issue a new certificate
	SkipExisting                   // known, and --skip-existing: leave it
	RefuseExisting                 // known: refuse without --force
)

// DecideExisting is the rule for an id that may already exist. published
// says whether the node's current certificate and key are in its publish
// directory: when they are not (an issue killed before it wrote them), the
// certificate never reached anyone, so issuing again needs no --force.
func DecideExisting(n *NodeRecord, published, force, skip bool) (Existing, string) {
	refuse := func(why string) (Existing, string) {
		if skip {
			return SkipExisting, "exists (--skip-existing)"
		}
		return RefuseExisting, why
	}
	switch {
	case n == nil:
		return IssueNew, ""
	case force:
		return IssueAgain, "re-issued (--force)"
	case n.Revoked != nil:
		return refuse("was revoked on " + n.Revoked.At.Format(time.DateOnly) + "; --force issues a new certificate and takes the node back")
	case n.Source == SourceCSR:
		return refuse("exists and renews by CSR (its key lives on the node); --force issues a key and certificate here instead")
	case !published:
		return IssueAgain, "re-issued: its last certificate was never published (an interrupted issue)"
	}
	return refuse("exists (serial " + n.Current + "); --force issues a new certificate, --skip-existing leaves it")
}

// SignPolicy is what `ca sign` lets a node ask for: its id as the CN, and
// as subject alternative names its recorded names, the names given on the
// forced command, and the id itself when it is a DNS name or an address.
func SignPolicy(id string, n *NodeRecord, extra Names) pki.NamePolicy {
	var allowed Names
	if n != nil {
		allowed.Add(n.Names())
	}
	allowed.Add(extra)
	if dns, ip := pki.IDName(id); ip != nil {
		allowed.Add(Names{IPs: []net.IP{ip}})
	} else {
		allowed.Add(Names{DNS: []string{dns}})
	}
	return pki.NamePolicy{CommonName: id, DNSNames: allowed.DNS, IPs: allowed.IPs}
}

// SignNames are the names a signed certificate carries: what the request
// asked for (already checked against the policy) or, when it asked for
// none, the node's recorded names and those on the forced command, so a
// renewal by CSR never drops a name the daemon's peers rely on.
func SignNames(asked pki.CSRNames, n *NodeRecord, extra Names) Names {
	out := Names{DNS: asked.DNSNames, IPs: asked.IPs}
	if !out.Empty() {
		return out
	}
	if n != nil {
		out.Add(n.Names())
	}
	out.Add(extra)
	return out
}

func serialKey(n *big.Int) []byte { return n.Bytes() }

// ReuseSigned decides whether `ca sign` hands back the certificate it
// recorded for the same key rather than recording another one. A node's
// agent keeps its pending key until the certificate for it is installed
// (and never asks again with its live key), so a request with the key of
// the node's current certificate means that certificate was signed but
// never installed: an install that failed on the node, retried at most
// hourly. Signing again each time would record one certificate per
// attempt, each of them valid and revocable. So it is reused while it is
// still what a new signature would make: made from a request (csr), not
// revoked, for the same public key, the same names, the same lifetime
// (notBefore, notAfter: what this request would get), signed by the
// current issuer (a CA rotation signs anew), and in the first half of its
// life (a node whose installs fail for that long gets a fresh one then:
// at most one record per half lifetime, not one per attempt).
func ReuseSigned(cur *CertRecord, cert *x509.Certificate, pub any, names Names, issuer *x509.Certificate, notBefore, notAfter, now time.Time) bool {
	if cur == nil || cert == nil || issuer == nil || cur.Source != SourceCSR || cur.Revoked != nil {
		return false
	}
	life := cur.NotAfter.Sub(cur.NotBefore)
	if !now.Before(cur.NotBefore.Add(life/2)) || !now.Before(cur.NotAfter) {
		return false
	}
	if life != notAfter.Sub(notBefore) && !cur.NotAfter.Equal(notAfter) {
		return false
	}
	if !pki.HasPublicKey(cert, pub) || cert.CheckSignatureFrom(issuer) != nil {
		return false
	}
	return sameSet(cert.DNSNames, names.DNS) && sameSet(ipStrings(cert.IPAddresses), ipStrings(names.IPs))
}

func sameSet(a, b []string) bool {
	in := map[string]int{}
	for _, s := range a {
		in[strings.ToLower(s)] |= 1
	}
	for _, s := range b {
		in[strings.ToLower(s)] |= 2
	}
	for _, v := range in {
		if v != 3 {
			return false
		}
	}
	return true
}
