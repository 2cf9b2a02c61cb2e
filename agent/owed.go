package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// Owed is what a generation that became live is still owed: its reload
// actions, its check, or (after a failed check) the reloads of the
// rollback. It is written durably, under the store's lock, before the
// swap makes the generation live, and cleared only once the actions have
// run; whoever finds it next (the agent at start-up, after SIGHUP and on
// every rescan; `certkeeper install` of the same files) runs what is left.
// So a change is followed by its reload however the agent dies: once, or
// twice when the kill landed during the reload itself.
//
// The record is <state_dir>/owed/<bundle>.json, beside the refused list:
// the agent and the commands both write it, and it must outlive restarts.
type Owed struct {
	// Generation is the generation the actions are owed to; they run only
	// while it is live.
	Generation string    `json:"generation"`
	Since      time.Time `json:"since"`
	Source     string    `json:"source,omitempty"`
	// Reload: the bundle's reload actions have not finished since the
	// swap. Check: its check has not.
	Reload bool `json:"reload"`
	Check  bool `json:"check"`
	// RollbackFrom is set on the record of a rollback after a failed
	// check: while RollbackFrom is still live (killed before the swap),
	// the rollback is made again.
	RollbackFrom string `json:"rollback_from,omitempty"`
	// Prior is what the generation this one replaced was still owed when
	// the swap was prepared; it applies again if that one stays live (the
	// swap never happened).
	Prior *Owed `json:"prior,omitempty"`
}

// String says what is owed, for status and logs.
func (o *Owed) String() string {
	var what string
	switch {
	case o.RollbackFrom != "":
		what = "the reload after the rollback from " + o.RollbackFrom
	case o.Reload && o.Check:
		what = "reload and check"
	case o.Reload:
		what = "reload"
	default:
		what = "check"
	}
	return fmt.Sprintf("%s of generation %s, owed since %s", what, o.Generation, rotate.Stamp(o.Since))
}

// OwedStatus is what a bundle's live generation is still owed, as status
// (and status --json's "owed"), check, the metrics and the fleet report
// show it (docs/json.md).
type OwedStatus struct {
	// Reload: the bundle's reload actions are owed (after a change, or
	// after a rollback). Check: its check command is.
	Reload bool `json:"reload"`
	Check  bool `json:"check"`
	// Rollback: a rollback after a failed check was interrupted before
	// its swap; it is made again, then its reloads.
	Rollback bool `json:"rollback,omitempty"`
	// Generation is the generation the actions are owed to.
	Generation string `json:"generation"`
	// RollbackFrom is the generation a rollback left, when it is one.
	RollbackFrom string    `json:"rollback_from,omitempty"`
	Since        time.Time `json:"since"`
	// Waiting: a copy-mode swap is still under way (a live file held open
	// on Windows); what is owed runs once it is complete.
	Waiting bool `json:"waiting,omitempty"`
	// Detail says it in words, as status does.
	Detail string `json:"detail"`
}

// Status is what o says is owed while step applies (PlanOwed), for
// status and check; nil when nothing is.
func (o *Owed) Status(step OwedStep) *OwedStatus {
	if o == nil || step == OwedNothing {
		return nil
	}
	s := &OwedStatus{Reload: o.Reload, Check: o.Check, Generation: o.Generation, RollbackFrom: o.RollbackFrom, Since: o.Since, Detail: o.String()}
	if step == OwedRollback {
		s.Rollback, s.Reload = true, true
		s.Detail = "the rollback after a failed check, from " + o.RollbackFrom + " to " + o.Generation
	}
	if step == OwedWait {
		s.Waiting = true
		s.Detail += "; waits until the swap to it is complete (a live file is held open)"
	}
	return s
}

// Label names what is owed in two or three words: "reload owed", "check
// owed", "reload and check owed", "rollback owed". Only a reload that is
// owed is called one.
func (s *OwedStatus) Label() string {
	switch {
	case s.Rollback:
		return "rollback owed"
	case s.Reload && s.Check:
		return "reload and check owed"
	case s.Check:
		return "check owed"
	}
	return "reload owed"
}

// Text is the label and the detail: "check owed: check of generation …".
func (s *OwedStatus) Text() string {
	if s == nil {
		return ""
	}
	return s.Label() + ": " + s.Detail
}

// OwedStep is what to do about an owed record, given the live generation.
type OwedStep int

const (
	// OwedNothing: no record, or one for a generation that never became
	// live (killed before the swap): the record is dropped.
	OwedNothing OwedStep = iota
	// OwedRun: run what the record says is owed to the live generation.
	OwedRun
	// OwedRollback: a rollback after a failed check was interrupted
	// before its swap: make it again, then its reloads.
	OwedRollback
	// OwedWait: a copy-mode swap is still under way (its journal is there:
	// a live file held open on Windows, see rotate.HeldError). The record
	// is kept, and nothing runs against the torn set: what it owes runs
	// once recovery has finished the swap.
	OwedWait
)

// PlanOwed decides what an owed record asks for while live is the live
// generation; the record returned is the one that applies (o, or its
// Prior). It is a pure function: the agent's start-up, its rescans and
// `certkeeper install` all act on its answer.
func PlanOwed(o *Owed, live string) (OwedStep, *Owed) {
	switch {
	case o == nil || live == "":
		return OwedNothing, nil
	case o.Generation == live:
		if !o.Reload && !o.Check {
			return OwedNothing, nil
		}
		return OwedRun, o
	case o.RollbackFrom != "" && o.RollbackFrom == live:
		return OwedRollback, o
	case o.Prior != nil:
		return PlanOwed(o.Prior, live)
	}
	return OwedNothing, nil
}

