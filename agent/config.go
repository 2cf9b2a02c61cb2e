// Package agent is certkeeper's node side: the config, the pipeline
// wiring that installs and reloads, and the daemon that keeps bundles in
// order.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// Config is the agent's TOML config (DESIGN.md, "Agent config").
type Config struct {
	NodeID   string `toml:"node_id"`
	StateDir string `toml:"state_dir"`
	// LogFormat is "text", "json", or "" to choose by whether stderr is a
	// terminal.
	LogFormat       string   `toml:"log_format"`
	LogLevel        string   `toml:"log_level"`
	MetricsListen   string   `toml:"metrics_listen"`
	MetricsTextfile string   `toml:"metrics_textfile"`
	RescanInterval  Duration `toml:"rescan_interval"`
	// ReportHeartbeat is how often the fleet report is rewritten when
	// nothing changed (see DefaultReportHeartbeat).
	ReportHeartbeat Duration `toml:"report_heartbeat"`
	// CAExpiryWarn is the share of the cluster CA's lifetime left at
	// which check warns ("20%", the default; "0%" turns it off).
	CAExpiryWarn string `toml:"ca_expiry_warn"`
	// Sources are the admin hosts, from [source] (one) or [[source]]
	// (several, tried in order); Source is the first, nil when none.
	Sources sourceList    `toml:"source"`
	Source  *SourceConfig `toml:"-"`
	Bundles []Bundle      `toml:"bundle"`

	// Path is the file the config was read from.
	Path string `toml:"-"`
	data []byte
}

// SourceConfig is the [source] section: the admin host a node pulls from.
type SourceConfig struct {
	Address      string   `toml:"address"`
	User         string   `toml:"user"`
	IdentityFile string   `toml:"identity_file"`
	KnownHosts   string   `toml:"known_hosts"`
	Timeout      Duration `toml:"timeout"`
	PullInterval Duration `toml:"pull_interval"`
	// CSRUser is the admin host's account that bundles in CSR mode send
	// their requests to (the CA's account, whose authorized_keys runs
	// `certkeeper ca sign` for this node's key). Empty: User. When set,
	// User is the node's pull account, which CSR bundles use to pull their
	// first bundle.
	CSRUser string `toml:"csr_user"`
}

// sourceList is the source key: a [source] table or an array of
// [[source]] tables, each decoded into a SourceConfig (unknown keys are
// caught by ParseConfig's check of every key, which knows SourceConfig's).
type sourceList []SourceConfig

// UnmarshalTOML implements toml.Unmarshaler.
func (l *sourceList) UnmarshalTOML(v any) error {
	var tables []map[string]any
	switch x := v.(type) {
	case map[string]any:
		tables = []map[string]any{x}
	case []map[string]any:
		tables = x
	case []any:
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("source: expected a [source] table or [[source]] tables, got %T", e)
			}
			tables = append(tables, m)
		}
	default:
		return fmt.Errorf("source: expected a [source] table or [[source]] tables, got %T", v)
	}
	for _, m := range tables {
		// Through the TOML encoder and decoder again: the one decoder
		// handles SourceConfig's types (durations).
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(m); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		var sc SourceConfig
		if _, err := toml.NewDecoder(&buf).Decode(&sc); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		*l = append(*l, sc)
	}
	return nil
}

