package pki

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// MaxCSRSize bounds a certificate signing request read from a node. A real
// one is under 2 KiB; the bound is what keeps `ca sign`, run by sshd for
// any node that holds an authorized key, from reading a stream forever.
const MaxCSRSize = 64 << 10

// maxRSABits bounds RSA keys in a request: verifying a signature with a
// huge key is slow, and no cluster needs more than 8192 bits.
const maxRSABits = 8192

// ErrBadCSR marks a request refused for what it is or asks for.
var ErrBadCSR = errors.New("certificate signing request refused")

// ParseCSR reads one certificate signing request, PEM ("CERTIFICATE
// REQUEST", as openssl req writes it, or the older "NEW CERTIFICATE
// REQUEST") or DER.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadCSR, MaxCSRSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: no input (send the CSR on standard input)", ErrBadCSR)
	}
	der, isPEM := data, false
	if bytes.Contains(data, []byte("-----BEGIN")) {
		isPEM = true
		block, rest := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: PEM does not decode (truncated?)", ErrBadCSR)
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block is %q, not \"CERTIFICATE REQUEST\"", ErrBadCSR, block.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: more than one PEM block; send exactly one request", ErrBadCSR)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	switch {
	case err == nil:
		return csr, nil
	case isPEM:
		return nil, fmt.Errorf("%w: the PEM CERTIFICATE REQUEST block does not hold a request: %v", ErrBadCSR, err)
	case data[0] == 0x30:
		// An ASN.1 SEQUENCE: DER that is broken, where the parser's
		// reason (truncated, trailing data) is worth reading.
		return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST block or a DER CSR (%d bytes, starting with %s): %v", ErrBadCSR, len(data), quotePrefix(data), err)
	default:
		// Anything else (text, a key, a typo on the command line): the
		// ASN.1 decoder's complaint about tags would only confuse.
		return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST block or a DER CSR (%d bytes, starting with %s)", ErrBadCSR, len(data), quotePrefix(data))
	}
}

// csrPrefixLen caps the input quoted back in an error: enough to
// recognise what was sent, never a screenful of someone's file.
const csrPrefixLen = 16

// quotePrefix quotes the start of data, escaping what is not printable,
// with "…" when there is more.
func quotePrefix(data []byte) string {
	if len(data) <= csrPrefixLen {
		return strconv.Quote(string(data))
	}
	return strconv.Quote(string(data[:csrPrefixLen])) + "…"
}

// NamePolicy is what a node may ask for: the CN it must carry (its id) and
// the subject alternative names it may have.
type NamePolicy struct {
	CommonName string
	DNSNames   []string // normalized (NormalizeDNSName)
	IPs        []net.IP
}

// CSRNames are the names a checked request asked for, normalized.
type CSRNames struct {
	DNSNames []string
	IPs      []net.IP
}

// CheckCSR checks a request before it is signed: its signature (the sender
// holds the key), its key's strength, and that it names only what the
// policy allows. Every problem is reported, each on its own.
func CheckCSR(csr *x509.CertificateRequest, p NamePolicy) (CSRNames, error) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	if err := csr.CheckSignature(); err != nil {
		bad("its signature does not verify (%v): it was not signed by the key it carries", err)
	}
	if _, weak := KeyStrength(csr.PublicKey); weak != nil {
		bad("%v", weak)
	} else if k, ok := csr.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() > maxRSABits {
		bad("RSA key of %d bits; at most %d are accepted", k.N.BitLen(), maxRSABits)
	}
	if csr.Subject.CommonName != p.CommonName {
		bad("its CN is %q, but this node is %q (the CN must be the node id)", csr.Subject.CommonName, p.CommonName)
	}
	var names CSRNames
	for _, d := range csr.DNSNames {
		n, err := NormalizeDNSNameFor(d, p.CommonName)
		if err != nil {
			bad("%v", err)
			continue
		}
		if !slices.Contains(p.DNSNames, n) {
			bad("DNS name %q is not one of node %q's names (allowed: %s)", d, p.CommonName, allowedList(p))
			continue
		}
		if !slices.Contains(names.DNSNames, n) {
			names.DNSNames = append(names.DNSNames, n)
		}
	}
	for _, ip := range csr.IPAddresses {
		ok := slices.ContainsFunc(p.IPs, ip.Equal)
		if !ok {
			bad("IP address %s is not one of node %q's names (allowed: %s)", ip, p.CommonName, allowedList(p))
			continue
		}
		if !slices.ContainsFunc(names.IPs, ip.Equal) {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			names.IPs = append(names.IPs, ip)
		}
	}
	if len(csr.EmailAddresses) > 0 {
		bad("it asks for e-mail addresses (%s); node certificates carry DNS names and IP addresses only", strings.Join(csr.EmailAddresses, ", "))
	}
	if len(csr.URIs) > 0 {
		bad("it asks for URIs (%s); node certificates carry DNS names and IP addresses only", csr.URIs[0])
	}
	if len(problems) > 0 {
		return CSRNames{}, fmt.Errorf("%w: %s", ErrBadCSR, strings.Join(problems, "; "))
	}
	return names, nil
}

func allowedList(p NamePolicy) string {
	var s []string
	s = append(s, p.DNSNames...)
	for _, ip := range p.IPs {
		s = append(s, ip.String())
	}
	if len(s) == 0 {
		return "none recorded; add them with `ca issue node ID --force --dns …` or --dns/--ip on the forced command"
	}
	return strings.Join(s, ", ")
}
