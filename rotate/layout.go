package rotate

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
)

// Layout says where a bundle lives on a node and what its files are called,
// in the names the cluster's daemon expects.
type Layout struct {
	// Preset is the name the layout started from ("flocker-node", "custom").
	Preset string
	Dir    string
	// CAFile receives the cluster CA. Empty means the CA is not written
	// (Clusterio's controller serves a self-signed certificate that is its
	// own CA).
	CAFile string
	// CertFile receives the leaf followed by any intermediates; KeyFile its
	// private key. Both are empty for a bundle that carries only a CA.
	CertFile string
	KeyFile  string
	// EnvFile, when set, receives environment variables that point a daemon
	// at the installed files (Mesos reads LIBPROCESS_SSL_*).
	EnvFile string
	Env     map[string]string
	// CRLFile, when set, receives the cluster CA's certificate revocation
	// list (PEM), for daemons that check one (nginx ssl_crl, etcd
	// --client-crl-file, reign's signing.crl). Empty: a CRL that arrives
	// with the bundle is not installed.
	CRLFile string

	DirMode  fs.FileMode
	CertMode fs.FileMode
	KeyMode  fs.FileMode
	Owner    string
	Group    string

	// RequireCN makes the node id rule strict: the common name itself must
	// be the node id (reign checks only the CN).
	RequireCN bool
	// SelfSignedLeaf accepts a self-signed leaf that is its own CA
	// (Clusterio's documented `openssl req -x509` set-up).
	SelfSignedLeaf bool
	// Usage is what the daemon uses the certificate for: the leaf's key
	// usages must allow it. Zero means pki.UsageBoth.
	Usage pki.Usage
}

// NeedUsage is the usage the leaf must allow.
func (l Layout) NeedUsage() pki.Usage {
	if l.Usage == 0 {
		return pki.UsageBoth
	}
	return l.Usage
}

// hiddenTrustFile keeps the cluster CA of a layout that writes none
// (Clusterio's controller): the daemon does not read it, but certkeeper
// must remember what it trusts, or the next bundle could bring any CA.
const hiddenTrustFile = ".certkeeper-ca.pem"

// TrustFile is where the live generation keeps the cluster CA: the
// layout's CA file, or a hidden one when the layout writes none.
func (l Layout) TrustFile() string {
	if l.CAFile != "" || l.CAOnly() {
		return l.CAFile
	}
	return hiddenTrustFile
}

// Modes is the mode each of the layout's files is installed with, by name.
func (l Layout) Modes() map[string]fs.FileMode {
	m := map[string]fs.FileMode{}
	for _, n := range []string{l.TrustFile(), l.CertFile, l.EnvFile, l.CRLFile} {
		if n != "" && l.CertMode != 0 {
			m[n] = l.CertMode
		}
	}
	if l.KeyFile != "" && l.KeyMode != 0 {
		m[l.KeyFile] = l.KeyMode
	}
	return m
}

// CAOnly reports whether the bundle installs only a CA certificate.
func (l Layout) CAOnly() bool { return l.CertFile == "" && l.KeyFile == "" }

// Default modes, from the Flocker guide's chmod steps.
const (
	DefaultDirMode  fs.FileMode = 0o700
	DefaultCertMode fs.FileMode = 0o644
	DefaultKeyMode  fs.FileMode = 0o600
)

var presets = map[string]Layout{
	"flocker-node":    {Dir: "/etc/flocker", CAFile: "cluster.crt", CertFile: "node.crt", KeyFile: "node.key"},
	"flocker-control": {Dir: "/etc/flocker", CAFile: "cluster.crt", CertFile: "control-service.crt", KeyFile: "control-service.key"},
	"mesos": {Dir: "/etc/mesos/pki", CAFile: "ca.pem", CertFile: "localhost.pem", KeyFile: "localhost-key.pem",
		EnvFile: "mesos-ssl.env"},
	"glow": {Dir: "/etc/glow/ssl", CAFile: "ca.cer", CertFile: "localhost.cer", KeyFile: "localhost.key"},
	// Clusterio's controller serves HTTPS; hosts log in with tokens.
	"clusterio":      {Dir: "/etc/clusterio", CertFile: "cert.pem", KeyFile: "key.pem", SelfSignedLeaf: true, Usage: pki.UsageServer},
	"clusterio-host": {Dir: "/etc/clusterio", CAFile: "cert.pem", SelfSignedLeaf: true},
	// reign checks its own certificate's CN at start-up, and a node
	// dialling another sets tls.Config.ServerName to the other's id, which
	// Go verifies against SANs only; its listener asks for no client
	// certificate, so only server auth matters. "reign" keeps the names
	// of reign's README.certificate.md (create_node_cert), "reign-init"
	// those its reign_init command writes.
	"reign":      {Dir: "/etc/reign", CAFile: "signing.crt", CRLFile: "signing.crl", CertFile: "node.{node_id}.crt", KeyFile: "node.{node_id}.key", RequireCN: true, Usage: pki.UsageServer},
	"reign-init": {Dir: "/etc/reign", CAFile: "reign_ca.crt", CRLFile: "reign_ca.crl", CertFile: "reign_node.{node_id}.crt", KeyFile: "reign_node.{node_id}.key", RequireCN: true, Usage: pki.UsageServer},
	"custom":     {},
}