// Bundle is one managed directory.
type Bundle struct {
	Name   string `toml:"name"`
	NodeID string `toml:"node_id"`
	Layout string `toml:"layout"`
	Dir    string `toml:"dir"`
	Inbox  string `toml:"inbox"`
	// InboxGroup is a group allowed to write the inbox (a dedicated push
	// account's); without it, an inbox writable by its group is refused.
	InboxGroup string `toml:"inbox_group"`
	// RemoteDir is the bundle's directory on the source, relative to the
	// SFTP root of the node's account.
	RemoteDir     string   `toml:"remote_dir"`
	RenewBefore   Duration `toml:"renew_before"`
	RenewAt       float64  `toml:"renew_at"`
	Mode          string   `toml:"mode"`
	KeyType       string   `toml:"key_type"`
	AllowCAChange bool     `toml:"allow_ca_change"`
	Keep          int      `toml:"keep"`
	// LinkMode is how the live names reach the live generation:
	// "symlink", "copy" (regular files, for Windows without the privilege
	// to make links), or "auto" (the default: symlinks on Unix; on
	// Windows symlinks where the agent can make them, else copies).
	LinkMode string `toml:"link_mode"`
	linkMode rotate.LinkMode

	CAFile   *string           `toml:"ca_file"`
	CertFile *string           `toml:"cert_file"`
	KeyFile  *string           `toml:"key_file"`
	EnvFile  *string           `toml:"env_file"`
	CRLFile  *string           `toml:"crl_file"`
	Env      map[string]string `toml:"env"`
	DirMode  *FileMode         `toml:"dir_mode"`
	CertMode *FileMode         `toml:"cert_mode"`
	KeyMode  *FileMode         `toml:"key_mode"`
	Owner    string            `toml:"owner"`
	Group    string            `toml:"group"`
	// Usage is what the daemon uses the certificate for: "server",
	// "client" or both (the default: cluster mutual TLS).
	Usage []string `toml:"usage"`

	Reload       []Reload `toml:"reload"`
	Check        []string `toml:"check"`
	CheckTimeout Duration `toml:"check_timeout"`
	// Served is the daemon's TLS endpoint (host:port): after each reload,
	// and every rescan, the agent checks that it serves the live leaf.
	Served string `toml:"served"`
	// ServedName is the server name sent (SNI) and verified; empty: the
	// chain is verified against the live CA, not the name.
	ServedName string `toml:"served_name"`
	// ServedMismatch is what to do when the daemon still serves another
	// certificate after the wait and the extra reloads: "report" (the
	// default: check goes CRITICAL) or "rollback".
	ServedMismatch string `toml:"served_mismatch"`
	// ServedWait is how long after a reload the daemon may take to serve
	// the new leaf before a reload is tried again.
	ServedWait Duration `toml:"served_wait"`
	// Debounce is the inbox's settle time: how long no file may change
	// before the agent takes the set.
	Debounce Duration `toml:"debounce"`
	// InboxTimeout is how long a set that may still be incomplete (a
	// missing key, a truncated file) waits, quiet, before it is rejected.
	InboxTimeout Duration `toml:"inbox_timeout"`

	// Resolved from the above by Load.
	Resolved rotate.Layout `toml:"-"`
	stateDir string
	Owners   platform.Owner `toml:"-"`
	// caWarnShare is the config's ca_expiry_warn (-1: off).
	caWarnShare float64
}

// Reload is one action run after the bundle changed. Exactly one of
// Systemd, WindowsService, Signal (with Pidfile) and Command is set.
type Reload struct {
	Systemd       string   `toml:"systemd"`
	Signal        string   `toml:"signal"`
	Pidfile       string   `toml:"pidfile"`
	Command       []string `toml:"command"`
	Shell         bool     `toml:"shell"`
	OnlyIfRunning bool     `toml:"only_if_running"`
	Timeout       Duration `toml:"timeout"`

	// WindowsService is a Windows service to restart (Windows has no reload).
	WindowsService string `toml:"windows_service"`
}

// Bundle modes: how a bundle is renewed from the admin host.
const (
	// ModePull fetches bundles the admin host issued (key and all).
	ModePull = "pull"
	// ModeCSR makes the key on the node and has the admin host sign a
	// request for it: the key never leaves the node.
	ModeCSR = "csr"
)

// Defaults.
const (
	DefaultStateDir       = "/var/lib/certkeeper"
	DefaultRescanInterval = time.Minute
	DefaultReloadTimeout  = 30 * time.Second
	DefaultCheckTimeout   = 30 * time.Second
	// DefaultDebounce is the inbox settle time. scp and SFTP write a
	// bundle's files back to back, milliseconds apart; 150 ms covers that
	// with room and keeps drop-to-reload under 300 ms. A file still being
	// written when it runs out is caught anyway: it does not parse, and the
	// set waits (see InboxTimeout).
	DefaultDebounce = 150 * time.Millisecond
	// DefaultInboxTimeout is how long an incomplete set may sit quiet.
	DefaultInboxTimeout = 2 * time.Minute
	// DefaultPullInterval is how often a bundle with a source looks for a
	// newer bundle outside its renewal window.
	DefaultPullInterval = time.Hour
)

