package agent_test

import (
	"crypto/rand"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// FuzzParseConfig: a config, however broken, yields a config or an error
// that names the file; never a panic, and never more than 50 MiB of
// allocations (tomlcap.MaxAlloc): the worst inputs within the limits are
// seeds, and one level deeper is refused before parsing.
func FuzzParseConfig(f *testing.F) {
	tomlcap.AddWorst(f, agent.ConfigLimits)
	f.Add([]byte(designExample))
	f.Add([]byte("node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"mesos\"\nkey_mode = \"0400\"\nenv = { A = \"b c\" }\n"))
	f.Add([]byte("[[bundle]]\nname = 1\n[[bundle.reload]]\nsignal = \"HUP\"\n"))
	f.Add([]byte("renew_before = \"1d2h\"\n[source]\n"))
	f.Add([]byte("[[source]]\naddress = \"a\"\nuser = \"u\"\nknown_hosts = \"/k\"\n[[source]]\naddress = \"b\"\n[[bundle]]\nname = \"b\"\nlayout = \"mesos\"\nserved = \"127.0.0.1:1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c *agent.Config
		var err error
		if alloc := tomlcap.Alloc(func() { c, err = agent.ParseConfig("fuzz.toml", data) }); alloc > tomlcap.MaxAlloc {
			t.Fatalf("parsing %d bytes allocated %d MiB", len(data), alloc>>20)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(c.Bundles) == 0 {
			t.Fatal("a config without bundles was accepted")
		}
		for _, b := range c.Bundles {
			if b.Resolved.Dir == "" || b.Inbox == "" {
				t.Fatalf("bundle %q resolved without a directory or inbox", b.Name)
			}
		}
	})
}

// FuzzInboxSet: whatever lands in an inbox, judging whether the set is
// incomplete never panics, and an empty file always counts as incomplete.
func FuzzInboxSet(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), "node.crt")
	f.Add([]byte{}, []byte("x"), ".part")
	f.Add([]byte("-----END "), []byte("-----BEGIN -----BEGIN "), "a~")
	f.Fuzz(func(t *testing.T, a, b []byte, name string) {
		l, _ := rotate.ResolveLayout("flocker-node", "node-1", rotate.Overrides{})
		in := []rotate.Input{{Name: name, Data: a}, {Name: "b", Data: b}}
		why := agent.Incomplete(in, rotate.Classify(in), nil, l)
		if (len(a) == 0 || len(b) == 0) && why == "" {
			t.Fatal("an empty file judged complete")
		}
		_ = agent.Uploading(name)
	})
}

// FuzzStateFile: a damaged agent-state.json gives an error, never a panic,
// and never more than 50 MiB of allocations.
func FuzzStateFile(f *testing.F) {
	if fl := flag.Lookup("test.fuzz"); fl == nil || fl.Value.String() == "" {
		// The worst within the limits, as tests only (see tomlcap.AddWorst).
		f.Add([]byte(`{"bundles":[` + strings.Repeat(`{},`, 4094) + `{}]}`))
		f.Add([]byte(`{"bundles":[` + strings.Repeat(`{},`, agent.MaxStateSize/3-10) + `{}]}`))
		f.Add([]byte(`{"bundles":[{"name":"` + strings.Repeat(`\u00e9`, agent.MaxStateSize/6-10) + `"}]}`))
		f.Add([]byte(strings.Repeat(`[`, agent.MaxStateSize/2) + strings.Repeat(`]`, agent.MaxStateSize/2)))
	}
	f.Add([]byte(`{"pid":1,"bundles":[{"name":"b","counters":{"installs":1}}]}`))
	f.Add([]byte(`{"bundles":[{"source":{"failures":-1}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st *agent.RuntimeState
		var err error
		if alloc := tomlcap.Alloc(func() { st, err = agent.ParseState(data) }); alloc > tomlcap.MaxAlloc {
			t.Fatalf("parsing %d bytes allocated %d MiB", len(data), alloc>>20)
		}
		if err == nil {
			for _, b := range st.Bundles {
				b.Health()
			}
		}
	})
}

// FuzzParseSignedChain: whatever the admin host's ca sign writes back, the
// agent gets certificates for the key it sent, at most eight, or an error;
// never a panic, never a private key.
func FuzzParseSignedChain(f *testing.F) {
	key, err := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	caKey, _ := pki.GenerateKey(pki.ECDSAP256, rand.Reader)
	now := time.Now()
	caCert, err := pki.NewCA(pki.CAProfile{Name: "fuzz", Key: caKey, NotBefore: now, NotAfter: now.Add(time.Hour)}, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := (&pki.Issuer{Cert: caCert, Key: caKey}).Issue(pki.LeafProfile{CommonName: "n1", PublicKey: key.Public(), NotBefore: now, NotAfter: now.Add(time.Hour)}, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, _ := pki.MarshalKey(key)
	f.Add(pki.EncodeCertificates(leaf))
	f.Add(pki.EncodeCertificates(leaf, caCert))
	f.Add(append(pki.EncodeCertificates(leaf), keyPEM...))
	f.Add([]byte("certkeeper ca sign: node n1: certificate signing request refused\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		chain, err := agent.ParseSignedChain(out, key.Public())
		if err != nil {
			return
		}
		if len(chain) == 0 || len(chain) > 8 || !pki.KeyMatches(chain[0], key) {
			t.Fatalf("accepted %d certificates, the first not for the key", len(chain))
		}
		if strings.Contains(string(out), "PRIVATE KEY-----") {
			t.Fatal("accepted an answer holding a private key")
		}
	})
}