// Presets lists the preset names, sorted.
func Presets() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Overrides are the per-bundle fields of a config that replace a preset's.
// A nil pointer keeps the preset's value; a pointer to "" clears it (to stop
// writing the CA file, say).
type Overrides struct {
	Dir, CAFile, CertFile, KeyFile, EnvFile, CRLFile *string
	Env                                              map[string]string
	DirMode, CertMode, KeyMode                       *fs.FileMode
	Owner, Group                                     string
	// Usage replaces the preset's usage when not zero.
	Usage pki.Usage
}

// ResolveLayout starts from a preset, applies overrides, expands
// {node_id} in file names and checks that the result is usable.
func ResolveLayout(preset, nodeID string, o Overrides) (Layout, error) {
	if preset == "" {
		preset = "custom"
	}
	l, ok := presets[preset]
	if !ok {
		return Layout{}, fmt.Errorf("unknown layout %q; known layouts: %s", preset, strings.Join(Presets(), ", "))
	}
	l.Preset = preset
	// A preset's /etc/flocker is C:\ProgramData\certkeeper\flocker on Windows.
	l.Dir = platform.NativeDir(l.Dir)
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&l.Dir, o.Dir)
	set(&l.CAFile, o.CAFile)
	set(&l.CertFile, o.CertFile)
	set(&l.KeyFile, o.KeyFile)
	set(&l.EnvFile, o.EnvFile)
	set(&l.CRLFile, o.CRLFile)
	l.DirMode, l.CertMode, l.KeyMode = DefaultDirMode, DefaultCertMode, DefaultKeyMode
	for _, m := range []struct {
		dst *fs.FileMode
		src *fs.FileMode
	}{{&l.DirMode, o.DirMode}, {&l.CertMode, o.CertMode}, {&l.KeyMode, o.KeyMode}} {
		if m.src != nil {
			*m.dst = *m.src
		}
	}
	l.Owner, l.Group = o.Owner, o.Group
	if o.Usage != 0 {
		l.Usage = o.Usage
	}
	if l.EnvFile != "" && preset == "mesos" {
		l.Env = l.mesosEnv()
	}
	for k, v := range o.Env {
		if l.Env == nil {
			l.Env = map[string]string{}
		}
		l.Env[k] = v
	}
	for _, f := range []*string{&l.CAFile, &l.CertFile, &l.KeyFile, &l.CRLFile} {
		*f = strings.ReplaceAll(*f, "{node_id}", nodeID)
	}
	return l, l.check()
}

// mesosEnv follows the Mesos SSL guide, adding CA_FILE and certificate
// verification: the guide's CA_DIR alone needs c_rehash-ed names, and mutual
// TLS is the point of installing a client certificate.
func (l Layout) mesosEnv() map[string]string {
	p := func(name string) string { return filepath.Join(l.Dir, name) }
	return map[string]string{
		"LIBPROCESS_SSL_ENABLED":           "true",
		"LIBPROCESS_SSL_SUPPORT_DOWNGRADE": "false",
		"LIBPROCESS_SSL_CERT_FILE":         p(l.CertFile),
		"LIBPROCESS_SSL_KEY_FILE":          p(l.KeyFile),
		"LIBPROCESS_SSL_CA_FILE":           p(l.CAFile),
		"LIBPROCESS_SSL_CA_DIR":            l.Dir,
		"LIBPROCESS_SSL_VERIFY_CERT":       "true",
		"LIBPROCESS_SSL_REQUIRE_CERT":      "true",
	}
}

