package rotate

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/platform"
)

// A held live file. On Windows a process that holds a file open without
// FILE_SHARE_DELETE (many daemons open their certificate and key that
// way, for a reload or for their lifetime) blocks every rename over it
// (measured under Wine 8: ERROR_ACCESS_DENIED; real Windows answers that
// or ERROR_SHARING_VIOLATION). The copy mode replaces each live file by
// such a rename, so a swap can meet one:
//
//   - before the first rename, the swap waits (the same way) until no live
//     file is held (waitUnheld), so a file held for a daemon's lifetime
//     leaves the old set whole rather than torn;
//   - the rename is tried again a few times, waiting a little longer each
//     time (heldBackoff, about 300 ms in all): a daemon that reads its
//     files at a reload closes them quickly;
//   - still held, the swap stops there with a *HeldError naming the file
//     and what holds it. Its journal (..swap) stays: the live set is
//     mid-swap (Status says so), and the next recovery (Repair, which the
//     agent runs on every wake; an install; a rollback) finishes the swap
//     forward. The reload owed to the new generation waits for that: the
//     agent reloads only once the set is whole (agent.OwedWait).
//
// On Unix a rename replaces a file whoever holds it open, so none of this
// happens there (platform.RenameBusy is always false).

// heldBackoff is how long each retry of a rename over a held file waits:
// 310 ms in all, then the swap gives up until the next recovery.
var heldBackoff = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond}

// renameStep is what to do after one try of a rename over a live file.
type renameStep int

const (
	// renameDone: it succeeded.
	renameDone renameStep = iota
	// renameRetry: the target may be held open; wait, then try again.
	renameRetry
	// renameHeld: still held after every retry: stop the swap, journal
	// kept, and report the file (HeldError).
	renameHeld
	// renameFailed: an error no wait helps (the disk is full, ...).
	renameFailed
)

// decideRename is the retry decision, given whether try number tries (0
// for the first) failed, whether its error may be a held target
// (platform.RenameBusy), and the retry schedule: it says what to do, and
// how long to wait first when it is a retry.
func decideRename(failed, busy bool, tries int, backoff []time.Duration) (renameStep, time.Duration) {
	switch {
	case !failed:
		return renameDone, 0
	case !busy:
		return renameFailed, 0
	case tries < len(backoff):
		return renameRetry, backoff[tries]
	}
	return renameHeld, 0
}

// HeldError is a swap stopped by a live file another process holds open
// (see above). The live set is mid-swap until the next recovery finishes
// it.
type HeldError struct {
	// Path is the live file, Generation the generation the swap makes live.
	Path       string
	Generation string
	// Held: Windows confirms a process holds Path open without sharing
	// delete (platform.HeldOpen); false means the rename was refused with
	// access denied and no holder could be seen (an access list that
	// denies this account, or a holder that closed meanwhile).
	Held bool
	// Holders names the processes holding it, when Windows can say.
	Holders []string
	Tries   int
	Waited  time.Duration
	Err     error
	// Repair: it was drift repair's fresh copy that met the file, not a
	// swap; nothing is journaled, the old copy stays until a repair gets
	// through.
	Repair bool
}

// ErrHeld matches a *HeldError with errors.Is.
var ErrHeld = errors.New("live file held open")

func (e *HeldError) Is(target error) bool { return target == ErrHeld }

func (e *HeldError) Unwrap() error { return e.Err }

func (e *HeldError) Error() string {
	who := "a process"
	if len(e.Holders) > 0 {
		who = strings.Join(e.Holders, ", ")
	}
	what := fmt.Sprintf("%s keeps %s open without sharing delete, so it cannot be replaced", who, e.Path)
	if !e.Held {
		what = fmt.Sprintf("%s cannot be replaced (%v): a process may hold it open without sharing delete, or its access list denies this account", e.Path, e.Err)
	}
	if e.Repair {
		return fmt.Sprintf("%s (tried %d times in %s); the drifted copy stays until it is closed: the agent tries again on its own; to repair it now, restart or stop the service that holds the file",
			what, e.Tries, e.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s (tried %d times in %s); the swap to %s stays journaled and finishes when it closes the file: the agent tries again on its own, and reloads only once the swap is complete; "+
		"to finish it now, restart or stop the service that holds the file, then run `certkeeper install` again (or wait for the agent)",
		what, e.Tries, e.Waited.Round(time.Millisecond), e.Generation)
}

// waitUnheld waits, by the same schedule as renameLive, until none of the
// visible names is held open without sharing delete (platform.HeldOpen;
// never on Unix), so that a swap replaces no file before it can replace
// them all: a daemon holding its key for its lifetime leaves the old set
// whole (journaled, to be finished), not a new certificate beside the old
// key. A holder that opens a file after this look is still met by
// renameLive.
func (s *Store) waitUnheld(names []string, gen string) error {
	sleep := s.sleep
	if sleep == nil {
		sleep = time.Sleep
	}
	var waited time.Duration
	for tries := 0; ; tries++ {
		held := ""
		for _, name := range names {
			if p := filepath.Join(s.Dir, filepath.FromSlash(name)); platform.HeldOpen(p) {
				held = p
				break
			}
		}
		step, wait := decideRename(held != "", true, tries, heldBackoff)
		switch step {
		case renameDone:
			return nil
		case renameRetry:
			sleep(wait)
			waited += wait
			continue
		}
		return &HeldError{Path: held, Generation: gen, Held: true, Holders: platform.Holders(held), Tries: tries + 1, Waited: waited,
			Err: errors.New("held open without sharing delete")}
	}
}

// renameLive renames tmp over the live name, retrying while the target
// may be held open (decideRename); tmp is removed when it gives up.
func (s *Store) renameLive(root *liveDir, tmp, name, gen string, repair bool) error {
	sleep := s.sleep
	if sleep == nil {
		sleep = time.Sleep
	}
	var waited time.Duration
	for tries := 0; ; tries++ {
		err := root.Rename(tmp, name)
		step, wait := decideRename(err != nil, platform.RenameBusy(err), tries, heldBackoff)
		switch step {
		case renameDone:
			return nil
		case renameRetry:
			sleep(wait)
			waited += wait
			continue
		case renameHeld:
			_ = root.Remove(tmp)
			path := filepath.Join(s.Dir, filepath.FromSlash(name))
			return &HeldError{Path: path, Generation: gen, Held: platform.HeldOpen(path), Holders: platform.Holders(path),
				Tries: tries + 1, Waited: waited, Err: err, Repair: repair}
		}
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Join(s.Dir, filepath.FromSlash(name)), err)
	}
}

// Swapping returns the generation a copy-mode swap is making live while
// its journal is there (a swap stopped by a held file, or interrupted),
// "" when none is under way: the live set is then partly that generation's
// files until recovery finishes the swap.
func (s *Store) Swapping() (string, error) {
	root, err := s.open(false)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer root.Close()
	b, err := root.ReadFile(swapJournal)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("%s: read the swap journal: %w", s.Dir, err)
	}
	name := strings.TrimSpace(string(b))
	if _, ok := genSeq(name); !ok || len(b) > 256 {
		return "?", nil
	}
	return name, nil
}
