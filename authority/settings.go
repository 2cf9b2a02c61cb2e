package authority

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// Settings are a CA's defaults, kept in DIR/ca.toml so that unattended
// commands (`ca renew` on a timer, `ca sign` as an SSH forced command) need
// no flags to do the right thing. `ca init` writes them; an admin may edit
// them; flags given to a command override them for that run.
type Settings struct {
	// Name is the cluster's name, the CA's CN and every leaf's O.
	Name string `toml:"name"`
	// NodeKeyType is the key type of new node and control keys.
	NodeKeyType string `toml:"node_key_type"`
	// NodeDays is how long a node or control certificate is valid.
	NodeDays int `toml:"node_days"`
	// NodeLifetime, when set, replaces NodeDays with a duration ("12h",
	// "30s"): for clusters that want certificates shorter than a day, and
	// for tests that watch many renewals go by in minutes.
	NodeLifetimeText string `toml:"node_lifetime"`
	// RenewKey is "rotate" (a new key with every renewal) or "keep" (sign
	// the published key again).
	RenewKey string `toml:"renew_key"`
	// CRLDays is how long a CRL from `ca crl` is valid (the CRL lifetime
	// the nodes install; `ca renew` signs a new one once 40% is left).
	CRLDays int `toml:"crl_days"`
	// CAExpiryWarn is the share of the cluster CA's lifetime left at
	// which ca list, ca renew and the nodes' check warn ("20%"; "0%": off).
	CAExpiryWarn string `toml:"ca_expiry_warn"`
	// PassphraseFile holds the passphrase of an encrypted cluster.key, for
	// commands that must not prompt.
	PassphraseFile string `toml:"passphrase_file"`
}

// Renewal key policies.
const (
	RenewRotate = "rotate"
	RenewKeep   = "keep"
)

// DefaultSettings are what `ca init` writes unless told otherwise.
func DefaultSettings(name string) Settings {
	return Settings{Name: name, NodeKeyType: string(pki.DefaultKeyType), NodeDays: 90, RenewKey: RenewRotate, CRLDays: 30}
}

// Bounds of node_lifetime: below 10 s a certificate is gone before a
// node has fetched and installed it.
const (
	MinNodeLifetime = 10 * time.Second
	MaxNodeLifetime = 3650 * 24 * time.Hour
)

// NodeLifetime is how long a new node certificate is valid: node_lifetime
// when set, else node_days.
func (s Settings) NodeLifetime() time.Duration {
	if d, err := s.nodeLifetime(); err == nil && d > 0 {
		return d
	}
	return time.Duration(s.NodeDays) * 24 * time.Hour
}

func (s Settings) nodeLifetime() (time.Duration, error) {
	if s.NodeLifetimeText == "" {
		return 0, nil
	}
	d, err := rotate.ParseDuration(s.NodeLifetimeText)
	if err != nil {
		return 0, err
	}
	if d < MinNodeLifetime || d > MaxNodeLifetime {
		return 0, fmt.Errorf("%s is outside %s to 3650d", s.NodeLifetimeText, MinNodeLifetime)
	}
	return d, nil
}

// CAWarnShare is ca_expiry_warn as a share (rotate.CAExpiryHealth's
// argument): the default 20% when unset, -1 when "0%" turns it off.
func (s Settings) CAWarnShare() float64 {
	if s.CAExpiryWarn == "" {
		return rotate.DefaultCAWarnShare
	}
	f, err := rotate.ParseShare(s.CAExpiryWarn)
	switch {
	case err != nil:
		return rotate.DefaultCAWarnShare
	case f == 0:
		return -1
	}
	return f
}

// Check reports the first setting that is out of range.
func (s Settings) Check() error {
	if s.Name == "" {
		return fmt.Errorf("name: missing (the cluster's name)")
	}
	if _, err := pki.ParseKeyType(s.NodeKeyType); err != nil {
		return fmt.Errorf("node_key_type: %w", err)
	}
	if s.NodeDays < 1 || s.NodeDays > 3650 {
		return fmt.Errorf("node_days: %d is outside 1 to 3650", s.NodeDays)
	}
	if _, err := s.nodeLifetime(); err != nil {
		return fmt.Errorf("node_lifetime: %w", err)
	}
	if s.RenewKey != RenewRotate && s.RenewKey != RenewKeep {
		return fmt.Errorf("renew_key: %q is not %q or %q", s.RenewKey, RenewRotate, RenewKeep)
	}
	if s.CRLDays < 1 || s.CRLDays > 3650 {
		return fmt.Errorf("crl_days: %d is outside 1 to 3650", s.CRLDays)
	}
	if s.CAExpiryWarn != "" {
		if _, err := rotate.ParseShare(s.CAExpiryWarn); err != nil {
			return fmt.Errorf("ca_expiry_warn: %w", err)
		}
	}
	return nil
}

