package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// This file holds the identity rules a TLS peer applies to a node's
// certificate, so certkeeper refuses what the peers would refuse: whose
// name it is (SANs first, as Go and every browser-grade verifier read it),
// whether a CA's name constraints allow that name, and what the key may be
// used for.

// NameMatch says how a certificate names a node id.
type NameMatch int

const (
	// NameAbsent: neither a SAN nor the CN is the id.
	NameAbsent NameMatch = iota
	// NameInSAN: a subject alternative name is the id, as TLS peers check.
	NameInSAN
	// NameCNOnly: the certificate has no SANs at all and its CN is the id
	// (the seeds' openssl recipes make such certificates).
	NameCNOnly
	// NameCNBesideSANs: the CN is the id but the certificate has SANs and
	// none of them is the id. Peers that verify names by SAN (Go since
	// 1.15, browsers) do not see the id at all.
	NameCNBesideSANs
)

// HasSANs reports whether a certificate carries any subject alternative
// name (DNS, IP, URI or e-mail).
func HasSANs(c *x509.Certificate) bool {
	return len(c.DNSNames)+len(c.IPAddresses)+len(c.URIs)+len(c.EmailAddresses) > 0
}

// SANNamesNode reports whether one of the certificate's subject
// alternative names is id: DNS names compare without case, IP addresses
// by value ("::1" matches "0:0::1"), URIs exactly.
func SANNamesNode(c *x509.Certificate, id string) bool {
	if id == "" {
		return false
	}
	for _, d := range c.DNSNames {
		if strings.EqualFold(d, id) {
			return true
		}
	}
	if ip := net.ParseIP(id); ip != nil {
		for _, a := range c.IPAddresses {
			if a.Equal(ip) {
				return true
			}
		}
	}
	for _, u := range c.URIs {
		if u.String() == id {
			return true
		}
	}
	return false
}

// MatchNode says how the certificate names id.
func MatchNode(c *x509.Certificate, id string) NameMatch {
	switch {
	case id == "":
		return NameAbsent
	case SANNamesNode(c, id):
		return NameInSAN
	case c.Subject.CommonName != id:
		return NameAbsent
	case HasSANs(c):
		return NameCNBesideSANs
	}
	return NameCNOnly
}

// IDName is the subject alternative name that carries a node id: an IP
// address when the id is one, else the id as a DNS name in lower case
// (numeric labels included: cluster node ids are often numbers, such as
// reign's "1", and peers compare them as names).
func IDName(id string) (dns string, ip net.IP) {
	if a, err := ParseIPAddress(id); err == nil {
		return "", a
	}
	return strings.ToLower(strings.TrimSuffix(id, ".")), nil
}

// NormalizeDNSNameFor is NormalizeDNSName for a name given for node id: a
// name whose last label is a number, refused elsewhere as a mistyped
// address, is accepted when it is the node's own id (reign's "1").
func NormalizeDNSNameFor(s, id string) (string, error) {
	name, err := NormalizeDNSName(s)
	if err == nil || id == "" {
		return name, err
	}
	d, ip := IDName(id)
	if ip != nil || !strings.EqualFold(strings.TrimSuffix(s, "."), d) || !IsNumericName(d) {
		return "", err
	}
	for _, l := range strings.Split(d, ".") {
		if checkLabel(l) != nil {
			return "", err
		}
	}
	return d, nil
}