// PlanOwedSwapping is PlanOwed while swapping, the generation a copy-mode
// swap is still making live, is not "" (rotate.Store.Swapping): then
// nothing runs yet (OwedWait), and the record that applies is the one for
// the generation the swap makes live, else the one for ..data's. With no
// swap under way it is PlanOwed.
func PlanOwedSwapping(o *Owed, live, swapping string) (OwedStep, *Owed) {
	if swapping == "" {
		return PlanOwed(o, live)
	}
	for _, g := range []string{swapping, live} {
		if step, applies := PlanOwed(o, g); step != OwedNothing {
			return OwedWait, applies
		}
	}
	return OwedNothing, nil
}

func (b *Bundle) owedPath() string {
	return filepath.Join(b.stateDir, "owed", b.Name+".json")
}

// ReadOwed returns a bundle's owed record, nil when nothing is owed. A
// record that does not parse is reported: what it owed is unknown.
func ReadOwed(b *Bundle) (*Owed, error) {
	if b.stateDir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(b.owedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("owed actions %s: %w", b.owedPath(), err)
	}
	var o Owed
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("owed actions %s: damaged (remove it after reloading the daemon by hand): %w", b.owedPath(), err)
	}
	return &o, nil
}

// changeOwed reads, changes and writes the owed record under the lock of
// its directory; f returns the new record, nil to remove it. The write is
// durable (file and directory synced) when it returns nil.
func changeOwed(b *Bundle, f func(o *Owed) *Owed) error {
	if b.stateDir == "" {
		return nil
	}
	if _, err := os.Lstat(b.owedPath()); err != nil && len(b.Reload) == 0 && len(b.Check) == 0 {
		return nil // nothing is ever owed, and nothing was recorded
	}
	dir := filepath.Dir(b.owedPath())
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) && f(nil) == nil {
		return nil // nothing recorded, nothing to record
	}
	if err := mkdirMode(dir, 0o700); err != nil {
		return fmt.Errorf("owed actions: %w", err)
	}
	unlock, err := platform.LockDir(dir)
	if err != nil {
		return fmt.Errorf("owed actions: %w", err)
	}
	defer unlock()
	cur, _ := ReadOwed(b) // a damaged record is replaced
	next := f(cur)
	if next == nil {
		if cur == nil {
			return nil
		}
		// Windows refuses the removal while a reader (status, the
		// pipeline) has the file open for a moment: retried, bounded.
		if err := platform.RetryBusy(func() error { return os.Remove(b.owedPath()) }); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("owed actions: %w", err)
		}
		return platform.SyncDir(dir)
	}
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(b.owedPath(), append(data, '\n'), 0o600, 0o700, true)
}

// oweChange records, before the swap to g, that g is owed its reload and
// check. What the generation it replaces was still owed is kept as the
// record's Prior, should the swap not happen.
func oweChange(b *Bundle, g rotate.Generation, source string, now time.Time) error {
	return changeOwed(b, func(cur *Owed) *Owed {
		o := &Owed{Generation: g.Name, Since: now, Source: source, Reload: len(b.Reload) > 0, Check: len(b.Check) > 0}
		if step, prior := PlanOwed(cur, g.Replaced); step != OwedNothing {
			p := *prior
			p.Prior = nil
			o.Prior = &p
		}
		if !o.Reload && !o.Check && o.Prior == nil {
			return cur
		}
		return o
	})
}

// oweRollback records, before the swap back to `to`, that the rollback's
// reloads are owed.
func oweRollback(b *Bundle, from, to rotate.Generation, now time.Time) error {
	return changeOwed(b, func(*Owed) *Owed {
		if len(b.Reload) == 0 {
			return nil
		}
		return &Owed{Generation: to.Name, Since: now, Source: "rollback from " + from.Name, Reload: true, RollbackFrom: from.Name}
	})
}

// oweRollbackByHand records, before `certkeeper rollback` swaps back to
// `to`, that its reloads are owed; unlike a rollback after a failed check,
// it is not made again when the swap did not happen.
func oweRollbackByHand(b *Bundle, from, to rotate.Generation, now time.Time) error {
	return changeOwed(b, func(*Owed) *Owed {
		if len(b.Reload) == 0 {
			return nil
		}
		return &Owed{Generation: to.Name, Since: now, Source: "certkeeper rollback from " + from.Name, Reload: true}
	})
}

// paidOwed records that some of what gen was owed has run; a record for
// another generation (a newer change) is left alone.
func paidOwed(b *Bundle, gen string, reload, check bool) error {
	return changeOwed(b, func(cur *Owed) *Owed {
		if cur == nil || cur.Generation != gen {
			return cur
		}
		o := *cur
		if reload {
			o.Reload = false
		}
		if check {
			o.Check = false
		}
		o.Prior = nil // gen is live: what the one before it was owed is moot
		if !o.Reload && !o.Check {
			return nil
		}
		return &o
	})
}

// dropOwed removes a record that no longer applies (PlanOwed said
// OwedNothing), unless it changed meanwhile.
func dropOwed(b *Bundle, seen *Owed) error {
	return changeOwed(b, func(cur *Owed) *Owed {
		if cur == nil || seen == nil || cur.Generation != seen.Generation || !cur.Since.Equal(seen.Since) {
			return cur
		}
		return nil
	})
}
