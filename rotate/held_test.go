package rotate

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The retry decision for a rename over a live file: done, retried with
// the schedule's wait while the error may be a held file, then given up
// as held; any other error ends it at once.
func TestDecideRename(t *testing.T) {
	backoff := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	for _, c := range []struct {
		name         string
		failed, busy bool
		tries        int
		step         renameStep
		wait         time.Duration
	}{
		{"first try succeeds", false, false, 0, renameDone, 0},
		{"a retry succeeds", false, false, 2, renameDone, 0},
		{"not a held file: no retry", true, false, 0, renameFailed, 0},
		{"not a held file, late: no retry", true, false, 2, renameFailed, 0},
		{"held: first retry", true, true, 0, renameRetry, 10 * time.Millisecond},
		{"held: second retry waits longer", true, true, 1, renameRetry, 20 * time.Millisecond},
		{"held: last retry", true, true, 2, renameRetry, 40 * time.Millisecond},
		{"held past the schedule", true, true, 3, renameHeld, 0},
		{"held, no schedule", true, true, 0, renameHeld, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := backoff
			if c.name == "held, no schedule" {
				b = nil
			}
			step, wait := decideRename(c.failed, c.busy, c.tries, b)
			if step != c.step || wait != c.wait {
				t.Errorf("decideRename(%v, %v, %d) = %v, %v; want %v, %v", c.failed, c.busy, c.tries, step, wait, c.step, c.wait)
			}
		})
	}
	var total time.Duration
	for _, d := range heldBackoff {
		total += d
	}
	if total < 100*time.Millisecond || total > 500*time.Millisecond {
		t.Errorf("heldBackoff waits %s in all; want a few hundred ms", total)
	}
}

// The error of a swap stopped by a held file names the file, what holds
// it, the generation, and what to do.
func TestHeldErrorSaysWhatToDo(t *testing.T) {
	base := HeldError{Path: `C:\ProgramData\certkeeper\flocker\node.key`, Generation: "..gen-000002", Held: true, Tries: 6, Waited: 310 * time.Millisecond,
		Err: errors.New("Access denied.")}
	named := base
	named.Holders = []string{"nginx.exe (pid 4242, service nginx)"}
	denied := base
	denied.Held = false
	repair := base
	repair.Repair = true
	for _, c := range []struct {
		name string
		e    HeldError
		want []string
	}{
		{"holder unknown", base, []string{"a process keeps " + base.Path + " open without sharing delete", "tried 6 times in 310ms", "..gen-000002 stays journaled", "restart or stop the service"}},
		{"holder named", named, []string{"nginx.exe (pid 4242, service nginx) keeps " + base.Path}},
		{"drift repair, not a swap", repair, []string{"a process keeps " + base.Path, "the drifted copy stays until it is closed", "restart or stop the service"}},
		{"no holder seen", denied, []string{base.Path + " cannot be replaced (Access denied.)", "access list denies this account"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := error(&c.e)
			if !errors.Is(err, ErrHeld) {
				t.Error("errors.Is(err, ErrHeld) is false")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q\ndoes not say %q", err, w)
				}
			}
		})
	}
}