func (l Layout) check() error {
	if l.Dir == "" {
		return fmt.Errorf("layout %q: dir is required", l.Preset)
	}
	if !filepath.IsAbs(l.Dir) {
		return fmt.Errorf("layout %q: dir %q must be an absolute path", l.Preset, l.Dir)
	}
	if (l.CertFile == "") != (l.KeyFile == "") {
		return fmt.Errorf("layout %q: cert_file and key_file go together (cert_file %q, key_file %q)", l.Preset, l.CertFile, l.KeyFile)
	}
	if l.CAOnly() && l.CAFile == "" {
		return fmt.Errorf("layout %q: no files to install; set cert_file and key_file, or ca_file", l.Preset)
	}
	if l.CAFile == "" && !l.SelfSignedLeaf && !l.CAOnly() {
		return fmt.Errorf("layout %q: ca_file is required (only a self-signed layout such as clusterio may omit it)", l.Preset)
	}
	var names []string
	if l.CRLFile != "" && l.CAOnly() {
		return fmt.Errorf("layout %q: crl_file %q needs a bundle with a certificate; a CA-only bundle installs no CRL", l.Preset, l.CRLFile)
	}
	for _, n := range []string{l.CAFile, l.CertFile, l.KeyFile, l.EnvFile, l.CRLFile} {
		if n == "" {
			continue
		}
		if err := CheckName(n); err != nil {
			return fmt.Errorf("layout %q: %w", l.Preset, err)
		}
		if slices.Contains(names, n) {
			return fmt.Errorf("layout %q: file name %q is used twice", l.Preset, n)
		}
		names = append(names, n)
	}
	if l.KeyMode&0o007 != 0 {
		return fmt.Errorf("layout %q: key_mode %04o lets other users read the private key; use 0600 or 0400 (or 0640 with a group)", l.Preset, l.KeyMode)
	}
	if l.KeyMode&0o030 != 0 {
		return fmt.Errorf("layout %q: key_mode %04o lets the group change the private key; use 0640 or 0440 at most", l.Preset, l.KeyMode)
	}
	if l.KeyMode&0o040 != 0 {
		// Group-readable on purpose: a daemon that drops privileges
		// (mosquitto, PostgreSQL's ssl-cert) reads its key through the
		// bundle's group. Without a named group the group is whatever this
		// process runs as, which nobody chose.
		if l.Group == "" {
			return fmt.Errorf("layout %q: key_mode %04o lets the group read the private key, but the bundle names no group; set group = \"<the daemon's group>\" or use 0600", l.Preset, l.KeyMode)
		}
		if l.DirMode&0o010 == 0 {
			return fmt.Errorf("layout %q: key_mode %04o is for group %q, but dir_mode %04o keeps the group out of the directory; set dir_mode = \"0750\"", l.Preset, l.KeyMode, l.Group, l.DirMode)
		}
	}
	if l.KeyMode&0o400 == 0 {
		return fmt.Errorf("layout %q: key_mode %04o does not let the owner read the key", l.Preset, l.KeyMode)
	}
	if l.DirMode&0o022 != 0 {
		return fmt.Errorf("layout %q: dir_mode %04o lets other users add files; use 0700 or 0750", l.Preset, l.DirMode)
	}
	if l.DirMode&0o700 != 0o700 {
		return fmt.Errorf("layout %q: dir_mode %04o must give the owner rwx", l.Preset, l.DirMode)
	}
	if l.CertMode&0o022 != 0 {
		return fmt.Errorf("layout %q: cert_mode %04o lets other users change certificates; use 0644", l.Preset, l.CertMode)
	}
	for k := range l.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n\"'$") {
			return fmt.Errorf("layout %q: env variable name %q is not valid", l.Preset, k)
		}
	}
	return nil
}

// CheckName refuses file names that are not plain names in one directory:
// a name is data, never a path.
func CheckName(n string) error {
	switch {
	case n == "" || n == "." || n == "..":
		return fmt.Errorf("file name %q is not a file name", n)
	case strings.ContainsAny(n, "/\\\x00"):
		return fmt.Errorf("file name %q contains a path separator or NUL; names are plain file names", n)
	case strings.HasPrefix(n, ".."):
		return fmt.Errorf("file name %q starts with \"..\", which certkeeper reserves for its generations", n)
	case strings.ContainsAny(n, "\n\r"):
		return fmt.Errorf("file name %q contains a line break", n)
	}
	return nil
}

// EnvFileContent renders the environment file: KEY=value lines readable by
// systemd's EnvironmentFile= and by `set -a; . FILE` in a shell.
func (l Layout) EnvFileContent() []byte {
	keys := make([]string, 0, len(l.Env))
	for k := range l.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by certkeeper; edits are replaced at the next install.\n")
	b.WriteString("# Use with systemd EnvironmentFile= or `set -a; . THIS_FILE; set +a`.\n")
	for _, k := range keys {
		v := l.Env[k]
		if strings.ContainsAny(v, " \t\"'\\$`#") {
			v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(v) + `"`
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return []byte(b.String())
}

// Rules returns a preset's validation rules for files that are not being
// installed anywhere (`certkeeper verify`): the directory does not matter,
// and "custom" gets generic names.
func Rules(preset, nodeID string) (Layout, error) {
	root := "/"
	if filepath.Separator == '\\' {
		root = `C:\` // "/" is not absolute on Windows
	}
	o := Overrides{Dir: &root}
	if preset == "" || preset == "custom" {
		ca, cert, key := "ca.crt", "cert.crt", "cert.key"
		o.CAFile, o.CertFile, o.KeyFile = &ca, &cert, &key
	}
	return ResolveLayout(preset, nodeID, o)
}
