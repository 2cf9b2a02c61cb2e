package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/rotate"
)

// SFTPSource fetches a node's bundles from the admin host ([source] in the
// config) over SFTP: one connection per Fetch, host key checked against
// known_hosts, every phase under the configured timeout. It only reads:
// what it returns goes through the same pipeline as any other input.
type SFTPSource struct {
	Target distribute.Target
	Limits distribute.Limits
	// OnFile, when set, is called after each remote file is read (progress
	// for `certkeeper pull -v`; tests use it to cut a transfer short).
	OnFile func(b *Bundle, name string)
}

// NewSFTPSource returns the source the config's [source] describes.
func NewSFTPSource(cfg *Config) (*SFTPSource, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("config %s has no [source] section: add the admin host's address, user, identity_file and known_hosts to pull from it", cfg.Path)
	}
	return newSFTPSource(cfg.Source), nil
}

func newSFTPSource(s *SourceConfig) *SFTPSource {
	return &SFTPSource{
		Target: distribute.Target{
			Address:      s.Address,
			User:         s.User,
			IdentityFile: s.IdentityFile,
			KnownHosts:   s.KnownHosts,
			Timeout:      s.Timeout.Duration,
		},
		Limits: distribute.DefaultLimits,
	}
}

// RemoteDir is where a bundle's files are on the admin host: the bundle's
// remote_dir, or nodes/<node_id>, where `certkeeper ca` publishes them
// and where `certkeeper sshd-config` puts them in each node's chroot.
func RemoteDir(b *Bundle) string {
	if b.RemoteDir != "" {
		return b.RemoteDir
	}
	return path.Join("nodes", b.NodeID)
}

// Describe names where a bundle is pulled from, for logs and the
// generation's source record.
func (s *SFTPSource) Describe(b *Bundle) string {
	hp, err := s.Target.HostPort()
	if err != nil {
		hp = s.Target.Address
	}
	return fmt.Sprintf("sftp://%s@%s/%s", s.Target.User, hp, RemoteDir(b))
}

// Fetch reads the bundle's remote directory. It changes nothing on this
// node; on any error (network, host key, a listing that breaks the rules)
// nothing is returned.
func (s *SFTPSource) Fetch(ctx context.Context, b *Bundle) ([]rotate.Input, error) {
	if err := distribute.CheckRemoteDir(RemoteDir(b)); err != nil {
		return nil, fmt.Errorf("bundle %q: pull: %w", b.Name, err)
	}
	c, err := distribute.Dial(ctx, s.Target)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: pull: %w", b.Name, err)
	}
	defer c.Close()
	var onFile func(string)
	if s.OnFile != nil {
		onFile = func(name string) { s.OnFile(b, name) }
	}
	in, err := c.Fetch(ctx, RemoteDir(b), s.Limits, onFile)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: pull: %w", b.Name, err)
	}
	return in, nil
}

// Pull fetches a bundle and installs it with InstallPulled.
func (s *SFTPSource) Pull(ctx context.Context, b *Bundle, log *slog.Logger) (Outcome, error) {
	in, err := s.Fetch(ctx, b)
	if err != nil {
		return Outcome{Bundle: b.Name}, err
	}
	return InstallPulled(ctx, b, in, "pull: "+s.Describe(b), log)
}

// InstallPulled is the delivery pipeline (Deliver) for files fetched from
// a source: content identical to the live bundle changes nothing and
// reloads nothing (unless its reload is still owed), a leaf older than the
// live one (rotate.Older) or on the refused list is refused, so a stale
// admin host never takes a node back in time. After a change it reloads
// and checks as the agent does: a failed check rolls back and is the
// error.
func InstallPulled(ctx context.Context, b *Bundle, inputs []rotate.Input, source string, log *slog.Logger) (Outcome, error) {
	kind := FromPull
	if strings.HasPrefix(source, "csr: ") {
		kind = FromCSR
	}
	return Deliver(ctx, b, Delivery{Kind: kind, Inputs: inputs, From: source}, log)
}

// ConfiguredSource is the Source a bundle gets from the config: with
// [source] set, the CSR exchange for a bundle in mode "csr" and the admin
// host's SFTP for one in mode "pull"; else none (the bundle is fed through
// its inbox only, and a due renewal only warns).
func ConfiguredSource(c *Config, b *Bundle) Source {
	if len(c.Sources) == 0 {
		return nil
	}
	one := func(sc *SourceConfig) Source {
		if b.Mode == ModeCSR {
			return newCSRSource(c, sc)
		}
		return newSFTPSource(sc)
	}
	if len(c.Sources) == 1 {
		return one(&c.Sources[0])
	}
	f := &Failover{}
	for i := range c.Sources {
		f.Sources = append(f.Sources, one(&c.Sources[i]))
	}
	return f
}

// OlderThanLive reports whether inputs bring a leaf issued before live:
// InstallNewer refuses it, and for the schedule that means the source has
// nothing newer (a stale admin host), not that it failed.
func OlderThanLive(inputs []rotate.Input, live *x509.Certificate) bool {
	if live == nil {
		return false
	}
	c := rotate.Classify(inputs)
	return c.Leaf != nil && rotate.Older(c.Leaf.Cert, live)
}