// Upper bounds of the timeouts, so that no legal step of a bundle's loop
// looks stuck to the agent's watchdog (stuckAfter, 15 minutes): a reload
// action or a check that takes longer is hung, not slow. A fetch runs
// beside the loop, bounded by four source timeouts: 12 minutes at most.
const (
	MaxReloadTimeout = 10 * time.Minute
	MaxCheckTimeout  = 10 * time.Minute
	MaxSourceTimeout = 3 * time.Minute
	// MaxSources bounds [[source]]: every fetch may try each in turn.
	MaxSources = 8
)

// Duration is a TOML string such as "720h" or "30d". A bare number is an
// error: "renew_before = 30" could mean days, hours or nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		p, err := ParseDuration(x)
		if err != nil {
			return err
		}
		d.Duration = p
		return nil
	case int64, float64:
		return fmt.Errorf("a bare number (%v) is not a duration; write it with a unit, as a string: \"720h\", \"30d\", \"90s\"", x)
	default:
		return fmt.Errorf("expected a duration string such as \"720h\", got %T", v)
	}
}

// ParseDuration is time.ParseDuration plus a leading day count ("30d",
// "1d12h"), the unit certificate lifetimes are talked about in.
func ParseDuration(s string) (time.Duration, error) { return rotate.ParseDuration(s) }

// FileMode is an octal permission string such as "0600".
type FileMode fs.FileMode

// UnmarshalTOML implements toml.Unmarshaler.
func (m *FileMode) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("write a mode as an octal string, such as \"0600\" (got %v)", v)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q is not an octal permission such as \"0600\"", s)
	}
	*m = FileMode(n)
	return nil
}

// ConfigError is a config problem, with the key and the line where known.
type ConfigError struct {
	Path string
	Key  string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ConfigLimits bound a config file before it is parsed: real configs are
// a few KiB, and within these any input parses in under 50 MiB (see
// FuzzParseConfig).
var ConfigLimits = tomlcap.Limits{Bytes: 128 << 10, Depth: 6}

// LoadConfig reads and checks a config file. Only a regular file is read,
// opened without blocking: a FIFO or a device at the path is refused at
// once, so a SIGHUP never hangs the agent.
func LoadConfig(path string) (*Config, error) {
	data, err := tomlcap.ReadFile("config", path, ConfigLimits)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes a config strictly: unknown keys (including keys that
// differ from a known one only in case), bad durations and modes, missing
// fields and unknown layouts are errors naming the key and its line.
func ParseConfig(path string, data []byte) (*Config, error) {
	if err := tomlcap.Check("config", path, data, ConfigLimits); err != nil {
		return nil, err
	}
	c := &Config{Path: path}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ConfigError{Path: path, Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &ConfigError{Path: path, Msg: err.Error()}
	}
	known := knownKeys(reflect.TypeOf(Config{}), "")
	for k := range knownKeys(reflect.TypeOf(SourceConfig{}), "source") {
		known[k] = true
	}
	for _, k := range md.Keys() {
		if !keyKnown(known, k) {
			parent := strings.Join(k[:len(k)-1], ".")
			return nil, &ConfigError{Path: path, Key: k.String(), Line: keyLine(data, k),
				Msg: "unknown key; known keys here: " + strings.Join(childKeys(known, parent), ", ")}
		}
	}
	c.data = data
	if err := c.resolve(); err != nil {
		return nil, err
	}
	return c, nil
}

// knownKeys lists every dotted key path the config type accepts; a map
// field accepts any key below it ("bundle.env.*").
func knownKeys(t reflect.Type, prefix string) map[string]bool {
	keys := map[string]bool{}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return keys
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		keys[path] = true
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Map:
			keys[path+".*"] = true
		case ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeOf((*toml.Unmarshaler)(nil)).Elem()):
			for k := range knownKeys(ft, path) {
				keys[k] = true
			}
		}
	}
	return keys
}

