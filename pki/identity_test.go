package pki_test

import (
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

func TestMatchNode(t *testing.T) {
	ca := testpki.NewCA(t, "ca", testpki.Options{})
	for _, c := range []struct {
		cn   string
		o    testpki.Options
		id   string
		want pki.NameMatch
	}{
		{"n1", testpki.Options{DNS: []string{"n1"}}, "n1", pki.NameInSAN},
		{"x", testpki.Options{DNS: []string{"N1"}}, "n1", pki.NameInSAN},
		{"x", testpki.Options{IPs: []string{"::1"}}, "0:0::1", pki.NameInSAN},
		{"n1", testpki.Options{}, "n1", pki.NameCNOnly},
		{"n1", testpki.Options{DNS: []string{"n2"}}, "n1", pki.NameCNBesideSANs},
		{"n1", testpki.Options{IPs: []string{"10.0.0.1"}}, "n1", pki.NameCNBesideSANs},
		{"n2", testpki.Options{}, "n1", pki.NameAbsent},
		{"n1", testpki.Options{}, "", pki.NameAbsent},
	} {
		if got := pki.MatchNode(ca.Issue(t, c.cn, c.o).Cert, c.id); got != c.want {
			t.Errorf("CN %q %+v, id %q: %v, want %v", c.cn, c.o, c.id, got, c.want)
		}
	}
}

func TestIDName(t *testing.T) {
	for id, want := range map[string]string{"1": "DNS:1", "Node-A": "DNS:node-a", "10.0.0.9": "IP:10.0.0.9", "fd00::5": "IP:fd00::5", "8eab4b8d-c0a2": "DNS:8eab4b8d-c0a2"} {
		dns, ip := pki.IDName(id)
		got := "DNS:" + dns
		if ip != nil {
			got = "IP:" + ip.String()
		}
		if got != want {
			t.Errorf("IDName(%q) = %s, want %s", id, got, want)
		}
	}
	for _, c := range []struct {
		name, id string
		ok       bool
	}{
		{"1", "1", true}, {"1.", "1", true}, {"1", "2", false}, {"1", "", false}, {"10.0.0", "10.0.0", true},
		{"node-1", "1", true}, {"2", "node-2", false},
	} {
		_, err := pki.NormalizeDNSNameFor(c.name, c.id)
		if (err == nil) != c.ok {
			t.Errorf("NormalizeDNSNameFor(%q, %q) = %v, want ok=%v", c.name, c.id, err, c.ok)
		}
	}
}

// The shape of certkeeper's own leaves is recognised; openssl's and
// other Go programs' are not.
func TestLooksIssuedByCertkeeper(t *testing.T) {
	now := time.Now()
	for _, kt := range []pki.KeyType{pki.ECDSAP256, pki.RSA2048, pki.Ed25519} {
		caKey, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
		caCert, err := pki.NewCA(pki.CAProfile{Name: "c", Key: caKey, NotBefore: now, NotAfter: now.Add(time.Hour)}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := pki.GenerateKey(kt, rand.Reader)
		leaf, err := (&pki.Issuer{Cert: caCert, Key: caKey}).Issue(pki.LeafProfile{CommonName: "n1", IPAddresses: []net.IP{net.ParseIP("10.0.0.1")},
			PublicKey: key.Public(), NotBefore: now, NotAfter: now.Add(time.Minute)}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !pki.LooksIssuedByCertkeeper(leaf) {
			t.Errorf("%s: certkeeper's own leaf not recognised", kt)
		}
	}
	ca := testpki.NewCA(t, "ca", testpki.Options{})
	if pki.LooksIssuedByCertkeeper(ca.Issue(t, "n1", testpki.Options{DNS: []string{"n2"}}).Cert) {
		t.Error("a Go leaf without a key identifier taken for certkeeper's")
	}
	dir := t.TempDir()
	testpki.GlowRecipe(t, dir, "n1")
	c, err := pki.Parse([]byte(testpki.OpenSSL(t, dir, "x509", "-in", "server1.cer")))
	if err != nil || len(c.Certificates) == 0 {
		t.Fatal(err)
	}
	if pki.LooksIssuedByCertkeeper(c.Certificates[0]) {
		t.Error("an openssl leaf taken for certkeeper's")
	}
}

func TestParseUsage(t *testing.T) {
	for in, want := range map[string]pki.Usage{"": pki.UsageBoth, "server": pki.UsageServer, "client": pki.UsageClient, "server,client": pki.UsageBoth, "Client": pki.UsageClient} {
		var names []string
		if in != "" {
			names = strings.Split(in, ",")
		}
		if got, err := pki.ParseUsage(names); err != nil || got != want {
			t.Errorf("ParseUsage(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := pki.ParseUsage([]string{"peer"}); err == nil || !strings.Contains(err.Error(), `usage "peer" is not one of "server", "client"`) {
		t.Errorf("peer: %v", err)
	}
	if pki.UsageBoth.String() != "server and client auth" || strings.Join(pki.UsageBoth.Names(), ",") != "server,client" {
		t.Error(pki.UsageBoth.String(), pki.UsageBoth.Names())
	}
}
