package agent_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

func TestUploadingNames(t *testing.T) {
	for name, want := range map[string]bool{
		"8eab.crt": false, "node.key": false, "cluster.crt": false, "reason": false,
		".8eab.crt.Xy12": true, "node.key.tmp": true, "node.key.part": true, "x.filepart": true, "x.partial": true,
		".node.key.swp": true, "node.key~": true,
	} {
		if got := agent.Uploading(name); got != want {
			t.Errorf("Uploading(%q) = %v", name, got)
		}
	}
}

func TestSettled(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	files := func(mtimes ...time.Duration) []agent.InboxFile {
		var out []agent.InboxFile
		for i, m := range mtimes {
			out = append(out, agent.InboxFile{Name: string(rune('a' + i)), ModTime: at(m)})
		}
		return out
	}
	const settle = 150 * time.Millisecond
	cases := []struct {
		name      string
		files     []agent.InboxFile
		lastEvent time.Time
		now       time.Time
		want      time.Time
	}{
		{"newest modification", files(0, time.Second), t0, at(time.Second), at(time.Second + settle)},
		{"last event after the modifications", files(0, time.Second), at(5 * time.Second), at(5 * time.Second), at(5*time.Second + settle)},
		// scp -p keeps old modification times: the event still counts.
		{"old modification times", files(-24 * time.Hour), t0, t0, at(settle)},
		// scp -p from an admin host whose clock is an hour ahead: the
		// future time is not waited for; the event is.
		{"a modification time in the future", files(time.Hour), t0, t0, at(settle)},
		{"one in the future, one recent", files(time.Hour, -time.Second), at(-2 * time.Second), t0, at(-time.Second + settle)},
		{"in the future, found by a rescan without an event", files(time.Hour), time.Time{}, t0, time.Time{}.Add(settle)},
		{"exactly now", files(0), at(-time.Second), t0, at(settle)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := agent.Settled(c.files, c.lastEvent, settle, c.now); !got.Equal(c.want) {
				t.Errorf("Settled = %s, want %s", got, c.want)
			}
		})
	}
}

// The partial-set rule: what may still be completed waits; what is
// complete and wrong is rejected at once.
func TestIncomplete(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	renewed := ca.Issue(t, "node-1", testpki.Options{Reuse: leaf.Key})
	other := ca.Issue(t, "node-2", testpki.Options{})
	l, _ := rotate.ResolveLayout("flocker-node", "node-1", rotate.Overrides{})
	liveB := &rotate.Bundle{CAs: []*x509Cert{ca.Cert}, Leaf: leaf.Cert}
	key := leaf.KeyPEM(t)
	k, _ := parseKey(key)
	liveB.Key = k
	in := func(pairs ...any) []rotate.Input {
		var out []rotate.Input
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, rotate.Input{Name: pairs[i].(string), Data: pairs[i+1].([]byte)})
		}
		return out
	}
	cases := []struct {
		name   string
		inputs []rotate.Input
		live   *rotate.Bundle
		want   string
	}{
		{"certificate alone, nothing installed", in("a.crt", leaf.CertPEM()), nil, "no private key yet"},
		{"key alone", in("a.key", key), liveB, "no certificate for the key yet"},
		{"certificate and key, no CA anywhere", in("a.crt", leaf.CertPEM(), "a.key", key), nil, "no cluster CA yet"},
		{"an empty file", in("a.crt", leaf.CertPEM(), "a.key", []byte{}), nil, "a.key is empty"},
		{"a PEM block cut short", in("a.crt", leaf.CertPEM(), "a.key", key[:len(key)/2]), nil, "a.key ends inside a PEM block"},
		{"another node's complete set: wrong, not incomplete", in("a.crt", other.CertPEM(), "a.key", other.KeyPEM(t), "ca.crt", ca.CertPEM()), nil, ""},
		{"a renewed leaf for the live key is complete", in("a.crt", renewed.CertPEM()), liveB, ""},
		{"a leaf for another key, live key installed: waits for its key", in("a.crt", other.CertPEM()), liveB, "no private key yet"},
		{"nothing that parses: wrong at once", in("README", []byte("copy these files to the node\n")), liveB, ""},
		{"nothing that parses, nothing installed", in("bundle.tar", []byte{0x1f, 0x8b, 8, 0}), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := agent.Incomplete(c.inputs, rotate.Classify(c.inputs), c.live, l); (got == "") != (c.want == "") || (c.want != "" && !contains(got, c.want)) {
				t.Fatalf("Incomplete = %q, want %q", got, c.want)
			}
		})
	}
}

type x509Cert = x509.Certificate

func parseKey(b []byte) (*pki.Key, error) {
	c, err := pki.Parse(b)
	if err != nil {
		return nil, err
	}
	return c.Keys[0], nil
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
