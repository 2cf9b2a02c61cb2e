package rotate_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

func in(name string, data []byte) rotate.Input { return rotate.Input{Name: name, Data: data} }

func flockerRules(t *testing.T) rotate.Layout {
	t.Helper()
	l, err := rotate.Rules("flocker-node", "node-1")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A flocker-ca style bundle arrives under UUID names, in any order, and
// each part is found by content.
func TestClassifyByContentNotName(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	inter := ca.Issue(t, "intermediate", testpki.Options{CA: true})
	leaf := inter.Issue(t, "node-1", testpki.Options{})
	cases := map[string][]rotate.Input{
		"flocker-ca names": {
			in("8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.key", leaf.KeyPEM(t)),
			in("cluster.crt", ca.CertPEM()),
			in("8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a.crt", testpki.CertPEM(leaf.Cert, inter.Cert)),
		},
		"misleading names": {
			in("control-host.key", ca.CertPEM()),
			in("localhost-key.pem", testpki.CertPEM(leaf.Cert)),
			in("ca.pem", leaf.KeyPEM(t)),
			in("chain.pem", inter.CertPEM()),
		},
		"one combined file": {
			in("everything.pem", append(append(leaf.KeyPEM(t), testpki.CertPEM(leaf.Cert, inter.Cert)...), ca.CertPEM()...)),
		},
		"DER certificate": {
			in("node.der", leaf.Cert.Raw),
			in("node.key", leaf.KeyPEM(t)),
			in("inter.der", inter.Cert.Raw),
			in("root.der", ca.Cert.Raw),
		},
	}
	for name, inputs := range cases {
		t.Run(name, func(t *testing.T) {
			c := rotate.Classify(inputs)
			if len(c.Problems) > 0 {
				t.Fatalf("problems: %v", c.Problems)
			}
			if c.Leaf == nil || !c.Leaf.Cert.Equal(leaf.Cert) {
				t.Fatalf("leaf = %v, want node-1", c.Leaf)
			}
			if c.Key == nil || !pki.KeyMatches(leaf.Cert, c.Key.Key.Signer) {
				t.Fatal("key not found")
			}
			if len(c.CAs) != 1 || !c.CAs[0].Cert.Equal(ca.Cert) {
				t.Fatalf("CAs = %v", c.CAs)
			}
			if len(c.Intermediates) != 1 || !c.Intermediates[0].Cert.Equal(inter.Cert) {
				t.Fatalf("intermediates = %v", c.Intermediates)
			}
			if _, err := rotate.Validate(c, rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", Now: time.Now()}, nil); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// Every rule of DESIGN.md fails on its own, naming the file and the reason.
func TestValidateRules(t *testing.T) {
	now := time.Now()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	otherCA := testpki.NewCA(t, "other-cluster", testpki.Options{})
	good := ca.Issue(t, "node-1", testpki.Options{})
	weakCA := testpki.NewCA(t, "weak", testpki.Options{Key: testpki.RSA1024})
	live := &rotate.Bundle{CAs: []*x509.Certificate{ca.Cert}, Leaf: good.Cert, Key: &pki.Key{Signer: good.Key}}
	renewed := ca.Issue(t, "node-1", testpki.Options{Reuse: good.Key, NotAfter: now.Add(2 * time.Hour)})
	sha1Dir := t.TempDir()
	sha1Cert, md5Cert := opensslWeakCerts(t, sha1Dir)

	encDir := t.TempDir()
	testpki.OpenSSL(t, encDir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:x", "-out", "enc.key")
	encKey, _ := os.ReadFile(filepath.Join(encDir, "enc.key"))

	bundle := func(leaf *testpki.Pair, extra ...rotate.Input) []rotate.Input {
		return append([]rotate.Input{in("node.crt", leaf.CertPEM()), in("node.key", leaf.KeyPEM(t)), in("cluster.crt", ca.CertPEM())}, extra...)
	}
	cases := []struct {
		name      string
		inputs    []rotate.Input
		live      *rotate.Bundle
		allowCA   bool
		wantFile  string
		wantError string
	}{
		{name: "valid", inputs: bundle(good)},
		{name: "does not parse", inputs: append(bundle(good)[:2], in("cluster.crt", []byte("not a certificate"))),
			wantFile: "cluster.crt", wantError: "neither PEM"},
		{name: "empty file", inputs: bundle(good, in("empty.crt", nil)), wantFile: "empty.crt", wantError: "empty"},
		{name: "over 1 MiB", inputs: bundle(good, in("huge.pem", make([]byte, pki.MaxFileSize+1))), wantFile: "huge.pem", wantError: "1 MiB"},
		{name: "key does not match", inputs: []rotate.Input{in("node.crt", good.CertPEM()), in("node.key", testpki.KeyPEM(t, testpki.NewKey(t, ""))), in("cluster.crt", ca.CertPEM())},
			wantFile: "node.key", wantError: "does not match the certificate in node.crt"},
		{name: "other cluster CA", inputs: []rotate.Input{in("node.crt", otherCA.Issue(t, "node-1", testpki.Options{}).CertPEM()), in("cluster.crt", ca.CertPEM())},
			wantFile: "node.crt", wantError: "not signed by the cluster CA"},
		{name: "expired", inputs: bundle(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})),
			wantFile: "node.crt", wantError: "expired on"},
		{name: "not yet valid", inputs: bundle(ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})),
			wantFile: "node.crt", wantError: "not valid until"},
		{name: "leaf is a CA", inputs: bundle(ca.Issue(t, "node-1", testpki.Options{CA: true})),
			wantFile: "node.crt", wantError: "is a CA certificate"},
		{name: "another node", inputs: bundle(ca.Issue(t, "node-2", testpki.Options{DNS: []string{"node-2.example"}})),
			wantFile: "node.crt", wantError: `certificate is for "node-2", "node-2.example", this node is "node-1"`},
		{name: "node id in a SAN", inputs: bundle(ca.Issue(t, "some-host", testpki.Options{DNS: []string{"node-1"}}))},
		{name: "RSA 1024 leaf", inputs: bundle(ca.Issue(t, "node-1", testpki.Options{Key: testpki.RSA1024})),
			wantFile: "node.crt", wantError: "RSA key of 1024 bits"},
		{name: "RSA 1024 CA", inputs: []rotate.Input{in("node.crt", weakCA.Issue(t, "node-1", testpki.Options{}).CertPEM()), in("cluster.crt", weakCA.CertPEM())},
			wantFile: "cluster.crt", wantError: "at least 2048"},
		{name: "SHA-1 signature", inputs: sha1Cert, wantFile: "sha1.crt", wantError: "SHA-1"},
		{name: "MD5 signature", inputs: md5Cert, wantFile: "md5.crt", wantError: "MD5"},
		{name: "encrypted key", inputs: []rotate.Input{in("node.crt", good.CertPEM()), in("node.key", encKey), in("cluster.crt", ca.CertPEM())},
			wantFile: "node.key", wantError: "openssl pkey"},
		{name: "CSR instead of certificate", inputs: bundle(good, in("node.csr", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0}}))),
			wantFile: "node.csr", wantError: "signing request"},
		{name: "CA change refused", inputs: []rotate.Input{in("node.crt", otherCA.Issue(t, "node-1", testpki.Options{}).CertPEM()), in("cluster.crt", otherCA.CertPEM())},
			live: live, wantFile: "cluster.crt", wantError: "allow_ca_change = true"},
		{name: "CA change allowed", inputs: []rotate.Input{in("node.crt", otherCA.Issue(t, "node-1", testpki.Options{Reuse: good.Key}).CertPEM()), in("cluster.crt", otherCA.CertPEM())},
			live: live, allowCA: true},
		{name: "renewed leaf for the live key", inputs: []rotate.Input{in("node.crt", renewed.CertPEM())}, live: live},
		{name: "leaf for another key, no key", inputs: []rotate.Input{in("node.crt", ca.Issue(t, "node-1", testpki.Options{}).CertPEM())}, live: live,
			wantFile: "node.crt", wantError: "does not match the installed private key"},
		{name: "no key, nothing installed", inputs: []rotate.Input{in("node.crt", good.CertPEM()), in("cluster.crt", ca.CertPEM())},
			wantFile: "node.crt", wantError: "no private key"},
		{name: "no CA, nothing installed", inputs: []rotate.Input{in("node.crt", good.CertPEM()), in("node.key", good.KeyPEM(t))},
			wantError: "no cluster CA"},
		{name: "two keys", inputs: bundle(good, in("spare.key", testpki.KeyPEM(t, testpki.NewKey(t, "")))),
			wantFile: "spare.key", wantError: "second private key"},
		{name: "a second leaf", inputs: bundle(good, in("other.crt", ca.Issue(t, "node-7", testpki.Options{}).CertPEM())),
			wantFile: "other.crt", wantError: "neither the leaf"},
		{name: "key without its certificate", inputs: []rotate.Input{in("node.key", good.KeyPEM(t)), in("cluster.crt", ca.CertPEM())},
			wantFile: "node.key", wantError: "no certificate in the bundle belongs to this private key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", AllowCAChange: c.allowCA, Now: now}
			b, err := rotate.Validate(rotate.Classify(c.inputs), p, c.live)
			if c.wantError == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if b == nil || b.Key == nil || b.Leaf == nil || len(b.CAs) == 0 {
					t.Fatalf("incomplete bundle %+v", b)
				}
				return
			}
			var ve *rotate.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a ValidationError", err)
			}
			for _, pr := range ve.Problems {
				if pr.File == c.wantFile && strings.Contains(pr.Error(), c.wantError) {
					if c.wantFile != "" && !strings.HasPrefix(pr.Error(), c.wantFile+": ") {
						t.Errorf("message %q does not start with the file", pr.Error())
					}
					return
				}
			}
			t.Fatalf("no problem about %q mentioning %q in:\n%v", c.wantFile, c.wantError, err)
		})
	}
}

