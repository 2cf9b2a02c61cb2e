package fleet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// Probe reads the serial a TLS endpoint serves, verifies it against the
// CA, and says so when it does not verify or nothing listens.
func TestProbeReadsTheServedSerial(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "n1", testpki.Options{})
	cert, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	c, _ := pki.Parse(leaf.CertPEM())
	want := pki.Serial(c.Certificates[0])
	got, err := fleet.Probe(context.Background(), l.Addr().String(), "n1", roots, 5*time.Second)
	if err != nil || got != want {
		t.Fatalf("probe: %q %v, want %q", got, err, want)
	}
	other := x509.NewCertPool()
	other.AppendCertsFromPEM(testpki.NewCA(t, "other", testpki.Options{}).CertPEM())
	if got, err := fleet.Probe(context.Background(), l.Addr().String(), "", other, 5*time.Second); err == nil || got != want || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("another CA: %q %v", got, err)
	}
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	if _, err := fleet.Probe(context.Background(), addr, "", roots, 2*time.Second); err == nil {
		t.Fatal("a closed port answered")
	}
}
