package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// The --json of each reporting command speaks one vocabulary: RFC 3339
// times, integer seconds, key types as --key-type spells them, health as
// check's words (docs/json.md).
func TestJSONVocabulary(t *testing.T) {
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	c := ca.Issue(t, "node-1", testpki.Options{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	n := newNode(t, "flocker-node", "node-1", "")
	files := n.files(map[string][]byte{"n.crt": c.CertPEM(), "n.key": c.KeyPEM(t), "cluster.crt": ca.CertPEM()})
	if r := n.install(files...); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	decode := func(r result, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatalf("not JSON (%v): %+v", err, r)
		}
	}

	var status []map[string]any
	decode(certkeeper(t, "status", "--config", n.config, "--json"), &status)
	st := status[0]
	if st["health"] != "OK" {
		t.Errorf("status health %v, want the word OK", st["health"])
	}
	if s, ok := st["seconds_left"].(float64); !ok || s < 89*86400 || s != float64(int64(s)) {
		t.Errorf("status seconds_left %v, want integer seconds", st["seconds_left"])
	}
	leaf := st["leaf"].(map[string]any)
	if leaf["key_type"] != "ecdsa-p256" {
		t.Errorf("leaf key_type %v", leaf["key_type"])
	}
	if _, err := time.Parse(time.RFC3339, leaf["not_after"].(string)); err != nil {
		t.Errorf("not_after: %v", err)
	}

	var v verifyJSON
	decode(certkeeper(t, "verify", "--node-id", "node-1", "--layout", "flocker-node", "--json", files[0], files[1], files[2]), &v)
	if !v.Valid || v.KeyType != "ecdsa-p256" || v.Leaf == nil || v.SecondsLeft == nil || len(v.InstallsAs) != 3 {
		t.Errorf("verify --json: %+v", v)
	}
	r := certkeeper(t, "verify", "--node-id", "node-2", "--json", files[0], files[1], files[2])
	decode(r, &v)
	if r.code != 1 || v.Valid || !strings.Contains(v.Error, "node-2") {
		t.Errorf("verify --json of a bundle for another node: %+v", r)
	}

	var ver versionJSON
	decode(certkeeper(t, "version", "--json"), &ver)
	if ver.Version == "" || ver.Go == "" || ver.OS == "" {
		t.Errorf("version --json: %+v", ver)
	}

	dir := filepath.Join(t.TempDir(), "ca")
	if r := certkeeper(t, "ca", "init", "--dir", dir, "--name", "j"); r.code != 0 {
		t.Fatalf("ca init: %+v", r)
	}
	var is issueJSON
	decode(certkeeper(t, "ca", "issue", "--dir", dir, "--json", "node", "n1", "--dns", "n1.example.com"), &is)
	if len(is.Issued) != 1 || is.Issued[0].KeyType != "ecdsa-p256" || !slices.Contains(is.Issued[0].DNSNames, "n1.example.com") {
		t.Fatalf("ca issue --json: %+v", is)
	}
	if _, err := time.Parse(time.RFC3339, is.Issued[0].NotAfter); err != nil {
		t.Errorf("ca issue not_after: %v", err)
	}
	var list []map[string]any
	decode(certkeeper(t, "ca", "list", "--dir", dir, "--json"), &list)
	if list[0]["key_type"] != "ecdsa-p256" || list[0]["seconds_left"] == nil {
		t.Errorf("ca list --json: %v", list[0])
	}
}
