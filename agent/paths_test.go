//go:build unix

package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// One pipeline: every path into the live directory (the agent's inbox,
// pull and CSR renewal; the install, pull and renew commands) refuses the
// same bad bundle (a certificate for another node) with the same log
// line and reason, leaving the live bundle and reloading nothing, and
// installs the same good bundle with the same log line and one reload.
func TestEveryDeliveryPathRefusesAndInstallsAlike(t *testing.T) {
	type path struct {
		name, kind string
		// deliver offers a bundle whose leaf names cn; it returns the
		// error of a command (nil for the agent's paths).
		deliver func(t *testing.T, s *pullSetup, cn string, log *syncLog) error
	}
	publish := func(t *testing.T, s *pullSetup, cn string) {
		leaf := s.ca.Issue(t, cn, testpki.Options{NotBefore: time.Now().Add(-30 * time.Minute)})
		testpki.WriteFile(t, s.remote, "node.crt", leaf.CertPEM(), 0o644)
		testpki.WriteFile(t, s.remote, "node.key", leaf.KeyPEM(t), 0o600)
		testpki.WriteFile(t, s.remote, "cluster.crt", s.ca.CertPEM(), 0o644)
	}
	// agentRun runs the agent until the pipeline has logged its verdict.
	agentRun := func(t *testing.T, s *pullSetup, log *syncLog, o agent.Options, offer func()) {
		o.Logger, o.Rand = log.logger(), func() float64 { return 0 }
		// A fresh schedule: the source is asked at once, whatever the run
		// before it (a refusal) did.
		_ = os.Remove(agent.StatePath(s.cfg))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- agent.Run(ctx, s.cfg.Path, o) }()
		if offer != nil {
			offer()
		}
		eventually(t, "the pipeline's verdict", func() bool {
			l := log.String()
			return strings.Contains(l, "msg=installed") || strings.Contains(l, `msg="delivery refused`)
		})
		eventually(t, "the reload worker", func() bool { o, _ := agent.ReadOwed(&s.cfg.Bundles[0]); return o == nil })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	csrSource := func(s *pullSetup, cn string) *agent.CSRSource {
		return &agent.CSRSource{Target: distribute.Target{Address: "admin.invalid:22", User: "ca"}, StateDir: s.cfg.StateDir,
			Exchange: func(_ context.Context, _ distribute.Target, csr []byte) ([]byte, error) {
				req, err := pki.ParseCSR(csr)
				if err != nil {
					return nil, err
				}
				return signFor(s.ca, req, cn)
			}}
	}
	paths := []path{
		{"inbox", "inbox", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			agentRun(t, s, log, agent.Options{}, func() {
				inbox := s.cfg.Bundles[0].Inbox
				eventually(t, "the inbox", func() bool { _, err := os.Stat(inbox); return err == nil })
				leaf := s.ca.Issue(t, cn, testpki.Options{NotBefore: time.Now().Add(-30 * time.Minute)})
				testpki.WriteFile(t, inbox, "x.key", leaf.KeyPEM(t), 0o600)
				testpki.WriteFile(t, inbox, "x.crt", leaf.CertPEM(), 0o644)
			})
			return nil
		}},
		{"agent pull", "pull", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			publish(t, s, cn)
			agentRun(t, s, log, agent.Options{SourceFor: agent.ConfiguredSource}, nil)
			return nil
		}},
		{"agent csr", "csr", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			agentRun(t, s, log, agent.Options{SourceFor: func(*agent.Config, *agent.Bundle) agent.Source { return csrSource(s, cn) }}, nil)
			return nil
		}},
		{"certkeeper install", "install", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			leaf := s.ca.Issue(t, cn, testpki.Options{NotBefore: time.Now().Add(-30 * time.Minute)})
			in := []rotate.Input{{Name: "x.crt", Data: leaf.CertPEM()}, {Name: "x.key", Data: leaf.KeyPEM(t)}, {Name: "ca.crt", Data: s.ca.CertPEM()}}
			_, err := agent.Install(context.Background(), &s.cfg.Bundles[0], in, "install: x.crt x.key ca.crt", log.logger())
			return err
		}},
		{"certkeeper pull", "pull", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			publish(t, s, cn)
			_, err := s.source(t).Pull(context.Background(), &s.cfg.Bundles[0], log.logger())
			return err
		}},
		{"certkeeper renew, pull", "pull", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			publish(t, s, cn)
			b := &s.cfg.Bundles[0]
			_, err := agent.RenewNow(context.Background(), s.cfg, b, agent.ConfiguredSource(s.cfg, b), true, time.Now(), log.logger())
			return err
		}},
		{"certkeeper renew, csr", "csr", func(t *testing.T, s *pullSetup, cn string, log *syncLog) error {
			_, err := agent.RenewNow(context.Background(), s.cfg, &s.cfg.Bundles[0], csrSource(s, cn), true, time.Now(), log.logger())
			return err
		}},
	}
	refusedLine := regexp.MustCompile(`level=WARN msg="delivery refused; the live bundle is unchanged" bundle=flocker kind=(\S+) source=.* err=".*certificate is for \S*node-2\S*, this node is \\"node-1\\"`)
	installedLine := regexp.MustCompile(`level=INFO msg=installed bundle=flocker generation=\.\.gen-000002 dir=\S+ serial=\S+ source=.* kind=(\S+)`)
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			s := newPullSetup(t)
			first := s.ca.Issue(t, "node-1", testpki.Options{NotBefore: time.Now().Add(-time.Hour)})
			if _, err := rotate.NewManager(s.cfg.Bundles[0].Spec()).Install([]rotate.Input{{Name: "c", Data: first.CertPEM()}, {Name: "k", Data: first.KeyPEM(t)}, {Name: "ca", Data: s.ca.CertPEM()}}, "test"); err != nil {
				t.Fatal(err)
			}
			liveBefore := s.liveSerial(t)

			bad := logOf(t)
			err := p.deliver(t, s, "node-2", bad)
			m := refusedLine.FindStringSubmatch(bad.String())
			if m == nil || m[1] != p.kind {
				t.Fatalf("refusal: no line %s with kind=%s in:\n%s", refusedLine, p.kind, bad)
			}
			if strings.HasPrefix(p.name, "certkeeper") && (err == nil || !strings.Contains(err.Error(), `this node is "node-1"`)) {
				t.Fatalf("the command's error: %v", err)
			}
			if s.liveSerial(t) != liveBefore || s.reloads(t) != 0 {
				t.Fatalf("a refused bundle changed the live one (reloads %d)", s.reloads(t))
			}

			good := logOf(t)
			if err := p.deliver(t, s, "node-1", good); err != nil && !strings.HasPrefix(p.name, "agent") {
				t.Fatalf("good bundle: %v", err)
			}
			m = installedLine.FindStringSubmatch(good.String())
			if m == nil || m[1] != p.kind {
				t.Fatalf("install: no line %s with kind=%s in:\n%s", installedLine, p.kind, good)
			}
			if s.liveSerial(t) == liveBefore || s.reloads(t) != 1 {
				t.Fatalf("the good bundle: live serial %s (was %s), reloads %d\n%s", s.liveSerial(t), liveBefore, s.reloads(t), good)
			}
			if !strings.Contains(good.String(), "msg=reloaded bundle=flocker") {
				t.Fatalf("no reload line:\n%s", good)
			}
		})
	}
}

// syncLog is a log the agent's goroutines and the test share.
type syncLog struct{ syncBuffer }

func logOf(*testing.T) *syncLog { return &syncLog{} }

func (l *syncLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&l.syncBuffer, nil)) }

// signFor is the admin host's CA signing a request for cn.
func signFor(ca *testpki.Pair, req *x509.CertificateRequest, cn string) ([]byte, error) {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	c, _ := x509.ParseCertificate(der)
	return testpki.CertPEM(c), nil
}
