//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// csrSetup is a node in CSR mode and, in-process, the admin host's CA
// (package authority, the code behind `certkeeper ca sign`). The exchange
// stands in for SSH; cmd/certkeeper's tests run it through a real sshd.
type csrSetup struct {
	ca      *authority.Authority
	caClock atomic.Int64 // offset of the CA's clock from now, nanoseconds
	cfg     *agent.Config
	b       *agent.Bundle
	src     *agent.CSRSource
	live    string
	reloads string

	mu       sync.Mutex
	requests [][]byte // the CSRs the CA received
	fail     error    // the next exchange fails with it
	answer   []byte   // replaces the CA's answer once
	onSend   func(csr []byte)
}

func newCSRSetup(t *testing.T, keyType pki.KeyType, extraConfig string) *csrSetup {
	t.Helper()
	s := &csrSetup{}
	o := authority.Options{Now: func() time.Time { return time.Now().Add(time.Duration(s.caClock.Load())) }}
	dir := filepath.Join(t.TempDir(), "ca")
	// The CA was made long ago, so that tests can have it issue in the past.
	s.caClock.Store(int64(-200 * 24 * time.Hour))
	if _, err := authority.Init(dir, authority.InitParams{Settings: authority.DefaultSettings("cluster")}, o); err != nil {
		t.Fatal(err)
	}
	s.caClock.Store(0)
	ca, err := authority.Load(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	s.ca = ca
	root := t.TempDir()
	s.live, s.reloads = filepath.Join(root, "live"), filepath.Join(root, "reloads")
	conf := fmt.Sprintf(`node_id = "node-1"
state_dir = %q

[source]
address = "admin.invalid:22"
user = "certkeeper-ca"
known_hosts = "/dev/null"

[[bundle]]
name = "b"
layout = "flocker-node"
dir = %q
mode = "csr"
%s
  [[bundle.reload]]
  command = ["/bin/sh", "-c", "echo reload >> %s"]
`, filepath.Join(root, "state"), s.live, extraConfig, s.reloads)
	path := testpki.WriteFile(t, root, "c.toml", []byte(conf), 0o600)
	if s.cfg, err = agent.LoadConfig(path); err != nil {
		t.Fatal(err)
	}
	s.b = &s.cfg.Bundles[0]
	src, ok := agent.ConfiguredSource(s.cfg, s.b).(*agent.CSRSource)
	if !ok || src.Pull != nil || src.Target.User != "certkeeper-ca" {
		t.Fatalf("configured source of a csr bundle: %#v", agent.ConfiguredSource(s.cfg, s.b))
	}
	src.Exchange = s.exchange
	s.src = src
	s.issue(t, keyType, 0)
	return s
}

// issue has the CA issue node-1 (its clock moved by shift) and installs
// the published bundle, as a first push would.
func (s *csrSetup) issue(t *testing.T, kt pki.KeyType, shift time.Duration) {
	t.Helper()
	s.caClock.Store(int64(shift))
	defer s.caClock.Store(0)
	req, err := authority.NodeRequest("node-1", authority.Names{}, kt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.ca.Issue(context.Background(), []authority.Request{req}, authority.IssueOptions{Force: true})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("issue: %v", err)
	}
	var in []rotate.Input
	for _, n := range []string{"node.crt", "node.key", "cluster.crt"} {
		data, err := os.ReadFile(filepath.Join(s.ca.Dir, "nodes", "node-1", n))
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, rotate.Input{Name: n, Data: data})
	}
	m := rotate.NewManager(s.b.Spec())
	m.Now = func() time.Time { return time.Now().Add(shift) }
	if _, err := m.Install(in, "push"); err != nil {
		t.Fatal(err)
	}
}

func (s *csrSetup) exchange(_ context.Context, _ distribute.Target, csr []byte) ([]byte, error) {
	s.mu.Lock()
	s.requests = append(s.requests, csr)
	fail, answer, onSend := s.fail, s.answer, s.onSend
	s.fail, s.answer = nil, nil
	s.mu.Unlock()
	if onSend != nil {
		onSend(csr)
	}
	if fail != nil {
		return nil, fail
	}
	signed, err := s.ca.Sign("node-1", csr, authority.SignOptions{})
	if err != nil {
		return nil, &distribute.SignRefusedError{Host: "admin.invalid:22", Status: 1, Reason: err.Error()}
	}
	if answer != nil {
		return answer, nil
	}
	return pki.EncodeCertificates(signed.Chain...), nil
}

