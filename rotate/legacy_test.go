package rotate_test

import (
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// ckIssuer is a CA as `certkeeper ca init` makes it; leaf issues as the
// CA did before node ids became SANs (the names given, nothing more).
type ckIssuer struct{ is *pki.Issuer }

func newCKIssuer(t *testing.T) ckIssuer {
	t.Helper()
	now := time.Now()
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	cert, err := pki.NewCA(pki.CAProfile{Name: "cluster", Key: key, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ckIssuer{&pki.Issuer{Cert: cert, Key: key}}
}

func (c ckIssuer) leaf(t *testing.T, cn string, dns []string, ips []string, notBefore time.Time) []rotate.Input {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	var ipa []net.IP
	for _, s := range ips {
		ipa = append(ipa, net.ParseIP(s))
	}
	leaf, err := c.is.Issue(pki.LeafProfile{CommonName: cn, DNSNames: dns, IPAddresses: ipa, PublicKey: key.Public(),
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []rotate.Input{in("ca", testpki.CertPEM(c.is.Cert)), in("crt", testpki.CertPEM(leaf)), in("key", testpki.KeyPEM(t, key))}
}

// A node that runs certificates certkeeper's CA issued before node ids
// became SANs (CN = id, SANs holding only the --dns/--ip names) keeps
// installing and renewing them after the upgrade, and `status`/`check`
// warn, naming the re-issue command. The first certificate with the id as
// a SAN clears the warning.
func TestOldCertkeeperCertificatesKeepInstalling(t *testing.T) {
	ca := newCKIssuer(t)
	m := manager(t, "flocker-node", "node-1", rotate.Overrides{})
	now := time.Now()
	res, err := m.Install(ca.leaf(t, "node-1", []string{"node-1.example.com"}, []string{"10.0.0.5"}, now.Add(-2*time.Hour)), "test")
	if err != nil {
		t.Fatalf("an old certkeeper certificate is refused: %v", err)
	}
	if len(res.Bundle.Warnings) != 1 || !strings.Contains(res.Bundle.Warnings[0].Error(), "certkeeper ca issue node node-1 --force") {
		t.Fatalf("warnings %v", res.Bundle.Warnings)
	}
	st := m.Status()
	if st.Health != rotate.Warning || !strings.Contains(st.HealthText, `names this node "node-1" in its CN only`) || !strings.Contains(st.HealthText, "certkeeper ca issue node node-1 --force") {
		t.Fatalf("status %s: %s", st.Health, st.HealthText)
	}
	// The old admin host renews it, same shape: still installs.
	if _, err := m.InstallNewer(ca.leaf(t, "node-1", []string{"node-1.example.com"}, []string{"10.0.0.5"}, now.Add(-time.Minute)), "pull"); err != nil {
		t.Fatalf("renewal of an old certkeeper certificate: %v", err)
	}
	// The upgraded CA's renewal carries the id: no warning any more.
	res, err = m.InstallNewer(ca.leaf(t, "node-1", []string{"node-1", "node-1.example.com"}, []string{"10.0.0.5"}, now), "pull")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Bundle.Warnings) != 0 {
		t.Fatalf("changed %v, warnings after the re-issue: %v", res.Changed, res.Bundle.Warnings)
	}
	if st := m.Status(); st.Health != rotate.OK {
		t.Fatalf("status after the re-issue %s: %s", st.Health, st.HealthText)
	}
}

// The same shape from anyone else (openssl, another CA) is what issue 17
// found installed on the wrong node: refused.
func TestCNBesideOtherSANsIsRefusedFromOtherIssuers(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"node-2"}})
	_, err := manager(t, "flocker-node", "node-1", rotate.Overrides{}).Install([]rotate.Input{in("a", ca.CertPEM()), in("b", leaf.CertPEM()), in("c", leaf.KeyPEM(t))}, "test")
	if err == nil || !strings.Contains(err.Error(), `b: certificate's SANs (DNS:node-2) do not name this node "node-1"`) {
		t.Fatalf("CN node-1 with SAN node-2 on node-1: %v", err)
	}
}

// The reign layouts: the CN must be the id (reign refuses to start
// otherwise); a certificate without the id as a SAN installs, since
// existing clusters run such certificates, but status warns that reign's
// peers will refuse it, naming the fix.
func TestReignLayoutRules(t *testing.T) {
	ca := newCKIssuer(t)
	now := time.Now().Add(-time.Minute)
	for _, c := range []struct {
		name, cn string
		dns      []string
		want     string // "" OK; "warn: …"; else refused
	}{
		{"certkeeper's certificate today", "3", []string{"3"}, ""},
		{"old certkeeper certificate, no SANs", "3", nil, "warn: certificate has no SANs; reign will refuse it"},
		{"old certkeeper certificate, other SANs", "3", []string{"node3.example.com"}, "warn: reign will refuse it"},
		{"another node's CN", "4", []string{"3"}, `refuse: certificate's CN is "4", this node is "3"`},
	} {
		for _, layout := range []string{"reign", "reign-init"} {
			t.Run(layout+" "+c.name, func(t *testing.T) {
				m := manager(t, layout, "3", rotate.Overrides{})
				res, err := m.Install(ca.leaf(t, c.cn, c.dns, nil, now), "test")
				switch {
				case strings.HasPrefix(c.want, "refuse: "):
					if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(c.want, "refuse: ")) {
						t.Fatalf("install: %v, want %q", err, c.want)
					}
					return
				case err != nil:
					t.Fatal(err)
				}
				st := m.Status()
				if c.want == "" {
					if st.Health != rotate.OK || len(res.Bundle.Warnings) > 0 {
						t.Fatalf("status %s %v, warnings %v", st.Health, st.Problems, res.Bundle.Warnings)
					}
					return
				}
				w := strings.TrimPrefix(c.want, "warn: ")
				if st.Health != rotate.Warning || !strings.Contains(st.HealthText, w) || !strings.Contains(st.HealthText, `ServerName "3"`) ||
					!strings.Contains(st.HealthText, "certkeeper ca issue node 3 --force") {
					t.Fatalf("status %s: %s", st.Health, st.HealthText)
				}
			})
		}
	}
}