// IsNumericName reports whether a DNS-looking name's last label is all
// digits ("1", "10.0.0"), which NormalizeDNSName takes for a mistyped
// address.
func IsNumericName(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	last := labels[len(labels)-1]
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// LooksIssuedByCertkeeper reports whether a leaf has exactly the shape
// certkeeper's own CA gives every leaf (Issuer.Issue): a subject key
// identifier made as RFC 7093 method 1 (a truncated SHA-256; openssl and
// Go leave a leaf with none or a SHA-1 one), CA:FALSE, key usage
// digitalSignature (plus keyEncipherment for RSA), extended key usage
// serverAuth and clientAuth, and no URIs or e-mail addresses. It is how a
// node recognises the certificates that certkeeper issued before node ids
// became SANs.
func LooksIssuedByCertkeeper(c *x509.Certificate) bool {
	ski, err := SubjectKeyID(c.PublicKey)
	if err != nil || len(c.SubjectKeyId) == 0 || string(ski) != string(c.SubjectKeyId) {
		return false
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	return c.BasicConstraintsValid && !c.IsCA && c.KeyUsage == usage &&
		slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) &&
		len(c.UnknownExtKeyUsage) == 0 && len(c.URIs) == 0 && len(c.EmailAddresses) == 0
}

// CNConstraintViolation finds the first certificate of chain whose name
// constraints the CN violates, read as a DNS name or an IP address, as
// OpenSSL checks the CN of a leaf that has no DNS SANs. Go's verifier
// applies constraints to SANs only, so a CN-only certificate passes it
// where OpenSSL peers refuse it ("excluded subtree violation"). It returns
// nil and "" when every constraint allows the CN.
func CNConstraintViolation(cn string, chain []*x509.Certificate) (*x509.Certificate, string) {
	if cn == "" {
		return nil, ""
	}
	ip := net.ParseIP(cn)
	for _, c := range chain {
		if ip != nil {
			for _, r := range c.ExcludedIPRanges {
				if r.Contains(ip) {
					return c, fmt.Sprintf("excludes %s", r)
				}
			}
			if len(c.PermittedIPRanges) > 0 && !slices.ContainsFunc(c.PermittedIPRanges, func(r *net.IPNet) bool { return r.Contains(ip) }) {
				return c, "permits only " + ipNets(c.PermittedIPRanges)
			}
			continue
		}
		for _, d := range c.ExcludedDNSDomains {
			if matchDomain(cn, d) {
				return c, fmt.Sprintf("excludes DNS %q", d)
			}
		}
		if len(c.PermittedDNSDomains) > 0 && !slices.ContainsFunc(c.PermittedDNSDomains, func(d string) bool { return matchDomain(cn, d) }) {
			return c, fmt.Sprintf("permits only DNS %s", quoteAll(c.PermittedDNSDomains))
		}
	}
	return nil, ""
}

// matchDomain is RFC 5280's DNS constraint rule as Go applies it: a
// constraint matches the name itself and the names below it; one that
// starts with a dot matches only names below it.
func matchDomain(name, constraint string) bool {
	name, constraint = strings.ToLower(strings.TrimSuffix(name, ".")), strings.ToLower(constraint)
	if constraint == "" {
		return true
	}
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(name, constraint)
	}
	return name == constraint || strings.HasSuffix(name, "."+constraint)
}

func ipNets(ns []*net.IPNet) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.String()
	}
	return strings.Join(s, ", ")
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// Usage is what a bundle's certificate is used for in TLS: serving
// (server auth), connecting (client auth), or both.
type Usage uint8

const (
	UsageServer Usage = 1 << iota
	UsageClient
	// UsageBoth is the default: cluster mutual TLS, every node is both ends.
	UsageBoth = UsageServer | UsageClient
)

// ParseUsage reads a config's usage list: "server", "client", or both.
// An empty list is UsageBoth.
func ParseUsage(names []string) (Usage, error) {
	if len(names) == 0 {
		return UsageBoth, nil
	}
	var u Usage
	for _, n := range names {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "server":
			u |= UsageServer
		case "client":
			u |= UsageClient
		default:
			return 0, fmt.Errorf("usage %q is not one of \"server\", \"client\"", n)
		}
	}
	return u, nil
}

// String names the usage as a sentence fragment: "server and client auth".
func (u Usage) String() string {
	switch u {
	case UsageServer:
		return "server auth"
	case UsageClient:
		return "client auth"
	case UsageBoth:
		return "server and client auth"
	}
	return "no usage"
}

// Names lists the usage for a config: ["server", "client"].
func (u Usage) Names() []string {
	var n []string
	if u&UsageServer != 0 {
		n = append(n, "server")
	}
	if u&UsageClient != 0 {
		n = append(n, "client")
	}
	return n
}

func (u Usage) each() []Usage {
	var out []Usage
	for _, x := range []Usage{UsageServer, UsageClient} {
		if u&x != 0 {
			out = append(out, x)
		}
	}
	return out
}

func (u Usage) ext() x509.ExtKeyUsage {
	if u == UsageClient {
		return x509.ExtKeyUsageClientAuth
	}
	return x509.ExtKeyUsageServerAuth
}

// UsageProblems lists why a leaf may not be used for u, each reason naming
// the rule it breaks, as OpenSSL's purpose checks (-purpose sslserver,
// sslclient) read the certificate:
//
//   - extended key usage: when present, it must list serverAuth for a
//     server (or Netscape/Microsoft Server Gated Crypto, which peers take
//     for it) and clientAuth for a client; anyExtendedKeyUsage alone is
//     not enough for OpenSSL.
//   - key usage: when present, it must fit the key type and the role: a
//     TLS server signs the handshake (digitalSignature) or, with RSA,
//     decrypts the key exchange (keyEncipherment); a client always signs
//     (digitalSignature). keyCertSign or cRLSign alone fit nothing.
//
// Each rule is one reason, however many of the usages it fails: an
// emailProtection-only leaf is told once that it allows neither server
// nor client auth.
func UsageProblems(c *x509.Certificate, u Usage) []string {
	var out []string
	if len(c.ExtKeyUsage)+len(c.UnknownExtKeyUsage) > 0 {
		var missing Usage
		for _, x := range u.each() {
			if !allowsExt(c, x) {
				missing |= x
			}
		}
		switch {
		case missing == UsageBoth:
			out = append(out, fmt.Sprintf("extended key usage (%s) allows neither server nor client auth; this bundle needs both", extNames(c)))
		case missing != 0:
			out = append(out, fmt.Sprintf("extended key usage (%s) does not allow %s, which this bundle needs (%s)",
				extNames(c), missing, u))
		}
	}
	if c.KeyUsage != 0 {
		// Usages that need the same bits fail as one reason.
		var order []string
		failed := map[string]Usage{}
		for _, x := range u.each() {
			if need, ok := keyUsageFits(c, x); !ok {
				if failed[need] == 0 {
					order = append(order, need)
				}
				failed[need] |= x
			}
		}
		for _, need := range order {
			out = append(out, fmt.Sprintf("key usage (%s) does not fit %s with %s: it needs %s",
				keyUsageNames(c.KeyUsage), keyTypeName(c), failed[need], need))
		}
	}
	return out
}

