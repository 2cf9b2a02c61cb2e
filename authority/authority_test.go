package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newCA(t testing.TB, o Options, mod func(*InitParams)) *Authority {
	t.Helper()
	p := InitParams{Settings: DefaultSettings("test-cluster")}
	if mod != nil {
		mod(&p)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(dir, p, o); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func nodes(t testing.TB, ids ...string) []Request {
	t.Helper()
	var r []Request
	for _, id := range ids {
		req, err := NodeRequest(id, Names{}, "")
		if err != nil {
			t.Fatal(err)
		}
		r = append(r, req)
	}
	return r
}

func issue(t testing.TB, a *Authority, reqs []Request, o IssueOptions) *Result {
	t.Helper()
	res, err := a.Issue(context.Background(), reqs, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

func mode(t testing.TB, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// readBundle reads a published bundle back and checks it is whole: the key
// matches the certificate, which chains to cluster.crt.
func readBundle(t testing.TB, a *Authority, id string, kind Kind) *x509.Certificate {
	t.Helper()
	certName, keyName := kind.Files()
	dir := filepath.Join(a.Dir, NodesDir, id)
	read := func(name string) *pki.Contents {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	leaf, key, ca := read(certName).Certificates[0], read(keyName).Keys[0], read(CertFile).Certificates[0]
	if !pki.KeyMatches(leaf, key.Signer) || !ca.Equal(a.Cert) {
		t.Fatalf("%s: bundle does not hold together", id)
	}
	if err := pki.Verify(leaf, nil, []*x509.Certificate{ca}, a.opts.now()); err != nil {
		t.Fatal(err)
	}
	if mode(t, dir) != 0o700 || mode(t, filepath.Join(dir, keyName)) != 0o600 || mode(t, filepath.Join(dir, certName)) != 0o644 {
		t.Fatalf("%s: modes %v %v %v", id, mode(t, dir), mode(t, filepath.Join(dir, keyName)), mode(t, filepath.Join(dir, certName)))
	}
	return leaf
}

func TestInitLayoutAndRefusal(t *testing.T) {
	a := newCA(t, Options{}, nil)
	if mode(t, a.Dir) != 0o700 || mode(t, a.path(KeyFile)) != 0o600 || mode(t, a.path(CertFile)) != 0o644 || mode(t, a.path(DBFile)) != 0o600 {
		t.Fatal("modes of a new CA")
	}
	if !a.Cert.IsCA || a.Cert.Subject.CommonName != "test-cluster" || a.Cert.NotAfter.Sub(a.Cert.NotBefore) < 3649*day {
		t.Fatalf("CA %s %s..%s", a.Cert.Subject, a.Cert.NotBefore, a.Cert.NotAfter)
	}
	before, _ := os.ReadFile(a.path(KeyFile))
	_, err := Init(a.Dir, InitParams{Settings: DefaultSettings("again")}, Options{})
	if err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("second init: %v", err)
	}
	after, _ := os.ReadFile(a.path(KeyFile))
	if string(before) != string(after) {
		t.Fatal("the key changed")
	}
	// A directory with a key and no certificate is an unfinished init.
	os.Remove(a.path(CertFile))
	if _, err := Load(a.Dir, Options{}); err == nil || !strings.Contains(err.Error(), "interrupted `ca init`") {
		t.Fatalf("unfinished: %v", err)
	}
	if _, err := Load(t.TempDir(), Options{}); !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), "certkeeper ca init") {
		t.Fatalf("no CA: %v", err)
	}
}

func TestIssueNodesAndControl(t *testing.T) {
	a := newCA(t, Options{}, nil)
	names, _ := ParseNames([]string{"n1.example.com"}, []string{"10.0.0.5"})
	r1, _ := NodeRequest("node-1", names, pki.Ed25519)
	ctl, _ := ControlRequest("control.example.com", Names{}, "")
	res := issue(t, a, append([]Request{r1, ctl}, nodes(t, "node-2", "node-3")...), IssueOptions{})
	if len(res.Issued) != 4 {
		t.Fatalf("%+v", res)
	}
	leaf := readBundle(t, a, "node-1", KindNode)
	if leaf.Subject.CommonName != "node-1" || leaf.Subject.Organization[0] != "test-cluster" || pki.KeyTypeOf(leaf.PublicKey) != pki.Ed25519 ||
		!pki.NamesNode(leaf, "n1.example.com") || !pki.NamesNode(leaf, "10.0.0.5") {
		t.Fatalf("node-1: %v", pki.Describe(leaf))
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 90*day || d > 90*day+pki.Backdate+time.Minute {
		t.Fatalf("validity %s", d)
	}
	c := readBundle(t, a, "control-control.example.com", KindControl)
	if c.Subject.CommonName != "control-control.example.com" || c.DNSNames[0] != "control.example.com" {
		t.Fatalf("control: %v", pki.Describe(c))
	}
	// The same ids again: refused, and nothing changes.
	_, err := a.Issue(context.Background(), nodes(t, "node-2", "node-9"), IssueOptions{})
	var refused *RefusedError
	if !errors.As(err, &refused) || len(refused.Problems) != 1 || !strings.Contains(err.Error(), "node-2 exists") {
		t.Fatalf("existing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, NodesDir, "node-9")); err == nil {
		t.Fatal("node-9 was issued although the batch was refused")
	}
	// --skip-existing issues only the new one; --force re-issues, keeping names.
	res = issue(t, a, nodes(t, "node-2", "node-9"), IssueOptions{SkipExisting: true})
	if len(res.Issued) != 1 || len(res.Skipped) != 1 {
		t.Fatalf("skip: %+v", res)
	}
	old := readBundle(t, a, "node-1", KindNode)
	res = issue(t, a, nodes(t, "node-1"), IssueOptions{Force: true})
	renewed := readBundle(t, a, "node-1", KindNode)
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || !pki.NamesNode(renewed, "10.0.0.5") || pki.KeyTypeOf(renewed.PublicKey) != pki.Ed25519 ||
		!strings.Contains(res.Issued[0].Note, "names kept") {
		t.Fatalf("force: %+v %v", res.Issued[0], pki.Describe(renewed))
	}
	entries, err := a.List(true)
	if err != nil || len(entries) != 6 {
		t.Fatalf("list --all: %d %v", len(entries), err)
	}
	statuses := map[Status]int{}
	for _, e := range entries {
		statuses[e.Status]++
	}
	if statuses[StatusSuperseded] != 1 || statuses[StatusValid] != 5 {
		t.Fatalf("statuses %v", statuses)
	}
	if cur, _ := a.List(false); len(cur) != 5 {
		t.Fatalf("list: %d", len(cur))
	}
}

// An issue killed after recording but before publishing is redone by
// running it again, without --force.
func TestUnpublishedIssueIsRedone(t *testing.T) {
	a := newCA(t, Options{}, nil)
	issue(t, a, nodes(t, "node-1"), IssueOptions{})
	os.Remove(filepath.Join(a.Dir, NodesDir, "node-1", "node.key"))
	res := issue(t, a, nodes(t, "node-1"), IssueOptions{})
	if !strings.Contains(res.Issued[0].Note, "never published") {
		t.Fatalf("%+v", res.Issued[0])
	}
	readBundle(t, a, "node-1", KindNode)
}

func TestIssueCapsValidityAndRefusesExpiredCA(t *testing.T) {
	clk := &clock{t: time.Now().Add(-2 * 365 * day)}
	o := Options{Now: clk.now}
	a := newCA(t, o, func(p *InitParams) { p.Days = 30 })
	res := issue(t, a, nodes(t, "n1"), IssueOptions{})
	if !res.Capped || !res.Issued[0].Cert.NotAfter.Equal(a.Cert.NotAfter) {
		t.Fatalf("not capped: %+v", res)
	}
	clk.add(31 * day)
	b, _ := Load(a.Dir, o)
	_, err := b.Issue(context.Background(), nodes(t, "n2"), IssueOptions{})
	if !errors.Is(err, pki.ErrCAExpired) || !strings.Contains(err.Error(), "ca init") {
		t.Fatalf("expired CA: %v", err)
	}
}

func TestRevokeAndCRL(t *testing.T) {
	a := newCA(t, Options{}, nil)
	issue(t, a, nodes(t, "node-1", "node-2"), IssueOptions{})
	issue(t, a, nodes(t, "node-1"), IssueOptions{Force: true}) // node-1 now has two valid certificates
	first, _ := a.List(true)
	var node2 string
	for _, e := range first {
		if e.ID == "node-2" {
			node2 = e.Serial
		}
	}
	res, err := a.Revoke("node-1", pki.Reasons["keyCompromise"])
	if err != nil || res.Node == nil || len(res.Revoked) != 2 {
		t.Fatalf("revoke node-1: %+v %v", res, err)
	}
	res, err = a.Revoke(strings.ToLower(strings.ReplaceAll(node2, ":", "")), 0)
	if err != nil || res.Node != nil || len(res.Revoked) != 1 {
		t.Fatalf("revoke by serial: %+v %v", res, err)
	}
	if res, err := a.Revoke(node2, 0); err != nil || len(res.Already) != 1 || len(res.Revoked) != 0 {
		t.Fatalf("again: %+v %v", res, err)
	}
	for _, bad := range []string{"node-7", "AB:CD"} {
		if _, err := a.Revoke(bad, 0); err == nil || !strings.Contains(err.Error(), "no node and no certificate") {
			t.Fatalf("unknown %s: %v", bad, err)
		}
	}
	info, err := a.WriteCRL(0)
	if err != nil || len(info.Entries) != 3 || info.Number.Int64() != 1 {
		t.Fatalf("crl: %+v %v", info, err)
	}
	info, _ = a.WriteCRL(7)
	if info.Number.Int64() != 2 || time.Until(info.NextUpdate) > 7*day {
		t.Fatalf("second crl: %+v", info)
	}
	data, _ := os.ReadFile(a.path(CRLFile))
	b, _ := pem.Decode(data)
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil || crl.CheckSignatureFrom(a.Cert) != nil || len(crl.RevokedCertificateEntries) != 3 {
		t.Fatalf("published CRL: %v", err)
	}
	// Every node's publish directory holds the same CRL, so a push or
	// pull carries it with the bundle.
	for _, id := range a.publishedNodes() {
		got, err := os.ReadFile(filepath.Join(a.path(NodesDir), id, CRLFile))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("nodes/%s/%s is not the published CRL: %v", id, CRLFile, err)
		}
	}
	if len(a.publishedNodes()) == 0 {
		t.Fatal("no node directories to carry the CRL")
	}
	// A revoked node is not renewed, not signed for, and needs --force.
	if _, err := a.Issue(context.Background(), nodes(t, "node-1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "was revoked") {
		t.Fatalf("issue for a revoked node: %v", err)
	}
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	if _, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{}); err == nil || !strings.Contains(err.Error(), "was revoked") {
		t.Fatalf("sign for a revoked node: %v", err)
	}
	issue(t, a, nodes(t, "node-1"), IssueOptions{Force: true})
	if _, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{}); err != nil {
		t.Fatalf("sign after taking the node back: %v", err)
	}
}

func csr(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSign(t *testing.T) {
	a := newCA(t, Options{}, nil)
	names, _ := ParseNames([]string{"n1.example.com"}, []string{"10.0.0.5"})
	r, _ := NodeRequest("node-1", names, "")
	issue(t, a, []Request{r}, IssueOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP384, rand.Reader)

	s, err := a.Sign("node-1", csr(t, key, "node-1"), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Chain[0]
	if len(s.Chain) != 1 || !pki.KeyMatches(leaf, key) || !pki.NamesNode(leaf, "n1.example.com") || !pki.NamesNode(leaf, "10.0.0.5") {
		t.Fatalf("a request without names gets the recorded ones: %v", pki.Describe(leaf))
	}
	if err := pki.Verify(leaf, nil, []*x509.Certificate{a.Cert}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s, err = a.Sign("node-1", csr(t, key, "node-1", "n1.example.com"), SignOptions{})
	if err != nil || len(s.Chain[0].IPAddresses) != 0 {
		t.Fatalf("asked names only: %v", err)
	}
	for name, c := range map[string]struct {
		id, cn string
		dns    []string
		want   string
	}{
		"another node's CN":   {"node-1", "node-2", nil, `its CN is "node-2"`},
		"another node's name": {"node-1", "node-1", []string{"n2.example.com"}, "not one of node"},
		"bad id":              {"../x", "../x", nil, "--node"},
	} {
		if _, err := a.Sign(c.id, csr(t, key, c.cn, c.dns...), SignOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// Extra names on the forced command, for a node the CA has never seen.
	extra, _ := ParseNames([]string{"n5.example.com"}, nil)
	if s, err := a.Sign("node-5", csr(t, key, "node-5", "n5.example.com"), SignOptions{Extra: extra}); err != nil || strings.Join(s.Chain[0].DNSNames, ",") != "node-5,n5.example.com" {
		t.Fatalf("extra names, after the id as a SAN: %v", err)
	}
	entries, _ := a.List(false)
	for _, e := range entries {
		if e.ID == "node-1" && (e.Source != SourceCSR || e.KeyType != "ecdsa-p384") {
			t.Fatalf("node-1 after sign: %+v", e)
		}
	}
	// A CSR node is the agent's to renew, and ca issue refuses it.
	if _, err := a.Issue(context.Background(), nodes(t, "node-1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "renews by CSR") {
		t.Fatalf("issue for a CSR node: %v", err)
	}
}

func TestRenew(t *testing.T) {
	clk := &clock{t: time.Now()}
	o := Options{Now: clk.now}
	for _, policy := range []string{RenewRotate, RenewKeep} {
		t.Run(policy, func(t *testing.T) {
			a := newCA(t, o, func(p *InitParams) { p.Settings.RenewKey = policy })
			names, _ := ParseNames([]string{"n1.example.com"}, nil)
			r, _ := NodeRequest("node-1", names, pki.ECDSAP384)
			issue(t, a, append(nodes(t, "node-2", "node-3"), r), IssueOptions{Days: 10})
			issue(t, a, nodes(t, "fresh"), IssueOptions{Days: 90})
			key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
			if _, err := a.Sign("csr-node", csr(t, key, "csr-node"), SignOptions{Days: 5}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Revoke("node-3", 0); err != nil {
				t.Fatal(err)
			}
			if _, err := a.WriteCRL(3); err != nil {
				t.Fatal(err)
			}
			before := readBundle(t, a, "node-1", KindNode)
			clk.add(2 * day) // the 3-day CRL is now past half its life
			defer clk.add(-2 * day)

			res, err := a.Renew(context.Background(), RenewOptions{Within: Window{Duration: 30 * day}, DryRun: true})
			if err != nil || len(res.Due) != 2 || len(res.Issued) != 0 {
				t.Fatalf("dry run: %+v %v", res, err)
			}
			res, err = a.Renew(context.Background(), RenewOptions{Within: Window{Duration: 30 * day}})
			if err != nil || res.Err() != nil || len(res.Issued) != 2 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Reason, "CSR mode") {
				t.Fatalf("renew: %+v %v", res, err)
			}
			after := readBundle(t, a, "node-1", KindNode)
			if after.SerialNumber.Cmp(before.SerialNumber) == 0 || !pki.NamesNode(after, "n1.example.com") || pki.KeyTypeOf(after.PublicKey) != pki.ECDSAP384 ||
				after.NotAfter.Sub(after.NotBefore) < 89*day {
				t.Fatalf("renewed: %v", pki.Describe(after))
			}
			if kept := pki.SameKey(before, after); kept != (policy == RenewKeep) {
				t.Fatalf("key kept = %v with renew_key = %s", kept, policy)
			}
			if res.CRL == nil || res.CRLErr != nil || res.CRL.Number.Int64() != 2 {
				t.Fatalf("the CRL, 3 days from its next update, was not refreshed: %+v %v", res.CRL, res.CRLErr)
			}
			res, err = a.Renew(context.Background(), RenewOptions{Within: Window{Duration: 30 * day}})
			if err != nil || len(res.Issued) != 0 || res.CRL != nil {
				t.Fatalf("second renew did something: %+v %v", res, err)
			}
		})
	}
}

func TestLockTimeout(t *testing.T) {
	a := newCA(t, Options{LockTimeout: 200 * time.Millisecond}, nil)
	held, err := openBolt(a.path(DBFile), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.Issue(context.Background(), nodes(t, "n1"), IssueOptions{})
	if err == nil || !strings.Contains(err.Error(), "in use by another certkeeper ca command (waited 200ms)") {
		t.Fatalf("%v", err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("did not wait")
	}
	held.Close()
	issue(t, a, nodes(t, "n1"), IssueOptions{})
}

// Many batches committing at once, each through its own database handle
// (and so its own file lock, as separate processes have), lose nothing and
// repeat no serial.
func TestConcurrentBatches(t *testing.T) {
	a := newCA(t, Options{}, nil)
	const batches, per = 4, 25
	var wg sync.WaitGroup
	errs := make([]error, batches)
	for b := range batches {
		wg.Go(func() {
			mine, err := Load(a.Dir, Options{})
			if err != nil {
				errs[b] = err
				return
			}
			var ids []string
			for i := range per {
				ids = append(ids, fmt.Sprintf("b%d-n%d", b, i))
			}
			res, err := mine.Issue(context.Background(), nodes(t, ids...), IssueOptions{})
			if err == nil {
				err = res.Err()
			}
			errs[b] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	entries, err := a.List(true)
	if err != nil || len(entries) != batches*per {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	serials := map[string]bool{}
	for _, e := range entries {
		if serials[e.Serial] {
			t.Fatalf("serial %s twice", e.Serial)
		}
		serials[e.Serial] = true
		readBundle(t, a, e.ID, KindNode)
	}
}

func TestEncryptedCAKey(t *testing.T) {
	passFile := testpki.WriteFile(t, t.TempDir(), "pass", []byte("a long passphrase\n"), 0o600)
	a := newCA(t, Options{}, func(p *InitParams) { p.Passphrase = []byte("a long passphrase") })
	data, _ := os.ReadFile(a.path(KeyFile))
	if !pki.KeyIsEncrypted(data) {
		t.Fatal("cluster.key is not encrypted")
	}
	b, _ := Load(a.Dir, Options{})
	if _, err := b.Issue(context.Background(), nodes(t, "n1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "--passphrase-file") {
		t.Fatalf("no passphrase: %v", err)
	}
	asked := 0
	b, _ = Load(a.Dir, Options{Passphrase: func(string, bool) ([]byte, error) { asked++; return []byte("wrong"), nil }})
	if _, err := b.Issue(context.Background(), nodes(t, "n1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "wrong passphrase") || asked != 1 {
		t.Fatalf("wrong passphrase: %v", err)
	}
	b, _ = Load(a.Dir, Options{PassphraseFile: passFile})
	issue(t, b, nodes(t, "n1"), IssueOptions{})
	os.Chmod(passFile, 0o644)
	b, _ = Load(a.Dir, Options{PassphraseFile: passFile})
	if _, err := b.Issue(context.Background(), nodes(t, "n2"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("readable passphrase file: %v", err)
	}
}

func TestKeyAndDatabaseMustBelongToTheCA(t *testing.T) {
	a := newCA(t, Options{}, nil)
	other := newCA(t, Options{}, nil)
	os.Chmod(a.path(KeyFile), 0o644)
	b, _ := Load(a.Dir, Options{})
	if _, err := b.Issue(context.Background(), nodes(t, "n1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("readable CA key: %v", err)
	}
	os.Chmod(a.path(KeyFile), 0o600)
	otherCert, _ := os.ReadFile(other.path(CertFile))
	os.WriteFile(a.path(CertFile), otherCert, 0o644)
	b, _ = Load(a.Dir, Options{})
	if _, err := b.Issuer(); err == nil || !strings.Contains(err.Error(), "does not belong to") {
		t.Fatalf("swapped certificate: %v", err)
	}
	if _, err := b.Issue(context.Background(), nodes(t, "n1"), IssueOptions{}); err == nil || !strings.Contains(err.Error(), "belongs to another CA") {
		t.Fatalf("issue with a swapped certificate: %v", err)
	}
	if _, err := b.List(false); err == nil || !strings.Contains(err.Error(), "belongs to another CA") {
		t.Fatalf("database of another CA: %v", err)
	}
}

func TestPublishLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "nodes", "a"), 0o755)
	stale := filepath.Join(dir, "nodes", "a", ".node.key.tmp-0123456789ab")
	os.WriteFile(stale, []byte("left by a killed run"), 0o600)
	keep := filepath.Join(dir, "nodes", "a", ".profile")
	os.WriteFile(keep, nil, 0o600)
	for _, n := range []int{3, 60} { // per-file fsync, and a batch
		var files []pubFile
		for i := range n / 3 {
			d := fmt.Sprintf("nodes/%c", 'a'+i%26) + fmt.Sprint(i/26)
			if i == 0 {
				d = "nodes/a"
			}
			files = append(files, pubFile{d + "/node.crt", []byte("crt"), 0o644}, pubFile{d + "/node.key", []byte("key"), 0o600}, pubFile{d + "/cluster.crt", []byte("ca"), 0o644})
		}
		if err := publish(dir, files); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			p := filepath.Join(dir, filepath.FromSlash(f.rel))
			if data, _ := os.ReadFile(p); string(data) == "" || mode(t, p) != f.mode {
				t.Fatalf("%s: %q %v", f.rel, data, mode(t, p))
			}
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("a stale temporary file survived")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("a file that is not ours was removed")
	}
	if mode(t, filepath.Join(dir, "nodes", "a")) != 0o700 {
		t.Fatal("a node directory is not 0700")
	}
	// A symlink under nodes/ can not send a key out of the CA directory.
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "nodes", "evil"))
	if err := publish(dir, []pubFile{{"nodes/evil/node.key", []byte("key"), 0o600}}); err == nil {
		t.Fatal("published through a symlink")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatal("a file was written outside the CA directory")
	}
}

// BenchmarkIssue1000 issues 1,000 ecdsa-p256 node bundles in one call,
// as `ca issue node --from-file` does.
func BenchmarkIssue1000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		a := newCA(b, Options{}, nil)
		var reqs []Request
		for i := range 1000 {
			reqs = append(reqs, Request{ID: fmt.Sprintf("node-%d", i), Kind: KindNode})
		}
		b.StartTimer()
		issue(b, a, reqs, IssueOptions{})
	}
}

// BenchmarkIssueOne issues one node per call, the database growing.
func BenchmarkIssueOne(b *testing.B) {
	a := newCA(b, Options{}, nil)
	i := 0
	for b.Loop() {
		i++
		issue(b, a, []Request{{ID: fmt.Sprintf("node-%d", i), Kind: KindNode}}, IssueOptions{})
	}
}

func TestInitDirectoryModes(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o755)
	if _, err := Init(empty, InitParams{Settings: DefaultSettings("x")}, Options{}); err != nil || mode(t, empty) != 0o700 {
		t.Fatalf("an empty directory is tightened: %v %v", err, mode(t, empty))
	}
	// Missing parents are made traversable (0755), as mkdir -p makes
	// them: the signing account must reach a CA outside /var/lib/certkeeper.
	deep := filepath.Join(t.TempDir(), "srv", "pki", "ca")
	if _, err := Init(deep, InitParams{Settings: DefaultSettings("x")}, Options{}); err != nil || mode(t, deep) != 0o700 {
		t.Fatalf("a deep CA directory: %v %v", err, mode(t, deep))
	}
	for _, p := range []string{filepath.Dir(deep), filepath.Dir(filepath.Dir(deep))} {
		if mode(t, p) != 0o755 {
			t.Errorf("parent %s made with mode %04o, want 0755", p, mode(t, p))
		}
	}
	busy := t.TempDir()
	os.Chmod(busy, 0o755)
	os.WriteFile(filepath.Join(busy, "notes.txt"), nil, 0o644)
	if _, err := Init(busy, InitParams{Settings: DefaultSettings("x")}, Options{}); err == nil || !strings.Contains(err.Error(), "chmod 700") || mode(t, busy) != 0o755 {
		t.Fatalf("a directory holding other files: %v", err)
	}
}

func TestRelativePassphraseFile(t *testing.T) {
	a := newCA(t, Options{}, func(p *InitParams) {
		p.Passphrase = []byte("a long passphrase")
		p.Settings.PassphraseFile = "pass"
	})
	os.WriteFile(filepath.Join(a.Dir, "pass"), []byte("a long passphrase"), 0o600)
	t.Chdir(t.TempDir())
	b, _ := Load(a.Dir, Options{})
	issue(t, b, nodes(t, "n1"), IssueOptions{})
}

// A publish that fails for one node (a directory where node.crt belongs)
// fails that node only, and the next `ca renew` re-issues it even though
// its recorded certificate is far from expiry, so the hourly timer repairs
// what the failed run left.
func TestRenewRepublishesWhatAFailedPublishLost(t *testing.T) {
	a := newCA(t, Options{}, nil)
	issue(t, a, nodes(t, "a", "b"), IssueOptions{})
	crt := filepath.Join(a.Dir, NodesDir, "a", "node.crt")
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(crt, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := a.Renew(context.Background(), RenewOptions{Within: Window{Duration: 3650 * 24 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Failed) != 1 || r.Failed[0].ID != "a" || !strings.Contains(r.Failed[0].Err.Error(), "not published") {
		t.Fatalf("failed: %+v; want a alone", r.Failed)
	}
	if len(r.Issued) != 1 || r.Issued[0].ID != "b" {
		t.Fatalf("issued: %+v; want b", r.Issued)
	}
	if !a.published(nodeRecord(t, a, "b")) {
		t.Fatal("b's renewal is not in its publish directory")
	}
	os.Remove(crt)
	r, err = a.Renew(context.Background(), RenewOptions{Within: Window{Duration: time.Hour}})
	if err != nil || r.Err() != nil {
		t.Fatalf("second run: %v %v", err, r.Err())
	}
	if len(r.Due) != 1 || r.Due[0].Node.ID != "a" || !r.Due[0].Unpublished {
		t.Fatalf("due: %+v; want a, as unpublished", r.Due)
	}
	if !a.published(nodeRecord(t, a, "a")) {
		t.Fatal("a is still not published")
	}
	if r, _ := a.Renew(context.Background(), RenewOptions{Within: Window{Duration: time.Hour}}); len(r.Due) != 0 {
		t.Fatalf("third run renews %+v; want nothing", r.Due)
	}
}

func nodeRecord(t *testing.T, a *Authority, id string) *NodeRecord {
	t.Helper()
	var n *NodeRecord
	if err := a.view(func(tx *bolt.Tx) (err error) { n, err = getNode(tx, id); return err }); err != nil || n == nil {
		t.Fatalf("node %s: %v", id, err)
	}
	return n
}

// The policy the ca commands used to hold: one id per batch, and a
// passphrase of MinPassphrase characters at least.
func TestDuplicateIDAndShortPassphrase(t *testing.T) {
	if err := DuplicateID([]string{"a", "b", "a"}); err == nil || !strings.Contains(err.Error(), `id "a" is given twice`) {
		t.Errorf("DuplicateID: %v", err)
	}
	if err := DuplicateID([]string{"a", "b"}); err != nil {
		t.Errorf("DuplicateID of distinct ids: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := Init(dir, InitParams{Settings: DefaultSettings("x"), Passphrase: []byte("short")}, Options{})
	if err == nil || !strings.Contains(err.Error(), "shorter than 8 characters") {
		t.Fatalf("a short passphrase: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.key")); !os.IsNotExist(err) {
		t.Errorf("a refused passphrase left a key: %v", err)
	}
}

// raceReader runs fn once, at the first read after fn is set: inside
// Renew that is while the batch signs, after it planned and before it
// commits.
type raceReader struct {
	once sync.Once
	fn   func()
}

func (r *raceReader) Read(p []byte) (int, error) {
	if r.fn != nil {
		r.once.Do(r.fn)
	}
	return rand.Read(p)
}

// A node whose agent renews it with ca sign while a timer's ca renew is
// signing for it: the renewal is moot, not a failure (the soak test's
// admin timer failed 1 of 98 runs this way).
func TestRenewRacedByAnotherCommandIsSkipped(t *testing.T) {
	race := &raceReader{}
	a := newCA(t, Options{Rand: race}, nil)
	issue(t, a, nodes(t, "csr-1", "node-2"), IssueOptions{Days: 5})
	other, err := Load(a.Dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var signed string
	race.fn = func() {
		key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
		s, err := other.Sign("csr-1", csr(t, key, "csr-1"), SignOptions{Days: 30})
		if err != nil {
			t.Error(err)
			return
		}
		signed = FormatSerial(s.Chain[0].SerialNumber)
	}
	res, err := a.Renew(context.Background(), RenewOptions{Within: Window{Duration: 10 * day}})
	if err != nil || res.Err() != nil {
		t.Fatalf("renew failed: %+v %v", res, err)
	}
	if len(res.Issued) != 1 || res.Issued[0].ID != "node-2" || len(res.Skipped) != 1 || res.Skipped[0].ID != "csr-1" ||
		!strings.Contains(res.Skipped[0].Reason, "renewed meanwhile") || !strings.Contains(res.Skipped[0].Reason, signed) {
		t.Fatalf("want node-2 issued and csr-1 skipped as renewed meanwhile (%s): %+v", signed, res)
	}
	list, err := a.List(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if n.ID == "csr-1" && n.Current && n.Serial != signed {
			t.Fatalf("csr-1's current certificate is %s, not the one ca sign made (%s)", n.Serial, signed)
		}
	}
}