// opensslWeakCerts signs node-1 certificates with SHA-1 and MD5, which Go
// refuses to make but old openssl recipes did.
func opensslWeakCerts(t *testing.T, dir string) (sha1, md5 []rotate.Input) {
	testpki.OpenSSL(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-x509", "-days", "2", "-subj", "/CN=weak-ca", "-out", "ca.crt")
	testpki.OpenSSL(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "n.key", "-subj", "/CN=node-1", "-out", "n.req")
	out := map[string][]rotate.Input{}
	for _, md := range []string{"sha1", "md5"} {
		testpki.OpenSSL(t, dir, "x509", "-req", "-days", "1", "-in", "n.req", "-CA", "ca.crt", "-CAkey", "ca.key", "-"+md, "-out", md+".crt")
		for _, f := range []string{md + ".crt", "n.key", "ca.crt"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			out[md] = append(out[md], in(f, b))
		}
	}
	return out["sha1"], out["md5"]
}

func TestValidateReportsEveryProblem(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	now := time.Now()
	bad := ca.Issue(t, "node-2", testpki.Options{Key: testpki.RSA1024, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	_, err := rotate.Validate(rotate.Classify([]rotate.Input{in("a.crt", bad.CertPEM()), in("a.key", bad.KeyPEM(t)), in("ca.crt", ca.CertPEM())}),
		rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", Now: now}, nil)
	var ve *rotate.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("want 3 problems (expired, other node, weak key), got %v", err)
	}
}

func TestValidateEncryptedKeyIsDetectable(t *testing.T) {
	dir := t.TempDir()
	testpki.OpenSSL(t, dir, "genrsa", "-traditional", "-aes128", "-passout", "pass:x", "-out", "k", "2048")
	b, _ := os.ReadFile(filepath.Join(dir, "k"))
	_, err := rotate.Validate(rotate.Classify([]rotate.Input{in("node.key", b)}), rotate.Policy{Layout: flockerRules(t), Now: time.Now()}, nil)
	if !errors.Is(err, pki.ErrEncryptedKey) {
		t.Fatalf("errors.Is(err, ErrEncryptedKey) = false for %v", err)
	}
}

// RefuseOlder keeps a pull from installing a certificate issued before the
// live one.
func TestValidateRefusesOlderWhenAsked(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	now := time.Now()
	newer := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Minute)})
	older := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * time.Minute), Reuse: newer.Key})
	// Backdated a little more, yet expiring later: a newer certificate
	// from a CA that backdates for clock skew, not an older one.
	backdated := ca.Issue(t, "node-1", testpki.Options{NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(2 * time.Hour), Reuse: newer.Key})
	live := &rotate.Bundle{CAs: []*x509.Certificate{ca.Cert}, Leaf: newer.Cert, Key: &pki.Key{Signer: newer.Key}}
	p := rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", Now: now, RefuseOlder: true}
	_, err := rotate.Validate(rotate.Classify([]rotate.Input{in("node.crt", older.CertPEM())}), p, live)
	if err == nil || !strings.Contains(err.Error(), "older than the installed one") {
		t.Fatalf("older leaf: %v", err)
	}
	if _, err := rotate.Validate(rotate.Classify([]rotate.Input{in("node.crt", backdated.CertPEM())}), p, live); err != nil {
		t.Fatalf("a backdated newer leaf: %v", err)
	}
	p.RefuseOlder = false
	if _, err := rotate.Validate(rotate.Classify([]rotate.Input{in("node.crt", older.CertPEM())}), p, live); err != nil {
		t.Fatalf("older leaf without RefuseOlder: %v", err)
	}
}

