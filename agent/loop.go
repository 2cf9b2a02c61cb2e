package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// repairDelay gathers the events of one change in the live directory (a
// cp writes, then chmods) into one repair; well inside the second that
// DESIGN.md promises.
const repairDelay = 50 * time.Millisecond

// dueWarnEvery repeats the warning that a renewal is due and nothing can
// renew it, so it stays visible in the log without flooding it.
const dueWarnEvery = 6 * time.Hour

// criticalLogEvery repeats the error that a certificate is about to expire
// (within its critical threshold) without a renewal: once an hour, not on
// every wake of the loop.
const criticalLogEvery = time.Hour

// bundleLoop looks after one bundle: it wakes on file events, on its
// deadlines and at least every MaxSleep, and each time re-reads the disk
// and reconciles: repair drift, take the inbox, plan renewal, fetch.
type bundleLoop struct {
	d   *daemon
	b   *Bundle
	m   *rotate.Manager
	src Source
	log *slog.Logger
	st  *bundleState
	// servedAt is when the next periodic served check is due.
	servedAt time.Time

	w      *fsnotify.Watcher
	genDir string

	// Deadlines, in wall-clock time; zero is none.
	repairAt, inboxAt, rescanAt time.Time
	inboxEvent                  time.Time

	fetch FetchState
	// fetching is the call of the Source in flight, nil when none: at most
	// one per bundle, run beside the loop so that a hung admin host never
	// holds up repairs and the inbox; its result comes back on fetched.
	fetching *fetchCall
	// readyAfterFetch is the loop's ready report, held until the first
	// fetch ends when nothing was installed at start (holdForFetch), and
	// until the worker has run what the live generation is owed, but not
	// past readyBy.
	readyAfterFetch func()
	readyBy         time.Time
	holdForFetch    bool
	fetched         chan fetchResult
	// renewAt is the live certificate's renewal time, zero when unknown;
	// criticalAt is where its safety net starts.
	renewAt, criticalAt time.Time
	// said remembers what was last logged of each lasting condition, so
	// it is logged once (or once per interval), not on every wake.
	said sayOnce
	// pipe is the bundle's delivery pipeline, the same one the commands
	// use.
	pipe *Pipeline
	// settling is the bundle's worker in flight, running what the live
	// generation is owed (reload, check, rollback), nil when idle: at most
	// one per bundle, so reloads and checks never overlap, and beside the
	// loop, so repairs never wait for them. Deliveries wait for it:
	// pendingFetch is a fetch's result that came meanwhile.
	settling     chan Change
	pendingFetch *fetchResult
	// inboxDone is the inbox set whose install the worker is finishing:
	// its files leave the inbox when the reload and check are done, so an
	// empty inbox means the change is complete.
	inboxDone []InboxFile
	// seenGen is the live generation last seen, so that a live directory
	// that disappears is reported once.
	seenGen string
	// unmovable is an inbox listing that was rejected but could not be
	// moved to rejected/: it is not rejected (logged, counted) again until
	// the listing changes.
	unmovable []InboxFile
	// held counts the repairs in a row that met a live file held open
	// (rotate.ErrHeld); heldUntil is when the next one is made (HeldRetry):
	// file events do not bring it sooner, and the inbox waits for it.
	held      int
	heldUntil time.Time
	heldSwap  bool // a swap met it, not drift repair
	// stepStart is when the current reconcile began (unix nanoseconds),
	// 0 between steps: the watchdog's view of a stuck loop.
	stepStart atomic.Int64
}

func newBundleLoop(d *daemon, b *Bundle, st *bundleState, src Source) *bundleLoop {
	m := rotate.NewManager(b.Spec())
	m.Now = d.now
	m.Store.Now = d.now
	l := &bundleLoop{d: d, b: b, m: m, src: src, st: st, log: d.log.With("bundle", b.Name), fetched: make(chan fetchResult, 1)}
	l.pipe = &Pipeline{B: b, M: m, Log: d.log, Now: d.now}
	if src != nil {
		// A config reload restarts the loop; what it knew of the source
		// (failures, backoff, last fetch) carries over.
		if prev := st.snapshot().Source; prev != nil && !prev.Started.IsZero() {
			l.fetch = *prev
		} else {
			l.fetch = FetchState{Started: d.now(), Jitter: d.rand()}
		}
		l.publishFetch()
		if f, ok := src.(*Failover); ok && f.Log == nil {
			f.Log = l.d.log // Failover names the bundle itself
		}
	} else {
		st.update(func(s *BundleState) { s.Source = nil })
	}
	return l
}