func allowsExt(c *x509.Certificate, u Usage) bool {
	for _, e := range c.ExtKeyUsage {
		switch {
		case u == UsageServer && (e == x509.ExtKeyUsageServerAuth || e == x509.ExtKeyUsageNetscapeServerGatedCrypto || e == x509.ExtKeyUsageMicrosoftServerGatedCrypto):
			return true
		case u == UsageClient && e == x509.ExtKeyUsageClientAuth:
			return true
		}
	}
	return false
}

func keyUsageFits(c *x509.Certificate, u Usage) (need string, ok bool) {
	ku := c.KeyUsage
	if _, isRSA := c.PublicKey.(*rsa.PublicKey); isRSA && u == UsageServer {
		return "digitalSignature or keyEncipherment", ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment) != 0
	}
	return "digitalSignature", ku&x509.KeyUsageDigitalSignature != 0
}

func keyTypeName(c *x509.Certificate) string {
	switch c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "an RSA key"
	case *ecdsa.PublicKey:
		return "an ECDSA key"
	case ed25519.PublicKey:
		return "an Ed25519 key"
	}
	return "its key"
}

var extNameOf = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                            "anyExtendedKeyUsage",
	x509.ExtKeyUsageServerAuth:                     "serverAuth",
	x509.ExtKeyUsageClientAuth:                     "clientAuth",
	x509.ExtKeyUsageCodeSigning:                    "codeSigning",
	x509.ExtKeyUsageEmailProtection:                "emailProtection",
	x509.ExtKeyUsageIPSECEndSystem:                 "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:                    "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:                      "ipsecUser",
	x509.ExtKeyUsageTimeStamping:                   "timeStamping",
	x509.ExtKeyUsageOCSPSigning:                    "OCSPSigning",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "msSGC",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "nsSGC",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "msCodeCom",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "msKernelCode",
}

func extNames(c *x509.Certificate) string {
	var s []string
	for _, e := range c.ExtKeyUsage {
		if n, ok := extNameOf[e]; ok {
			s = append(s, n)
		} else {
			s = append(s, fmt.Sprintf("usage %d", e))
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		s = append(s, o.String())
	}
	return strings.Join(s, ", ")
}

func keyUsageNames(ku x509.KeyUsage) string {
	var s []string
	for _, b := range []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageContentCommitment, "nonRepudiation"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
		{x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"},
		{x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"},
		{x509.KeyUsageEncipherOnly, "encipherOnly"},
		{x509.KeyUsageDecipherOnly, "decipherOnly"},
	} {
		if ku&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	return strings.Join(s, ", ")
}

// ChainUsageProblem checks that the whole chain, intermediates included,
// allows each usage (Go's verifier nests extended key usages: an
// intermediate limited to clientAuth can not vouch for a server). It
// assumes the chain itself verifies (Verify). A leaf whose own extended
// key usage is what fails is not the chain's problem: UsageProblems says
// it (once).
func ChainUsageProblem(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, now time.Time, u Usage) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range intermediates {
		ip.AddCert(c)
	}
	for _, x := range u.each() {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x.ext()}})
		var ci x509.CertificateInvalidError
		if errors.As(err, &ci) && ci.Reason == x509.IncompatibleUsage {
			var by *x509.Certificate
			for _, c := range slices.Concat(intermediates, roots) {
				if len(c.ExtKeyUsage)+len(c.UnknownExtKeyUsage) > 0 && !allowsExt(c, x) && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
					by = c
					break
				}
			}
			if by == nil {
				if ci.Cert != nil && !ci.Cert.Equal(leaf) {
					by = ci.Cert
				} else {
					continue // the leaf's own: UsageProblems
				}
			}
			return fmt.Errorf("the chain does not allow %s: %q limits its extended key usage to %s", x, Name(by.Subject.String()), extNames(by))
		}
	}
	return nil
}
