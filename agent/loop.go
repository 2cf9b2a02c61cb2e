package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	// fetch ends when nothing was installed at start, but not past
	// readyBy.
	readyAfterFetch func()
	readyBy         time.Time
	fetched         chan fetchResult
	// renewAt is the live certificate's renewal time, zero when unknown;
	// criticalAt is where its safety net starts.
	renewAt, criticalAt time.Time
	// What was last logged, so a condition that persists is logged once.
	lastRepairErr, lastInboxErr, lastWaiting, planErrFor, criticalFor string
	dueWarned, criticalLogged                                         time.Time
	dueWarnedFor                                                      string
	// seenGen is the live generation last seen, so that a live directory
	// that disappears is reported once.
	seenGen string
	// unmovable is an inbox listing that was rejected but could not be
	// moved to rejected/: it is not rejected (logged, counted) again until
	// the listing changes.
	unmovable []InboxFile
	// stepStart is when the current reconcile began (unix nanoseconds),
	// 0 between steps: the watchdog's view of a stuck loop.
	stepStart atomic.Int64
}

func newBundleLoop(d *daemon, b *Bundle, st *bundleState, src Source) *bundleLoop {
	m := rotate.NewManager(b.Spec())
	m.Now = d.now
	m.Store.Now = d.now
	l := &bundleLoop{d: d, b: b, m: m, src: src, st: st, log: d.log.With("bundle", b.Name), fetched: make(chan fetchResult, 1)}
	if src != nil {
		// A config reload restarts the loop; what it knew of the source
		// (failures, backoff, last fetch) carries over.
		if prev := st.snapshot().Source; prev != nil && !prev.Started.IsZero() {
			l.fetch = *prev
		} else {
			l.fetch = FetchState{Started: d.now(), Jitter: d.rand()}
		}
		l.publishFetch()
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
	defer l.stopFetch()
	l.step(ctx)
	// With nothing installed, the first fetch has started; ready waits for
	// it to end (installed or failed, bounded by the source's timeouts),
	// so `systemctl start` returns with the first bundle in place. The
	// loop serves the inbox meanwhile; there is nothing live to repair.
	if l.fetching != nil && l.st.snapshot().NotInstalled != "" {
		l.readyAfterFetch, l.readyBy = ready, l.d.now().Add(l.d.readyWait())
	} else {
		ready()
	}
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
			l.log.Warn("the first fetch is still running; reporting ready without it", "waited", l.d.readyWait())
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
		case r := <-l.fetched:
			l.fetchDone(ctx, r)
			if l.readyAfterFetch != nil {
				l.readyAfterFetch()
				l.readyAfterFetch = nil
			}
		case <-timer.C:
			if !l.due(l.d.now()) {
				continue
			}
			l.step(ctx)
		}
	}
}

func (l *bundleLoop) fetchDeadline() time.Time {
	if l.src == nil || l.fetching != nil {
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
		if l.repairAt.IsZero() || l.repairAt.After(now.Add(repairDelay)) {
			l.repairAt = now.Add(repairDelay)
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
		l.takeInbox(work, now)
		l.schedule(ctx, now)
	})
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
	if err := inboxOf(l.b).ensure(); err != nil && l.lastInboxErr != err.Error() {
		l.lastInboxErr = err.Error()
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
		if msg != l.lastRepairErr {
			l.log.Error("cannot repair the live directory", "dir", l.b.Resolved.Dir, "err", err)
		}
	}
	l.lastRepairErr = msg
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

// takeInbox installs, waits for, or rejects the set in the inbox (the
// rule is at the top of inbox.go).
func (l *bundleLoop) takeInbox(ctx context.Context, now time.Time) {
	inbox := l.b.Inbox
	files, err := inboxOf(l.b).list()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if err.Error() != l.lastInboxErr {
			l.lastInboxErr = err.Error()
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
	source := "inbox: " + strings.Join(names, " ")
	// The inbox is automated delivery (certkeeper push, a script's scp),
	// so, like a pull, it never takes the bundle back in time: a push of
	// the publish directory's stale bundle must not undo a CSR renewal.
	// Going back on purpose is certkeeper rollback or install.
	res, err := l.m.InstallNewer(inputs, source)
	var verr *rotate.ValidationError
	switch {
	case err == nil:
		l.setWaiting("")
		if terr := inboxOf(l.b).take(files); terr != nil {
			l.log.Error("installed, but could not remove the files from the inbox", "inbox", inbox, "err", terr)
		}
		l.installed(ctx, res, source, now)
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
		// The live directory refused (a planted symlink, bad modes): the
		// files may be fine; keep them, say why, try again later.
		if err.Error() != l.lastInboxErr {
			l.log.Error("cannot install the inbox set", "files", strings.Join(names, " "), "err", err)
		}
		l.lastInboxErr = err.Error()
		l.st.update(func(s *BundleState) {
			s.LastInstall = &Event{Time: now, Result: ResultFailed, Detail: err.Error()}
			s.LastError = s.LastInstall
		})
	}
}

func (l *bundleLoop) setWaiting(why string) {
	if why != "" && why != l.lastWaiting {
		l.log.Info("inbox set incomplete; waiting for more files", "why", why, "timeout", l.b.InboxTimeout.Duration.String())
	}
	l.lastWaiting = why
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
		s.LastInstall = &Event{Time: now, Result: ResultRejected, Detail: reason + where}
		s.LastError = s.LastInstall
	})
}

