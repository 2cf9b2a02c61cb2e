package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// StateFileName is the agent's runtime state under state_dir: what
// `certkeeper status` and `check` merge with what they see on disk.
const StateFileName = "agent-state.json"

// StatePath is where a config's agent writes its runtime state.
func StatePath(c *Config) string { return filepath.Join(c.StateDir, StateFileName) }

// RuntimeState is the content of the state file.
type RuntimeState struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Stopped is set when the agent stopped cleanly; a state with a PID
	// that is gone and no Stopped means the agent died.
	Stopped time.Time     `json:"stopped,omitzero"`
	Config  string        `json:"config"`
	Bundles []BundleState `json:"bundles"`
}

// BundleState is what the agent knows of one bundle beyond its files.
type BundleState struct {
	// Files is how status and check judge the bundle's live files
	// (rotate.Status: expiry, damage, the CRL, this node's own
	// revocation). The daemon fills it in when it writes the fleet report
	// and the metrics (judged), so both say what check says; it is not
	// kept in the state file, since status and check read the files
	// themselves.
	Files *FilesHealth `json:"-"`

	Name       string    `json:"name"`
	Generation string    `json:"generation,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	RenewAt    time.Time `json:"renew_at,omitzero"`
	RenewalDue bool      `json:"renewal_due"`
	// RenewalError is a renewal policy that does not fit the installed
	// certificate (renew_before at or beyond its lifetime).
	RenewalError string `json:"renewal_error,omitempty"`
	// ExpiryCritical: the live certificate is within its critical
	// threshold (10% of its lifetime or 24 hours, whichever is less) of
	// expiry, or past it, and has not been renewed.
	ExpiryCritical bool `json:"expiry_critical,omitempty"`
	// NotInstalled says why no certificate is live ("nothing installed in
	// DIR", a damaged live bundle); empty when one is. A CA-only layout has
	// no leaf, and needs only its CA.
	NotInstalled string `json:"not_installed,omitempty"`
	// Waiting says why an inbox set is waiting for more files.
	Waiting string `json:"inbox_waiting,omitempty"`
	// Owed is what the live generation is still owed (its reload, its
	// check, a rollback's reload) while it is pending: see Owed.
	Owed         *OwedStatus `json:"owed,omitempty"`
	LastInstall  *Event      `json:"last_install,omitempty"`
	LastReload   *Event      `json:"last_reload,omitempty"`
	LastRepair   *Event      `json:"last_repair,omitempty"`
	LastCheck    *Event      `json:"last_check,omitempty"`
	LastRollback *Event      `json:"last_rollback,omitempty"`
	LastError    *Event      `json:"last_error,omitempty"`
	Source       *FetchState `json:"source,omitempty"`
	// Served is the served check of the bundle's daemon (bundle key
	// served): what its TLS endpoint serves, compared with the live
	// leaf. Nil when the bundle names no endpoint.
	Served   *ServedState   `json:"served,omitempty"`
	Counters Counters       `json:"counters"`
	Drift    []rotate.Drift `json:"unrepaired_drift,omitempty"`
}

// ServedState is what the agent last saw its daemon serve.
type ServedState struct {
	// Endpoint is the host:port connected to (bundle key served).
	Endpoint string `json:"endpoint"`
	// Serial is the serial of the leaf the endpoint served at Checked;
	// empty when the connection failed (Error says why).
	Serial string `json:"serial,omitempty"`
	// LiveSerial is the live leaf's serial it was compared with.
	LiveSerial string    `json:"live_serial,omitempty"`
	Checked    time.Time `json:"checked,omitzero"`
	// Match: the served leaf is the live one.
	Match bool `json:"match"`
	// Mismatches counts served checks in a row that did not match (a
	// failed connection counts), since the live generation changed.
	Mismatches int `json:"mismatches,omitempty"`
	// Error is the last failed check: the connection, the handshake, or
	// the mismatch, as text.
	Error string `json:"error,omitempty"`
	// Action is what the agent last did about a mismatch ("reloaded
	// again", "rolled back to ..", "reported").
	Action string `json:"action,omitempty"`
}

// Event is one thing that happened to a bundle.
type Event struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"`
	Detail string    `json:"detail,omitempty"`
	// Dir is where a rejected inbox set was moved.
	Dir string `json:"dir,omitempty"`
}

// Results of events.
const (
	ResultInstalled = "installed"
	ResultUnchanged = "unchanged"
	ResultRejected  = "rejected"
	ResultFailed    = "failed"
	ResultOK        = "ok"
)

// Counters count since the agent started.
type Counters struct {
	Installs       uint64 `json:"installs"`
	Reloads        uint64 `json:"reloads"`
	ReloadFailures uint64 `json:"reload_failures"`
	Repairs        uint64 `json:"repairs"`
	Rejected       uint64 `json:"rejected_inputs"`
	Rollbacks      uint64 `json:"rollbacks"`
	CheckFailures  uint64 `json:"check_failures"`
	SourceErrors   uint64 `json:"source_errors"`
	// Fetches counts calls of the Source (the admin host), successful or
	// not.
	Fetches uint64 `json:"fetches"`
}

