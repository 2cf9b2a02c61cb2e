package distribute

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// Inventory is the admin host's list of nodes to push to (DESIGN.md, "Push
// inventory"): [defaults], then one [[node]] table per node.
type Inventory struct {
	Path  string
	Nodes []Node
}

// Node is one inventory entry with the defaults applied.
type Node struct {
	// ID names the bundle: it comes from <ca-dir>/nodes/<id>/.
	ID string
	// NodeID is the name the leaf must carry for --install: the id, or
	// HOST for an id "control-HOST" (the CA's name for a control service).
	NodeID string
	SSH    Target
	// Dir is the remote directory: the agent's inbox, or the live
	// directory with --install.
	Dir    string
	Layout string
	// Mode is how the node renews from the admin host, for `certkeeper
	// sshd-config`: ModePull, ModeCSR or ModePullCSR.
	Mode string
	// Account is the node's account on the admin host for pulling, and
	// PublicKey its SSH key (authorized_keys), for `certkeeper sshd-config`.
	Account       string
	PublicKey     string
	PublicKeyFile string
	// Report is the remote path of the agent's fleet report (fleet
	// status, push --canary); empty means the default state_dir's.
	Report string
	// Probe is the daemon's TLS endpoint (host:port) for fleet status
	// --probe, and ProbeName the server name to ask for.
	Probe     string
	ProbeName string
	// Line is where the node's [[node]] table starts in the inventory.
	Line int
}

// Node modes (the inventory's mode key): which accounts the admin host
// gives a node.
const (
	// ModePull: a chroot account that reads the node's bundle (SFTP).
	ModePull = "pull"
	// ModeCSR: a line in the CA account's authorized_keys that lets the
	// node's key run only `certkeeper ca sign` for its own id. The first
	// bundle comes by push (or the node's inbox).
	ModeCSR = "csr"
	// ModePullCSR: both; the node pulls its first bundle from its chroot
	// and renews by CSR from then on (the agent's [source] csr_user).
	ModePullCSR = "pull+csr"
)

// Pulls reports whether the node has a chroot account to pull from.
func (n Node) Pulls() bool { return n.Mode != ModeCSR }

// SendsCSR reports whether the node's key may run `ca sign`.
func (n Node) SendsCSR() bool { return n.Mode == ModeCSR || n.Mode == ModePullCSR }

// settings are the keys [defaults] and [[node]] share.
type settings struct {
	User         string    `toml:"user"`
	Port         int       `toml:"port"`
	IdentityFile string    `toml:"identity_file"`
	KnownHosts   string    `toml:"known_hosts"`
	Target       string    `toml:"target"`
	Layout       string    `toml:"layout"`
	Timeout      *Duration `toml:"timeout"`
	Mode         string    `toml:"mode"`
	Report       string    `toml:"report"`
}

type nodeTable struct {
	ID            string `toml:"id"`
	Address       string `toml:"address"`
	NodeID        string `toml:"node_id"`
	Account       string `toml:"account"`
	PublicKey     string `toml:"public_key"`
	PublicKeyFile string `toml:"public_key_file"`
	Probe         string `toml:"probe"`
	ProbeName     string `toml:"probe_name"`
	settings
}

type inventoryFile struct {
	Defaults settings    `toml:"defaults"`
	Node     []nodeTable `toml:"node"`
}

var (
	settingKeys = []string{"identity_file", "known_hosts", "layout", "mode", "port", "report", "target", "timeout", "user"}
	nodeKeys    = append([]string{"account", "address", "id", "node_id", "probe", "probe_name", "public_key", "public_key_file"}, settingKeys...)
)

// Duration is a TOML duration string such as "30s"; a bare number is an
// error, since it could mean seconds or nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("write a duration as a string with a unit, such as \"30s\" (got %v)", v)
	}
	p, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (examples: \"30s\", \"2m\")", s)
	}
	if p <= 0 {
		return fmt.Errorf("%q: a timeout must be positive", s)
	}
	d.Duration = p
	return nil
}

// InventoryError is an inventory problem, with the line where known.
type InventoryError struct {
	Path string
	Line int
	Key  string
	Msg  string
}

