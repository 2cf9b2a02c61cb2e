package rotate

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
)

// Spec is everything rotate needs to know about one bundle on this node.
type Spec struct {
	Name          string
	Layout        Layout
	NodeID        string
	AllowCAChange bool
	Keep          int
	Owner         platform.Owner
	Renewal       RenewalPolicy
	// CAWarnShare is the share of the cluster CA's lifetime left at which
	// Status warns that the CA needs replacing (0: DefaultCAWarnShare).
	CAWarnShare float64
	// Link is how the live names reach the live generation (LinkAuto:
	// symlinks, or on Windows copies where links cannot be made).
	Link LinkMode
}

// DefaultKeep is how many previous generations are kept for rollback.
const DefaultKeep = 2

// Manager runs the pipeline for one bundle: classify, validate, stage,
// swap. It does not reload daemons; its caller does, when Changed.
type Manager struct {
	Spec  Spec
	Store *Store
	Now   func() time.Time
}

// NewManager returns a manager for a bundle.
func NewManager(s Spec) *Manager {
	if s.Keep <= 0 {
		s.Keep = DefaultKeep
	}
	st := NewStore(s.Layout, s.Owner, s.Keep)
	st.Link = s.Link
	return &Manager{Spec: s, Store: st, Now: time.Now}
}

func (m *Manager) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

// Result says what an install did.
type Result struct {
	Generation Generation
	Changed    bool
	// Repaired is the drift an install of unchanged content restored
	// (see Installed); it needs no reload.
	Repaired []Drift
	Bundle   *Bundle
}

// Live parses the live generation. It returns ErrNoGeneration before the
// first install.
func (m *Manager) Live() (*Bundle, Generation, error) {
	g, files, err := m.Store.Live()
	if err != nil {
		return nil, g, err
	}
	b, err := ReadBundle(files, m.Spec.Layout)
	return b, g, err
}

func (m *Manager) policy() Policy {
	return Policy{Layout: m.Spec.Layout, NodeID: m.Spec.NodeID, AllowCAChange: m.Spec.AllowCAChange, Now: m.now()}
}

// Validate classifies and validates inputs against the live bundle without
// installing anything.
func (m *Manager) Validate(inputs []Input, p Policy) (*Bundle, error) {
	live, _, err := m.Live()
	switch {
	case errors.Is(err, ErrNoGeneration):
		live = m.handCopied()
	case err != nil:
		// A damaged live bundle can not vouch for a CA or lend its key; the
		// candidate must then stand on its own.
		live = nil
	}
	return Validate(Classify(inputs), p, live)
}

// handCopied is the bundle an admin copied by hand into the directory
// before certkeeper's first install. The install adopts it as a generation
// before swapping in the new one, so it is the live bundle: its CA is the
// trust anchor the candidate's CA is checked against, and its key may
// complete a renewed leaf. When not every file parses, only a CA that does
// still vouches (a bundle from another CA stays a CA change); a key is
// lent only from a whole bundle.
func (m *Manager) handCopied() *Bundle {
	l := m.Spec.Layout
	files, err := m.Store.HandCopied([]string{l.TrustFile(), l.CertFile, l.KeyFile})
	if err != nil || len(files) == 0 {
		return nil
	}
	b, err := ReadBundle(files, l)
	if err != nil {
		if len(b.CAs) == 0 {
			return nil
		}
		return &Bundle{CAs: b.CAs}
	}
	return b
}

// Install validates inputs and, if they pass, makes them the live
// generation. Byte-identical content changes nothing (Changed is false).
func (m *Manager) Install(inputs []Input, source string) (Result, error) {
	return m.install(inputs, source, m.policy())
}

// InstallNewer is Install for pulled bundles: a leaf issued before the live
// one is refused, so a stale source never takes a node back in time.
func (m *Manager) InstallNewer(inputs []Input, source string) (Result, error) {
	p := m.policy()
	p.RefuseOlder = true
	return m.install(inputs, source, p)
}

// Deliver is Install (or InstallNewer, when newer) with beforeSwap run
// under the store's lock just before the new generation becomes live (see
// Store.InstallDecided): the agent records there that its reload is owed.
func (m *Manager) Deliver(inputs []Input, source string, newer bool, beforeSwap func(Generation) error) (Result, error) {
	p := m.policy()
	p.RefuseOlder = newer
	return m.installHook(inputs, source, p, beforeSwap)
}