func TestOlder(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cert := func(nb time.Time, life time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(life)}
	}
	live := cert(t0, 90*day)
	for _, c := range []struct {
		name string
		a    *x509.Certificate
		want bool
	}{
		{"a stale bundle issued 60 days earlier", cert(t0.Add(-60*day), 90*day), true},
		{"renewed a minute later, backdated 5 minutes", cert(t0.Add(-4*time.Minute), 90*day), false},
		{"a 90-day certificate replacing a 10-year self-signed one", cert(t0.Add(-5*time.Minute), 90*day), false},
		{"issued two hours earlier", cert(t0.Add(-2*time.Hour), 90*day), true},
		{"a later, shorter certificate", cert(t0.Add(time.Hour), 7*day), false},
		{"30-second certificates 20 s apart", cert(t0.Add(-20*time.Second), 30*time.Second), true},
		{"30-second certificate backdated 3 s", cert(t0.Add(-2*time.Second), 30*time.Second), false},
	} {
		if got := rotate.Older(c.a, live); got != c.want {
			t.Errorf("%s: Older = %v, want %v", c.name, got, c.want)
		}
	}
	tenYear := cert(t0, 3650*day)
	if rotate.Older(cert(t0.Add(-5*time.Minute), 90*day), tenYear) {
		t.Error("a CA's 90-day certificate issued after a 10-year self-signed one counted as older")
	}
}

