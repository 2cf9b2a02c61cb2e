package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// certkeeperIn runs the binary with data on its standard input.
// newCADir runs `ca init` in a fresh directory and returns it.
func newCADir(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if r := certkeeper(t, append([]string{"ca", "init", "--dir", dir, "--name", "test-cluster"}, args...)...); r.code != 0 {
		t.Fatalf("ca init: %+v", r)
	}
	return dir
}

func mustCA(t *testing.T, args ...string) result {
	t.Helper()
	r := certkeeper(t, append([]string{"ca"}, args...)...)
	if r.code != 0 {
		t.Fatalf("certkeeper ca %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func list(t *testing.T, dir string, all bool) []authority.Entry {
	t.Helper()
	args := []string{"list", "--dir", dir, "--json"}
	if all {
		args = append(args, "--all")
	}
	var entries []authority.Entry
	if err := json.Unmarshal([]byte(mustCA(t, args...).stdout), &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestCAHelp(t *testing.T) {
	for _, args := range [][]string{{"ca", "--help"}, {"help", "ca"}, {"ca", "help"}} {
		r := certkeeper(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: certkeeper ca SUBCOMMAND") || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	for _, sub := range []string{"init", "issue", "list", "revoke", "crl", "renew", "sign"} {
		for _, args := range [][]string{{"ca", sub, "--help"}, {"ca", "help", sub}} {
			r := certkeeper(t, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "Usage: certkeeper ca "+sub) || !strings.Contains(r.stdout, "Example") {
				t.Errorf("%v: %+v", args, r)
			}
		}
	}
	if r := certkeeper(t, "ca", "sign", "--help"); !strings.Contains(r.stdout, `restrict,command="/usr/bin/certkeeper ca sign --dir /var/lib/certkeeper/ca --node`) {
		t.Error("ca sign --help lacks the authorized_keys line")
	}
	for _, args := range [][]string{{"ca"}, {"ca", "frobnicate"}, {"ca", "init", "--dir", "x"}, {"ca", "issue", "--dir", "x"}, {"ca", "issue", "--dir", "x", "pods"},
		{"ca", "renew", "--dir", "x"}, {"ca", "renew", "--dir", "x", "--within", "30"}, {"ca", "sign", "--dir", "x"}, {"ca", "revoke", "--dir", "x"},
		{"ca", "issue", "--dir", "x", "node", "a", "--force", "--skip-existing"}, {"ca", "issue", "--dir", "x", "control", "a", "b"}} {
		if r := certkeeper(t, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
}

// The admin's whole story with openssl as the judge: every certificate
// verifies against cluster.crt, carries the names, key usage and EKU asked
// for, and installs with `certkeeper install` under the Flocker layouts.
func TestCAIssueVerifiesAndInstalls(t *testing.T) {
	dir := newCADir(t)
	ca := testpki.OpenSSL(t, dir, "x509", "-in", "cluster.crt", "-noout", "-text")
	for _, want := range []string{"Subject: CN = test-cluster", "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0", "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign", "Subject Key Identifier", "Authority Key Identifier"} {
		if !strings.Contains(ca, want) {
			t.Errorf("cluster.crt lacks %q:\n%s", want, ca)
		}
	}
	types := []string{"ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-2048"}
	if !testing.Short() {
		types = append(types, "rsa-4096")
	}
	for _, kt := range types {
		id := "node-" + kt
		mustCA(t, "issue", "--dir", dir, "node", id, "--key-type", kt, "--dns", id+".example.com", "--ip", "10.0.0.5,fd00::5")
	}
	r := mustCA(t, "issue", "--dir", dir, "control", "control.example.com", "--ip", "10.0.0.1")
	if !strings.Contains(r.stdout, "issued control control-control.example.com") {
		t.Fatalf("control: %s", r.stdout)
	}
	r = mustCA(t, "issue", "--dir", dir, "node")
	if len(list(t, dir, false)) != len(types)+2 || !strings.Contains(r.stdout, "issued node ") {
		t.Fatalf("a node without an id: %s", r.stdout)
	}
	for _, e := range list(t, dir, false) {
		cert, key := "node.crt", "node.key"
		if e.Kind == authority.KindControl {
			cert, key = "control-service.crt", "control-service.key"
		}
		nd := filepath.Join(dir, "nodes", e.ID)
		out := testpki.OpenSSL(t, nd, "verify", "-CAfile", "cluster.crt", "-purpose", "sslserver", cert)
		if !strings.Contains(out, "OK") {
			t.Fatalf("%s: %s", e.ID, out)
		}
		testpki.OpenSSL(t, nd, "verify", "-CAfile", "cluster.crt", "-purpose", "sslclient", cert)
		text := testpki.OpenSSL(t, nd, "x509", "-in", cert, "-noout", "-text")
		wants := []string{"CN = " + e.ID, "O = test-cluster", "TLS Web Server Authentication, TLS Web Client Authentication", "CA:FALSE", "Subject Key Identifier", "Authority Key Identifier"}
		switch {
		case strings.HasPrefix(e.ID, "node-"):
			wants = append(wants, "DNS:"+e.ID+".example.com", "IP Address:10.0.0.5", "IP Address:FD00:0:0:0:0:0:0:5")
		case e.Kind == authority.KindControl:
			wants = append(wants, "DNS:control.example.com", "IP Address:10.0.0.1")
		}
		if strings.HasPrefix(e.KeyType, "rsa") {
			wants = append(wants, "Digital Signature, Key Encipherment")
		} else {
			wants = append(wants, "X509v3 Key Usage: critical\n                Digital Signature\n")
		}
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s: openssl x509 -text lacks %q", e.ID, w)
			}
		}
		if fi, _ := os.Stat(filepath.Join(nd, key)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key mode %v", e.ID, fi.Mode())
		}
		// The bundle installs as it is published.
		layout := "flocker-node"
		if e.Kind == authority.KindControl {
			layout = "flocker-control"
		}
		n := newNode(t, layout, e.ID, "")
		if r := n.install(filepath.Join(nd, cert), filepath.Join(nd, key), filepath.Join(nd, "cluster.crt")); r.code != 0 {
			t.Fatalf("%s: install: %+v", e.ID, r)
		}
		testpki.OpenSSL(t, n.live, "verify", "-CAfile", "cluster.crt", cert)
	}
	// The CA key stays on the admin host: no node directory holds it.
	caKey, _ := os.ReadFile(filepath.Join(dir, "cluster.key"))
	filepath.Walk(filepath.Join(dir, "nodes"), func(p string, fi os.FileInfo, err error) error {
		if data, _ := os.ReadFile(p); fi.Mode().IsRegular() && bytes.Equal(data, caKey) {
			t.Errorf("%s holds the CA key", p)
		}
		return nil
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestCAMutualTLS(t *testing.T) {
	testenv.NeedUnix(t, "openssl")
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "a", "b", "c", "--dns", "localhost", "--ip", "127.0.0.1")
	other := newCADir(t)
	mustCA(t, "issue", "--dir", other, "node", "b", "--ip", "127.0.0.1")
	mustCA(t, "revoke", "--dir", dir, "c", "--reason", "keyCompromise")
	caFile := filepath.Join(dir, "cluster.crt")
	node := func(d, id string) string { return filepath.Join(d, "nodes", id) }
	cases := []struct {
		name       string
		client     string
		serverArgs []string
		ok         bool
		why        string
	}{
		{"two nodes of the cluster", node(dir, "b"), nil, true, ""},
		{"a node of another cluster", node(other, "b"), nil, false, "unknown ca"},
		{"a revoked node, CRL checked", node(dir, "c"), []string{"-crl_check", "-CRL", filepath.Join(dir, "cluster.crl")}, false, "certificate revoked"},
		{"a good node, CRL checked", node(dir, "b"), []string{"-crl_check", "-CRL", filepath.Join(dir, "cluster.crl")}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, out := tlsPair(t, caFile, node(dir, "a"), c.client, c.serverArgs...)
			if ok != c.ok || !strings.Contains(out, c.why) {
				t.Fatalf("handshake ok=%v, want %v (%q):\n%s", ok, c.ok, c.why, out)
			}
		})
	}
}

// syncBuffer is a buffer a process writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tlsPair starts s_server once, waits for its port with a plain TCP probe
// that it answers, and runs s_client against it.
func tlsPair(t *testing.T, caFile, server, client string, serverArgs ...string) (bool, string) {
	t.Helper()
	port := freePort(t)
	args := append([]string{"s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-naccept", "1", "-www",
		"-cert", filepath.Join(server, "node.crt"), "-key", filepath.Join(server, "node.key"),
		"-CAfile", caFile, "-Verify", "1", "-verify_return_error"}, serverArgs...)
	srv := exec.Command("openssl", args...)
	var srvOut syncBuffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	defer func() {
		srv.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("openssl s_server did not stop")
		}
	}()
	// Wait for the port without connecting to it (a probe would use up
	// -naccept 1): s_server prints ACCEPT once it listens.
	for i := 0; !strings.Contains(srvOut.String(), "ACCEPT"); i++ {
		if i == 250 {
			t.Fatalf("s_server did not start listening: %s", srvOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := exec.CommandContext(ctx, "openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
		"-cert", filepath.Join(client, "node.crt"), "-key", filepath.Join(client, "node.key"),
		"-CAfile", caFile, "-verify_return_error", "-ign_eof")
	cl.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := cl.CombinedOutput()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	all := string(out) + "\n--- server ---\n" + srvOut.String()
	return err == nil && strings.Contains(string(out), "HTTP/1.0 200 ok"), all
}

func TestCARevokeAndCRLWithOpenSSL(t *testing.T) {
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "good", "bad", "spare")
	spare := list(t, dir, false)
	var spareSerial string
	for _, e := range spare {
		if e.ID == "spare" {
			spareSerial = e.Serial
		}
	}
	r := mustCA(t, "revoke", "--dir", dir, "bad", "--reason", "keyCompromise")
	if !strings.Contains(r.stdout, "revoked node bad") || !strings.Contains(r.stdout, "CRL number 1, 1 revoked") {
		t.Fatalf("revoke: %s", r.stdout)
	}
	r = mustCA(t, "revoke", "--dir", dir, strings.ReplaceAll(spareSerial, ":", ""), "--no-crl")
	if !strings.Contains(r.stdout, "revoked node spare: serial "+spareSerial) || !strings.Contains(r.stdout, "was not written") {
		t.Fatalf("revoke by serial: %s", r.stdout)
	}
	// spare's only certificate was its current one: the published bundle
	// now holds a revoked certificate, and nothing re-issues it.
	if !strings.Contains(r.stdout, "spare's current certificate is revoked") || !strings.Contains(r.stdout, "ca issue --dir "+dir+" node spare --force") {
		t.Errorf("revoking a current certificate says nothing of what follows: %s", r.stdout)
	}
	mustCA(t, "crl", "--dir", dir, "--days", "7")
	if out := testpki.OpenSSL(t, dir, "crl", "-in", "cluster.crl", "-CAfile", "cluster.crt", "-noout", "-text"); !strings.Contains(out, "verify OK") ||
		!strings.Contains(out, "X509v3 CRL Number: \n                2") || !strings.Contains(out, "Key Compromise") {
		t.Fatalf("openssl crl: %s", out)
	}
	for id, want := range map[string]bool{"good": true, "bad": false, "spare": false} {
		out, err := testpki.OpenSSLErr(dir, "verify", "-crl_check", "-CRLfile", "cluster.crl", "-CAfile", "cluster.crt", filepath.Join("nodes", id, "node.crt"))
		if (err == nil) != want || (!want && !strings.Contains(out, "certificate revoked")) {
			t.Errorf("%s: openssl verify -crl_check: %v\n%s", id, err, out)
		}
	}
	st := map[string]authority.Status{}
	for _, e := range list(t, dir, false) {
		st[e.ID] = e.Status
	}
	if st["good"] != authority.StatusValid || st["bad"] != authority.StatusRevoked || st["spare"] != authority.StatusRevoked {
		t.Fatalf("statuses %v", st)
	}
	if r := certkeeper(t, "ca", "revoke", "--dir", dir, "AB:CD:EF"); r.code != 1 || !strings.Contains(r.stderr, `no node and no certificate "AB:CD:EF"`) {
		t.Fatalf("unknown serial: %+v", r)
	}
	if r := mustCA(t, "revoke", "--dir", dir, "bad"); !strings.Contains(r.stdout, "already revoked") {
		t.Fatalf("revoke twice: %s", r.stdout)
	}
	tbl := mustCA(t, "list", "--dir", dir).stdout
	if !strings.HasPrefix(tbl, "ID ") || !strings.Contains(tbl, "revoked") || !strings.Contains(tbl, "89d") {
		t.Fatalf("ca list:\n%s", tbl)
	}
}

func csrPEM(t *testing.T, dir, keyType, subj string, ext ...string) []byte {
	t.Helper()
	name := fmt.Sprintf("k%d", len(subj)+len(ext)*100+int(time.Now().UnixNano()%100000))
	switch keyType {
	case "rsa-1024":
		testpki.OpenSSL(t, dir, "genrsa", "-out", name+".key", "1024")
	default:
		testpki.OpenSSL(t, dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name+".key")
	}
	args := []string{"req", "-new", "-key", name + ".key", "-subj", subj, "-out", name + ".csr"}
	for _, e := range ext {
		args = append(args, "-addext", e)
	}
	testpki.OpenSSL(t, dir, args...)
	data, err := os.ReadFile(filepath.Join(dir, name+".csr"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// `ca sign` with what an agent sends (an openssl CSR on stdin): the chain
// on stdout verifies; what a node must not get is refused with a reason.
func TestCASign(t *testing.T) {
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "node-1", "--dns", "n1.example.com", "--ip", "10.0.0.5")
	mustCA(t, "issue", "--dir", dir, "node", "node-2", "--dns", "n2.example.com")
	work := t.TempDir()
	// As sshd runs the forced command: SSH_ORIGINAL_COMMAND is what the
	// agent asked for.
	sign := func(stdin []byte, node string, extra ...string) result {
		t.Helper()
		return runBinary(t, stdin, []string{"SSH_ORIGINAL_COMMAND=certkeeper ca sign"}, append([]string{"ca", "sign", "--dir", dir, "--node", node}, extra...)...)
	}
	good := csrPEM(t, work, "", "/CN=node-1", "subjectAltName=DNS:n1.example.com,IP:10.0.0.5")
	r := sign(good, "node-1")
	if r.code != 0 || !strings.Contains(r.stderr, "node node-1: its own agent asked (forced command): it renews by CSR from now on") || strings.Count(r.stdout, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("sign: %+v", r)
	}
	testpki.WriteFile(t, work, "signed.crt", []byte(r.stdout), 0o644)
	testpki.OpenSSL(t, work, "verify", "-CAfile", filepath.Join(dir, "cluster.crt"), "signed.crt")
	text := testpki.OpenSSL(t, work, "x509", "-in", "signed.crt", "-noout", "-text")
	if !strings.Contains(text, "DNS:n1.example.com, IP Address:10.0.0.5") || !strings.Contains(text, "TLS Web Client Authentication") {
		t.Fatalf("signed:\n%s", text)
	}
	der := func(p []byte) []byte { b, _ := pem.Decode(p); return b.Bytes }
	if r := sign(der(good), "node-1"); r.code != 0 {
		t.Fatalf("DER request: %+v", r)
	}
	tampered := der(good)
	tampered[len(tampered)-3] ^= 0x40
	huge := append(bytes.Repeat([]byte("#"), pki.MaxCSRSize), good...)
	cases := []struct {
		name  string
		stdin []byte
		node  string
		want  string
	}{
		{"another node's CN", csrPEM(t, work, "", "/CN=node-2"), "node-1", `its CN is "node-2", but this node is "node-1"`},
		{"another node's name", csrPEM(t, work, "", "/CN=node-1", "subjectAltName=DNS:n2.example.com"), "node-1", `DNS name "n2.example.com" is not one of node "node-1"'s names`},
		{"a bad signature", tampered, "node-1", "signature does not verify"},
		{"an RSA-1024 key", csrPEM(t, work, "rsa-1024", "/CN=node-1"), "node-1", "RSA key of 1024 bits"},
		{"more than 64 KiB", huge, "node-1", "larger than 65536 bytes"},
		{"nothing", nil, "node-1", "no input"},
		{"a certificate instead", []byte(r.stdout), "node-1", `"CERTIFICATE", not "CERTIFICATE REQUEST"`},
		{"text (echo hello |)", []byte("hello\n"), "node-1", `not a PEM CERTIFICATE REQUEST block or a DER CSR (6 bytes, starting with "hello\n")` + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(list(t, dir, true))
			r := sign(c.stdin, c.node)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, c.want)
			}
			if after := len(list(t, dir, true)); after != before {
				t.Fatal("a refused request was recorded")
			}
		})
	}
	// Names allowed by the forced command itself.
	if r := sign(csrPEM(t, work, "", "/CN=node-1", "subjectAltName=DNS:alias.example.com"), "node-1", "--dns", "alias.example.com"); r.code != 0 {
		t.Fatalf("extra name: %+v", r)
	}
	if r := certkeeperIn(t, good, "ca", "sign", "--dir", dir); r.code != 2 || !strings.Contains(r.stderr, "--node ID is required") {
		t.Fatalf("no --node: %+v", r)
	}
}

// An encrypted CA key: openssl reads it with the passphrase; commands
// without a terminal need the passphrase file and say so; ca sign never
// waits for a prompt.
func TestCAEncrypted(t *testing.T) {
	pass := testpki.WriteFile(t, t.TempDir(), "pass", []byte("correct horse battery\n"), 0o600)
	dir := newCADir(t, "--encrypt", "--passphrase-file", pass)
	key, _ := os.ReadFile(filepath.Join(dir, "cluster.key"))
	if !bytes.Contains(key, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("cluster.key is not encrypted")
	}
	testpki.OpenSSL(t, dir, "pkey", "-in", "cluster.key", "-passin", "file:"+pass, "-noout")
	r := certkeeper(t, "ca", "issue", "--dir", dir, "node", "n1")
	if r.code != 1 || !strings.Contains(r.stderr, "is encrypted and there is no one to ask for its passphrase: give --passphrase-file FILE") {
		t.Fatalf("no passphrase: %+v", r)
	}
	mustCA(t, "issue", "--dir", dir, "node", "n1", "--passphrase-file", pass)
	work := t.TempDir()
	csr := csrPEM(t, work, "", "/CN=n1")
	start := time.Now()
	if r := certkeeperIn(t, csr, "ca", "sign", "--dir", dir, "--node", "n1"); r.code != 1 || !strings.Contains(r.stderr, "--passphrase-file") {
		t.Fatalf("sign without passphrase: %+v", r)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("ca sign waited for something")
	}
	if r := certkeeperIn(t, csr, "ca", "sign", "--dir", dir, "--node", "n1", "--passphrase-file", pass); r.code != 0 {
		t.Fatalf("sign with passphrase file: %+v", r)
	}
	if r := certkeeper(t, "ca", "init", "--dir", filepath.Join(t.TempDir(), "x"), "--name", "x", "--encrypt"); r.code != 2 || !strings.Contains(r.stderr, "--passphrase-file") {
		t.Fatalf("--encrypt without a terminal: %+v", r)
	}
}

func TestCAErrorsHelp(t *testing.T) {
	dir := newCADir(t)
	mustCA(t, "issue", "--dir", dir, "node", "node-1")
	expired := filepath.Join(t.TempDir(), "expired")
	past := time.Now().Add(-48 * time.Hour)
	if _, err := authority.Init(expired, authority.InitParams{Settings: authority.DefaultSettings("old"), Days: 1}, authority.Options{Now: func() time.Time { return past }}); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(t.TempDir(), "nodes.txt")
	os.WriteFile(list, []byte("good\n.bad\nn2 10.0.0.300\n"), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"existing id", []string{"issue", "--dir", dir, "node", "node-1"}, 1, "node-1 exists (serial "},
		{"bad IP", []string{"issue", "--dir", dir, "node", "n9", "--ip", "10.0.0.300"}, 2, `--ip: "10.0.0.300" is not an IP address`},
		{"an address as a DNS name", []string{"issue", "--dir", dir, "node", "n9", "--dns", "10.0.0.3"}, 2, "use --ip"},
		{"unknown key type", []string{"issue", "--dir", dir, "node", "n9", "--key-type", "rsa-1024"}, 2, `unknown key type "rsa-1024"; use one of ecdsa-p256`},
		{"missing CA", []string{"issue", "--dir", filepath.Join(t.TempDir(), "none"), "node", "n9"}, 1, "create a CA with `certkeeper ca init"},
		{"expired CA", []string{"issue", "--dir", expired, "node", "n9"}, 1, "the cluster CA has expired on"},
		{"bad id", []string{"issue", "--dir", dir, "node", "../etc"}, 2, `id "../etc" must not start with "."`},
		{"control- node id", []string{"issue", "--dir", dir, "node", "control-x"}, 2, "kept for control-service"},
		{"list file problems", []string{"issue", "--dir", dir, "node", "--from-file", list}, 1, "line 2: id \".bad\""},
		{"list file missing", []string{"issue", "--dir", dir, "node", "--from-file", list + ".nope"}, 1, "--from-file"},
		{"init over a CA", []string{"init", "--dir", dir, "--name", "x"}, 1, "never overwrites"},
		{"unknown revocation reason", []string{"revoke", "--dir", dir, "node-1", "--reason", "bored"}, 2, "use one of"},
		{"renew, bad key policy", []string{"renew", "--dir", dir, "--within", "30d", "--key", "sometimes"}, 2, "keep or rotate"},
		// 0 days is not the default in disguise, and an empty name is not
		// "no name": both are mistakes the admin hears of before anything
		// is issued.
		{"--days 0", []string{"issue", "--dir", dir, "node", "n6", "--days", "0"}, 2, "--days 0: give a positive number of days, or leave --days out for the default"},
		{"negative --days", []string{"issue", "--dir", dir, "node", "n6", "--days", "-1"}, 2, "--days -1: give a positive number of days"},
		{"sign --days 0", []string{"sign", "--dir", dir, "--node", "node-1", "--days", "0"}, 2, "--days 0: give a positive number of days"},
		{"renew --days 0", []string{"renew", "--dir", dir, "--within", "30d", "--days", "0"}, 2, "--days 0: give a positive number of days"},
		{"crl --days 0", []string{"crl", "--dir", dir, "--days", "0"}, 2, "--days 0: give a positive number of days"},
		{"revoke --crl-days 0", []string{"revoke", "--dir", dir, "n6", "--crl-days", "0"}, 2, "--crl-days 0: give a positive number of days"},
		{"init --node-days 0", []string{"init", "--dir", filepath.Join(t.TempDir(), "new"), "--name", "x", "--node-days", "0"}, 2, "--node-days 0: give a positive number of days"},
		{"empty --dns", []string{"issue", "--dir", dir, "node", "n6", "--dns", ""}, 2, `invalid argument "" for "--dns" flag: empty value: give a name, or leave the flag out`},
		{"empty --ip", []string{"issue", "--dir", dir, "node", "n6", "--ip", " "}, 2, `"--ip" flag: empty value`},
		{"empty name between commas", []string{"issue", "--dir", dir, "node", "n6", "--ip", "10.0.0.1,,10.0.0.2"}, 2, `"10.0.0.1,,10.0.0.2" has an empty name between commas`},
		{"an id twice", []string{"issue", "--dir", dir, "node", "n9", "n8", "n9"}, 2, `id "n9" is given twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := certkeeper(t, append([]string{"ca"}, c.args...)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant %q", r.code, c.code, r.stderr, c.want)
			}
		})
	}
	for _, id := range []string{"n6", "n8", "n9"} {
		if _, err := os.Stat(filepath.Join(dir, "nodes", id)); !os.IsNotExist(err) {
			t.Errorf("a refused command issued %s: %v", id, err)
		}
	}
	if !strings.Contains(certkeeper(t, "ca", "issue", "--dir", dir, "node", "--from-file", list).stderr, `line 3: "10.0.0.300" is neither`) {
		t.Error("a mistyped address in a list is not reported")
	}
}

func TestCARenew(t *testing.T) {
	dir := newCADir(t, "--renew-key", "keep")
	mustCA(t, "issue", "--dir", dir, "node", "short", "--days", "1", "--dns", "short.example.com")
	mustCA(t, "issue", "--dir", dir, "node", "long")
	before := list(t, dir, false)
	r := mustCA(t, "renew", "--dir", dir, "--within", "48h", "--dry-run")
	if !strings.Contains(r.stdout, "would renew node short") || strings.Contains(r.stdout, "renewed") {
		t.Fatalf("dry run: %s", r.stdout)
	}
	r = mustCA(t, "renew", "--dir", dir, "--within", "2d")
	if !strings.Contains(r.stdout, "renewed node short: serial") || !strings.Contains(r.stdout, "key kept") || strings.Contains(r.stdout, "node long") {
		t.Fatalf("renew: %s", r.stdout)
	}
	after := list(t, dir, false)
	for _, e := range after {
		if e.ID == "short" && (e.Source != authority.SourceRenew || e.SecondsLeft < 89*86400 || strings.Join(e.DNSNames, ",") != "short,short.example.com") {
			t.Fatalf("renewed entry %+v", e)
		}
	}
	if before[0].ID != "short" || before[0].Serial == after[len(after)-1].Serial {
		t.Fatalf("before %v after %v", before, after)
	}
	if r := mustCA(t, "renew", "--dir", dir, "--within", "2d", "--key", "rotate"); !strings.Contains(r.stdout, "nothing to renew") {
		t.Fatalf("second renew: %s", r.stdout)
	}
	testpki.OpenSSL(t, filepath.Join(dir, "nodes", "short"), "verify", "-CAfile", "cluster.crt", "node.crt")
}

// Two `ca issue` processes at once: both finish, nothing is lost, no
// serial repeats, and the same id asked for by both is issued once.
func TestCAConcurrentProcesses(t *testing.T) {
	dir := newCADir(t)
	const per = 150
	var wg sync.WaitGroup
	results := make([]result, 4)
	for p := range 2 {
		ids := filepath.Join(t.TempDir(), "ids")
		var b strings.Builder
		for i := range per {
			fmt.Fprintf(&b, "p%d-node-%d\n", p, i)
		}
		os.WriteFile(ids, []byte(b.String()), 0o600)
		wg.Go(func() { results[p] = certkeeper(t, "ca", "issue", "--dir", dir, "node", "--from-file", ids) })
		wg.Go(func() { results[2+p] = certkeeper(t, "ca", "issue", "--dir", dir, "node", "contested") })
	}
	wg.Wait()
	if results[0].code != 0 || results[1].code != 0 {
		t.Fatalf("batches: %+v %+v", results[0], results[1])
	}
	if won := (results[2].code == 0) != (results[3].code == 0); !won {
		t.Fatalf("the contested id: %+v %+v", results[2], results[3])
	}
	loser := results[2]
	if loser.code == 0 {
		loser = results[3]
	}
	if !strings.Contains(loser.stderr, "contested exists") && !strings.Contains(loser.stderr, "changed by another certkeeper command meanwhile") {
		t.Fatalf("the losing process says: %s", loser.stderr)
	}
	checkCA(t, dir, 2*per+1)
}

// checkCA reads the database with the CLI and checks every record: unique
// serials, and for each node a published bundle whose certificate is the
// recorded current one, whose key matches, and which openssl verifies.
func checkCA(t *testing.T, dir string, want int) {
	t.Helper()
	all := list(t, dir, true)
	serials := map[string]bool{}
	for _, e := range all {
		if serials[e.Serial] {
			t.Fatalf("serial %s twice", e.Serial)
		}
		serials[e.Serial] = true
	}
	cur := list(t, dir, false)
	if want >= 0 && len(cur) != want {
		t.Fatalf("%d nodes, want %d", len(cur), want)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "cluster.crt"))
	for _, e := range cur {
		nd := filepath.Join(dir, "nodes", e.ID)
		crt, err1 := os.ReadFile(filepath.Join(nd, "node.crt"))
		key, err2 := os.ReadFile(filepath.Join(nd, "node.key"))
		ca, err3 := os.ReadFile(filepath.Join(nd, "cluster.crt"))
		if err1 != nil || err2 != nil || err3 != nil || !bytes.Equal(ca, caPEM) {
			t.Fatalf("%s: bundle incomplete: %v %v %v", e.ID, err1, err2, err3)
		}
		c, _ := pki.Parse(crt)
		k, _ := pki.Parse(key)
		if c == nil || k == nil || pki.Serial(c.Certificates[0]) != e.Serial || !pki.KeyMatches(c.Certificates[0], k.Keys[0].Signer) {
			t.Fatalf("%s: published bundle is not the recorded certificate %s with its key", e.ID, e.Serial)
		}
	}
}

// A `ca issue` killed with SIGKILL at random instants never leaves a
// database that does not read, nor a published bundle that does not hold
// together; running the same command again finishes the job.
func TestCAKilledMidIssue(t *testing.T) {
	dir := newCADir(t)
	ids := filepath.Join(t.TempDir(), "ids")
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "node-%d\n", i)
	}
	os.WriteFile(ids, []byte(b.String()), 0o600)
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	for round := range rounds {
		cmd := exec.Command(binary, "ca", "issue", "--dir", dir, "node", "--from-file", ids, "--force")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(400))
		time.Sleep(time.Duration(n.Int64()) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		// The database reads, and no serial repeats.
		all := list(t, dir, true)
		t.Logf("round %d: killed after %dms (%v); %d certificates recorded so far", round, n.Int64(), err, len(all))
		seen := map[string]bool{}
		for _, e := range all {
			if seen[e.Serial] {
				t.Fatalf("round %d: serial %s twice", round, e.Serial)
			}
			seen[e.Serial] = true
		}
		// Every published pair holds together, whatever the instant.
		for _, e := range list(t, dir, false) {
			nd := filepath.Join(dir, "nodes", e.ID)
			crt, err1 := os.ReadFile(filepath.Join(nd, "node.crt"))
			key, err2 := os.ReadFile(filepath.Join(nd, "node.key"))
			if err1 != nil || err2 != nil {
				continue // recorded, not yet published: the next run re-issues it
			}
			if _, err := pki.Parse(crt); err != nil {
				t.Fatalf("round %d: %s/node.crt is torn: %v", round, e.ID, err)
			}
			if _, err := pki.Parse(key); err != nil {
				t.Fatalf("round %d: %s/node.key is torn: %v", round, e.ID, err)
			}
		}
	}
	// Running it again without --force finishes what was interrupted.
	r := certkeeper(t, "ca", "issue", "--dir", dir, "node", "--from-file", ids, "--skip-existing")
	if r.code != 0 {
		t.Fatalf("re-run: %+v", r)
	}
	checkCA(t, dir, 300)
	entries, _ := os.ReadDir(filepath.Join(dir, "nodes", "node-0"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left-over temporary file %s", e.Name())
		}
	}
}
