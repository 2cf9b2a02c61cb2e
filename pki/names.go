package pki

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// NormalizeDNSName checks a DNS subject alternative name and returns it in
// the form certificates carry: lower case, without a trailing dot. A
// leading "*." wildcard label is allowed. Underscores are refused: TLS
// clients reject them in certificate names.
func NormalizeDNSName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return "", fmt.Errorf("DNS name %q is empty", s)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%q is an IP address, not a DNS name (use --ip for addresses)", s)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("DNS name %q is longer than 253 characters", s)
	}
	labels := strings.Split(name, ".")
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		// No top-level domain is all digits: this is a mistyped address.
		return "", fmt.Errorf("%q is neither an IP address nor a DNS name (its last label is a number)", s)
	}
	for i, l := range labels {
		if i == 0 && l == "*" && len(labels) > 2 {
			continue
		}
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("DNS name %q: %w", s, err)
		}
	}
	return name, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("empty label")
	case l == "*":
		return fmt.Errorf("a wildcard is allowed only as the first of at least three labels (*.nodes.example.com)")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("%q is not allowed in a DNS name (letters, digits and hyphens only)", r)
		}
	}
	return nil
}

// ParseIPAddress checks an IP subject alternative name: IPv4 or IPv6,
// without a zone; an IPv4-mapped IPv6 address becomes plain IPv4, as TLS
// clients compare them.
func ParseIPAddress(s string) (net.IP, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not an IP address (IPv4 such as 10.0.0.5, or IPv6 such as fd00::5)", s)
	}
	if a.Zone() != "" {
		return nil, fmt.Errorf("%q has a zone (%%%s); certificates carry addresses without one", s, a.Zone())
	}
	return net.IP(a.Unmap().AsSlice()), nil
}