func (s *csrSetup) liveFiles(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{"node.crt", "node.key", "cluster.crt"} {
		data, err := os.ReadFile(filepath.Join(s.live, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = data
	}
	return out
}

func (s *csrSetup) liveBundle(t *testing.T) *rotate.Bundle {
	t.Helper()
	b, _, err := rotate.NewManager(s.b.Spec()).Live()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *csrSetup) reloadCount() int {
	b, _ := os.ReadFile(s.reloads)
	return strings.Count(string(b), "reload")
}

func csrKey(t *testing.T, csr []byte) any {
	t.Helper()
	block, _ := pem.Decode(csr)
	r, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return r.PublicKey
}

// The CSR renewal, end to end with the real CA code: a new key of the live
// key's type, made here and written 0600 in a 0700 directory before the
// request goes out; only the request travels; the signed certificate is
// installed with that key, the CA records it as csr, the pending key is
// deleted, and the daemons reload once.
func TestCSRRenewalKeepsTheKeyOnTheNode(t *testing.T) {
	s := newCSRSetup(t, pki.Ed25519, "")
	before := s.liveBundle(t)
	pending := agent.PendingKeyPath(s.cfg.StateDir, s.b)
	s.onSend = func(csr []byte) {
		fi, err := os.Lstat(pending)
		if err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
			t.Errorf("pending key when the request leaves: %v %v", fi, err)
			return
		}
		di, _ := os.Stat(filepath.Dir(pending))
		if di.Mode().Perm() != 0o700 {
			t.Errorf("pending key directory mode %v", di.Mode())
		}
		data, _ := os.ReadFile(pending)
		if bytes.Contains(csr, data) || bytes.Contains(csr, []byte("PRIVATE KEY")) {
			t.Error("the request carries the private key")
		}
		k, _ := pki.Parse(data)
		if eq, ok := csrKey(t, csr).(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(k.Keys[0].Signer.Public()) {
			t.Error("the request is not for the pending key")
		}
	}
	r, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	after := s.liveBundle(t)
	if pki.KeyMatchesKey(after.Key.Signer, before.Key.Signer) || !pki.KeyMatches(after.Leaf, after.Key.Signer) {
		t.Fatal("the live key did not change, or does not match the new certificate")
	}
	if got := pki.KeyTypeOf(after.Key.Signer.Public()); got != pki.Ed25519 {
		t.Fatalf("new key is %s, want the live key's type ed25519", got)
	}
	if r.Leaf == nil || pki.Serial(r.Leaf) != pki.Serial(after.Leaf) || !strings.HasPrefix(r.Source, "csr: ssh://certkeeper-ca@admin.invalid:22") {
		t.Fatalf("renewal: %+v", r)
	}
	if _, err := os.Stat(pending); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pending key is still there after the install: %v", err)
	}
	if n := s.reloadCount(); n != 1 {
		t.Fatalf("%d reloads, want 1", n)
	}
	entries, err := s.ca.List(false)
	if err != nil || len(entries) != 1 || entries[0].Source != authority.SourceCSR || entries[0].Serial != authority.FormatSerial(after.Leaf.SerialNumber) {
		t.Fatalf("the CA's record: %+v %v", entries, err)
	}
	// Renewed and not due now: without --force nothing is asked.
	r, err = agent.RenewNow(context.Background(), s.cfg, s.b, s.src, false, time.Now(), quiet)
	if err != nil || !r.NotDue || len(s.requests) != 1 {
		t.Fatalf("a second renew without --force: %+v %v (%d requests)", r, err, len(s.requests))
	}
}

// key_type overrides the live key's type.
func TestCSRRenewalWithKeyType(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, `key_type = "ecdsa-p384"`)
	if _, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet); err != nil {
		t.Fatal(err)
	}
	if got := pki.KeyTypeOf(s.liveBundle(t).Key.Signer.Public()); got != pki.ECDSAP384 {
		t.Fatalf("new key is %s, want ecdsa-p384", got)
	}
}

