//go:build unix

package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// signedCRL is a CRL from ca, valid from thisUpdate to nextUpdate, listing
// revoked.
func signedCRL(t *testing.T, ca *testpki.Pair, number int64, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate, ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// certkeeper check on a node whose bundle installs a CRL, as a Nagios
// plugin reads it: OK with a fresh CRL; WARNING when a quarter of its
// validity is left and nobody refreshed it; CRITICAL once past its
// nextUpdate (daemons that check it then refuse every client); CRITICAL
// when the CRL lists the node's own live certificate. Each line is
// "CERTKEEPER STATE - bundle b: ... | b_expiry_seconds=...".
func TestCheckJudgesTheInstalledCRL(t *testing.T) {
	testenv.NeedSymlinks(t)
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(3650 * 24 * time.Hour)})
	leaf := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	other := ca.Issue(t, "node-2", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "crl_file = \"cluster.crl\"\n")
	number := int64(0)
	install := func(crl []byte) {
		t.Helper()
		r := n.install(n.files(map[string][]byte{"node.crt": leaf.CertPEM(), "node.key": leaf.KeyPEM(t), "cluster.crt": ca.CertPEM(), "cluster.crl": crl})...)
		if r.code != 0 {
			t.Fatalf("install: %+v", r)
		}
	}
	check := func() result { return certkeeper(t, "check", "--config", n.config) }
	now := time.Now()

	number++
	install(signedCRL(t, ca, number, now.Add(-time.Hour), now.Add(30*24*time.Hour), other.Cert))
	if r := check(); r.code != 0 || !strings.HasPrefix(r.stdout, "CERTKEEPER OK - bundle b: ") {
		t.Fatalf("a fresh CRL: %+v", r)
	}

	// An hour-long CRL with seconds left: WARNING, then CRITICAL.
	now = time.Now()
	next := now.Add(3 * time.Second)
	number++
	install(signedCRL(t, ca, number, now.Add(-time.Hour), next, other.Cert))
	r := check()
	if r.code != 1 || !strings.HasPrefix(r.stdout, "CERTKEEPER WARNING - bundle b: cluster.crl: CRL expires on ") ||
		!strings.Contains(r.stdout, "has not been refreshed; run certkeeper ca crl (or ca renew) on the admin host") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Fatalf("a CRL with a few seconds left: %+v", r)
	}
	waitFor(t, "the CRL's nextUpdate to pass", func() bool { return time.Now().After(next.Add(time.Second)) })
	r = check()
	if r.code != 2 || !strings.HasPrefix(r.stdout, "CERTKEEPER CRITICAL - bundle b: cluster.crl: CRL expired on ") ||
		!strings.Contains(r.stdout, "daemons that check it refuse every client") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Fatalf("a CRL past its nextUpdate: %+v", r)
	}

	// The node's own certificate listed: CRITICAL, saying when.
	now = time.Now()
	number++
	install(signedCRL(t, ca, number, now.Add(-time.Minute), now.Add(30*24*time.Hour), leaf.Cert, other.Cert))
	r = check()
	if r.code != 2 || !strings.HasPrefix(r.stdout, "CERTKEEPER CRITICAL - bundle b: ") ||
		!strings.Contains(r.stdout, "this node's certificate was revoked on "+now.Add(-time.Minute).UTC().Format("2006-01-02")) ||
		!strings.Contains(r.stdout, "(keyCompromise)") || !strings.Contains(r.stdout, " | b_expiry_seconds=") {
		t.Fatalf("the node's own certificate revoked: %+v", r)
	}
}

// ca list and ca renew warn on stderr when the cluster CA has
// ca_expiry_warn of its life left, naming ca rotate; "0%" turns it off.
// (A one-day CA has 99.6% of its life left when made: a 99.9% threshold
// stands in for the default 20% of a CA near its end.)
func TestCAListAndRenewWarnWhenTheCANearsItsEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCA(t, "init", "--dir", dir, "--name", "shortlived", "--days", "1")
	mustCA(t, "issue", "--dir", dir, "node", "node-1")
	setWarn := func(share string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, "ca.toml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("ca_expiry_warn = \"" + share + "\"\n"); err != nil {
			t.Fatal(err)
		}
	}
	// The default 20%: a fresh CA is no news.
	for _, args := range [][]string{{"list", "--dir", dir}, {"renew", "--dir", dir, "--within", "40%"}} {
		if r := mustCA(t, args...); strings.Contains(r.stderr, "ca rotate") {
			t.Fatalf("ca %s warned about a fresh CA: %+v", args[0], r)
		}
	}
	setWarn("99.9%")
	for _, args := range [][]string{{"list", "--dir", dir}, {"renew", "--dir", dir, "--within", "40%"}} {
		r := mustCA(t, args...)
		if !strings.HasPrefix(r.stderr, "warning: cluster CA \"CN=shortlived\" expires on ") || !strings.Contains(r.stderr, "of its life left); replace it in time: certkeeper ca rotate on the admin host") {
			t.Errorf("ca %s with the CA inside ca_expiry_warn: %+v", args[0], r)
		}
		if strings.Contains(r.stdout, "ca rotate") {
			t.Errorf("ca %s: the warning is on stdout: %q", args[0], r.stdout)
		}
	}
	// The JSON on stdout stays clean.
	if r := mustCA(t, "list", "--dir", dir, "--json"); !strings.HasPrefix(strings.TrimSpace(r.stdout), "[") || !strings.Contains(r.stderr, "ca rotate") {
		t.Errorf("ca list --json: %+v", r)
	}
}

// certkeeper status shows the installed CRL in its text, as status --json
// does in crl: the file, its number and issuer, how many it revokes and
// its next update, the date check judges it by.
func TestStatusShowsTheInstalledCRL(t *testing.T) {
	testenv.NeedSymlinks(t)
	ca := testpki.NewCA(t, "cluster", testpki.Options{NotAfter: time.Now().Add(3650 * 24 * time.Hour)})
	leaf := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	other := ca.Issue(t, "node-2", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "crl_file = \"cluster.crl\"\n")
	now := time.Now().UTC().Truncate(time.Second)
	next := now.Add(30 * 24 * time.Hour)
	crl := signedCRL(t, ca, 7, now.Add(-time.Hour), next, other.Cert)
	if r := n.install(n.files(map[string][]byte{"node.crt": leaf.CertPEM(), "node.key": leaf.KeyPEM(t), "cluster.crt": ca.CertPEM(), "cluster.crl": crl})...); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	r := certkeeper(t, "status", "--config", n.config)
	want := ", 1 revoked, next update " + next.Format("2006-01-02 15:04:05") + " UTC"
	if r.code != 0 || !regexp.MustCompile(`\n  CRL +cluster\.crl: number 7 from CN=cluster`).MatchString(r.stdout) || !strings.Contains(r.stdout, want) {
		t.Fatalf("status does not show the CRL (%q):\n%+v", want, r)
	}
}