func keyKnown(known map[string]bool, k toml.Key) bool {
	if known[strings.Join(k, ".")] {
		return true
	}
	for i := len(k) - 1; i > 0; i-- {
		if known[strings.Join(k[:i], ".")+".*"] {
			return true
		}
	}
	return false
}

func childKeys(known map[string]bool, parent string) []string {
	var out []string
	for k := range known {
		rest := k
		if parent != "" {
			if !strings.HasPrefix(k, parent+".") {
				continue
			}
			rest = strings.TrimPrefix(k, parent+".")
		}
		if !strings.Contains(rest, ".") && rest != "*" {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out
}

// keyLine finds the line that sets key k, for errors the TOML decoder has no
// position for. It tracks table headers and matches the key's last part; a
// key it cannot place (in an inline table, say) gets no line.
func keyLine(data []byte, k toml.Key) int {
	if len(k) == 0 {
		return 0
	}
	parent := strings.Join(k[:len(k)-1], ".")
	last := k[len(k)-1]
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(line)
		if strings.HasPrefix(s, "[") {
			h := strings.Trim(strings.SplitN(s, "#", 2)[0], "[] \t")
			table = strings.ReplaceAll(h, " ", "")
			if table == strings.Join(k, ".") {
				return i + 1
			}
			continue
		}
		name, _, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		name = strings.Trim(strings.TrimSpace(name), `"'`)
		full := name
		if table != "" {
			full = table + "." + name
		}
		if (table == parent && name == last) || full == strings.Join(k, ".") {
			return i + 1
		}
	}
	return 0
}

var bundleNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// resolve fills defaults and checks what the types alone cannot.
func (c *Config) resolve() error {
	bad := func(key string, k toml.Key, format string, args ...any) error {
		return &ConfigError{Path: c.Path, Key: key, Line: keyLine(c.data, k), Msg: fmt.Sprintf(format, args...)}
	}
	if c.StateDir == "" {
		c.StateDir = platform.NativeDir(DefaultStateDir)
	}
	if !filepath.IsAbs(c.StateDir) {
		return bad("state_dir", toml.Key{"state_dir"}, "%q must be an absolute path", c.StateDir)
	}
	if c.RescanInterval.Duration == 0 {
		c.RescanInterval.Duration = DefaultRescanInterval
	}
	if c.RescanInterval.Duration < time.Second {
		return bad("rescan_interval", toml.Key{"rescan_interval"}, "%s is too short; at least 1s", c.RescanInterval)
	}
	if c.ReportHeartbeat.Duration == 0 {
		c.ReportHeartbeat.Duration = DefaultReportHeartbeat
	}
	if h := c.ReportHeartbeat.Duration; h < MinConfigReportHeartbeat || h > MaxReportHeartbeat {
		return bad("report_heartbeat", toml.Key{"report_heartbeat"}, "%s is out of range; at least %s, at most %s (fleet status calls a report stale after three heartbeats)", c.ReportHeartbeat, MinConfigReportHeartbeat, MaxReportHeartbeat)
	}
	caWarn := rotate.DefaultCAWarnShare
	if c.CAExpiryWarn != "" {
		f, err := rotate.ParseShare(c.CAExpiryWarn)
		if err != nil {
			return bad("ca_expiry_warn", toml.Key{"ca_expiry_warn"}, "%v", err)
		}
		caWarn = f
		if f == 0 {
			caWarn = -1
		}
	}
	switch c.LogFormat {
	case "", "human", "text", "json":
	default:
		return bad("log_format", toml.Key{"log_format"}, "%q is not one of human, text, json", c.LogFormat)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return bad("log_level", toml.Key{"log_level"}, "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if len(c.Sources) > MaxSources {
		return bad("source", toml.Key{"source"}, "%d sources; at most %d admin hosts", len(c.Sources), MaxSources)
	}
	for i := range c.Sources {
		src := &c.Sources[i]
		if src.Address == "" {
			return bad("source.address", toml.Key{"source"}, "missing: the admin host, as host or host:port")
		}
		if src.User == "" {
			return bad("source.user", toml.Key{"source"}, "missing: the account this node logs in as on the admin host")
		}
		if src.KnownHosts == "" {
			return bad("source.known_hosts", toml.Key{"source"}, "missing: host keys are always verified; pin the admin host's key with `certkeeper trust HOST --known-hosts FILE`")
		}
		if t := src.Timeout.Duration; t < 0 || t > MaxSourceTimeout {
			return bad("source.timeout", toml.Key{"source", "timeout"}, "%s is out of range; at most %s (each SSH phase; a whole fetch gets four)", src.Timeout, MaxSourceTimeout)
		}
		if src.PullInterval.Duration == 0 {
			src.PullInterval.Duration = DefaultPullInterval
		}
		if src.PullInterval.Duration < time.Minute {
			return bad("source.pull_interval", toml.Key{"source", "pull_interval"}, "%s is too short; at least 1m (the admin host serves every node)", src.PullInterval)
		}
		for j := range i {
			if c.Sources[j].Address == src.Address && c.Sources[j].User == src.User {
				return bad("source.address", toml.Key{"source", "address"}, "%s@%s is listed twice; each [[source]] is another admin host", src.User, src.Address)
			}
		}
	}
	c.Source = nil
	if len(c.Sources) > 0 {
		c.Source = &c.Sources[0]
	}
	if len(c.Bundles) == 0 {
		return &ConfigError{Path: c.Path, Key: "bundle", Msg: "no [[bundle]] defined; a config manages at least one bundle"}
	}
	names, dirs := map[string]bool{}, map[string]string{}
	for i := range c.Bundles {
		b := &c.Bundles[i]
		key := func(field string) string { return fmt.Sprintf("bundle[%d].%s", i, field) }
		if b.Name == "" {
			return bad(key("name"), toml.Key{"bundle"}, "missing: every bundle needs a name")
		}
		if !bundleNameRe.MatchString(b.Name) {
			return bad(key("name"), toml.Key{"bundle", "name"}, "%q: use letters, digits, '.', '_' and '-' (it names directories)", b.Name)
		}
		key = func(field string) string { return fmt.Sprintf("bundle %q: %s", b.Name, field) }
		if names[b.Name] {
			return bad(key("name"), toml.Key{"bundle", "name"}, "defined twice")
		}
		names[b.Name] = true
		if b.NodeID == "" {
			b.NodeID = c.NodeID
		}
		if b.NodeID == "" {
			return bad(key("node_id"), toml.Key{"node_id"}, "missing: set node_id at the top of the config or in the bundle; the installed certificate must name it")
		}
		if b.Layout == "" {
			return bad(key("layout"), toml.Key{"bundle", "layout"}, "missing: one of %s", strings.Join(rotate.Presets(), ", "))
		}
		o := rotate.Overrides{CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile, EnvFile: b.EnvFile, CRLFile: b.CRLFile, Env: b.Env,
			Owner: b.Owner, Group: b.Group}
		if b.Usage != nil {
			u, err := pki.ParseUsage(b.Usage)
			if err == nil && len(b.Usage) == 0 {
				err = fmt.Errorf("an empty list allows nothing; leave usage out for server and client auth")
			}
			if err != nil {
				return bad(key("usage"), toml.Key{"bundle", "usage"}, "%v", err)
			}
			o.Usage = u
		}
		if b.Dir != "" {
			// Clean: the watcher matches event paths against it, and
			// "/x/live/" is the same directory as "/x/live".
			if filepath.IsAbs(b.Dir) {
				b.Dir = filepath.Clean(b.Dir)
			}
			o.Dir = &b.Dir
		}
		for _, m := range []struct {
			src *FileMode
			dst **fs.FileMode
		}{{b.DirMode, &o.DirMode}, {b.CertMode, &o.CertMode}, {b.KeyMode, &o.KeyMode}} {
			if m.src != nil {
				v := fs.FileMode(*m.src)
				*m.dst = &v
			}
		}
		l, err := rotate.ResolveLayout(b.Layout, b.NodeID, o)
		if err != nil {
			return bad(key("layout"), toml.Key{"bundle", "layout"}, "%v", err)
		}
		if filepath.IsAbs(l.Dir) {
			l.Dir = filepath.Clean(l.Dir)
		}
		b.Resolved = l
		if other, dup := dirs[l.Dir]; dup {
			return bad(key("dir"), toml.Key{"bundle", "dir"}, "%s is also bundle %q's directory; each bundle needs its own", l.Dir, other)
		}
		dirs[l.Dir] = b.Name
		b.stateDir = c.StateDir
		b.caWarnShare = caWarn
		if b.Inbox == "" {
			b.Inbox = filepath.Join(c.StateDir, "inbox", b.Name)
		}
		if !filepath.IsAbs(b.Inbox) {
			return bad(key("inbox"), toml.Key{"bundle", "inbox"}, "%q must be an absolute path", b.Inbox)
		}
		b.Inbox = filepath.Clean(b.Inbox)
		if b.Inbox == l.Dir {
			return bad(key("inbox"), toml.Key{"bundle", "inbox"}, "the inbox must not be the live directory %s", l.Dir)
		}
		switch b.Mode {
		case "":
			b.Mode = ModePull
		case ModePull:
		case ModeCSR:
			if c.Source == nil {
				return bad(key("mode"), toml.Key{"bundle", "mode"}, "csr mode sends requests to the admin host: add a [source] section")
			}
		default:
			return bad(key("mode"), toml.Key{"bundle", "mode"}, "%q is not one of pull, csr", b.Mode)
		}
		if b.KeyType != "" {
			if _, err := pki.ParseKeyType(b.KeyType); err != nil {
				return bad(key("key_type"), toml.Key{"bundle", "key_type"}, "%v", err)
			}
		}
		if slices.Contains(strings.Split(b.RemoteDir, "/"), "..") {
			return bad(key("remote_dir"), toml.Key{"bundle", "remote_dir"}, "%q must not contain \"..\"", b.RemoteDir)
		}
		if err := b.Renewal().Check(0); err != nil {
			return bad(key("renew"), toml.Key{"bundle", "renew_before"}, "%v", err)
		}
		if m, err := rotate.ParseLinkMode(b.LinkMode); err != nil {
			return bad(key("link_mode"), toml.Key{"bundle", "link_mode"}, "%v", err)
		} else {
			b.linkMode = m
		}
		if b.Keep < 0 {
			return bad(key("keep"), toml.Key{"bundle", "keep"}, "%d: must be 0 (default %d) or more", b.Keep, rotate.DefaultKeep)
		}
		if b.Owners, err = platform.LookupOwner(b.Owner, b.Group); err != nil {
			return bad(key("owner"), toml.Key{"bundle", "owner"}, "%v", err)
		}
		for j := range b.Reload {
			if err := b.Reload[j].check(); err != nil {
				return bad(fmt.Sprintf("bundle %q: reload[%d]", b.Name, j), toml.Key{"bundle", "reload"}, "%v", err)
			}
		}
		if b.Check != nil && len(b.Check) == 0 {
			return bad(key("check"), toml.Key{"bundle", "check"}, "an empty command; remove the key or give an argument array")
		}
		for _, d := range []struct {
			field         string
			v             *Duration
			def, min, max time.Duration
		}{
			{"debounce", &b.Debounce, DefaultDebounce, 10 * time.Millisecond, 0},
			{"inbox_timeout", &b.InboxTimeout, DefaultInboxTimeout, time.Second, 0},
			{"check_timeout", &b.CheckTimeout, DefaultCheckTimeout, time.Second, MaxCheckTimeout},
		} {
			if d.v.Duration == 0 {
				d.v.Duration = d.def
			}
			if d.v.Duration < d.min {
				return bad(key(d.field), toml.Key{"bundle", d.field}, "%s is too short; at least %s", d.v.Duration, d.min)
			}
			if d.max > 0 && d.v.Duration > d.max {
				return bad(key(d.field), toml.Key{"bundle", d.field}, "%s is too long; at most %s (a check that takes longer is hung)", d.v.Duration, d.max)
			}
		}
		if b.Served != "" {
			if _, _, err := net.SplitHostPort(b.Served); err != nil {
				return bad(key("served"), toml.Key{"bundle", "served"}, "%q is not host:port (the daemon's TLS endpoint): %v", b.Served, err)
			}
		} else if b.ServedName != "" || b.ServedMismatch != "" {
			return bad(key("served"), toml.Key{"bundle", "served"}, "missing: served_name and served_mismatch go with served, the daemon's TLS endpoint")
		}
		switch b.ServedMismatch {
		case "":
			b.ServedMismatch = ServedReport
		case ServedReport, ServedRollback:
		default:
			return bad(key("served_mismatch"), toml.Key{"bundle", "served_mismatch"}, "%q is not one of report, rollback", b.ServedMismatch)
		}
		if b.ServedWait.Duration == 0 {
			b.ServedWait.Duration = DefaultServedWait
		}
		if b.ServedWait.Duration < 100*time.Millisecond || b.ServedWait.Duration > MaxServedWait {
			return bad(key("served_wait"), toml.Key{"bundle", "served_wait"}, "%s is out of range; between 100ms and %s", b.ServedWait, MaxServedWait)
		}
		if b.InboxTimeout.Duration < b.Debounce.Duration {
			return bad(key("inbox_timeout"), toml.Key{"bundle", "inbox_timeout"}, "%s is shorter than debounce %s", b.InboxTimeout, b.Debounce)
		}
	}
	return c.checkDirs(bad)
}

// checkDirs refuses bundles whose directories overlap: the agent takes
// every file of an inbox as a set for its bundle, and repairs every file of
// a live directory, so an inbox shared, inside a live directory or holding
// one would have two owners fighting over the same files.
func (c *Config) checkDirs(bad func(string, toml.Key, string, ...any) error) error {
	for i := range c.Bundles {
		b := &c.Bundles[i]
		key := func(field string) string { return fmt.Sprintf("bundle %q: %s", b.Name, field) }
		for j := range c.Bundles {
			o := &c.Bundles[j]
			whose := "bundle " + strconv.Quote(o.Name) + "'s"
			if i == j {
				whose = "its own"
			}
			switch {
			case j < i && b.Inbox == o.Inbox:
				return bad(key("inbox"), toml.Key{"bundle", "inbox"}, "%s is also bundle %q's inbox; each bundle needs its own", b.Inbox, o.Name)
			case j != i && b.Inbox == o.Resolved.Dir:
				return bad(key("inbox"), toml.Key{"bundle", "inbox"}, "%s is bundle %q's live directory; an inbox is a directory of its own", b.Inbox, o.Name)
			case pathInside(b.Inbox, o.Resolved.Dir):
				return bad(key("inbox"), toml.Key{"bundle", "inbox"}, "%s is inside %s live directory %s; put the inbox outside it (the default is <state_dir>/inbox/<bundle>)", b.Inbox, whose, o.Resolved.Dir)
			case pathInside(b.Resolved.Dir, o.Inbox):
				return bad(key("dir"), toml.Key{"bundle", "dir"}, "%s is inside %s inbox %s; a live directory must not be inside an inbox", b.Resolved.Dir, whose, o.Inbox)
			}
		}
	}
	return nil
}

// pathInside reports whether path p is strictly below directory dir; both
// are clean and absolute.
func pathInside(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// longestStep is the longest a legal step of the bundle's loop may take:
// an install whose check fails runs every reload action, the check, a
// rollback and every reload action again; a minute covers the files.
func (b *Bundle) longestStep() time.Duration {
	var reloads time.Duration
	for _, r := range b.Reload {
		reloads += r.Action().Timeout
	}
	step := reloads + time.Minute
	if len(b.Check) > 0 {
		step += b.CheckTimeout.Duration + reloads
	}
	if b.Served != "" {
		// The served check's waits and extra reloads, and a rollback's.
		step += ServedMaxReloads*(reloads+2*b.ServedWait.Duration) + reloads + 2*b.ServedWait.Duration
	}
	return step
}

// Renewal is the bundle's renewal policy.
func (b *Bundle) Renewal() rotate.RenewalPolicy {
	return rotate.RenewalPolicy{Before: b.RenewBefore.Duration, At: b.RenewAt}
}

// Spec is what rotate needs to manage the bundle.
func (b *Bundle) Spec() rotate.Spec {
	return rotate.Spec{Name: b.Name, Layout: b.Resolved, NodeID: b.NodeID, AllowCAChange: b.AllowCAChange,
		Keep: b.Keep, Owner: b.Owners, Renewal: b.Renewal(), CAWarnShare: b.caWarnShare, Link: b.linkMode}
}

func (r *Reload) check() error {
	n := 0
	for _, set := range []bool{r.Systemd != "", r.WindowsService != "", r.Signal != "" || r.Pidfile != "", len(r.Command) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("empty: set one of systemd, windows_service, signal with pidfile, or command")
	case n > 1:
		return errors.New("set only one of systemd, windows_service, signal (with pidfile), or command per [[bundle.reload]]")
	case r.Signal != "" && r.Pidfile == "":
		return errors.New("signal needs a pidfile to find the process")
	case r.Pidfile != "" && r.Signal == "":
		return errors.New("pidfile needs a signal to send (HUP, USR1, …)")
	case r.Signal != "":
		if _, err := platform.ParseSignal(r.Signal); err != nil {
			return err
		}
	case r.Shell && len(r.Command) != 1:
		return errors.New("with shell = true, command is one string for /bin/sh -c")
	case len(r.Command) > 0 && r.Command[0] == "":
		return errors.New("command has an empty program name")
	case r.Systemd != "" && strings.ContainsAny(r.Systemd, " /\t\n"):
		return fmt.Errorf("%q is not a systemd unit name", r.Systemd)
	case strings.ContainsAny(r.WindowsService, "/\\\t\n"):
		return fmt.Errorf("%q is not a Windows service name", r.WindowsService)
	case r.WindowsService != "" && runtime.GOOS != "windows":
		return fmt.Errorf("windows_service restarts a Windows service; this is %s: use systemd, signal or command", runtime.GOOS)
	}
	if r.Shell && len(r.Command) == 0 {
		return errors.New("shell = true goes with command")
	}
	if r.OnlyIfRunning && r.Systemd == "" && r.WindowsService == "" && r.Pidfile == "" {
		return errors.New("only_if_running needs a systemd unit, a Windows service or a pidfile to tell whether the service runs")
	}
	if r.Timeout.Duration < 0 {
		return errors.New("timeout is negative")
	}
	if r.Timeout.Duration > MaxReloadTimeout {
		return fmt.Errorf("timeout %s is too long; at most %s (a reload that takes longer is hung)", r.Timeout, MaxReloadTimeout)
	}
	return nil
}

// BundleNamed returns a bundle by name, or the only one when name is empty.
func (c *Config) BundleNamed(name string) (*Bundle, error) {
	if name == "" {
		if len(c.Bundles) == 1 {
			return &c.Bundles[0], nil
		}
		return nil, fmt.Errorf("config %s has %d bundles (%s); choose one with --bundle", c.Path, len(c.Bundles), strings.Join(c.BundleNames(), ", "))
	}
	for i := range c.Bundles {
		if c.Bundles[i].Name == name {
			return &c.Bundles[i], nil
		}
	}
	return nil, fmt.Errorf("config %s has no bundle %q; it has %s", c.Path, name, strings.Join(c.BundleNames(), ", "))
}

// BundleNames lists the bundles in config order.
func (c *Config) BundleNames() []string {
	var n []string
	for _, b := range c.Bundles {
		n = append(n, b.Name)
	}
	return slices.Clip(n)
}