// run reconciles once, reports ready, then loops until ctx ends. A step
// in progress (an install, a reload) finishes before it returns: the
// steps run under a context that shutdown does not cancel, bounded by
// their own timeouts.
func (l *bundleLoop) run(ctx context.Context, ready func()) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		l.log.Error("cannot watch files; relying on the periodic rescan", "err", err)
	} else {
		l.w = w
		defer w.Close()
	}
	if err := l.m.Store.Recover(); err != nil && !errors.Is(err, rotate.ErrNoGeneration) {
		l.log.Error("recovery of the live directory failed", "dir", l.b.Resolved.Dir, "err", err)
	}
	// Copies instead of links are worth a line: an admin who expected
	// links, or the privilege to make them, learns here why there are none.
	if mode, why, err := l.m.Store.LinkMode(); err == nil && (mode == rotate.LinkCopy || runtime.GOOS == "windows") {
		l.log.Info("live files", "dir", l.b.Resolved.Dir, "link_mode", string(mode), "as", why)
	}
	defer l.stopFetch()
	defer l.waitSettle()
	l.step(ctx)
	// With nothing installed, the first fetch has started; ready waits for
	// it to end (installed or failed, bounded by the source's timeouts),
	// so `systemctl start` returns with the first bundle in place. The
	// loop serves the inbox meanwhile; there is nothing live to repair.
	// Ready waits as well for the worker running what a change is owed
	// (its reload and check): `systemctl start` returns with the daemon
	// reloaded.
	l.holdForFetch = l.fetching != nil && l.st.snapshot().NotInstalled != ""
	l.readyAfterFetch, l.readyBy = ready, l.d.now().Add(l.d.readyWait())
	l.maybeReady()
	var events chan fsnotify.Event
	var errs chan error
	if l.w != nil {
		events, errs = l.w.Events, l.w.Errors
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := l.d.now()
		if l.readyAfterFetch != nil && !now.Before(l.readyBy) {
			if l.holdForFetch && (l.fetching != nil || l.pendingFetch != nil) {
				l.log.Warn("the first fetch is still running; reporting ready without it", "waited", l.d.readyWait())
			} else {
				l.log.Warn("the reload or check is still running; reporting ready without it", "waited", l.d.readyWait())
			}
			l.readyAfterFetch()
			l.readyAfterFetch = nil
		}
		var readyBy time.Time
		if l.readyAfterFetch != nil {
			readyBy = l.readyBy
		}
		wake := NextWake(now, l.repairAt, l.inboxAt, l.rescanAt, l.fetchDeadline(), future(now, l.renewAt), future(now, l.criticalAt), readyBy)
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			l.onEvent(ev, l.d.now())
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Lost events (overflow): look at everything again.
			l.log.Warn("file watch reported an error; rescanning", "err", err)
			now := l.d.now()
			l.repairAt, l.inboxEvent, l.inboxAt = now, now, now.Add(l.b.Debounce.Duration)
		case c := <-l.settling:
			l.settleDone(ctx, c)
			l.maybeReady()
		case r := <-l.fetched:
			l.fetchDone(ctx, r)
			l.holdForFetch = false
			l.maybeReady()
		case <-timer.C:
			if !l.due(l.d.now()) {
				continue
			}
			l.step(ctx)
		}
	}
}

// maybeReady reports ready once nothing holds it: the first fetch (with
// nothing installed at start) and the worker.
func (l *bundleLoop) maybeReady() {
	if l.readyAfterFetch == nil || l.settling != nil || l.pendingFetch != nil || (l.holdForFetch && l.fetching != nil) {
		return
	}
	l.readyAfterFetch()
	l.readyAfterFetch = nil
}

func (l *bundleLoop) fetchDeadline() time.Time {
	if l.src == nil || l.fetching != nil || l.pendingFetch != nil {
		return time.Time{}
	}
	return l.fetch.NextTry
}

// future is t when it is still ahead, else zero (no deadline).
func future(now, t time.Time) time.Time {
	if t.After(now) {
		return t
	}
	return time.Time{}
}

// due reports whether a deadline has come: the timer also fires at
// MaxSleep with nothing due, and then the loop only goes round.
func (l *bundleLoop) due(now time.Time) bool {
	for _, t := range []time.Time{l.repairAt, l.inboxAt, l.rescanAt, l.fetchDeadline()} {
		if !t.IsZero() && !now.Before(t) {
			return true
		}
	}
	// A renewal time, or the start of the safety net, that passed (maybe
	// while the machine slept).
	st := l.st.snapshot()
	return (!l.renewAt.IsZero() && !now.Before(l.renewAt) && !st.RenewalDue) ||
		(!l.criticalAt.IsZero() && !now.Before(l.criticalAt) && !st.ExpiryCritical)
}

// onEvent turns a file event into a deadline; the work happens in step.
func (l *bundleLoop) onEvent(ev fsnotify.Event, now time.Time) {
	dir, inbox := l.b.Resolved.Dir, l.b.Inbox
	parent := filepath.Dir(ev.Name)
	switch {
	case ev.Name == inbox || ev.Name == dir:
		// The directory itself was removed, renamed or re-created: watch
		// it again.
		l.repairAt = now
		l.inboxEvent, l.inboxAt = now, now.Add(l.b.Debounce.Duration)
	case parent == inbox:
		l.inboxEvent, l.inboxAt = now, now.Add(l.b.Debounce.Duration)
	case parent == dir || (l.genDir != "" && parent == l.genDir):
		at := now.Add(repairDelay)
		if at.Before(l.heldUntil) {
			at = l.heldUntil // a held file: its retry is scheduled
		}
		if l.repairAt.IsZero() || l.repairAt.After(at) {
			l.repairAt = at
		}
	}
}

// step is one reconcile.
func (l *bundleLoop) step(ctx context.Context) {
	l.guard(func() {
		work := context.WithoutCancel(ctx)
		now := l.d.now()
		l.repairAt, l.inboxAt = time.Time{}, time.Time{}
		l.rescanAt = now.Add(l.d.cfg().RescanInterval.Duration)
		l.watch()
		l.repair(now)
		if l.settling == nil {
			l.takeInbox(work, now)
		}
		l.settleOwed(ctx)
		if l.settling == nil && l.b.Served != "" && !now.Before(l.servedAt) {
			l.servedAt = now.Add(l.d.cfg().RescanInterval.Duration)
			l.checkServedPeriodic(work)
		}
		l.schedule(ctx, now)
	})
	l.d.saveState()
}