// Health judges what the agent saw, for `check` and monitoring, beside
// what rotate judges from the files: a failed reload, a failed check (and
// the rollback it caused), a rejected inbox set or a failed install are
// WARNING until something newer succeeds; drift the agent can not repair
// is CRITICAL.
// Nothing installed is CRITICAL, as `check` says: no daemon can start.
func (s BundleState) Health() (rotate.Health, string) {
	h, text := rotate.OK, ""
	worse := func(x rotate.Health, t string) {
		if Severity(x) > Severity(h) {
			h, text = x, t
		}
	}
	if f := s.Files; f != nil && f.Health != rotate.OK {
		worse(f.Health, f.Text)
	}
	if s.NotInstalled != "" {
		worse(rotate.Critical, s.NotInstalled)
	}
	if len(s.Drift) > 0 {
		worse(rotate.Critical, "drift the agent can not repair: "+s.Drift[0].String())
	}
	if e := s.LastCheck; e != nil && e.Result == ResultFailed {
		worse(rotate.Warning, fmt.Sprintf("check failed at %s: %s", rotate.Stamp(e.Time), e.Detail))
	}
	if e := s.LastReload; e != nil && e.Result == ResultFailed {
		worse(rotate.Warning, fmt.Sprintf("reload failed at %s: %s", rotate.Stamp(e.Time), e.Detail))
	}
	if s.Owed != nil {
		worse(rotate.Warning, s.Owed.Text())
	}
	if e := s.LastInstall; e != nil && (e.Result == ResultRejected || e.Result == ResultFailed) {
		worse(rotate.Warning, fmt.Sprintf("inbox set %s at %s: %s", e.Result, rotate.Stamp(e.Time), e.Detail))
	}
	if s.RenewalDue && s.Source != nil && s.Source.Failures > 0 {
		worse(rotate.Warning, fmt.Sprintf("renewal due; %d fetches failed, next try %s: %s", s.Source.Failures, rotate.Stamp(s.Source.NextTry), s.Source.LastError))
	}
	if s.RenewalDue && s.Source != nil && s.Source.NothingNewer > 0 {
		worse(rotate.Warning, fmt.Sprintf("renewal due; source has nothing newer (%d fetches since the window opened at %s), next try %s",
			s.Source.NothingNewer, rotate.Stamp(s.RenewAt), rotate.Stamp(s.Source.NextTry)))
	}
	if sv := s.Served; sv != nil && !sv.Match {
		switch {
		case sv.Serial != "" && sv.Serial != sv.LiveSerial:
			worse(rotate.Critical, fmt.Sprintf("daemon at %s serves serial %s, not the live serial %s (checked %s; %s)", sv.Endpoint, sv.Serial, sv.LiveSerial, rotate.Stamp(sv.Checked), orNone(sv.Action)))
		default:
			worse(rotate.Warning, fmt.Sprintf("served check of %s failed at %s: %s", sv.Endpoint, rotate.Stamp(sv.Checked), sv.Error))
		}
	}
	if s.ExpiryCritical {
		why := "no source renews it: drop a renewed bundle into the inbox"
		switch src := s.Source; {
		case src != nil && src.Failures > 0:
			why = fmt.Sprintf("%d fetches failed, last: %s", src.Failures, src.LastError)
		case src != nil && src.NothingNewer > 0:
			why = "the source has nothing newer: re-issue on the admin host (certkeeper ca renew)"
		case src != nil:
			why = "renewal pending, next try " + rotate.Stamp(src.NextTry)
		}
		worse(rotate.Critical, fmt.Sprintf("certificate expires %s and has not been renewed: %s", rotate.Stamp(s.NotAfter), why))
	}
	return h, text
}

// FilesHealth is rotate.Status's judgement of a bundle's live files.
type FilesHealth struct {
	Health rotate.Health
	Text   string
}

// bundleState is a BundleState shared between a bundle's loop and the
// daemon's writers.
type bundleState struct {
	mu sync.Mutex
	s  BundleState
}

func (b *bundleState) update(f func(s *BundleState)) {
	b.mu.Lock()
	f(&b.s)
	b.mu.Unlock()
}

func (b *bundleState) snapshot() BundleState {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	if s.Source != nil {
		src := *s.Source
		s.Source = &src
	}
	if s.Served != nil {
		sv := *s.Served
		s.Served = &sv
	}
	return s
}

// ReadState reads a config's agent state file; a missing file is not an
// error (no agent ran), and gives nil.
func ReadState(c *Config) (*RuntimeState, error) {
	b, err := tomlcap.ReadFile("agent state", StatePath(c), tomlcap.Limits{Bytes: MaxStateSize, Depth: 1 << 30})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := ParseState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", StatePath(c), err)
	}
	return st, nil
}

// MaxStateSize and maxStateObjects bound the state file read: a bundle's
// state is under 2 KiB in about ten objects, and within both any input
// parses in under 50 MiB (FuzzStateFile); each object decoded into a
// BundleState costs about 1.6 KiB, so their count is bounded too.
const (
	MaxStateSize    = 256 << 10
	maxStateObjects = 4096
)

