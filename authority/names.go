package authority

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"

	"github.com/certkeeper/certkeeper/pki"
)

// Kind is what a certificate is for, which decides its file names.
type Kind string

const (
	// KindNode certificates are published as node.crt and node.key.
	KindNode Kind = "node"
	// KindControl certificates (Flocker's control service) are published
	// as control-service.crt and control-service.key, in a directory named
	// control-HOSTNAME.
	KindControl Kind = "control"
)

// ControlPrefix starts the id of every control-service certificate, so a
// node id can never collide with one.
const ControlPrefix = "control-"

// Files returns the certificate and key file names of a kind.
func (k Kind) Files() (cert, key string) {
	if k == KindControl {
		return "control-service.crt", "control-service.key"
	}
	return "node.crt", "node.key"
}

// ValidateID checks a node id: pki.ValidateNodeID's rule, which the
// inventory shares, and for a node (not a control service) that it does not
// start with ControlPrefix.
func ValidateID(id string, kind Kind) error {
	if err := pki.ValidateNodeID(id); err != nil {
		return err
	}
	if kind == KindNode && strings.HasPrefix(id, ControlPrefix) {
		return fmt.Errorf("id %q: node ids must not start with %q, which is kept for control-service certificates (certkeeper ca issue control HOSTNAME)", id, ControlPrefix)
	}
	return nil
}

// Names are a certificate's subject alternative names, normalized.
type Names struct {
	DNS []string
	IPs []net.IP
	// numeric are the DNS names among them whose last label is a number:
	// ParseNames takes them only provisionally, for a node whose own id
	// they are (reign's "1"); NodeRequest and Sign refuse any other.
	numeric []string
}

// ForNode checks the names given for node id: a name of digits is
// accepted only as the id itself.
func (n Names) ForNode(id string) error {
	for _, d := range n.numeric {
		if _, err := pki.NormalizeDNSNameFor(d, id); err != nil {
			return fmt.Errorf("--dns: %w; only a node's own id may be all digits (ca issue node %s --dns %s), and certkeeper adds the id as a SAN anyway", err, d, d)
		}
	}
	return nil
}

// WithID returns the names a node's certificate carries: the node id
// first, as a DNS name (or an IP address when it is one), so TLS peers
// that check SANs only (Go, and so reign, which dials ServerName = id)
// find it, then the other names. A control service's id is
// certkeeper's own label (control-HOST): its host name is already a name.
func WithID(id string, kind Kind, n Names) Names {
	if kind != KindNode {
		return n
	}
	var out Names
	if dns, ip := pki.IDName(id); ip != nil {
		out.IPs = []net.IP{ip}
	} else {
		out.DNS = []string{dns}
	}
	out.Add(n)
	return out
}

// Add appends names not already present.
func (n *Names) Add(o Names) {
	for _, d := range o.DNS {
		if !containsString(n.DNS, d) {
			n.DNS = append(n.DNS, d)
		}
	}
	for _, d := range o.numeric {
		if !containsString(n.numeric, d) {
			n.numeric = append(n.numeric, d)
		}
	}
	for _, ip := range o.IPs {
		if !containsIP(n.IPs, ip) {
			n.IPs = append(n.IPs, ip)
		}
	}
}

// Empty reports whether there are no names.
func (n Names) Empty() bool { return len(n.DNS) == 0 && len(n.IPs) == 0 }

