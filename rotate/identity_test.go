package rotate_test

import (
	"crypto/rand"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// idChain is what an identity case installs: a root, an optional
// intermediate and the leaf with its key.
type idChain struct {
	root, inter, leaf *testpki.Pair
}

const idNode = "node-1"

func plainChain(t *testing.T, o testpki.Options) idChain {
	root := testpki.NewCA(t, "cluster", testpki.Options{})
	return idChain{root: root, leaf: root.Issue(t, idNode, o)}
}

func constrainedChain(t *testing.T, ca testpki.Options, leafCN string, o testpki.Options) idChain {
	root := testpki.NewCA(t, "cluster", testpki.Options{})
	ca.CA = true
	inter := root.Issue(t, "constrained", ca)
	return idChain{root: root, inter: inter, leaf: inter.Issue(t, leafCN, o)}
}

// certkeeperLegacy is a leaf exactly as certkeeper's CA issued one before
// node ids became SANs: CN = id, SANs holding only the --dns/--ip names.
func certkeeperLegacy(t *testing.T) idChain {
	now := time.Now()
	caKey, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	caCert, err := pki.NewCA(pki.CAProfile{Name: "cluster", Key: caKey, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &pki.Issuer{Cert: caCert, Key: caKey}
	key, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	leaf, err := is.Issue(pki.LeafProfile{CommonName: idNode, DNSNames: []string{"node-1.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.5")},
		PublicKey: key.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return idChain{root: &testpki.Pair{Cert: caCert, Key: caKey}, leaf: &testpki.Pair{Cert: leaf, Key: key}}
}

// The identity rules, each case checked against the real openssl (verify
// -purpose sslserver / sslclient, -verify_hostname) and Go's verifier
// (what reign and every Go peer run). certkeeper must never accept what
// the peers refuse; where it is stricter than OpenSSL the case says why.
func TestIdentityRulesMatchOpenSSL(t *testing.T) {
	testenv.NeedUnix(t, "openssl")
	cases := []struct {
		name  string
		id    string // default node-1
		chain func(t *testing.T) idChain
		usage pki.Usage
		// want: "" accepted, "warn: …" accepted with that warning, else
		// the refusal's words.
		want string
		// What the real peers say: openssl verify -purpose sslserver,
		// -purpose sslclient, -verify_hostname node-1; Go's Verify with
		// DNSName node-1.
		server, client, host, goHost bool
		// stricter says why certkeeper refuses what OpenSSL accepts.
		stricter string
	}{
		{name: "SAN is the id", chain: func(t *testing.T) idChain { return plainChain(t, testpki.Options{DNS: []string{idNode}}) },
			server: true, client: true, host: true, goHost: true},
		{name: "CN only, no SANs (the seeds' openssl recipes)", chain: func(t *testing.T) idChain { return plainChain(t, testpki.Options{}) },
			server: true, client: true, host: true, goHost: false,
			stricter: ""},
		{name: "CN is the id, SANs name another node", chain: func(t *testing.T) idChain { return plainChain(t, testpki.Options{DNS: []string{"node-2"}}) },
			want:   "do not name this node",
			server: true, client: true, host: false, goHost: false},
		{name: "CN is the id, only an IP SAN", chain: func(t *testing.T) idChain { return plainChain(t, testpki.Options{IPs: []string{"10.0.0.5"}}) },
			want:   "TLS peers check only the SANs",
			server: true, client: true, host: true, goHost: false,
			stricter: "OpenSSL falls back to the CN when no DNS SAN exists; Go never does"},
		{name: "CN only, under an intermediate excluding its domain", id: "node-1.example.com",
			chain: func(t *testing.T) idChain {
				return constrainedChain(t, testpki.Options{ExcludedDNS: []string{"example.com"}}, "node-1.example.com", testpki.Options{})
			},
			want:   "name constraints excludes DNS \"example.com\": OpenSSL peers refuse it",
			server: false, client: false, host: false, goHost: false},
		{name: "CN only, under an intermediate permitting another domain", id: "node-1.example.com",
			chain: func(t *testing.T) idChain {
				return constrainedChain(t, testpki.Options{PermittedDNS: []string{".example.org"}}, "node-1.example.com", testpki.Options{})
			},
			want:   "permits only DNS \".example.org\"",
			server: false, client: false, host: false, goHost: false},
		{name: "CN only without a dot, under an intermediate excluding it",
			chain: func(t *testing.T) idChain {
				return constrainedChain(t, testpki.Options{ExcludedDNS: []string{idNode}}, idNode, testpki.Options{})
			},
			want:   "name constraints excludes DNS \"node-1\"",
			server: true, client: true, host: true, goHost: false,
			stricter: "OpenSSL reads a CN as a host name for constraints only when it has a dot; the CA said node-1 is excluded"},
		{name: "SAN under an intermediate excluding it",
			chain: func(t *testing.T) idChain {
				return constrainedChain(t, testpki.Options{ExcludedDNS: []string{idNode}}, idNode, testpki.Options{DNS: []string{idNode}})
			},
			want:   "excluded",
			server: false, client: false, host: false, goHost: false},
		{name: "emailProtection only", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		},
			want:   "extended key usage (emailProtection) allows neither server nor client auth; this bundle needs both",
			server: false, client: false, host: true, goHost: false},
		{name: "clientAuth only, bundle needs both", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		},
			want:   "extended key usage (clientAuth) does not allow server auth",
			server: false, client: true, host: true, goHost: false},
		{name: "clientAuth only, bundle says usage = [\"client\"]", usage: pki.UsageClient, chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		},
			server: false, client: true, host: true, goHost: false},
		{name: "serverAuth only, bundle needs both", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		},
			want:   "does not allow client auth",
			server: true, client: false, host: true, goHost: true},
		{name: "serverAuth only, bundle says usage = [\"server\"]", usage: pki.UsageServer, chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		},
			server: true, client: false, host: true, goHost: true},
		{name: "anyExtendedKeyUsage only", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		},
			want:   "extended key usage (anyExtendedKeyUsage) allows neither server nor client auth; this bundle needs both",
			server: false, client: false, host: true, goHost: true},
		{name: "key usage keyCertSign only", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, KeyUsage: x509.KeyUsageCertSign})
		},
			want:   "key usage (keyCertSign) does not fit an ECDSA key with server and client auth: it needs digitalSignature",
			server: false, client: false, host: true, goHost: true},
		{name: "RSA, keyEncipherment only, server", usage: pki.UsageServer, chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{Key: testpki.RSA2048, DNS: []string{idNode}, KeyUsage: x509.KeyUsageKeyEncipherment})
		},
			server: true, client: false, host: true, goHost: true},
		{name: "RSA, keyEncipherment only, both", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{Key: testpki.RSA2048, DNS: []string{idNode}, KeyUsage: x509.KeyUsageKeyEncipherment})
		},
			want:   "key usage (keyEncipherment) does not fit an RSA key with client auth: it needs digitalSignature",
			server: true, client: false, host: true, goHost: true},
		{name: "ECDSA, keyEncipherment only", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, KeyUsage: x509.KeyUsageKeyEncipherment})
		},
			want:   "does not fit an ECDSA key with server and client auth: it needs digitalSignature",
			server: true, client: false, host: true, goHost: true,
			stricter: "an ECDSA key can not encipher; OpenSSL's purpose check ignores the key type, the TLS handshake does not"},
		{name: "ECDSA, keyAgreement only", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, KeyUsage: x509.KeyUsageKeyAgreement})
		},
			want:   "does not fit an ECDSA key with server and client auth: it needs digitalSignature",
			server: true, client: true, host: true, goHost: true,
			stricter: "static ECDH suites are gone; an ECDHE or TLS 1.3 handshake needs the key to sign"},
		{name: "Ed25519, digitalSignature", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{Key: testpki.Ed25519, DNS: []string{idNode}})
		},
			server: true, client: true, host: true, goHost: true},
		{name: "no key usage and no extended key usage (reign's openssl recipe)", chain: func(t *testing.T) idChain {
			return plainChain(t, testpki.Options{DNS: []string{idNode}, NoKeyUsage: true, NoExtKeyUsage: true})
		},
			server: true, client: true, host: true, goHost: true},
		{name: "intermediate limited to clientAuth",
			chain: func(t *testing.T) idChain {
				return constrainedChain(t, testpki.Options{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, idNode, testpki.Options{DNS: []string{idNode}})
			},
			want:   "the chain does not allow server auth: \"CN=constrained,O=certkeeper test\" limits its extended key usage to clientAuth",
			server: false, client: true, host: true, goHost: false},
		{name: "certkeeper's CA before ids became SANs", chain: certkeeperLegacy,
			want:   "warn: names this node \"node-1\" in its CN only",
			server: true, client: true, host: false, goHost: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := c.chain(t)
			id := c.id
			if id == "" {
				id = idNode
			}
			dir := t.TempDir()
			testpki.WriteFile(t, dir, "root.pem", ch.root.CertPEM(), 0o644)
			testpki.WriteFile(t, dir, "leaf.pem", ch.leaf.CertPEM(), 0o644)
			args := []string{"verify", "-CAfile", "root.pem"}
			if ch.inter != nil {
				testpki.WriteFile(t, dir, "inter.pem", ch.inter.CertPEM(), 0o644)
				args = append(args, "-untrusted", "inter.pem")
			}
			run := func(extra ...string) (bool, string) {
				out, err := testpki.OpenSSLErr(dir, append(append(append([]string{}, args...), extra...), "leaf.pem")...)
				return err == nil, strings.TrimSpace(out)
			}
			for _, o := range []struct {
				what string
				args []string
				want bool
			}{
				{"-purpose sslserver", []string{"-purpose", "sslserver"}, c.server},
				{"-purpose sslclient", []string{"-purpose", "sslclient"}, c.client},
				{"-verify_hostname " + id, []string{"-verify_hostname", id}, c.host},
			} {
				if ok, out := run(o.args...); ok != o.want {
					t.Errorf("openssl verify %s: ok=%v, the table says %v:\n%s", o.what, ok, o.want, out)
				}
			}
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(ch.root.Cert)
			if ch.inter != nil {
				inters.AddCert(ch.inter.Cert)
			}
			_, gerr := ch.leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: id})
			if (gerr == nil) != c.goHost {
				t.Errorf("Go's Verify(DNSName %q): %v, the table says ok=%v", id, gerr, c.goHost)
			}

			l, err := rotate.Rules("custom", id)
			if err != nil {
				t.Fatal(err)
			}
			l.Usage = c.usage
			inputs := []rotate.Input{in("ca.pem", ch.root.CertPEM()), in("node.pem", ch.leaf.CertPEM()), in("node.key", ch.leaf.KeyPEM(t))}
			if ch.inter != nil {
				inputs = append(inputs, in("inter.pem", ch.inter.CertPEM()))
			}
			b, err := rotate.Validate(rotate.Classify(inputs), rotate.Policy{Layout: l, NodeID: id, Now: time.Now()}, nil)
			accepted := err == nil
			switch {
			case c.want == "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(b.Warnings) > 0 {
					t.Fatalf("warnings: %v", b.Warnings)
				}
			case strings.HasPrefix(c.want, "warn: "):
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(b.Warnings) != 1 || !strings.Contains(b.Warnings[0].Error(), strings.TrimPrefix(c.want, "warn: ")) ||
					!strings.Contains(b.Warnings[0].Error(), "certkeeper ca issue node node-1 --force") || b.Warnings[0].File != "node.pem" {
					t.Fatalf("warnings %v, want one naming node.pem, %q and the re-issue command", b.Warnings, c.want)
				}
			default:
				if err == nil {
					t.Fatalf("accepted, want a refusal with %q", c.want)
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "node.pem: ") {
					t.Fatalf("refusal %v\nwant one naming node.pem and %q", err, c.want)
				}
				// Each broken rule is said once, whatever the usages it
				// fails (emailProtection alone failed server, client and
				// the chain: three reasons for one).
				if strings.Count(err.Error(), "extended key usage") > 1 || strings.Count(err.Error(), "does not fit") > 1 {
					t.Fatalf("refusal says a rule more than once:\n%v", err)
				}
			}
			// The cross-check: what a peer of this bundle refuses, certkeeper
			// refuses (or, for its own old certificates, warns about); what
			// they all accept, certkeeper accepts unless the case says why.
			need := l.NeedUsage()
			peersOK := (c.server || need&pki.UsageServer == 0) && (c.client || need&pki.UsageClient == 0) && c.host
			if !peersOK && accepted && !strings.HasPrefix(c.want, "warn: ") {
				t.Errorf("certkeeper accepts what OpenSSL refuses")
			}
			if peersOK && !accepted && c.stricter == "" {
				t.Errorf("certkeeper refuses what OpenSSL accepts, and the case gives no reason")
			}
		})
	}
}
