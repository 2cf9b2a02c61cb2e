package authority

import (
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certkeeper/certkeeper/pki"
)

// Entry is one certificate as `ca list` shows it.
type Entry struct {
	ID          string      `json:"id"`
	Kind        Kind        `json:"kind"`
	Serial      string      `json:"serial"`
	Status      Status      `json:"status"`
	Current     bool        `json:"current"`
	DNSNames    []string    `json:"dns_names,omitempty"`
	IPs         []string    `json:"ip_addresses,omitempty"`
	KeyType     string      `json:"key_type"`
	Source      Source      `json:"source"`
	NotBefore   time.Time   `json:"not_before"`
	NotAfter    time.Time   `json:"not_after"`
	SecondsLeft int64       `json:"seconds_left"`
	IssuedAt    time.Time   `json:"issued_at"`
	SHA256      string      `json:"sha256_fingerprint"`
	Revoked     *Revocation `json:"revoked,omitempty"`
	// RevokedReason names Revoked.Reason.
	RevokedReason string `json:"revoked_reason,omitempty"`
	// NodeRevoked is set when the node itself is retired.
	NodeRevoked bool `json:"node_revoked,omitempty"`
}

// List returns the current certificate of every node (all: every
// certificate ever issued), soonest expiry first. It takes only a shared
// lock and does not need the CA key.
func (a *Authority) List(all bool) ([]Entry, error) {
	now := a.opts.now()
	var out []Entry
	err := a.view(func(tx *bolt.Tx) error {
		nodes, err := allNodes(tx)
		if err != nil {
			return err
		}
		byID := map[string]NodeRecord{}
		for _, n := range nodes {
			byID[n.ID] = n
		}
		certs, err := allCerts(tx)
		if err != nil {
			return err
		}
		out = Entries(certs, byID, all, now)
		return nil
	})
	return out, err
}

// Entries turns records into list entries, sorted by expiry then id.
func Entries(certs []CertRecord, nodes map[string]NodeRecord, all bool, now time.Time) []Entry {
	var out []Entry
	for _, c := range certs {
		n, known := nodes[c.ID]
		current := known && n.Current == c.Serial
		if !all && !current {
			continue
		}
		e := Entry{
			ID: c.ID, Kind: c.Kind, Serial: c.Serial, Status: StatusOf(c, current, now), Current: current,
			DNSNames: c.DNSNames, IPs: c.IPs, KeyType: c.KeyType, Source: c.Source,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, SecondsLeft: int64(c.NotAfter.Sub(now) / time.Second),
			IssuedAt: c.IssuedAt, SHA256: c.SHA256, Revoked: c.Revoked, NodeRevoked: known && n.Revoked != nil,
		}
		if c.Revoked != nil {
			e.RevokedReason = pki.ReasonName(c.Revoked.Reason)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NotAfter.Equal(out[j].NotAfter) {
			return out[i].NotAfter.Before(out[j].NotAfter)
		}
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Serial < out[j].Serial
	})
	return out
}
