package main

import (
	"os"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The JSON the commands print with --json. One vocabulary throughout
// (docs/json.md): durations as integer seconds (…_seconds, seconds_left),
// times as RFC 3339 in UTC, key types as --key-type spells them
// ("ecdsa-p256"), health as check's words ("OK", "WARNING", "CRITICAL",
// "UNKNOWN").

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
		secs := int64(time.Until(i.NotAfter) / time.Second)
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
			NotAfter: d.NotAfter.UTC().Format(time.RFC3339), DNSNames: d.DNSNames, IPs: d.IPAddresses, SHA256: d.SHA256, Note: i.Note})
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