// SettingsLimits bound ca.toml before it is parsed: it holds a handful of
// flat keys, and within these any input parses in under 50 MiB (see
// FuzzParseSettings).
var SettingsLimits = tomlcap.Limits{Bytes: 64 << 10, Depth: 3}

// ReadSettings reads and parses ca.toml: only a regular file, opened
// without blocking.
func ReadSettings(path string) (Settings, error) {
	data, err := tomlcap.ReadFile("ca.toml", path, SettingsLimits)
	if err != nil {
		return Settings{}, err
	}
	return ParseSettings(path, data)
}

// ParseSettings decodes ca.toml strictly: an unknown key is an error, so a
// typo (renew_keys) is not silently ignored on a CA.
func ParseSettings(path string, data []byte) (Settings, error) {
	if err := tomlcap.Check("ca.toml", path, data, SettingsLimits); err != nil {
		return Settings{}, err
	}
	var s Settings
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&s)
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Settings{}, fmt.Errorf("%s: unknown key %s; known keys: %s", path, strings.Join(keys, ", "), strings.Join(settingKeys(), ", "))
	}
	if err := s.Check(); err != nil {
		return Settings{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func settingKeys() []string {
	k := []string{"name", "node_key_type", "node_days", "node_lifetime", "renew_key", "crl_days", "ca_expiry_warn", "passphrase_file"}
	sort.Strings(k)
	return k
}

// Encode writes the settings with a comment for each, as ca init leaves
// them for the admin to read and edit.
func (s Settings) Encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# certkeeper CA settings, read by every `certkeeper ca` command for this\n")
	fmt.Fprintf(&b, "# directory. Flags override them for one run. See docs/ca.md.\n\n")
	fmt.Fprintf(&b, "# The cluster's name: the CA's CN and the O of every certificate it issues.\n")
	fmt.Fprintf(&b, "name = %s\n\n", quote(s.Name))
	fmt.Fprintf(&b, "# Key type of new node keys: %s.\n", strings.Join(keyTypeNames(), ", "))
	fmt.Fprintf(&b, "node_key_type = %s\n\n", quote(s.NodeKeyType))
	fmt.Fprintf(&b, "# Validity of node and control certificates, in days (never past the CA's).\n")
	fmt.Fprintf(&b, "node_days = %d\n", s.NodeDays)
	fmt.Fprintf(&b, "# Or a duration that replaces node_days, for certificates shorter than a day\n")
	fmt.Fprintf(&b, "# (at least 10s): node_lifetime = \"12h\"\n")
	if s.NodeLifetimeText != "" {
		fmt.Fprintf(&b, "node_lifetime = %s\n", quote(s.NodeLifetimeText))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "# `ca renew`: \"rotate\" makes a new key with each certificate; \"keep\" signs the\n")
	fmt.Fprintf(&b, "# published key again (for daemons that pin their key).\n")
	fmt.Fprintf(&b, "renew_key = %s\n\n", quote(s.RenewKey))
	fmt.Fprintf(&b, "# Validity of the CRL written by `ca crl`, in days; `ca renew` refreshes it.\n")
	fmt.Fprintf(&b, "crl_days = %d\n\n", s.CRLDays)
	fmt.Fprintf(&b, "# ca list and ca renew warn when the cluster CA has this share of its life\n")
	fmt.Fprintf(&b, "# left or less, naming `ca rotate` as the fix (\"0%%\" turns it off).\n")
	if s.CAExpiryWarn == "" {
		fmt.Fprintf(&b, "# ca_expiry_warn = \"20%%\"\n\n")
	} else {
		fmt.Fprintf(&b, "ca_expiry_warn = %s\n\n", quote(s.CAExpiryWarn))
	}
	fmt.Fprintf(&b, "# For an encrypted cluster.key: a file (mode 0600) holding the passphrase,\n")
	fmt.Fprintf(&b, "# read by commands that can not prompt (ca sign, ca renew on a timer).\n")
	if s.PassphraseFile == "" {
		fmt.Fprintf(&b, "# passphrase_file = \"/etc/certkeeper/ca-passphrase\"\n")
	} else {
		fmt.Fprintf(&b, "passphrase_file = %s\n", quote(s.PassphraseFile))
	}
	return b.Bytes()
}

func quote(s string) string {
	var b bytes.Buffer
	_ = toml.NewEncoder(&b).Encode(map[string]string{"v": s})
	return strings.TrimSpace(strings.TrimPrefix(b.String(), "v = "))
}

func keyTypeNames() []string {
	var n []string
	for _, t := range pki.KeyTypes() {
		n = append(n, string(t))
	}
	return n
}