// settleOwed starts the worker when the live generation is owed its
// reload or check (a change whose agent died before they ran, or one just
// installed), and shows what is owed in the state.
func (l *bundleLoop) settleOwed(ctx context.Context) {
	o, step, err := l.pipe.Owed()
	if err != nil && l.said.changed("owed", err.Error()) {
		l.log.Error("cannot read the owed actions", "err", err)
	}
	owed := o.Status(step)
	l.st.update(func(s *BundleState) { s.Owed = owed })
	if o != nil && step != OwedWait && l.settling == nil {
		l.startSettle(ctx)
	}
}

// startSettle runs Pipeline.Settle in the bundle's worker. It runs under
// a context that shutdown does not cancel (a reload is finished, bounded
// by its timeout); its result comes back to the loop: settleDone.
func (l *bundleLoop) startSettle(ctx context.Context) {
	if l.settling != nil {
		return
	}
	done := make(chan Change, 1)
	l.settling = done
	work := context.WithoutCancel(ctx)
	go func() {
		var c Change
		defer func() {
			if r := recover(); r != nil {
				l.log.Error("panic in the reload worker; the loop goes on", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
			done <- c
		}()
		c = l.pipe.Settle(work)
	}()
}

// settleDone records what the worker did, then takes up what waited for
// it: a fetched bundle, the inbox, another owed action.
func (l *bundleLoop) settleDone(ctx context.Context, c Change) {
	l.settling = nil
	l.guard(func() { l.recordChange(c) })
	l.takeInboxDone()
	if r := l.pendingFetch; r != nil {
		l.pendingFetch = nil
		l.fetchDone(ctx, *r)
		return
	}
	l.step(ctx)
}

// takeInboxDone removes the files of the set just installed from the
// inbox.
func (l *bundleLoop) takeInboxDone() {
	files := l.inboxDone
	l.inboxDone = nil
	if len(files) == 0 {
		return
	}
	if err := inboxOf(l.b).take(files); err != nil {
		l.log.Error("installed, but could not remove the files from the inbox", "inbox", l.b.Inbox, "err", err)
	}
}

// waitSettle waits, at shutdown, for the worker to finish what it runs.
func (l *bundleLoop) waitSettle() {
	if l.settling == nil {
		return
	}
	c := <-l.settling
	l.settling = nil
	l.recordChange(c)
	l.takeInboxDone()
	l.d.saveState()
}

// guard runs one piece of the loop's work under the watchdog's eye, with a
// panic caught and logged rather than taking the agent down (certmagic
// does the same in its maintenance loop).
func (l *bundleLoop) guard(f func()) {
	l.stepStart.Store(time.Now().UnixNano())
	defer l.stepStart.Store(0)
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("panic in the bundle's loop; it goes on", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			l.rescanAt = l.d.now().Add(time.Second)
		}
	}()
	f()
}

// watch keeps fsnotify watches on the directories that matter: the live
// directory and its live generation (a chmod through a link changes a file
// there), the inbox, and both parents (to see a removed directory come
// back). Directories, never files: a file replaced by rename would lose its
// watch. A directory that is missing now is watched once its parent sees
// it created.
func (l *bundleLoop) watch() {
	if l.w == nil {
		return
	}
	if err := inboxOf(l.b).ensure(); err != nil && l.said.changed("inbox", err.Error()) {
		l.log.Error("inbox unusable", "inbox", l.b.Inbox, "err", err)
	}
	dir := l.b.Resolved.Dir
	gen := ""
	if t, err := os.Readlink(filepath.Join(dir, "..data")); err == nil && !strings.ContainsRune(t, '/') {
		gen = filepath.Join(dir, t)
	}
	want := map[string]bool{dir: true, filepath.Dir(dir): true, l.b.Inbox: true, filepath.Dir(l.b.Inbox): true}
	if gen != "" {
		want[gen] = true
	}
	have := map[string]bool{}
	for _, p := range l.w.WatchList() {
		have[p] = true
		if !want[p] {
			_ = l.w.Remove(p)
		}
	}
	for p := range want {
		if !have[p] {
			_ = l.w.Add(p) // missing now: its parent's watch reports its return
		}
	}
	l.genDir = gen
}

// repair restores drifted files from the live generation. Repairs change
// no content a daemon reads, so they never reload.
func (l *bundleLoop) repair(now time.Time) {
	drift, err := l.m.Store.Repair()
	if errors.Is(err, rotate.ErrNoGeneration) {
		return
	}
	l.noteHeld(err, now)
	var repaired, left []rotate.Drift
	for _, d := range drift {
		if d.Repairable() && (err == nil || !strings.Contains(err.Error(), d.Name)) {
			repaired = append(repaired, d)
		} else {
			left = append(left, d)
		}
	}
	for _, d := range repaired {
		l.log.Warn("repaired drift", "file", filepath.Join(l.b.Resolved.Dir, d.Name), "drift", string(d.Kind), "was", d.Detail)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if l.said.changed("repair", msg) && err != nil {
		l.log.Error("cannot repair the live directory", "dir", l.b.Resolved.Dir, "err", err)
	}
	l.st.update(func(s *BundleState) {
		s.Drift = left
		if err != nil && len(left) == 0 {
			s.Drift = []rotate.Drift{{Name: l.b.Resolved.Dir, Kind: rotate.DriftForeign, Detail: msg}}
		}
		if len(repaired) > 0 {
			s.Counters.Repairs += uint64(len(repaired))
			var what []string
			for _, d := range repaired {
				what = append(what, d.String())
			}
			s.LastRepair = &Event{Time: now, Result: ResultOK, Detail: strings.Join(what, "; ")}
		}
	})
}

// noteHeld schedules the next try of a swap that met a live file held
// open (HeldRetry), and says when such a swap is complete at last.
func (l *bundleLoop) noteHeld(err error, now time.Time) {
	switch {
	case errors.Is(err, rotate.ErrHeld):
		var h *rotate.HeldError
		if errors.As(err, &h) && !h.Repair {
			l.heldSwap = true
		}
		l.held++
		l.heldUntil = now.Add(HeldRetry(l.held))
		if l.repairAt.IsZero() || l.repairAt.After(l.heldUntil) {
			l.repairAt = l.heldUntil
		}
	case err == nil && l.held > 0:
		if l.heldSwap {
			l.log.Info("the swap a held live file stopped is complete; what it owes (reload, check) runs now", "dir", l.b.Resolved.Dir, "tries", l.held+1)
		}
		l.held, l.heldUntil, l.heldSwap = 0, time.Time{}, false
	}
}

// takeInbox installs, waits for, or rejects the set in the inbox (the
// rule is at the top of inbox.go).
func (l *bundleLoop) takeInbox(ctx context.Context, now time.Time) {
	if now.Before(l.heldUntil) {
		return // the install would meet the same held file; noteHeld retries
	}
	inbox := l.b.Inbox
	files, err := inboxOf(l.b).list()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if l.said.changed("inbox", err.Error()) {
			l.log.Error("inbox refused; nothing in it is touched", "inbox", inbox, "err", err)
		}
		l.st.update(func(s *BundleState) {
			if detail := "inbox refused: " + err.Error(); s.LastError == nil || s.LastError.Detail != detail {
				s.LastError = &Event{Time: now, Result: ResultFailed, Detail: detail}
			}
		})
	}
	if err != nil || len(files) == 0 {
		l.setWaiting("")
		l.unmovable = nil
		return
	}
	if l.unmovable != nil {
		if sameListing(files, l.unmovable) {
			return // rejected already, and said so
		}
		l.unmovable = nil
	}
	if settled := Settled(files, l.inboxEvent, l.b.Debounce.Duration, now); now.Before(settled) {
		l.inboxAt = settled
		return
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	inputs, readErr := inboxOf(l.b).read(files)
	if after, _ := inboxOf(l.b).list(); !sameListing(files, after) {
		l.inboxAt = now.Add(l.b.Debounce.Duration) // still changing
		return
	}
	if readErr != nil {
		l.reject(files, readErr.Error(), now)
		return
	}
	if why := StillWriting(inputs); why != "" {
		// Not judged yet (no "delivery refused" for a file that is
		// still arriving): it waits, quiet, for inbox_timeout.
		if wait := Settled(files, l.inboxEvent, 0, now).Add(l.b.InboxTimeout.Duration); now.Before(wait) {
			l.inboxAt = wait
			l.setWaiting(why)
			return
		}
	}
	source := "inbox: " + strings.Join(names, " ")
	// The inbox is automated delivery (certkeeper push, a script's scp),
	// so, like a pull, it never takes the bundle back in time: a push of
	// the publish directory's stale bundle must not undo a CSR renewal.
	// Going back on purpose is certkeeper rollback or install.
	out, err := l.pipe.Install(Delivery{Kind: FromInbox, Inputs: inputs, From: source})
	var verr *rotate.ValidationError
	var rerr *RefusedError
	switch {
	case err == nil:
		l.setWaiting("")
		l.inboxDone = files
		l.installed(ctx, out, now)
		if l.settling == nil {
			l.takeInboxDone()
		}
	case errors.As(err, &rerr):
		l.reject(files, err.Error(), now)
	case errors.As(err, &verr):
		_, liveFiles, _ := l.m.Store.Live()
		if alreadyLive(inputs, liveFiles) {
			l.setWaiting("")
			l.log.Info("inbox files are already installed; removing them", "files", strings.Join(names, " "))
			_ = inboxOf(l.b).take(files)
			return
		}
		live, _, _ := l.m.Live()
		quiet := Settled(files, l.inboxEvent, 0, now)
		if why := Incomplete(inputs, rotate.Classify(inputs), live, l.b.Resolved); why != "" && now.Before(quiet.Add(l.b.InboxTimeout.Duration)) {
			l.inboxAt = quiet.Add(l.b.InboxTimeout.Duration)
			l.setWaiting(why)
			return
		}
		l.reject(files, err.Error(), now)
	default:
		// The live directory refused (a planted symlink, bad modes, a
		// file held open): the files may be fine; keep them, say why, try
		// again later.
		l.noteHeld(err, now)
		if l.said.changed("inbox", err.Error()) {
			l.log.Error("cannot install the inbox set", "files", strings.Join(names, " "), "err", err)
		}
		l.st.update(func(s *BundleState) {
			s.LastInstall = &Event{Time: now, Result: ResultFailed, Detail: err.Error()}
			s.LastError = s.LastInstall
		})
	}
}

func (l *bundleLoop) setWaiting(why string) {
	if l.said.changed("waiting", why) && why != "" {
		l.log.Info("inbox set incomplete; waiting for more files", "why", why, "timeout", l.b.InboxTimeout.Duration.String())
	}
	l.st.update(func(s *BundleState) { s.Waiting = why })
}

func (l *bundleLoop) reject(files []InboxFile, reason string, now time.Time) {
	l.setWaiting("")
	dst, err := inboxOf(l.b).reject(files, reason, now)
	l.log.Error("inbox set rejected; the live bundle is unchanged", "moved_to", dst, "reason", reason)
	if err != nil {
		l.log.Error("could not move every rejected file; they stay, and are not looked at again until the inbox changes", "err", err)
		if after, lerr := inboxOf(l.b).list(); lerr == nil && len(after) > 0 {
			l.unmovable = after
		}
	}
	l.st.update(func(s *BundleState) {
		s.Counters.Rejected++
		where := " (files in " + dst + ")"
		if dst == "" {
			where = " (files left in " + l.b.Inbox + ")"
		}
		s.LastInstall = &Event{Time: now, Result: ResultRejected, Detail: reason + where, Dir: dst}
		s.LastError = s.LastInstall
	})
}

// installed records what Pipeline.Install did and, when the live
// generation is owed its reload or check, hands them to the worker.
func (l *bundleLoop) installed(ctx context.Context, out Outcome, now time.Time) {
	res := out.Result
	l.st.update(func(s *BundleState) {
		if !res.Changed {
			s.LastInstall = &Event{Time: now, Result: ResultUnchanged, Detail: out.From}
		} else {
			s.Counters.Installs++
			s.LastInstall = &Event{Time: now, Result: ResultInstalled, Detail: res.Generation.Name + " from " + out.From}
		}
		if len(res.Repaired) > 0 {
			s.Counters.Repairs += uint64(len(res.Repaired))
			var what []string
			for _, d := range res.Repaired {
				what = append(what, d.String())
			}
			s.LastRepair = &Event{Time: now, Result: ResultOK, Detail: strings.Join(what, "; ")}
		}
		if out.Owed != nil {
			s.Owed = out.Owed.Status(OwedRun)
		}
	})
	if out.Owed != nil {
		l.startSettle(ctx)
	}
}

// recordChange records what the worker's Settle ran: reloads, the check,
// a rollback and its reloads.
func (l *bundleLoop) recordChange(c Change) {
	now := l.d.now()
	l.recordReloads(c.Reloads, knownAt(c.ReloadsAt, now))
	if c.Check != nil {
		now := knownAt(c.CheckAt, now)
		if c.Check.Err == nil {
			l.st.update(func(s *BundleState) { s.LastCheck = &Event{Time: now, Result: ResultOK} })
		} else {
			detail := fmt.Sprintf("after installing %s: %v", c.Generation, c.Check.Err)
			if c.RolledBack {
				detail += fmt.Sprintf("; rolled back to %s", c.To.Name)
			} else if c.RollbackErr != nil {
				detail += "; rollback refused: " + c.RollbackErr.Error()
			}
			l.st.update(func(s *BundleState) {
				s.Counters.CheckFailures++
				s.LastCheck = &Event{Time: now, Result: ResultFailed, Detail: detail}
				s.LastError = s.LastCheck
			})
		}
	}
	if c.RolledBack {
		l.st.update(func(s *BundleState) {
			s.Counters.Rollbacks++
			s.LastRollback = &Event{Time: now, Result: ResultOK, Detail: c.From.Name + " -> " + c.To.Name}
		})
		l.recordReloads(c.RollbackReloads, knownAt(c.RollbackAt, now))
	}
	if c.Served != nil {
		l.recordServed(c.Served.Last, c.Served)
		if c.ServedAfterRollback != nil {
			action := l.st.snapshot().Served.Action
			l.recordServed(*c.ServedAfterRollback, nil)
			l.st.update(func(s *BundleState) { s.Served.Action = action })
		}
	}
	o, step, _ := l.pipe.Owed()
	owed := o.Status(step)
	l.st.update(func(s *BundleState) { s.Owed = owed })
}

// knownAt is when an outcome was known: at, or now when the pipeline did
// not say.
func knownAt(at, now time.Time) time.Time {
	if at.IsZero() {
		return now
	}
	return at
}

// recordReloads counts a run of the bundle's reload actions (RunReloads
// logged each) in the state.
func (l *bundleLoop) recordReloads(results []platform.ReloadResult, now time.Time) {
	if len(l.b.Reload) == 0 {
		return
	}
	var failed []string
	ran := 0
	for _, r := range results {
		if r.Skipped == "" {
			ran++
		}
		if r.Err != nil {
			failed = append(failed, r.Err.Error())
		}
	}
	l.st.update(func(s *BundleState) {
		s.Counters.Reloads += uint64(ran)
		s.Counters.ReloadFailures += uint64(len(failed))
		if len(failed) > 0 {
			s.LastReload = &Event{Time: now, Result: ResultFailed, Detail: strings.Join(failed, "; ")}
			s.LastError = s.LastReload
		} else {
			s.LastReload = &Event{Time: now, Result: ResultOK}
		}
	})
}

// livePlan is the live certificate and its schedule at one instant.
type livePlan struct {
	leaf  *x509.Certificate
	fp    string
	renew RenewalPlan
	fetch FetchPlan
}

// schedule reads the live certificate, plans its renewal, warns when it is
// due and nothing can renew it, raises the alarm when it is about to expire
// without a renewal, and starts a call of the Source when its time has
// come (its result comes back to the loop: fetchDone).
func (l *bundleLoop) schedule(ctx context.Context, now time.Time) {
	p := l.plan(now)
	if l.src != nil {
		if l.fetching == nil && l.pendingFetch == nil {
			l.fetch.NextTry = NextFetch(l.fetch, p.fetch)
			if !l.fetch.NextTry.IsZero() && !now.Before(l.fetch.NextTry) {
				l.startFetch(ctx, p.fetch.Due)
			}
		}
		l.publishFetch()
	}
	l.alarm(now, p)
}

// alarm is the safety net's log line: a certificate within its critical
// threshold (or expired) that this step did not renew is an error, logged
// once an hour with why the renewal has not happened. While a call of the
// Source is in flight it waits for its result, which may be the renewal or
// say why not.
func (l *bundleLoop) alarm(now time.Time, p livePlan) {
	if l.fetching != nil || p.leaf == nil || !p.renew.Critical || !l.said.every("critical", p.fp, now, criticalLogEvery) {
		return
	}
	l.log.Error("certificate about to expire without a renewal", "expires_in", p.leaf.NotAfter.Sub(now).Round(time.Second).String(),
		"not_after", p.leaf.NotAfter, "serial", pki.Serial(p.leaf), "why", l.notRenewedWhy())
}

// plan reads the live generation, decides with PlanNext, records the
// schedule in the state and logs what needs saying: a live bundle that
// is gone, a policy that does not fit, a due renewal with nothing to
// renew it.
func (l *bundleLoop) plan(now time.Time) livePlan {
	live, gen, err := l.m.Live()
	v := LiveView{Generation: gen.Name, Err: err, Dir: l.b.Resolved.Dir, CAOnly: l.b.Resolved.CAOnly()}
	if live != nil {
		v.Parsed = true
		if live.Leaf != nil || len(live.CAs) > 0 {
			v.Leafish = live.Leafish()
		}
		if err == nil {
			v.Leaf = live.Leaf
		}
	}
	interval := DefaultPullInterval
	if sc := l.d.cfg().Source; sc != nil {
		interval = sc.PullInterval.Duration
	}
	next := PlanNext(now, v, LoopPolicy{Renewal: l.b.Renewal(), HasSource: l.src != nil, Periodic: l.b.Mode != ModeCSR || publishedSource(l.src) != nil,
		PullInterval: interval, FetchStarted: l.fetch.Started})
	p := livePlan{leaf: v.Leaf, fp: next.Fingerprint, renew: next.Renew, fetch: next.Fetch}
	if errors.Is(err, rotate.ErrNoGeneration) && l.seenGen != "" {
		l.log.Error("the live bundle is gone; nothing is installed until a bundle arrives (inbox, source, certkeeper install)",
			"dir", l.b.Resolved.Dir, "was", l.seenGen)
	}
	if errors.Is(err, rotate.ErrNoGeneration) {
		l.seenGen = ""
	}
	if gen.Name != "" {
		l.seenGen = gen.Name
	}
	l.renewAt, l.criticalAt = next.Renew.RenewAt, next.Renew.CriticalAt
	if p.leaf != nil {
		leaf := p.leaf
		if next.PolicyError && l.said.sticky("policy", p.fp) {
			l.log.Error("the renewal policy does not fit the installed certificate; fix renew_before or renew_at in the config", "err", p.renew.Err,
				"lifetime", leaf.NotAfter.Sub(leaf.NotBefore).String())
		}
		if next.DueWithoutSource && l.said.every("due", p.fp, now, dueWarnEvery) {
			l.log.Warn("renewal due, and this bundle has no source to renew from; drop a renewed bundle into the inbox",
				"inbox", l.b.Inbox, "renew_at", p.renew.RenewAt, "not_after", leaf.NotAfter)
		}
	}
	l.st.update(func(s *BundleState) {
		s.Generation, s.Serial, s.NotAfter, s.RenewAt, s.RenewalDue, s.RenewalError = gen.Name, next.Serial, next.NotAfter, p.renew.RenewAt, p.renew.Due, ""
		s.ExpiryCritical = p.renew.Critical
		s.NotInstalled = next.NotInstalled
		if p.renew.Err != nil {
			s.RenewalError = p.renew.Err.Error()
		}
	})
	return p
}

// LiveView is what a bundle's loop read of its live generation.
type LiveView struct {
	Generation string
	// Err is the error reading it: rotate.ErrNoGeneration before the
	// first install, another for a damaged live bundle.
	Err error
	// Parsed: the live bundle was read (perhaps in part, with Err).
	Parsed bool
	// Leaf is the live leaf, nil when none or damaged; Leafish is the leaf
	// or, for a CA-only bundle, its CA.
	Leaf, Leafish *x509.Certificate
	Dir           string
	CAOnly        bool
}

// LoopPolicy is what of a bundle's config and state the plan depends on.
type LoopPolicy struct {
	Renewal   rotate.RenewalPolicy
	HasSource bool
	// Periodic: pull mode (ask the source every PullInterval).
	Periodic     bool
	PullInterval time.Duration
	// FetchStarted is when the loop's fetch schedule began: with nothing
	// (valid) installed, the source is asked from then on.
	FetchStarted time.Time
}

// Next is what a bundle's loop is to do next, and what to tell.
type Next struct {
	// NotInstalled says why no certificate is live, "" when one is.
	NotInstalled string
	Renew        RenewalPlan
	Fetch        FetchPlan
	// Serial, NotAfter and Fingerprint describe the live leaf (or CA).
	Serial, Fingerprint string
	NotAfter            time.Time
	// PolicyError: the renewal policy does not fit the live certificate.
	// DueWithoutSource: the renewal is due and nothing can renew it.
	PolicyError, DueWithoutSource bool
}

// PlanNext decides, from the live generation at now under the bundle's
// policy, its renewal schedule and what to ask of its source. It is
// pure: the loop reads the disk before and logs and records after.
func PlanNext(now time.Time, v LiveView, pol LoopPolicy) Next {
	var n Next
	switch {
	case errors.Is(v.Err, rotate.ErrNoGeneration):
		n.NotInstalled = "nothing installed in " + v.Dir
	case v.Err != nil:
		n.NotInstalled = "live bundle is damaged: " + v.Err.Error()
	case !v.Parsed || (v.Leaf == nil && !v.CAOnly):
		n.NotInstalled = "nothing installed in " + v.Dir
	}
	if c := v.Leafish; c != nil {
		n.Serial, n.NotAfter = pki.Serial(c), c.NotAfter
	}
	if leaf := v.Leaf; leaf != nil {
		n.Fingerprint = pki.Fingerprint(leaf)
		n.Renew = PlanRenewal(now, leaf, pol.Renewal, rotate.JitterFor(leaf))
		n.PolicyError = n.Renew.Err != nil
		n.DueWithoutSource = n.Renew.Due && !pol.HasSource
	}
	n.Fetch = FetchPlan{RenewAt: n.Renew.RenewAt, Due: n.Renew.Due, Interval: pol.PullInterval, Periodic: pol.Periodic}
	if leaf := v.Leaf; leaf != nil {
		n.Fetch.Left, n.Fetch.Life = leaf.NotAfter.Sub(now), leaf.NotAfter.Sub(leaf.NotBefore)
	}
	if v.Leaf == nil || n.Renew.Err != nil && n.Renew.Due {
		// Nothing (valid) installed: fetch at once, then by the schedule.
		n.Fetch.RenewAt, n.Fetch.Due = pol.FetchStarted, true
	}
	return n
}

// notRenewedWhy says, for the safety net's alarm, why the renewal has not
// happened and what to do.
func (l *bundleLoop) notRenewedWhy() string {
	f := l.fetch
	switch {
	case l.src == nil:
		return "this bundle has no source; drop a renewed bundle into the inbox " + l.b.Inbox
	case f.Failures > 0:
		return fmt.Sprintf("%d fetches from the source failed; last: %s", f.Failures, f.LastError)
	case f.NothingNewer > 0:
		return fmt.Sprintf("the source has nothing newer (%d fetches); re-issue on the admin host (certkeeper ca renew)", f.NothingNewer)
	}
	return "the renewal has not been tried yet"
}

func (l *bundleLoop) publishFetch() {
	f := l.fetch
	l.st.update(func(s *BundleState) { s.Source = &f })
}

// fetchCall is a call of the Source in flight.
type fetchCall struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// fetchResult is what a call of the Source brought.
type fetchResult struct {
	inputs []rotate.Input
	err    error
	// src is the Source that was asked (fetchSource); nil: the bundle's.
	src Source
}

// fetchTimeout bounds one call of the Source: the SFTP source applies
// [source] timeout to each phase (dial, handshake, listing, each file),
// so a whole fetch gets four of them.
func (l *bundleLoop) fetchTimeout() time.Duration {
	// With several [[source]], each may be tried in turn.
	var t time.Duration
	for _, sc := range l.d.cfg().Sources {
		if sc.Timeout.Duration > 0 {
			t += 4 * sc.Timeout.Duration
		} else {
			t += 5 * time.Minute
		}
	}
	if t == 0 {
		return 5 * time.Minute
	}
	return t
}

// startFetch calls the Source in a goroutine of its own, under the loop's
// context (a stopped loop cancels it); the loop goes on repairing and
// taking the inbox meanwhile, and installs the result when it comes.
func (l *bundleLoop) startFetch(ctx context.Context, due bool) {
	fctx, cancel := context.WithTimeout(ctx, l.fetchTimeout())
	call := &fetchCall{cancel: cancel, done: make(chan struct{})}
	l.fetching = call
	src, b, out := fetchSource(l.src, due), l.b, l.fetched
	go func() {
		defer close(call.done)
		defer cancel()
		r := fetchResult{src: src}
		func() {
			defer func() {
				if v := recover(); v != nil {
					r.err = fmt.Errorf("panic in the source: %v", v)
					l.log.Error("panic in the source; the loop goes on", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
			}()
			r.inputs, r.err = src.Fetch(fctx, b)
		}()
		out <- r // buffered: never blocks, even after the loop stopped
	}()
}

// stopFetch cancels a call of the Source in flight and waits a little for
// it to end, so a restarted loop does not find two calls running.
func (l *bundleLoop) stopFetch() {
	call := l.fetching
	if call == nil {
		return
	}
	call.cancel()
	select {
	case <-call.done:
	case <-time.After(5 * time.Second):
		l.log.Warn("the source did not stop when cancelled; leaving it behind")
	}
	l.fetching = nil
}

// fetchDone installs what a call of the Source brought with InstallNewer:
// identical content is a no-op, an older leaf is refused. While the
// renewal is due, a fetch that does not bring a newer certificate is
// "nothing newer", not success: the agent keeps asking. The attempt is
// recorded when it ended, so the backoff that follows is a real pause and
// not eaten by a slow failure.
func (l *bundleLoop) fetchDone(ctx context.Context, r fetchResult) {
	l.fetching = nil
	if l.settling != nil {
		// Delivered once the worker is done: one change at a time.
		l.pendingFetch = &r
		return
	}
	l.guard(func() {
		work := context.WithoutCancel(ctx)
		now := l.d.now()
		l.installFetched(work, now, r)
		l.schedule(ctx, l.d.now())
	})
	l.d.saveState()
}

func (l *bundleLoop) installFetched(work context.Context, now time.Time, r fetchResult) {
	// The inbox may have changed the live bundle while the call ran:
	// judge what it brought against what is live now.
	p := l.plan(now)
	inputs, err := r.inputs, r.err
	var res rotate.Result
	var out Outcome
	outcome, detail := FetchNothingNewer, ""
	asked := l.src
	if r.src != nil {
		asked = r.src
	}
	from := fetchedFrom(asked, l.b, p.leaf == nil)
	if err == nil && len(inputs) > 0 {
		kind := FromPull
		if strings.HasPrefix(from, "csr: ") {
			kind = FromCSR
		}
		out, err = l.pipe.Install(Delivery{Kind: kind, Inputs: inputs, From: from})
		res = out.Result
		var rerr *RefusedError
		if err != nil && !errors.As(err, &rerr) && OlderThanLive(inputs, p.leaf) {
			detail, err = "nothing newer: the source offers a certificate older than the live one", nil
		}
	}
	due := p.renew.Due
	switch {
	case err != nil:
		outcome, detail = FetchFailed, err.Error()
	case detail != "":
	case len(inputs) == 0:
		detail = "nothing newer: the source offered nothing"
	case res.Changed && (p.leaf == nil || pki.Fingerprint(res.Bundle.Leafish()) != p.fp):
		outcome, detail = FetchRenewed, "installed "+res.Generation.Name
	case res.Changed:
		detail = "installed " + res.Generation.Name + " (the same certificate)"
	case due:
		detail = "nothing newer: identical to the live bundle"
	default:
		detail = ResultUnchanged
	}
	l.fetch.Record(now, outcome, due, detail, l.d.rand())
	if r.err == nil {
		l.fetch.Answered = from
		if f, ok := asked.(*Failover); ok {
			l.fetch.Answered = f.Answered(l.b)
		}
	}
	l.st.update(func(s *BundleState) { s.Counters.Fetches++ })
	switch {
	case outcome == FetchFailed:
		l.log.Warn("fetch from the source failed", "err", err, "failures", l.fetch.Failures,
			"retry_in", Backoff(l.fetch.Failures, l.fetch.Jitter, p.fetch.Left, p.fetch.Life).Round(time.Millisecond).String())
		l.st.update(func(s *BundleState) {
			s.Counters.SourceErrors++
			s.LastError = &Event{Time: now, Result: ResultFailed, Detail: "source: " + err.Error()}
		})
		return
	case l.fetch.NothingNewer > 0:
		attrs := []any{"source", sourceName(l.src, l.b), "detail", detail, "tries", l.fetch.NothingNewer,
			"retry_in", NothingNewerDelay(l.fetch.NothingNewer, l.fetch.Jitter, p.fetch.Left, p.fetch.Life).Round(time.Millisecond).String()}
		if p.leaf != nil {
			attrs = append(attrs, "serial", pki.Serial(p.leaf), "not_after", p.leaf.NotAfter)
		}
		l.log.Warn("renewal due; source has nothing newer", attrs...)
	}
	if outcome == FetchRenewed {
		if n, ok := l.src.(installedNotifier); ok {
			n.Installed(l.b)
		}
	}
	if err == nil && (res.Changed || out.Owed != nil) {
		l.installed(work, out, now)
	}
}

// recordServed records a look at the daemon's endpoint; o is the served
// check of a change (nil: a periodic look, or the one after a rollback).
func (l *bundleLoop) recordServed(r ServedResult, o *ServedOutcome) {
	now := l.d.now()
	l.st.update(func(s *BundleState) {
		sv := s.Served
		if sv == nil || sv.LiveSerial != r.LiveSerial {
			sv = &ServedState{}
		}
		sv.Endpoint, sv.Serial, sv.LiveSerial, sv.Checked, sv.Match = r.Endpoint, r.Serial, r.LiveSerial, now, r.Match
		sv.Error = ""
		if r.Match {
			sv.Mismatches = 0
			if o == nil && strings.HasPrefix(sv.Action, "reported") {
				sv.Action = "" // the daemon was restarted by hand since
			}
		} else {
			sv.Mismatches++
			if r.Err != nil {
				sv.Error = r.Err.Error()
			}
		}
		if o != nil {
			switch o.Step {
			case ServedDone:
				sv.Action = ""
				if o.ExtraReloads > 0 {
					sv.Action = fmt.Sprintf("served after %d more reloads", o.ExtraReloads)
				}
			case ServedRollBack:
				sv.Action = fmt.Sprintf("rolled back after %d more reloads: %s", o.ExtraReloads, o.Last.Err)
				s.Counters.CheckFailures++
				s.LastCheck = &Event{Time: now, Result: ResultFailed, Detail: "served check: " + o.Last.Err.Error()}
				s.LastError = s.LastCheck
			default:
				sv.Action = fmt.Sprintf("reported after %d more reloads (served_mismatch = %s)", o.ExtraReloads, l.b.ServedMismatch)
				s.LastError = &Event{Time: now, Result: ResultFailed, Detail: "served check: " + o.Last.Err.Error()}
			}
		}
		s.Served = sv
	})
}

// checkServedPeriodic looks at the daemon's endpoint every rescan (but
// not while the worker settles a change, whose own check records it).
func (l *bundleLoop) checkServedPeriodic(ctx context.Context) {
	if l.b.Served == "" {
		return
	}
	r := l.pipe.CheckServedNow(ctx)
	if errors.Is(r.Err, rotate.ErrNoGeneration) {
		// Nothing installed (yet, or any more): no certificate the
		// daemon ought to serve, so nothing to warn of or to record.
		l.st.update(func(s *BundleState) { s.Served = nil })
		return
	}
	if !r.Match {
		l.log.Warn("daemon does not serve the live certificate", "served", l.b.Served, "served_serial", r.Serial, "live_serial", r.LiveSerial, "err", r.Err)
	}
	l.recordServed(r, nil)
	if r.Match && len(l.b.Reload) == 1 {
		// The one reload failed, and the daemon serves the live leaf
		// now all the same (reloaded by hand, started after the
		// install): what the reload was for is done.
		if e := l.st.snapshot().LastReload; e != nil && e.Result == ResultFailed {
			l.log.Info("daemon serves the live certificate; the failed reload is settled", "served", l.b.Served, "serial", r.Serial, "failed_at", e.Time)
			settled := &Event{Time: l.d.now(), Result: ResultOK, Detail: fmt.Sprintf("the daemon serves the live certificate (the reload of %s failed: %s)", rotate.Stamp(e.Time), e.Detail)}
			l.st.update(func(s *BundleState) { s.LastReload = settled })
		}
	}
}
