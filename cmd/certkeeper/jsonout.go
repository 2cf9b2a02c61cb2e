package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The JSON the commands print with --json. One vocabulary throughout
// (docs/json.md): durations as integer seconds (…_seconds, seconds_left),
// times as RFC 3339 in UTC, key types as --key-type spells them
// ("ecdsa-p256"), health as check's words ("OK", "WARNING", "CRITICAL",
// "UNKNOWN"). writeJSON prints all of it, and jsonTime and jsonSeconds
// are the only formatters of times and durations in it.

// jsonTime is how a time is written in JSON: RFC 3339, UTC, to the second
// ("2027-02-21T15:36:13Z").
func jsonTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// jsonSeconds is how a duration is written in JSON: whole seconds,
// negative once past.
func jsonSeconds(d time.Duration) int64 { return int64(d / time.Second) }

// writeJSON prints v as the one indented JSON document of a command. Times
// the packages' types carry as time.Time (encoding/json writes them with
// nanoseconds and their zone) are rewritten by jsonTime, so every time a
// command prints has the one form whoever built it.
func writeJSON(e *env, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(secondTimes(data), '\n')
	_, err = e.stdout.Write(data)
	return err
}

// jsonTimeString is a JSON string that is an RFC 3339 time, as
// encoding/json writes a time.Time.
var jsonTimeString = regexp.MustCompile(`"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"`)

// secondTimes rewrites every JSON string in data that is a whole RFC 3339
// time with jsonTime; a time quoted inside a longer string is left alone.
func secondTimes(data []byte) []byte {
	var out bytes.Buffer
	last := 0
	for _, m := range jsonTimeString.FindAllSubmatchIndex(data, -1) {
		if m[0] > 0 && data[m[0]-1] == '\\' {
			continue // an escaped quote: inside another string
		}
		t, err := time.Parse(time.RFC3339Nano, string(data[m[2]:m[3]]))
		if err != nil {
			continue
		}
		out.Write(data[last:m[2]])
		out.WriteString(jsonTime(t))
		last = m[3]
	}
	out.Write(data[last:])
	return out.Bytes()
}

type versionJSON struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

type verifyJSON struct {
	Valid      bool       `json:"valid"`
	Error      string     `json:"error,omitempty"`
	Files      []string   `json:"files"`
	Layout     string     `json:"layout"`
	NodeID     string     `json:"node_id,omitempty"`
	Leaf       *pki.Info  `json:"leaf,omitempty"`
	KeyType    string     `json:"key_type,omitempty"`
	CAs        []pki.Info `json:"ca,omitempty"`
	InstallsAs []string   `json:"installs_as,omitempty"`
	// SecondsLeft is the leaf's validity left.
	SecondsLeft *int64 `json:"seconds_left,omitempty"`
	// Warnings are the WARNING lines of a valid bundle some peer will
	// still refuse (no node id SAN), without the "WARNING: ".
	Warnings []string `json:"warnings,omitempty"`
}

func verifyReport(files []string, l rotate.Layout, nodeID string, b *rotate.Bundle, err error) verifyJSON {
	out := verifyJSON{Valid: err == nil, Files: files, Layout: l.Preset, NodeID: nodeID}
	if err != nil {
		out.Error = oneLine(err)
		return out
	}
	if b.Leaf != nil {
		i := pki.Describe(b.Leaf)
		out.Leaf = &i
		secs := jsonSeconds(time.Until(i.NotAfter))
		out.SecondsLeft = &secs
	}
	if b.Key != nil {
		out.KeyType = string(pki.KeyTypeOf(b.Key.Signer.Public()))
	}
	for _, ca := range b.CAs {
		out.CAs = append(out.CAs, pki.Describe(ca))
	}
	if l.Preset != "custom" {
		for _, f := range rotate.Plan(b, l) {
			out.InstallsAs = append(out.InstallsAs, f.Name)
		}
	}
	for _, p := range b.Warnings {
		out.Warnings = append(out.Warnings, p.Error())
	}
	return out
}

type issueJSON struct {
	Issued  []issuedJSON `json:"issued"`
	Skipped []skipJSON   `json:"skipped"`
	Failed  []skipJSON   `json:"failed"`
	// Capped: the CA's own expiry cut the validity short.
	Capped bool `json:"capped,omitempty"`
}

type issuedJSON struct {
	ID       string      `json:"id"`
	Kind     string      `json:"kind"`
	Dir      string      `json:"dir"`
	Serial   string      `json:"serial"`
	KeyType  pki.KeyType `json:"key_type"`
	KeptKey  bool        `json:"kept_key,omitempty"`
	NotAfter string      `json:"not_after"`
	DNSNames []string    `json:"dns_names,omitempty"`
	IPs      []string    `json:"ip_addresses,omitempty"`
	SHA256   string      `json:"sha256_fingerprint"`
	Note     string      `json:"note,omitempty"`
}

type skipJSON struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

func issueReport(res *authority.Result) issueJSON {
	out := issueJSON{Issued: []issuedJSON{}, Skipped: []skipJSON{}, Failed: []skipJSON{}, Capped: res.Capped}
	for _, i := range res.Issued {
		d := pki.Describe(i.Cert)
		out.Issued = append(out.Issued, issuedJSON{ID: i.ID, Kind: string(i.Kind), Dir: i.Dir, Serial: d.Serial, KeyType: i.KeyType, KeptKey: i.KeptKey,
			NotAfter: jsonTime(d.NotAfter), DNSNames: d.DNSNames, IPs: d.IPAddresses, SHA256: d.SHA256, Note: i.Note})
	}
	for _, s := range res.Skipped {
		out.Skipped = append(out.Skipped, skipJSON{ID: s.ID, Reason: s.Reason})
	}
	for _, f := range res.Failed {
		out.Failed = append(out.Failed, skipJSON{ID: f.ID, Reason: oneLine(f.Err)})
	}
	return out
}

// noColor: the NO_COLOR convention (https://no-color.org), set and not
// empty. Colour is only ever used on a terminal in any case.
func noColor() bool { return os.Getenv("NO_COLOR") != "" }