func (m *Manager) install(inputs []Input, source string, p Policy) (Result, error) {
	return m.installHook(inputs, source, p, nil)
}

// installHook validates against the live generation and swaps under one
// hold of the store's lock, so no other installer can change the live
// generation between the decision and the swap.
func (m *Manager) installHook(inputs []Input, source string, p Policy, beforeSwap func(Generation) error) (Result, error) {
	var b *Bundle
	in, err := m.Store.InstallDecided(source, func() ([]File, error) {
		var err error
		if b, err = m.Validate(inputs, p); err != nil {
			return nil, err
		}
		return Plan(b, m.Spec.Layout), nil
	}, beforeSwap)
	if err != nil {
		return Result{}, err
	}
	return Result{Generation: in.Generation, Changed: in.Changed, Repaired: in.Repaired, Bundle: b}, nil
}

// Rollback makes the previous generation live again. Unless force, the
// previous generation must still pass validation (an expired or damaged one
// is refused).
func (m *Manager) Rollback(force bool) (from, to Generation, err error) {
	return m.RollbackHook(force, nil)
}

// RollbackHook is Rollback with beforeSwap run under the store's lock
// just before the previous generation becomes live again. The previous
// generation is judged under the same lock.
func (m *Manager) RollbackHook(force bool, beforeSwap func(from, to Generation) error) (from, to Generation, err error) {
	var check func(Generation, map[string][]byte) error
	if !force {
		check = func(prev Generation, files map[string][]byte) error {
			var inputs []Input
			for name, data := range files {
				if name != m.Spec.Layout.EnvFile {
					inputs = append(inputs, Input{Name: prev.Name + "/" + name, Data: data})
				}
			}
			p := m.policy()
			p.AllowCAChange = true // going back to the CA it had is the point
			if _, err := Validate(Classify(inputs), p, nil); err != nil {
				return fmt.Errorf("previous generation %s does not validate (use --force to roll back anyway): %w", prev.Name, err)
			}
			return nil
		}
	}
	return m.Store.RollbackDecided(check, beforeSwap)
}

// JitterFor derives a certificate's renewal jitter from its fingerprint:
// uniform across a fleet, so renewals of certificates issued together
// spread out, yet stable for one certificate, so `status`, `check` and the
// agent agree on the time and a restart does not move it.
func JitterFor(c *x509.Certificate) float64 {
	sum := sha256.Sum256(append([]byte("certkeeper renewal jitter\x00"), c.Raw...))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
}

// RenewalTime is the live leaf's renewal time under the bundle's policy.
func (m *Manager) RenewalTime(leaf *x509.Certificate) (time.Time, error) {
	return RenewalTime(leaf.NotBefore, leaf.NotAfter, m.Spec.Renewal, JitterFor(leaf))
}

// Status is what `status` and `check` report about one bundle.
type Status struct {
	Name       string       `json:"name"`
	Layout     string       `json:"layout"`
	Dir        string       `json:"dir"`
	NodeID     string       `json:"node_id,omitempty"`
	Generation string       `json:"generation,omitempty"`
	Installed  time.Time    `json:"installed,omitzero"`
	Source     string       `json:"source,omitempty"`
	Files      []FileStatus `json:"files"`
	Leaf       *pki.Info    `json:"leaf,omitempty"`
	CA         []pki.Info   `json:"ca,omitempty"`
	CRL        *CRLInfo     `json:"crl,omitempty"`
	KeyMatch   bool         `json:"key_match"`
	Chain      string       `json:"chain"`
	RenewAt    time.Time    `json:"renew_at,omitzero"`
	TimeLeft   string       `json:"time_left,omitempty"`
	// SecondsLeft is the leaf's time left in whole seconds, negative once
	// expired: the one number scripts compare (docs/json.md).
	SecondsLeft *int64   `json:"seconds_left,omitempty"`
	Health      Health   `json:"health"`
	HealthText  string   `json:"health_text"`
	Problems    []string `json:"problems,omitempty"`
	Previous    []string `json:"previous_generations,omitempty"`
	// LinkMode is "copy" when the live names are copies, not links (see
	// LinkMode), and LinkModeWhy says why; both empty with links.
	LinkMode    LinkMode `json:"link_mode,omitempty"`
	LinkModeWhy string   `json:"link_mode_why,omitempty"`
	// Swapping is the generation a copy-mode swap is still making live
	// (its journal is there: a live file held open on Windows, or a crash),
	// empty when none is under way; the live files are then partly its.
	Swapping string `json:"swapping,omitempty"`
}

