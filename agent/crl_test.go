//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	fleetpkg "github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/rotate"
)

// A new CRL alone (the same certificate and key) is a change: the agent
// installs it in the live directory, reloads once, and the same set again
// is no change.
func TestInboxInstallsANewCRLAloneWithOneReload(t *testing.T) {
	f := newFixture(t)
	cfg, _ := os.ReadFile(f.config)
	cfg = bytes.Replace(cfg, []byte("layout = \"flocker-node\"\n"), []byte("layout = \"flocker-node\"\ncrl_file = \"cluster.crl\"\n"), 1)
	testpki.WriteFile(t, f.root, "c.toml", cfg, 0o600)
	now := time.Now()
	leaf := f.ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)})
	revoked := f.ca.Issue(t, "node-2", testpki.Options{})
	f.install(t, leaf)
	tmpl := &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.Cert.SerialNumber, RevocationTime: now}}}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, f.ca.Cert, f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	stop, log := run(t, f, agent.Options{})
	inbox := filepath.Join(f.root, "state", "inbox", "b")
	eventually(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
	drop := func() {
		testpki.WriteFile(t, inbox, "ca.crt", f.ca.CertPEM(), 0o644)
		testpki.WriteFile(t, inbox, "node.crt", leaf.CertPEM(), 0o644)
		testpki.WriteFile(t, inbox, "node.key", leaf.KeyPEM(t), 0o600)
		testpki.WriteFile(t, inbox, "cluster.crl", crlPEM, 0o644)
	}
	drop()
	eventually(t, "the CRL in the live directory, reloaded", func() bool {
		b, _ := os.ReadFile(filepath.Join(f.live, "cluster.crl"))
		return bytes.Equal(b, crlPEM) && f.reloadCount() == 1
	})
	if b, _ := os.ReadFile(filepath.Join(f.live, "node.crt")); !bytes.Equal(b, leaf.CertPEM()) {
		t.Fatalf("the certificate changed\n%s", log)
	}
	eventually(t, "the inbox to empty", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "cluster.crl"))
		return os.IsNotExist(err)
	})
	drop()
	eventually(t, "the same set to be taken as no change", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "cluster.crl"))
		return os.IsNotExist(err)
	})
	stop()
	if n := f.reloadCount(); n != 1 {
		t.Fatalf("%d reloads, want 1\n%s", n, log)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("errors in the log:\n%s", log)
	}
}

// The fleet report and the metrics judge the live files as check does:
// the node's own certificate listed in the installed CRL is CRITICAL in
// report.json and certkeeper_bundle_health, not only in check (found by
// running the binary: fleet status said the revoked node was healthy).
func TestTheReportAndMetricsSayTheNodesCertificateIsRevoked(t *testing.T) {
	f, b := owedFixture(t, `crl_file = "cluster.crl"`)
	prom := filepath.Join(f.root, "textfile", "certkeeper.prom")
	cfg, _ := os.ReadFile(f.config)
	testpki.WriteFile(t, f.root, "c.toml", bytes.Replace(cfg, []byte("state_dir"), []byte(fmt.Sprintf("metrics_textfile = %q\nstate_dir", prom)), 1), 0o600)
	leaf := f.ca.Issue(t, "node-1", testpki.Options{})
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(5), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: leaf.Cert.SerialNumber, RevocationTime: now.Add(-time.Minute)}}}, f.ca.Cert, f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	in := append(f.inputs(t, leaf), rotate.Input{Name: "cluster.crl", Data: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})})
	if _, err := agent.Deliver(context.Background(), b, agent.Delivery{Kind: agent.ByHand, Inputs: in, From: "test"}, quiet); err != nil {
		t.Fatal(err)
	}
	stop, log := run(t, f, agent.Options{})
	defer stop()
	report := filepath.Join(f.root, "state", "report.json")
	var r *fleetpkg.Report
	eventually(t, "the report", func() bool {
		data, err := os.ReadFile(report)
		if err != nil {
			return false
		}
		r, err = fleetpkg.ParseReport(data)
		return err == nil && len(r.Bundles) == 1 && r.Bundles[0].Serial != ""
	})
	if h := r.Bundles[0]; h.Health != "CRITICAL" || !strings.Contains(h.HealthText, "certificate was revoked") {
		t.Fatalf("report health %s %q, want CRITICAL, revoked\n%s", h.Health, h.HealthText, log)
	}
	eventually(t, "the metrics textfile", func() bool { _, err := os.Stat(prom); return err == nil })
	data, _ := os.ReadFile(prom)
	if !strings.Contains(string(data), `certkeeper_bundle_health{bundle="b"} 2`) {
		t.Fatalf("metrics, want health 2 (CRITICAL):\n%s", data)
	}
}