// installed records an install and, when the content changed, reloads
// and checks (applyChange, as the commands do), and records what that did.
func (l *bundleLoop) installed(ctx context.Context, res rotate.Result, source string, now time.Time) {
	if !res.Changed {
		l.log.Info("bundle unchanged; no reload", "generation", res.Generation.Name, "source", source)
		for _, d := range res.Repaired {
			l.log.Warn("repaired drift", "file", filepath.Join(l.b.Resolved.Dir, d.Name), "drift", string(d.Kind), "was", d.Detail)
		}
		l.st.update(func(s *BundleState) {
			s.LastInstall = &Event{Time: now, Result: ResultUnchanged, Detail: source}
			if len(res.Repaired) > 0 {
				s.Counters.Repairs += uint64(len(res.Repaired))
				var what []string
				for _, d := range res.Repaired {
					what = append(what, d.String())
				}
				s.LastRepair = &Event{Time: now, Result: ResultOK, Detail: strings.Join(what, "; ")}
			}
		})
		return
	}
	leaf := res.Bundle.Leafish()
	l.log.Info("installed", "generation", res.Generation.Name, "dir", l.b.Resolved.Dir, "serial", pki.Serial(leaf), "source", source)
	l.st.update(func(s *BundleState) {
		s.Counters.Installs++
		s.LastInstall = &Event{Time: now, Result: ResultInstalled, Detail: res.Generation.Name + " from " + source}
	})
	c := applyChange(ctx, l.b, l.m, res, l.d.now, l.d.log)
	l.recordReloads(c.Reloads, now)
	if c.Check == nil {
		return
	}
	if c.Check.Err == nil {
		l.st.update(func(s *BundleState) { s.LastCheck = &Event{Time: l.d.now(), Result: ResultOK} })
		return
	}
	detail := fmt.Sprintf("after installing %s: %v", res.Generation.Name, c.Check.Err)
	if c.RolledBack {
		detail += fmt.Sprintf("; rolled back to %s", c.To.Name)
	} else {
		detail += "; rollback refused: " + c.RollbackErr.Error()
	}
	l.st.update(func(s *BundleState) {
		s.Counters.CheckFailures++
		s.LastCheck = &Event{Time: l.d.now(), Result: ResultFailed, Detail: detail}
		s.LastError = s.LastCheck
		if c.RolledBack {
			s.Counters.Rollbacks++
			s.LastRollback = &Event{Time: l.d.now(), Result: ResultOK, Detail: c.From.Name + " -> " + c.To.Name}
		}
	})
	if c.RolledBack {
		l.recordReloads(c.RollbackReloads, l.d.now())
	}
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
		if l.fetching == nil {
			l.fetch.NextTry = NextFetch(l.fetch, p.fetch)
			if !l.fetch.NextTry.IsZero() && !now.Before(l.fetch.NextTry) {
				l.startFetch(ctx)
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
	if l.fetching != nil || p.leaf == nil || !p.renew.Critical || (l.criticalFor == p.fp && now.Sub(l.criticalLogged) < criticalLogEvery) {
		return
	}
	l.log.Error("certificate about to expire without a renewal", "expires_in", p.leaf.NotAfter.Sub(now).Round(time.Second).String(),
		"not_after", p.leaf.NotAfter, "serial", pki.Serial(p.leaf), "why", l.notRenewedWhy())
	l.criticalLogged, l.criticalFor = now, p.fp
}

// plan reads the live certificate, records its schedule in the state and
// logs what needs saying: a policy that does not fit, a due renewal with
// nothing to renew it.
func (l *bundleLoop) plan(now time.Time) livePlan {
	live, gen, err := l.m.Live()
	var p livePlan
	if err == nil && live != nil {
		p.leaf = live.Leaf
	}
	notInstalled := ""
	switch {
	case errors.Is(err, rotate.ErrNoGeneration):
		notInstalled = "nothing installed in " + l.b.Resolved.Dir
		if l.seenGen != "" {
			l.log.Error("the live bundle is gone; nothing is installed until a bundle arrives (inbox, source, certkeeper install)",
				"dir", l.b.Resolved.Dir, "was", l.seenGen)
		}
		l.seenGen = ""
	case err != nil:
		notInstalled = "live bundle is damaged: " + err.Error()
	case live == nil || (live.Leaf == nil && !l.b.Resolved.CAOnly()):
		notInstalled = "nothing installed in " + l.b.Resolved.Dir
	}
	if gen.Name != "" {
		l.seenGen = gen.Name
	}
	l.renewAt, l.criticalAt = time.Time{}, time.Time{}
	if p.leaf != nil {
		leaf := p.leaf
		p.fp = pki.Fingerprint(leaf)
		p.renew = PlanRenewal(now, leaf, l.b.Renewal(), rotate.JitterFor(leaf))
		l.renewAt, l.criticalAt = p.renew.RenewAt, p.renew.CriticalAt
		if p.renew.Err != nil && l.planErrFor != p.fp {
			l.log.Error("the renewal policy does not fit the installed certificate; fix renew_before or renew_at in the config", "err", p.renew.Err,
				"lifetime", leaf.NotAfter.Sub(leaf.NotBefore).String())
		}
		if p.renew.Err != nil {
			l.planErrFor = p.fp
		}
		if p.renew.Due && l.src == nil && (l.dueWarnedFor != p.fp || now.Sub(l.dueWarned) >= dueWarnEvery) {
			l.log.Warn("renewal due, and this bundle has no source to renew from; drop a renewed bundle into the inbox",
				"inbox", l.b.Inbox, "renew_at", p.renew.RenewAt, "not_after", leaf.NotAfter)
			l.dueWarned, l.dueWarnedFor = now, p.fp
		}
	}
	l.st.update(func(s *BundleState) {
		s.Generation, s.Serial, s.NotAfter, s.RenewAt, s.RenewalDue, s.RenewalError = gen.Name, "", time.Time{}, p.renew.RenewAt, p.renew.Due, ""
		s.ExpiryCritical = p.renew.Critical
		s.NotInstalled = notInstalled
		if live != nil {
			if c := live.Leafish(); c != nil {
				s.Serial, s.NotAfter = pki.Serial(c), c.NotAfter
			}
		}
		if p.renew.Err != nil {
			s.RenewalError = p.renew.Err.Error()
		}
	})
	interval := DefaultPullInterval
	if sc := l.d.cfg().Source; sc != nil {
		interval = sc.PullInterval.Duration
	}
	p.fetch = FetchPlan{RenewAt: p.renew.RenewAt, Due: p.renew.Due, Interval: interval, Periodic: l.b.Mode != ModeCSR}
	if p.leaf != nil {
		p.fetch.Left, p.fetch.Life = p.leaf.NotAfter.Sub(now), p.leaf.NotAfter.Sub(p.leaf.NotBefore)
	}
	if p.leaf == nil || p.renew.Err != nil && p.renew.Due {
		// Nothing (valid) installed: fetch at once, then by the schedule.
		p.fetch.RenewAt, p.fetch.Due = l.fetch.Started, true
	}
	return p
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
}

// fetchTimeout bounds one call of the Source: the SFTP source applies
// [source] timeout to each phase (dial, handshake, listing, each file),
// so a whole fetch gets four of them.
func (l *bundleLoop) fetchTimeout() time.Duration {
	if sc := l.d.cfg().Source; sc != nil && sc.Timeout.Duration > 0 {
		return 4 * sc.Timeout.Duration
	}
	return 5 * time.Minute
}

// startFetch calls the Source in a goroutine of its own, under the loop's
// context (a stopped loop cancels it); the loop goes on repairing and
// taking the inbox meanwhile, and installs the result when it comes.
func (l *bundleLoop) startFetch(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, l.fetchTimeout())
	call := &fetchCall{cancel: cancel, done: make(chan struct{})}
	l.fetching = call
	src, b, out := l.src, l.b, l.fetched
	go func() {
		defer close(call.done)
		defer cancel()
		var r fetchResult
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
	if err == nil && len(inputs) > 0 {
		err = checkRefused(l.b, inputs)
	}
	var res rotate.Result
	outcome, detail := FetchNothingNewer, ""
	from := fetchedFrom(l.src, l.b, p.leaf == nil)
	if err == nil && len(inputs) > 0 {
		res, err = l.m.InstallNewer(inputs, from)
		if err != nil && OlderThanLive(inputs, p.leaf) {
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
	if res.Changed {
		l.installed(work, res, from, now)
	}
}
