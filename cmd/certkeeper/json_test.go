package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
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
	r = certkeeper(t, "ca", "list", "--dir", dir, "--json")
	var list []map[string]any
	decode(r, &list)
	if list[0]["key_type"] != "ecdsa-p256" || list[0]["seconds_left"] == nil {
		t.Errorf("ca list --json: %v", list[0])
	}
	if at, _ := list[0]["issued_at"].(string); !secondPrecision.MatchString(at) {
		t.Errorf("ca list --json issued_at %q, want RFC 3339 in UTC to the second", at)
	}
	if bad := nanoTime.FindString(r.stdout); bad != "" {
		t.Errorf("ca list --json has a time with fractions of a second: %s", bad)
	}
	// status --json of a bundle with an agent state and an owed check:
	// every time in it is to the second too.
	if err := os.MkdirAll(filepath.Join(n.root, "state", "owed"), 0o700); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, filepath.Join(n.root, "state", "owed"), "b.json",
		[]byte(`{"generation": "..gen-000001", "since": "2026-12-01T11:00:00.5+01:00", "reload": false, "check": true}`), 0o600)
	r = certkeeper(t, "status", "--config", n.config, "--json")
	if bad := nanoTime.FindString(r.stdout); bad != "" || !strings.Contains(r.stdout, `"since": "2026-12-01T10:00:00Z"`) {
		t.Errorf("status --json times (%s):\n%s", bad, r.stdout)
	}
}

var (
	secondPrecision = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)
	nanoTime        = regexp.MustCompile(`"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+`)
)

// One formatter for every time a command prints as JSON: RFC 3339, UTC,
// to the second, whatever the zone and precision of the time.Time.
func TestJSONTimesAreToTheSecondInUTC(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   any
		want string
	}{
		{struct {
			At time.Time `json:"at"`
		}{time.Date(2026, 12, 1, 23, 40, 40, 123456789, time.UTC)}, `{"at":"2026-12-01T23:40:40Z"}`},
		{map[string]time.Time{"at": time.Date(2026, 12, 2, 0, 40, 40, 999999999, paris)}, `{"at":"2026-12-01T23:40:40Z"}`},
		{[]any{"2026-12-01T23:40:40Z", "not 2026-12-01T23:40:40.5Z", `quoted "2026-12-01T23:40:40.5Z"`}, `["2026-12-01T23:40:40Z","not 2026-12-01T23:40:40.5Z","quoted \"2026-12-01T23:40:40.5Z\""]`},
		{map[string]string{"detail": "2026-12-01 23:40:40 UTC"}, `{"detail":"2026-12-01 23:40:40 UTC"}`},
	} {
		var out strings.Builder
		if err := writeJSON(&env{stdout: &out}, tc.in); err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(out.String())); err != nil || compact.String() != tc.want {
			t.Errorf("writeJSON(%v) = %s (%v), want %s", tc.in, compact.String(), err, tc.want)
		}
	}
	if got := jsonSeconds(-1500 * time.Millisecond); got != -1 {
		t.Errorf("jsonSeconds(-1.5s) = %d, want -1 (whole seconds)", got)
	}
}