// String lists the names as "DNS:x, IP:y".
func (n Names) String() string {
	var s []string
	for _, d := range n.DNS {
		s = append(s, "DNS:"+d)
	}
	for _, ip := range n.IPs {
		s = append(s, "IP:"+ip.String())
	}
	return strings.Join(s, ", ")
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsIP(s []net.IP, v net.IP) bool {
	for _, x := range s {
		if x.Equal(v) {
			return true
		}
	}
	return false
}

// ParseNames checks DNS names and IP addresses given separately (--dns,
// --ip) and returns them normalized, without repeats.
func ParseNames(dns, ips []string) (Names, error) {
	var n Names
	for _, d := range dns {
		name, err := pki.NormalizeDNSName(d)
		if err != nil {
			// A number may be the node's own id: the request checks.
			num, nerr := pki.NormalizeDNSNameFor(d, d)
			if nerr != nil || !pki.IsNumericName(num) {
				return Names{}, fmt.Errorf("--dns: %w", err)
			}
			n.Add(Names{DNS: []string{num}, numeric: []string{num}})
			continue
		}
		n.Add(Names{DNS: []string{name}})
	}
	for _, s := range ips {
		ip, err := pki.ParseIPAddress(s)
		if err != nil {
			return Names{}, fmt.Errorf("--ip: %w", err)
		}
		n.Add(Names{IPs: []net.IP{ip}})
	}
	return n, nil
}

// ParseName reads one name that may be either: an IP address if it parses
// as one, a DNS name otherwise.
func ParseName(s string) (Names, error) { return ParseNameFor(s, "") }

// ParseNameFor is ParseName for a name of node id, which may be the id
// itself even when it is a number.
func ParseNameFor(s, id string) (Names, error) {
	if ip, err := pki.ParseIPAddress(s); err == nil {
		return Names{IPs: []net.IP{ip}}, nil
	}
	d, err := pki.NormalizeDNSNameFor(s, id)
	if err != nil {
		return Names{}, err
	}
	return Names{DNS: []string{d}}, nil
}

// NewNodeID makes a random (version 4) UUID, as `flocker-ca
// create-node-certificate` names a node it is given no name for.
func NewNodeID(random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// ListEntry is one line of a --from-file node list.
type ListEntry struct {
	Line  int
	ID    string
	Names Names
}

// ParseNodeList reads a node list, one node a line:
//
//	# comments and blank lines are ignored
//	8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a  node1.example.com 10.0.0.5
//	node-2                                node2.example.com,10.0.0.6
//
// The first word is the id; the words after it (separated by spaces or
// commas) are its subject alternative names, IP addresses where they parse
// as one and DNS names otherwise. Every problem names its line.
func ParseNodeList(data []byte) ([]ListEntry, error) {
	var (
		out  []ListEntry
		errs []string
		seen = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		if len(errs) >= 20 {
			errs = append(errs, "(stopped after 20 problems)")
			break
		}
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		words := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\r' })
		if len(words) == 0 {
			continue
		}
		e := ListEntry{Line: n, ID: words[0]}
		if err := ValidateID(e.ID, KindNode); err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		if first, dup := seen[e.ID]; dup {
			errs = append(errs, fmt.Sprintf("line %d: id %q is already on line %d", n, e.ID, first))
			continue
		}
		seen[e.ID] = n
		ok := true
		for _, w := range words[1:] {
			nm, err := ParseNameFor(w, e.ID)
			if err != nil {
				errs = append(errs, fmt.Sprintf("line %d: %v", n, err))
				ok = false
				continue
			}
			e.Names.Add(nm)
		}
		if ok {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Sprintf("line %d: %v", n+1, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no node ids in the list (one id a line, then its DNS names and IP addresses)")
	}
	return out, nil
}

// ParseSerial reads a serial number as admins copy it: openssl's
// colon-separated hex (3A:F0:…), plain hex, with or without 0x.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"), "serial=")
	h = strings.ReplaceAll(h, ":", "")
	if h == "" || len(h) > 64 {
		return nil, fmt.Errorf("%q is not a serial number (hex, as `certkeeper ca list` prints it)", s)
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("%q is not a serial number (hex, as `certkeeper ca list` prints it)", s)
	}
	return n, nil
}

// FormatSerial prints a serial as openssl does, colon-separated hex.
func FormatSerial(n *big.Int) string {
	h := strings.ToUpper(n.Text(16))
	if len(h)%2 == 1 {
		h = "0" + h
	}
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