// ParseState decodes a state file's content.
func ParseState(data []byte) (*RuntimeState, error) {
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("%d bytes, larger than the %s limit for state files", len(data), tomlcap.Size(MaxStateSize))
	}
	if n := bytes.Count(data, []byte("{")); n > maxStateObjects {
		return nil, fmt.Errorf("%d objects, more than the limit of %d for state files", n, maxStateObjects)
	}
	var st RuntimeState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("damaged (the agent rewrites it on its next change): %w", err)
	}
	return &st, nil
}

// writeFileAtomic writes a file under a temporary name in its directory
// and renames it into place: a reader sees the old or the new content. A
// missing directory is made with dirMode (whatever the umask): 0711 for
// the state directory (passable, not listable), 0755 for the metrics
// textfile's (node_exporter, not root, lists it). durable also syncs the
// file and then its directory before returning, so that what was reported
// written survives a power loss.
func writeFileAtomic(path string, data []byte, mode, dirMode fs.FileMode, durable bool) error {
	if err := mkdirMode(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return platform.AtomicWrite{Mode: mode, Owner: platform.NoOwner, NoSync: !durable}.WriteFile(path, data)
}

// mkdirMode makes a missing directory (and its parents) and gives it mode
// whatever the umask; an existing one is left as it is.
func mkdirMode(dir string, mode fs.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// AgentView is the agent's side of one bundle, as `status` shows it.
type AgentView struct {
	// Running is whether the agent that wrote the state still runs.
	Running bool      `json:"running"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Stopped time.Time `json:"stopped,omitzero"`
	BundleState
}

// Report is one bundle as `status` and `check` show it: the files on disk
// (rotate.Status) and what the agent knows (nil when no agent state).
type Report struct {
	rotate.Status
	// Owed is what the live generation is still owed (see Owed), nil
	// when nothing: a change whose reload or check has not run yet.
	Owed  *OwedStatus `json:"owed,omitempty"`
	Agent *AgentView  `json:"agent,omitempty"`
}

// Severity ranks healths when several are combined into one, as the
// monitoring plugins combine them (max_state_alt): CRITICAL, WARNING,
// UNKNOWN, OK. What could not be read (UNKNOWN) never hides what is known
// to be CRITICAL, such as nothing installed beside a damaged state file.
func Severity(h rotate.Health) int {
	switch h {
	case rotate.Critical:
		return 3
	case rotate.Warning:
		return 2
	case rotate.Unknown:
		return 1
	}
	return 0
}

// Reports inspects every bundle of a config and merges the agent's state.
// The health is the worse of the two; an agent that died (its pid gone
// without a clean stop) is a WARNING: nothing repairs or renews meanwhile.
func Reports(c *Config) []Report {
	st, err := ReadState(c)
	var out []Report
	for i := range c.Bundles {
		b := &c.Bundles[i]
		r := Report{Status: rotate.NewManager(b.Spec()).Status()}
		worse := func(h rotate.Health, text string) {
			r.Problems = append(r.Problems, text)
			if Severity(h) > Severity(r.Health) {
				r.Health, r.HealthText = h, text
			}
		}
		if err != nil {
			worse(rotate.Unknown, "agent state: "+err.Error())
		}
		// What is owed is on disk, whether an agent runs or not.
		var owed *OwedStatus
		if o, step, oerr := NewPipeline(b, slog.New(slog.DiscardHandler)).OwedNow(); oerr != nil {
			worse(rotate.Warning, "reload or check owed, perhaps: "+oerr.Error())
		} else {
			owed = o.Status(step)
			r.Owed = owed
		}
		if st != nil {
			for _, bs := range st.Bundles {
				if bs.Name != b.Name {
					continue
				}
				v := &AgentView{Running: st.Stopped.IsZero() && platform.ProcessAlive(st.PID), PID: st.PID, Started: st.Started, Stopped: st.Stopped, BundleState: bs}
				r.Agent = v
				if r.Leaf != nil && bs.Serial != "" && bs.Serial != r.Leaf.Serial {
					// The certificate changed since the agent last looked
					// (installed by hand while it was stopped): its view of
					// the renewal is about the old one.
					bs.RenewalDue, bs.ExpiryCritical = false, false
				}
				if r.Generation != "" {
					// Installed since the agent last looked; what is
					// wrong with it, the files say.
					bs.NotInstalled = ""
				}
				bs.Owed = owed
				v.Owed = owed
				bs = settled(c, b, bs)
				if h, text := bs.Health(); h != rotate.OK {
					worse(h, text)
				}
				if !v.Running && st.Stopped.IsZero() {
					worse(rotate.Warning, fmt.Sprintf("the agent (pid %d) is not running and did not stop cleanly; nothing repairs or renews this bundle", st.PID))
				}
			}
		}
		if owed != nil && r.Agent == nil {
			worse(rotate.Warning, owed.Text())
		}
		if c.NodeID == StarterNodeID && r.Generation == "" {
			// The package's starter config: nothing to install yet.
			r.Health, r.HealthText, r.Problems = rotate.OK, NotConfiguredText(c), nil
		}
		out = append(out, r)
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "no action yet"
	}
	return s
}
