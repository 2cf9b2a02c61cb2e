package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/rotate"
)

// StarterNodeID is the node_id of the config the package installs: a
// config that still has it is not configured yet, and `check` says so
// instead of crying CRITICAL over the example bundle's empty directory.
const StarterNodeID = "replace-with-this-node-id"

// NotConfiguredText is what check says of a starter config's bundle.
func NotConfiguredText(c *Config) string {
	return fmt.Sprintf("nothing configured yet: set node_id and replace the example bundle in %s", c.Path)
}

// ackDir holds one file per bundle: when the admin last acknowledged its
// warnings (`certkeeper check --ack`).
func ackPath(c *Config, bundle string) string {
	return filepath.Join(c.StateDir, "ack", bundle)
}

// Acknowledge records that the admin has seen a bundle's rejected inbox
// sets and failed installs up to now: check stops warning of them.
// Without a name it acknowledges every bundle.
func Acknowledge(c *Config, bundle string, now time.Time) error {
	names := c.BundleNames()
	if bundle != "" {
		b, err := c.BundleNamed(bundle)
		if err != nil {
			return err
		}
		names = []string{b.Name}
	}
	for _, n := range names {
		// The one atomic write (platform.AtomicWrite), fsynced: an
		// acknowledgement survives a power cut whole or not at all.
		if err := writeFileAtomic(ackPath(c, n), []byte(now.UTC().Format(time.RFC3339Nano)+"\n"), 0o600, 0o700, true); err != nil {
			return fmt.Errorf("acknowledge bundle %q: %w", n, err)
		}
	}
	return nil
}

// acknowledged is when the admin last acknowledged a bundle; zero if never.
func acknowledged(c *Config, bundle string) time.Time {
	b, err := os.ReadFile(ackPath(c, bundle))
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t
}

// liveSince is when a bundle's live generation last changed: the time of
// the ..data link's last swap (an install, a renewal, a rollback).
func liveSince(dir string) time.Time {
	fi, err := os.Lstat(filepath.Join(dir, "..data"))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// settled drops from what the agent recorded the rejected or failed
// install that no longer needs the admin: the live bundle changed since
// (a later install, renewal or rollback, by the agent or a command), the
// admin acknowledged it, or the rejected set's directory is gone.
func settled(c *Config, b *Bundle, s BundleState) BundleState {
	e := s.LastInstall
	if e == nil || (e.Result != ResultRejected && e.Result != ResultFailed) {
		return s
	}
	gone := false
	if e.Dir != "" {
		_, err := os.Stat(e.Dir)
		gone = errors.Is(err, fs.ErrNotExist)
	}
	if gone || liveSince(b.Resolved.Dir).After(e.Time) || !acknowledged(c, b.Name).Before(e.Time) {
		if s.LastError != nil && *s.LastError == *e {
			s.LastError = nil
		}
		s.LastInstall = nil
	}
	return s
}

// settledAll is settled for each bundle of a snapshot: the metrics judge
// a rejected set, and the starter config, as check does.
func settledAll(c *Config, states []BundleState) []BundleState {
	out := make([]BundleState, len(states))
	for i, s := range states {
		out[i] = s
		if b, err := c.BundleNamed(s.Name); err == nil && s.Name != "" {
			out[i] = settled(c, b, s)
		}
		if c.NodeID == StarterNodeID && s.Generation == "" {
			// The package's starter config: nothing configured yet,
			// no emergency.
			out[i].NotInstalled = ""
		}
	}
	return out
}

// judged is a snapshot as check judges it, for the fleet report and the
// metrics: settledAll, and each bundle's live files judged as status and
// check judge them (BundleState.Files), so a revoked certificate, a stale
// CRL or a near expiry is in the report's and the metric's health, not
// only in check's.
func judged(c *Config, states []BundleState) []BundleState {
	out := settledAll(c, states)
	for i := range out {
		b, err := c.BundleNamed(out[i].Name)
		if err != nil || out[i].Name == "" || b.Resolved.Dir == "" || (c.NodeID == StarterNodeID && out[i].Generation == "") {
			continue // no files to judge (or the starter config's)
		}
		st := rotate.NewManager(b.Spec()).Status()
		out[i].Files = &FilesHealth{Health: st.Health, Text: st.HealthText}
	}
	return out
}