// A failed exchange leaves the live bundle byte for byte as it was and
// keeps the pending key; the retry sends a request for that same key.
func TestCSRFailedExchangeLeavesTheLiveBundle(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, "")
	before := s.liveFiles(t)
	s.fail = errors.New("admin.invalid:22: connect: connection refused")
	_, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), `bundle "b": csr:`) {
		t.Fatalf("err = %v", err)
	}
	if after := s.liveFiles(t); fmt.Sprint(after) != fmt.Sprint(before) || s.reloadCount() != 0 {
		t.Fatal("a failed exchange changed the live bundle or reloaded")
	}
	pending, err := os.ReadFile(agent.PendingKeyPath(s.cfg.StateDir, s.b))
	if err != nil {
		t.Fatalf("the pending key is gone after a failure: %v", err)
	}
	// The CA refuses (the answer is for another key): still nothing changes.
	other := testpki.NewCA(t, "x", testpki.Options{}).Issue(t, "node-1", testpki.Options{})
	s.answer = other.CertPEM()
	_, err = agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet)
	if err == nil || !strings.Contains(err.Error(), "not for the key this node sent") {
		t.Fatalf("an answer for another key: %v", err)
	}
	if after := s.liveFiles(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a wrong answer changed the live bundle")
	}
	if _, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet); err != nil {
		t.Fatal(err)
	}
	k, _ := pki.Parse(pending)
	for i, csr := range s.requests {
		if eq := csrKey(t, csr).(interface{ Equal(crypto.PublicKey) bool }); !eq.Equal(k.Keys[0].Signer.Public()) {
			t.Fatalf("request %d is for another key: the retry did not reuse the pending key", i+1)
		}
	}
	if !pki.KeyMatchesKey(s.liveBundle(t).Key.Signer, k.Keys[0].Signer) {
		t.Fatal("the installed key is not the pending key")
	}
}

// A pending key that is already live (the agent stopped between the
// install and the deletion) is not used again: a renewal makes a new key.
func TestCSRPendingKeyAlreadyLiveIsReplaced(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, "")
	live := s.liveBundle(t)
	path := agent.PendingKeyPath(s.cfg.StateDir, s.b)
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, live.Key.PEM(), 0o600)
	if _, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, true, time.Now(), quiet); err != nil {
		t.Fatal(err)
	}
	if pki.KeyMatchesKey(s.liveBundle(t).Key.Signer, live.Key.Signer) {
		t.Fatal("renewed with the live key")
	}
}

// An expired bundle still renews by CSR: the admin host knows the node by
// its SSH key, not by its TLS certificate, and the live CA still anchors
// the new certificate.
func TestCSRExpiredBundleRenews(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, "")
	s.issue(t, pki.ECDSAP256, -100*24*time.Hour) // a 90-day certificate, expired 10 days ago
	if leaf := s.liveBundle(t).Leaf; time.Now().Before(leaf.NotAfter) {
		t.Fatalf("the live certificate is not expired: %s", leaf.NotAfter)
	}
	r, err := agent.RenewNow(context.Background(), s.cfg, s.b, s.src, false, time.Now(), quiet)
	if err != nil || r.NotDue {
		t.Fatalf("%+v %v", r, err)
	}
	if leaf := s.liveBundle(t).Leaf; !time.Now().Before(leaf.NotAfter) || s.reloadCount() != 1 {
		t.Fatalf("after renewal: not after %s, %d reloads", leaf.NotAfter, s.reloadCount())
	}
}

// With nothing installed, CSR mode has nothing to renew: it says how the
// first bundle comes.
func TestCSRWithNothingInstalled(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, "")
	os.RemoveAll(s.live)
	_, err := s.src.Fetch(context.Background(), s.b)
	if !errors.Is(err, agent.ErrNoFirstBundle) || !strings.Contains(err.Error(), "inbox") || !strings.Contains(err.Error(), "csr_user") {
		t.Fatalf("err = %v", err)
	}
	if len(s.requests) != 0 {
		t.Fatal("a request went out with nothing installed")
	}
}