// A phased CA rotation (`ca rotate`) needs no allow_ca_change: each step
// keeps a CA the node trusts now, and the leaf signed by such a kept CA.
// A lone unknown CA, or a new-CA leaf before the node trusts the new CA,
// is still refused.
func TestCAContinuity(t *testing.T) {
	now := time.Now()
	oldCA := testpki.NewCA(t, "cluster", testpki.Options{})
	newCA := testpki.NewCA(t, "cluster 2", testpki.Options{})
	strange := testpki.NewCA(t, "cluster", testpki.Options{})
	oldLeaf := oldCA.Issue(t, "node-1", testpki.Options{})
	newLeaf := newCA.Issue(t, "node-1", testpki.Options{Reuse: oldLeaf.Key})
	strangeLeaf := strange.Issue(t, "node-1", testpki.Options{Reuse: oldLeaf.Key})
	both := testpki.CertPEM(oldCA.Cert, newCA.Cert)
	live := func(cas ...*x509.Certificate) *rotate.Bundle {
		return &rotate.Bundle{Leaf: oldLeaf.Cert, Key: &pki.Key{Signer: oldLeaf.Key}, CAs: cas}
	}
	cases := []struct {
		name   string
		leaf   []byte
		trust  []byte
		live   *rotate.Bundle
		refuse bool
	}{
		{"start: both CAs, old leaf", oldLeaf.CertPEM(), both, live(oldCA.Cert), false},
		{"issue: both CAs, new leaf", newLeaf.CertPEM(), both, live(oldCA.Cert, newCA.Cert), false},
		{"finish: new CA alone, new leaf", newLeaf.CertPEM(), newCA.CertPEM(), live(oldCA.Cert, newCA.Cert), false},
		{"abort: old CA alone, old leaf", oldLeaf.CertPEM(), oldCA.CertPEM(), live(oldCA.Cert, newCA.Cert), false},
		{"lone unknown CA", strangeLeaf.CertPEM(), strange.CertPEM(), live(oldCA.Cert), true},
		{"unknown CA beside the old, its leaf", strangeLeaf.CertPEM(), testpki.CertPEM(oldCA.Cert, strange.Cert), live(oldCA.Cert), true},
		{"new leaf before the node trusts the new CA", newLeaf.CertPEM(), both, live(oldCA.Cert), true},
		{"new CA alone straight from the old", newLeaf.CertPEM(), newCA.CertPEM(), live(oldCA.Cert), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", Now: now}
			in := []rotate.Input{in("node.crt", c.leaf), in("node.key", oldLeaf.KeyPEM(t)), in("cluster.crt", c.trust)}
			b, err := rotate.Validate(rotate.Classify(in), p, c.live)
			if c.refuse {
				if err == nil || !strings.Contains(err.Error(), "allow_ca_change") {
					t.Fatalf("Validate = %v, want the CA change refused", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if want := strings.Count(string(c.trust), "BEGIN CERTIFICATE"); len(b.CAs) != want {
				t.Errorf("bundle trusts %d CAs, want %d", len(b.CAs), want)
			}
		})
	}
}

// The continuity rule follows a chain: with intermediates between the
// roots and the leaves, a rotation of the roots (new root beside the old,
// leaves under its intermediate, then the new root alone) needs no
// allow_ca_change either, and a new intermediate under the same root is
// no CA change at all. A leaf under an intermediate of a root the node
// never trusted is still refused.
func TestCAContinuityThroughIntermediates(t *testing.T) {
	now := time.Now()
	oldRoot := testpki.NewCA(t, "root", testpki.Options{})
	newRoot := testpki.NewCA(t, "root 2", testpki.Options{})
	strange := testpki.NewCA(t, "root", testpki.Options{})
	oldInter := oldRoot.Issue(t, "issuing", testpki.Options{CA: true})
	oldInter2 := oldRoot.Issue(t, "issuing b", testpki.Options{CA: true})
	newInter := newRoot.Issue(t, "issuing 2", testpki.Options{CA: true})
	strangeInter := strange.Issue(t, "issuing", testpki.Options{CA: true})
	key := testpki.NewKey(t, "")
	leaf := func(in *testpki.Pair) []byte {
		l := in.Issue(t, "node-1", testpki.Options{Reuse: key})
		return testpki.CertPEM(l.Cert, in.Cert)
	}
	oldLeaf := oldInter.Issue(t, "node-1", testpki.Options{Reuse: key})
	live := func(cas ...*x509.Certificate) *rotate.Bundle {
		return &rotate.Bundle{Leaf: oldLeaf.Cert, Intermediates: []*x509.Certificate{oldInter.Cert}, Key: &pki.Key{Signer: key}, CAs: cas}
	}
	both := testpki.CertPEM(oldRoot.Cert, newRoot.Cert)
	cases := []struct {
		name   string
		chain  []byte
		trust  []byte
		live   *rotate.Bundle
		refuse bool
	}{
		{"start: both roots, leaf under the old intermediate", leaf(oldInter), both, live(oldRoot.Cert), false},
		{"issue: both roots, leaf under the new intermediate", leaf(newInter), both, live(oldRoot.Cert, newRoot.Cert), false},
		{"finish: new root alone, leaf under the new intermediate", leaf(newInter), newRoot.CertPEM(), live(oldRoot.Cert, newRoot.Cert), false},
		{"a new intermediate under the same root", leaf(oldInter2), oldRoot.CertPEM(), live(oldRoot.Cert), false},
		{"an unknown root beside the old, a leaf under its intermediate", leaf(strangeInter), testpki.CertPEM(oldRoot.Cert, strange.Cert), live(oldRoot.Cert), true},
		{"new root alone straight from the old", leaf(newInter), newRoot.CertPEM(), live(oldRoot.Cert), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := rotate.Policy{Layout: flockerRules(t), NodeID: "node-1", Now: now}
			in := []rotate.Input{in("node.crt", c.chain), in("node.key", testpki.KeyPEM(t, key)), in("cluster.crt", c.trust)}
			_, err := rotate.Validate(rotate.Classify(in), p, c.live)
			if c.refuse {
				if err == nil || !strings.Contains(err.Error(), "allow_ca_change") {
					t.Fatalf("Validate = %v, want the CA change refused", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestChainsTo(t *testing.T) {
	root := testpki.NewCA(t, "root", testpki.Options{})
	other := testpki.NewCA(t, "other", testpki.Options{})
	a := root.Issue(t, "a", testpki.Options{CA: true})
	b := a.Issue(t, "b", testpki.Options{CA: true})
	leaf := b.Issue(t, "leaf", testpki.Options{})
	for _, c := range []struct {
		name  string
		cert  *x509.Certificate
		inter []*x509.Certificate
		root  *x509.Certificate
		want  bool
	}{
		{"direct", a.Cert, nil, root.Cert, true},
		{"two intermediates, in any order", leaf.Cert, []*x509.Certificate{a.Cert, b.Cert}, root.Cert, true},
		{"a missing link", leaf.Cert, []*x509.Certificate{b.Cert}, root.Cert, false},
		{"another root", leaf.Cert, []*x509.Certificate{b.Cert, a.Cert}, other.Cert, false},
	} {
		if got := rotate.ChainsTo(c.cert, c.inter, c.root); got != c.want {
			t.Errorf("%s: ChainsTo = %v, want %v", c.name, got, c.want)
		}
	}
}