// FileStatus describes one visible file of a bundle.
type FileStatus struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Path    string `json:"path"`
	Mode    string `json:"mode"`
	Owner   string `json:"owner,omitempty"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// Status inspects the bundle without changing anything.
func (m *Manager) Status() Status {
	l, now := m.Spec.Layout, m.now()
	st := Status{Name: m.Spec.Name, Layout: l.Preset, Dir: l.Dir, NodeID: m.Spec.NodeID, Health: Unknown}
	problem := func(h Health, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		st.Problems = append(st.Problems, msg)
		if st.Health == Unknown || h > st.Health {
			st.Health = h
			st.HealthText = msg
		}
	}
	b, gen, err := m.Live()
	if errors.Is(err, ErrNoGeneration) {
		st.Health, st.HealthText = Critical, "nothing installed in "+l.Dir
		st.Problems = append(st.Problems, st.HealthText)
		return st
	}
	st.Generation, st.Installed, st.Source = gen.Name, gen.Installed, gen.Source
	if mode, why, err := m.Store.LinkMode(); err == nil && mode == LinkCopy {
		st.LinkMode, st.LinkModeWhy = mode, why
	}
	if to, serr := m.Store.Swapping(); serr == nil && to != "" {
		st.Swapping = to
		problem(Critical, "mid-swap from %s to %s: the swap journal %s is there, so the live files are partly %s's (a file held open by another process, or an interrupted swap); the agent finishes the swap at its next repair, and reloads after it",
			gen.Name, to, filepath.Join(l.Dir, swapJournal), to)
	}
	if err != nil && gen.Files == nil {
		// The directory, ..data or ..meta.json could not be read (a mode
		// that makes the directory untrusted, a damaged link): that is
		// the problem, and the one to show. Each file would only read as
		// "not in the live generation", with advice to install again
		// that the same error refuses.
		problem(Critical, "%v", err)
		return st
	}
	if gens, gerr := m.Store.Generations(); gerr == nil {
		for _, g := range gens {
			if g.Name != gen.Name {
				st.Previous = append(st.Previous, g.Name)
			}
		}
	}
	st.Files = m.fileStatus(gen)
	if err != nil {
		problem(Critical, "live bundle is damaged: %v", err)
	}
	for _, f := range st.Files {
		if !f.OK {
			problem(Critical, "%s: %s", f.Name, f.Problem)
		}
	}
	if b == nil {
		return st
	}
	for _, c := range b.CAs {
		st.CA = append(st.CA, pki.Describe(c))
	}
	if len(b.CAs) > 0 {
		if h, text := CAExpiryHealth(now, b.CAs, m.Spec.CAWarnShare); h != OK {
			problem(h, "%s", text)
		}
	}
	if l.CAOnly() {
		if len(b.CAs) == 0 {
			problem(Critical, "no CA certificate installed")
			return st
		}
		h, text := ExpiryHealth(now, b.CAs[0].NotBefore, b.CAs[0].NotAfter, b.CAs[0].NotAfter)
		if st.Health == Unknown {
			st.Health, st.HealthText = h, text
		}
		return st
	}
	if b.Leaf == nil {
		problem(Critical, "no certificate installed")
		return st
	}
	info := pki.Describe(b.Leaf)
	st.Leaf = &info
	st.KeyMatch = b.Key != nil && pki.KeyMatches(b.Leaf, b.Key.Signer)
	if !st.KeyMatch {
		problem(Critical, "private key does not match the certificate")
	}
	st.Chain = "ok"
	if err := pki.Verify(b.Leaf, b.Intermediates, b.CAs, now); err != nil {
		st.Chain = err.Error()
		if now.Before(b.Leaf.NotAfter) && now.After(b.Leaf.NotBefore) {
			problem(Critical, "certificate %v", err)
		}
	}
	refuse, warn := identity(b.Leaf, b.Intermediates, b.CAs, l, m.Spec.NodeID, now, st.Chain == "ok")
	for _, f := range refuse {
		problem(Critical, "%s: %s (%s)", l.CertFile, f.reason, f.hint)
	}
	for _, f := range warn {
		problem(Warning, "%s: %s (%s)", l.CertFile, f.reason, f.hint)
	}
	if l.CRLFile != "" {
		if b.CRLErr != nil {
			problem(Critical, "%v", b.CRLErr)
		} else if len(b.CRLs) > 0 {
			// The CRL that goes stale first (of one per CA during a
			// rotation) is the one to watch.
			info := crlInfo(pki.EarliestCRL(b.CRLs), l.CRLFile)
			if len(b.CRLs) > 1 {
				info.CRLs = len(b.CRLs)
			}
			st.CRL = &info
			for _, f := range CRLHealth(now, b.CRLs, b.CAs, b.Leaf, l.CRLFile) {
				problem(f.Health, "%s", f.Text)
			}
		}
	}
	st.TimeLeft = Age(b.Leaf.NotAfter.Sub(now))
	secs := int64(b.Leaf.NotAfter.Sub(now) / time.Second)
	st.SecondsLeft = &secs
	if now.After(b.Leaf.NotAfter) {
		st.TimeLeft = "expired " + st.TimeLeft + " ago"
	}
	renewAt, rerr := m.RenewalTime(b.Leaf)
	if rerr != nil {
		problem(Unknown, "renewal time: %v", rerr)
		return st
	}
	st.RenewAt = renewAt
	h, text := ExpiryHealth(now, b.Leaf.NotBefore, b.Leaf.NotAfter, renewAt)
	if st.Health == Unknown || h > st.Health {
		st.Health, st.HealthText = h, text
	}
	return st
}

func (m *Manager) fileStatus(gen Generation) []FileStatus {
	l := m.Spec.Layout
	roles := map[string]string{}
	add := func(name, role string) {
		if name != "" {
			if _, ok := roles[name]; !ok {
				roles[name] = role
			}
		}
	}
	add(l.CertFile, "cert")
	add(l.KeyFile, "key")
	add(l.CAFile, "ca")
	add(l.TrustFile(), "ca (kept, not read by the daemon)")
	add(l.EnvFile, "env")
	add(l.CRLFile, "crl")
	// The same judgement the agent repairs by: mode, owner (the configured
	// one, else the one each file was created with), content, links.
	problems := map[string]string{}
	var dirs []FileStatus
	if o, err := m.Store.Inspect(); err == nil {
		for _, d := range FindDrift(o) {
			if d.Kind == DriftDirMode || d.Kind == DriftDirOwner {
				if len(dirs) > 0 && dirs[len(dirs)-1].Name == d.Name {
					dirs[len(dirs)-1].Problem += "; " + d.Detail
					continue
				}
				od := o.LiveDir
				if d.Name != "." {
					od = o.GenDir
				}
				dirs = append(dirs, FileStatus{Name: d.Name, Role: "directory", Path: filepath.Join(l.Dir, d.Name), Problem: d.Detail,
					Mode: fmt.Sprintf("%04o", od.Mode), Owner: platform.UserName(od.UID) + ":" + platform.GroupName(od.GID)})
				continue
			}
			if p, seen := problems[d.Name]; seen {
				problems[d.Name] = p + "; " + d.Detail
			} else {
				problems[d.Name] = d.Detail
			}
		}
	}
	var out []FileStatus
	for _, name := range []string{l.TrustFile(), l.CertFile, l.KeyFile, l.EnvFile, l.CRLFile} {
		if name == "" || (len(out) > 0 && out[len(out)-1].Name == name) {
			continue
		}
		if _, inGen := gen.Files[name]; !inGen && name == l.CRLFile {
			continue // no CRL published yet: nothing to judge
		}
		fst := FileStatus{Name: name, Role: roles[name], Path: filepath.Join(l.Dir, name)}
		if _, inGen := gen.Files[name]; !inGen {
			fst.Problem = "not in the live generation (layout changed? install again)"
		} else if fi, err := os.Stat(fst.Path); err == nil {
			fst.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
			if uid, gid, ok := platform.FileOwner(fi); ok {
				fst.Owner = platform.UserName(uid) + ":" + platform.GroupName(gid)
			}
		}
		if fst.Problem == "" {
			fst.Problem = problems[name]
		}
		fst.OK = fst.Problem == ""
		out = append(out, fst)
	}
	if d, ok := problems[dataLink]; ok {
		out = append(out, FileStatus{Name: dataLink, Role: "link", Path: filepath.Join(l.Dir, dataLink), Problem: d})
	}
	return append(out, dirs...)
}