func (e *InventoryError) Error() string {
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

// InventoryLimits bound an inventory before it is parsed: 192 KiB holds
// about 2000 nodes of three keys, and within these any input parses in
// under 50 MiB (see FuzzParseInventory). An inventory has no table deeper
// than [[node]], so 3 levels is room to spare.
var InventoryLimits = tomlcap.Limits{Bytes: 192 << 10, Depth: 3}

// LoadInventory reads and checks an inventory file: only a regular file,
// opened without blocking (a FIFO at the path is refused at once).
func LoadInventory(path string) (*Inventory, error) {
	data, err := tomlcap.ReadFile("inventory", path, InventoryLimits)
	if err != nil {
		return nil, err
	}
	return ParseInventory(path, data)
}

// ParseInventory decodes an inventory strictly: an unknown key (even one
// that differs from a known key only in case), a bare number for a
// duration, a missing id, address, user or target, or a duplicate id is an
// error naming the key and its line. Relative local paths (identity_file,
// known_hosts, public_key_file) are relative to the inventory's directory;
// "~/" is the current user's home.
func ParseInventory(path string, data []byte) (*Inventory, error) {
	if err := tomlcap.Check("inventory", path, data, InventoryLimits); err != nil {
		return nil, err
	}
	var f inventoryFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &InventoryError{Path: path, Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &InventoryError{Path: path, Msg: err.Error()}
	}
	lines := tableLines(data)
	node := -1
	for _, k := range md.Keys() {
		if len(k) == 1 && k[0] == "node" {
			node++
		}
		if msg := unknownKey(k); msg != "" {
			line := lines.keyLine(k)
			if len(k) >= 2 && k[0] == "node" && node >= 0 {
				if l := lines.keyInNode(node, k[1]); l > 0 {
					line = l
				}
			}
			return nil, &InventoryError{Path: path, Line: line, Key: k.String(), Msg: msg}
		}
	}
	if len(f.Node) == 0 {
		return nil, &InventoryError{Path: path, Msg: "no [[node]] tables: an inventory lists at least one node"}
	}
	inv := &Inventory{Path: path}
	ids := map[string]int{}
	accounts := map[string]string{}
	for i, nt := range f.Node {
		line := lines.nodeLine(i)
		n, err := resolveNode(path, f.Defaults, nt)
		if err != nil {
			var ie *InventoryError
			if errors.As(err, &ie) {
				ie.Path = path
				ie.Line = lines.keyInNode(i, ie.Key)
				if ie.Line == 0 {
					ie.Line = line
				}
				ie.Key = nodeKeyLabel(i, nt.ID, ie.Key)
				return nil, ie
			}
			return nil, err
		}
		n.Line = line
		if prev, dup := ids[n.ID]; dup {
			return nil, &InventoryError{Path: path, Line: line, Key: nodeKeyLabel(i, nt.ID, "id"), Msg: fmt.Sprintf("%q is also the id of the node at line %d", n.ID, prev)}
		}
		ids[n.ID] = line
		if other, dup := accounts[n.Account]; dup {
			return nil, &InventoryError{Path: path, Line: line, Key: nodeKeyLabel(i, nt.ID, "account"),
				Msg: fmt.Sprintf("%q is also node %q's account on the admin host; set account for one of them", n.Account, other)}
		}
		accounts[n.Account] = n.ID
		inv.Nodes = append(inv.Nodes, n)
	}
	return inv, nil
}

func nodeKeyLabel(i int, id, key string) string {
	label := fmt.Sprintf("node[%d]", i)
	if id != "" {
		label = fmt.Sprintf("node %q", id)
	}
	if key == "" {
		return label
	}
	return label + "." + key
}

// unknownKey returns why a decoded key is not allowed, or "".
func unknownKey(k toml.Key) string {
	switch {
	case len(k) == 1 && (k[0] == "defaults" || k[0] == "node"):
		return ""
	case len(k) == 1:
		return "unknown key; an inventory has [defaults] and [[node]] tables"
	case len(k) == 2 && k[0] == "defaults":
		if slices.Contains(settingKeys, k[1]) {
			return ""
		}
		return "unknown key; known keys here: " + strings.Join(sorted(settingKeys), ", ")
	case len(k) == 2 && k[0] == "node":
		if slices.Contains(nodeKeys, k[1]) {
			return ""
		}
		return "unknown key; known keys here: " + strings.Join(sorted(nodeKeys), ", ")
	}
	return "unknown key; values here are plain strings and numbers"
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// lineIndex locates tables and keys, for errors the decoder gives no
// position for: which [[node]] starts where, and where a key is set.
type lineIndex struct {
	lines []string
	nodes []int // 0-based line of each [[node]] header
}

func tableLines(data []byte) lineIndex {
	li := lineIndex{lines: strings.Split(string(data), "\n")}
	for i, l := range li.lines {
		if h, ok := header(l); ok && h == "[node]" {
			li.nodes = append(li.nodes, i)
		}
	}
	return li
}

// header returns a table header's name ("defaults", "[node]" for an array
// table) and whether the line is one.
func header(line string) (string, bool) {
	s := strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return "", false
	}
	s = strings.ReplaceAll(s[1:len(s)-1], " ", "")
	return s, true
}

func keyName(line string) (string, bool) {
	name, _, ok := strings.Cut(line, "=")
	if !ok {
		return "", false
	}
	return strings.Trim(strings.TrimSpace(name), `"'`), true
}

// keyLine finds the line that sets k.
func (li lineIndex) keyLine(k toml.Key) int {
	table := ""
	for i, l := range li.lines {
		if h, ok := header(l); ok {
			table = strings.Trim(h, "[]")
			if len(k) == 1 && table == k[0] {
				return i + 1
			}
			continue
		}
		name, ok := keyName(l)
		if !ok {
			continue
		}
		if (len(k) == 1 && table == "" && name == k[0]) || (len(k) == 2 && table == k[0] && name == k[1]) {
			return i + 1
		}
	}
	return 0
}

func (li lineIndex) nodeLine(i int) int {
	if i < len(li.nodes) {
		return li.nodes[i] + 1
	}
	return 0
}

// keyInNode finds the line setting key inside the i-th [[node]].
func (li lineIndex) keyInNode(i int, key string) int {
	if i >= len(li.nodes) || key == "" {
		return 0
	}
	for j := li.nodes[i] + 1; j < len(li.lines); j++ {
		if _, ok := header(li.lines[j]); ok {
			break
		}
		if name, ok := keyName(li.lines[j]); ok && name == key {
			return j + 1
		}
	}
	return 0
}

var (
	accountRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

func bad(key, format string, args ...any) error {
	return &InventoryError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

func resolveNode(path string, d settings, nt nodeTable) (Node, error) {
	pick := func(node, def string) string {
		if node != "" {
			return node
		}
		return def
	}
	s := settings{
		User:         pick(nt.User, d.User),
		IdentityFile: pick(nt.IdentityFile, d.IdentityFile),
		KnownHosts:   pick(nt.KnownHosts, d.KnownHosts),
		Target:       pick(nt.Target, d.Target),
		Layout:       pick(nt.Layout, d.Layout),
		Mode:         pick(nt.Mode, d.Mode),
		Report:       pick(nt.Report, d.Report),
		Port:         nt.Port,
		Timeout:      nt.Timeout,
	}
	if s.Port == 0 {
		s.Port = d.Port
	}
	if s.Timeout == nil {
		s.Timeout = d.Timeout
	}
	n := Node{ID: nt.ID, NodeID: nt.NodeID, Dir: s.Target, Layout: s.Layout, Mode: s.Mode, Account: nt.Account, PublicKey: strings.TrimSpace(nt.PublicKey)}
	if n.ID == "" {
		return n, bad("id", "missing: every node needs an id; its bundle comes from <ca-dir>/nodes/<id>/")
	}
	if err := pki.ValidateNodeID(n.ID); err != nil {
		// The CA's rule: an id it refuses could never be issued or signed.
		return n, bad("id", "%v; a node id is %s, as `certkeeper ca` requires (it is the certificate's CN and names the directory nodes/<id>)", err, pki.NodeIDRule)
	}
	if n.NodeID == "" {
		n.NodeID = n.ID
		if h, ok := strings.CutPrefix(n.ID, "control-"); ok && h != "" {
			n.NodeID = h
		}
	}
	if nt.Address == "" {
		return n, bad("address", "missing: the node's host name or IP address")
	}
	if s.Port < 0 || s.Port > 65535 {
		return n, bad("port", "%d is not a TCP port", s.Port)
	}
	addr := nt.Address
	if h, p, err := net.SplitHostPort(addr); err == nil {
		pn, _ := strconv.Atoi(p)
		if nt.Port != 0 && pn != nt.Port {
			return n, bad("address", "%q has port %s but port = %d; give the port once", addr, p, nt.Port)
		}
		addr, s.Port = h, pn
	}
	if _, err := hostPort(addr, s.Port); err != nil {
		return n, bad("address", "%v", err)
	}
	if s.User == "" {
		return n, bad("user", "missing: the account to log in as on the node (set it in [defaults] or the node)")
	}
	if s.Target == "" {
		return n, bad("target", "missing: the remote directory (the agent's inbox, or the live directory with --install)")
	}
	if err := CheckRemoteDir(s.Target); err != nil {
		return n, bad("target", "%v", err)
	}
	switch n.Mode {
	case "":
		n.Mode = ModePull
	case ModePull, ModeCSR, ModePullCSR:
	default:
		return n, bad("mode", "%q is not one of %q (a chroot account to pull from), %q (the CA account's forced `ca sign`), %q (both)", n.Mode, ModePull, ModeCSR, ModePullCSR)
	}
	if s.Layout != "" && !slices.Contains(rotate.Presets(), s.Layout) {
		return n, bad("layout", "unknown layout %q; known layouts: %s", s.Layout, strings.Join(rotate.Presets(), ", "))
	}
	if s.KnownHosts == "" {
		s.KnownHosts = "~/.ssh/known_hosts"
	}
	local := func(key, p string) (string, error) {
		if p == "" {
			return "", nil
		}
		p, err := ExpandHome(p)
		if err != nil {
			return "", bad(key, "%v", err)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		return p, nil
	}
	var err error
	if s.IdentityFile, err = local("identity_file", s.IdentityFile); err != nil {
		return n, err
	}
	if s.KnownHosts, err = local("known_hosts", s.KnownHosts); err != nil {
		return n, err
	}
	if n.PublicKeyFile, err = local("public_key_file", nt.PublicKeyFile); err != nil {
		return n, err
	}
	if n.PublicKey != "" && n.PublicKeyFile != "" {
		return n, bad("public_key", "set public_key or public_key_file, not both")
	}
	if n.PublicKey != "" {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(n.PublicKey)); err != nil {
			return n, bad("public_key", "not an SSH public key (%v); give one line of a .pub file", err)
		}
	}
	if n.Account == "" {
		n.Account = defaultAccount(n.ID)
	}
	if !accountRe.MatchString(n.Account) {
		return n, bad("account", "%q is not a valid account name (lower case letters, digits, '_' and '-', at most 32)", n.Account)
	}
	if s.Report != "" && !strings.HasPrefix(s.Report, "/") {
		return n, bad("report", "%q must be an absolute path on the node (the agent's state_dir/report.json)", s.Report)
	}
	n.Report = s.Report
	if nt.Probe != "" {
		if _, _, err := net.SplitHostPort(nt.Probe); err != nil {
			return n, bad("probe", "%q is not host:port (the daemon's TLS endpoint): %v", nt.Probe, err)
		}
	}
	n.Probe, n.ProbeName = nt.Probe, nt.ProbeName
	n.SSH = Target{Address: addr, Port: s.Port, User: s.User, IdentityFile: s.IdentityFile, KnownHosts: s.KnownHosts}
	if s.Timeout != nil {
		n.SSH.Timeout = s.Timeout.Duration
	}
	return n, nil
}

// defaultAccount derives the node's account on the admin host from its
// id: "ck-" and the id in lower case, with what an account name can not
// hold replaced by '-', cut to 32 characters.
func defaultAccount(id string) string {
	var b strings.Builder
	b.WriteString("ck-")
	for _, r := range strings.ToLower(id) {
		if b.Len() >= 32 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Select returns the nodes named in only (all when only is empty), in
// inventory order; an id not in the inventory is an error.
func (inv *Inventory) Select(only []string) ([]Node, error) {
	if len(only) == 0 {
		return inv.Nodes, nil
	}
	want := map[string]bool{}
	for _, id := range only {
		want[id] = true
	}
	var out []Node
	for _, n := range inv.Nodes {
		if want[n.ID] {
			out = append(out, n)
			delete(want, n.ID)
		}
	}
	if len(want) > 0 {
		var missing []string
		for id := range want {
			missing = append(missing, id)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("inventory %s has no node %s", inv.Path, strings.Join(missing, ", "))
	}
	return out, nil
}