// With csr_user, requests go to the CA account and the first bundle is
// pulled through the node's own account.
func TestCSRUserSplitsTheAccounts(t *testing.T) {
	cfg, err := agent.ParseConfig("c.toml", []byte(`node_id = "n1"
state_dir = "/var/lib/certkeeper"
[source]
address = "admin:2222"
user = "ck-n1"
csr_user = "certkeeper-ca"
known_hosts = "/etc/certkeeper/known_hosts"
[[bundle]]
name = "b"
layout = "flocker-node"
mode = "csr"
[[bundle]]
name = "p"
layout = "glow"
`))
	if err != nil {
		t.Fatal(err)
	}
	csr, ok := agent.ConfiguredSource(cfg, &cfg.Bundles[0]).(*agent.CSRSource)
	if !ok || csr.Target.User != "certkeeper-ca" || csr.Pull == nil || csr.Pull.Target.User != "ck-n1" {
		t.Fatalf("csr source: %#v", agent.ConfiguredSource(cfg, &cfg.Bundles[0]))
	}
	if p, ok := agent.ConfiguredSource(cfg, &cfg.Bundles[1]).(*agent.SFTPSource); !ok || p.Target.User != "ck-n1" {
		t.Fatalf("pull source: %#v", agent.ConfiguredSource(cfg, &cfg.Bundles[1]))
	}
	if _, err := agent.ParseConfig("c.toml", []byte("node_id = \"n\"\n[[bundle]]\nname = \"b\"\nlayout = \"glow\"\nkey_type = \"dsa\"\n")); err == nil || !strings.Contains(err.Error(), "key_type") {
		t.Fatalf("a bad key_type: %v", err)
	}
}

// The daemon renews a CSR bundle once its window opens: one request, one
// install, one reload, the pending key gone, and no further request while
// the new certificate is outside its window (CSR mode does not poll).
func TestDaemonRenewsByCSR(t *testing.T) {
	s := newCSRSetup(t, pki.ECDSAP256, "")
	s.issue(t, pki.ECDSAP256, -65*24*time.Hour) // 65 days into 90: due
	before := s.liveBundle(t)
	f := &fixture{root: filepath.Dir(s.cfg.Path), config: s.cfg.Path, live: s.live, reloads: s.reloads}
	stop, log := run(t, f, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return s.src }})
	eventually(t, "the renewal", func() bool { return strings.Contains(log.String(), "msg=installed") })
	time.Sleep(300 * time.Millisecond)
	stop()
	if n := len(s.requests); n != 1 {
		t.Fatalf("%d requests, want 1\n%s", n, log)
	}
	if s.reloadCount() != 1 || pki.KeyMatchesKey(s.liveBundle(t).Key.Signer, before.Key.Signer) {
		t.Fatalf("reloads %d, or the key did not change", s.reloadCount())
	}
	if _, err := os.Stat(agent.PendingKeyPath(s.cfg.StateDir, s.b)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the pending key outlived the install")
	}
	st, _ := agent.ReadState(s.cfg)
	b := st.Bundles[0]
	if b.RenewalDue || b.Source == nil || !strings.HasPrefix(b.Source.LastResult, "installed") || b.Counters.Fetches != 1 || !b.Source.NextTry.Equal(b.RenewAt) {
		t.Fatalf("state: %+v source %+v", b, b.Source)
	}
	if !strings.Contains(log.String(), `source="csr: ssh://certkeeper-ca@admin.invalid:22 (ca sign)"`) {
		t.Errorf("the install does not name the CA account:\n%s", log)
	}
}

func TestParseSignedChain(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	pub := leaf.Key.Public()
	good := leaf.CertPEM()
	cases := []struct {
		name string
		out  []byte
		err  string
	}{
		{"the leaf", good, ""},
		{"the leaf and an intermediate", append(append([]byte{}, good...), ca.CertPEM()...), ""},
		{"nothing", []byte("\n"), "answered with nothing"},
		{"a key", append(append([]byte{}, good...), leaf.KeyPEM(t)...), `"PRIVATE KEY" PEM block`},
		{"text after", append(append([]byte{}, good...), "certkeeper: hello\n"...), "something other than PEM certificates"},
		{"a usage message", []byte("Usage: certkeeper ca sign --dir DIR --node ID\n"), "something other than PEM certificates"},
		{"another key's certificate", ca.CertPEM(), "not for the key this node sent"},
		{"garbage in a block", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "does not parse"},
		{"too many", bytes.Repeat(good, 9), "more than 8"},
		{"too large", make([]byte, distribute.MaxSignOutput+1), "larger than"},
	}
	for _, c := range cases {
		chain, err := agent.ParseSignedChain(c.out, pub)
		if c.err == "" {
			if err != nil || len(chain) == 0 || !pki.KeyMatches(chain[0], leaf.Key) {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
	}
}
