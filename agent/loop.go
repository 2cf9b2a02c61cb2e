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
	// renewAt is the live certificate's renewal time, zero when unknown.
	renewAt time.Time
	// What was last logged, so a condition that persists is logged once.
	lastRepairErr, lastInboxErr, lastWaiting, planErrFor string
	dueWarned                                            time.Time
	dueWarnedFor                                         string
	// stepStart is when the current reconcile began (unix nanoseconds),
	// 0 between steps: the watchdog's view of a stuck loop.
	stepStart atomic.Int64
}

func newBundleLoop(d *daemon, b *Bundle, st *bundleState, src Source) *bundleLoop {
	m := rotate.NewManager(b.Spec())
	m.Now = d.now
	m.Store.Now = d.now
	l := &bundleLoop{d: d, b: b, m: m, src: src, st: st, log: d.log.With("bundle", b.Name)}
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
	l.step(ctx)
	ready()
	var events chan fsnotify.Event
	var errs chan error
	if l.w != nil {
		events, errs = l.w.Events, l.w.Errors
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := l.d.now()
		wake := NextWake(now, l.repairAt, l.inboxAt, l.rescanAt, l.fetchDeadline(), l.futureRenewAt(now))
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
		case <-timer.C:
			if !l.due(l.d.now()) {
				continue
			}
			l.step(ctx)
		}
	}
}

func (l *bundleLoop) fetchDeadline() time.Time {
	if l.src == nil {
		return time.Time{}
	}
	return l.fetch.NextTry
}

func (l *bundleLoop) futureRenewAt(now time.Time) time.Time {
	if l.renewAt.After(now) {
		return l.renewAt
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
	// A renewal time that passed while the machine slept.
	return !l.renewAt.IsZero() && !now.Before(l.renewAt) && !l.st.snapshot().RenewalDue
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

// step is one reconcile, with a panic caught and logged rather than
// taking the agent down (certmagic does the same in its maintenance loop).
func (l *bundleLoop) step(ctx context.Context) {
	l.stepStart.Store(time.Now().UnixNano())
	defer l.stepStart.Store(0)
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("panic in the bundle's loop; it goes on", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			l.rescanAt = l.d.now().Add(time.Second)
		}
	}()
	work := context.WithoutCancel(ctx)
	now := l.d.now()
	l.repairAt, l.inboxAt = time.Time{}, time.Time{}
	l.rescanAt = now.Add(l.d.cfg().RescanInterval.Duration)
	l.watch()
	l.repair(now)
	l.takeInbox(work, now)
	l.schedule(ctx, work, now)
	l.d.saveState()
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
	if err := ensureInbox(l.b.Inbox); err != nil && l.lastInboxErr != err.Error() {
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
	files, err := listInbox(inbox)
	if err != nil || len(files) == 0 {
		l.setWaiting("")
		return
	}
	if settled := Settled(files, l.inboxEvent, l.b.Debounce.Duration); now.Before(settled) {
		l.inboxAt = settled
		return
	}
	paths := make([]string, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		paths[i], names[i] = filepath.Join(inbox, f.Name), f.Name
	}
	inputs, readErr := ReadInputs(paths)
	if after, _ := listInbox(inbox); !sameListing(files, after) {
		l.inboxAt = now.Add(l.b.Debounce.Duration) // still changing
		return
	}
	if readErr != nil {
		l.reject(files, readErr.Error(), now)
		return
	}
	source := "inbox: " + strings.Join(names, " ")
	res, err := l.m.Install(inputs, source)
	var verr *rotate.ValidationError
	switch {
	case err == nil:
		l.setWaiting("")
		if terr := takeInboxFiles(inbox, files); terr != nil {
			l.log.Error("installed, but could not remove the files from the inbox", "inbox", inbox, "err", terr)
		}
		l.installed(ctx, res, source, now)
	case errors.As(err, &verr):
		_, liveFiles, _ := l.m.Store.Live()
		if alreadyLive(inputs, liveFiles) {
			l.setWaiting("")
			l.log.Info("inbox files are already installed; removing them", "files", strings.Join(names, " "))
			_ = takeInboxFiles(inbox, files)
			return
		}
		live, _, _ := l.m.Live()
		quiet := Settled(files, l.inboxEvent, 0)
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
	dst, err := rejectInbox(l.b.Inbox, files, reason, now)
	l.log.Error("inbox set rejected; the live bundle is unchanged", "moved_to", dst, "reason", reason)
	if err != nil {
		l.log.Error("could not move every rejected file", "err", err)
	}
	l.st.update(func(s *BundleState) {
		s.Counters.Rejected++
		s.LastInstall = &Event{Time: now, Result: ResultRejected, Detail: reason + " (files in " + dst + ")"}
		s.LastError = s.LastInstall
	})
}

// installed records an install and, when the content changed, reloads
// and checks.
func (l *bundleLoop) installed(ctx context.Context, res rotate.Result, source string, now time.Time) {
	if !res.Changed {
		l.log.Info("bundle unchanged; no reload", "generation", res.Generation.Name, "source", source)
		l.st.update(func(s *BundleState) {
			s.LastInstall = &Event{Time: now, Result: ResultUnchanged, Detail: source}
		})
		return
	}
	leaf := res.Bundle.Leafish()
	l.log.Info("installed", "generation", res.Generation.Name, "dir", l.b.Resolved.Dir, "serial", pki.Serial(leaf), "source", source)
	l.st.update(func(s *BundleState) {
		s.Counters.Installs++
		s.LastInstall = &Event{Time: now, Result: ResultInstalled, Detail: res.Generation.Name + " from " + source}
	})
	l.reload(ctx, now)
	if len(l.b.Check) == 0 {
		return
	}
	cr := platform.RunReload(ctx, platform.ReloadAction{Command: l.b.Check, Timeout: l.b.CheckTimeout.Duration})
	attrs := []any{"command", strings.Join(l.b.Check, " "), "exit", cr.ExitCode, "duration", cr.Duration.Round(time.Millisecond)}
	if cr.Output != "" {
		attrs = append(attrs, "output", cr.Output)
	}
	if cr.Err == nil {
		l.log.Info("check passed", attrs...)
		l.st.update(func(s *BundleState) { s.LastCheck = &Event{Time: l.d.now(), Result: ResultOK} })
		return
	}
	l.log.Error("check failed after the install; rolling back", append(attrs, "err", cr.Err)...)
	l.st.update(func(*BundleState) { l.st.badLeaf = pki.Fingerprint(leaf) })
	detail := fmt.Sprintf("after installing %s: %v", res.Generation.Name, cr.Err)
	from, to, rerr := l.m.Rollback(false)
	if rerr != nil {
		l.log.Error("rollback refused; the new bundle stays live", "err", rerr)
		detail += "; rollback refused: " + rerr.Error()
	} else {
		l.log.Warn("rolled back", "from", from.Name, "to", to.Name)
		detail += fmt.Sprintf("; rolled back to %s", to.Name)
	}
	l.st.update(func(s *BundleState) {
		s.Counters.CheckFailures++
		s.LastCheck = &Event{Time: l.d.now(), Result: ResultFailed, Detail: detail}
		s.LastError = s.LastCheck
		if rerr == nil {
			s.Counters.Rollbacks++
			s.LastRollback = &Event{Time: l.d.now(), Result: ResultOK, Detail: from.Name + " -> " + to.Name}
		}
	})
	if rerr == nil {
		l.reload(ctx, l.d.now())
	}
}

// reload runs the bundle's reload actions once, in order, each with its
// timeout; each one's exit status and output are logged by RunReloads.
func (l *bundleLoop) reload(ctx context.Context, now time.Time) {
	if len(l.b.Reload) == 0 {
		return
	}
	results := RunReloads(ctx, l.b, l.d.log) // RunReloads names the bundle itself
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

// schedule reads the live certificate, plans its renewal, warns when it is
// due and nothing can renew it, and calls the Source when its time has
// come.
func (l *bundleLoop) schedule(ctx, work context.Context, now time.Time) {
	live, gen, err := l.m.Live()
	var leaf *x509.Certificate
	if live != nil {
		leaf = live.Leaf
	}
	l.renewAt = time.Time{}
	var plan RenewalPlan
	if err == nil && leaf != nil {
		fp := pki.Fingerprint(leaf)
		plan = PlanRenewal(now, leaf, l.b.Renewal(), rotate.JitterFor(leaf))
		l.renewAt = plan.RenewAt
		if plan.Err != nil && l.planErrFor != fp {
			l.log.Error("the renewal policy does not fit the installed certificate; fix renew_before or renew_at in the config", "err", plan.Err,
				"lifetime", leaf.NotAfter.Sub(leaf.NotBefore).String())
		}
		if plan.Err != nil {
			l.planErrFor = fp
		}
		if plan.Due && l.src == nil && (l.dueWarnedFor != fp || now.Sub(l.dueWarned) >= dueWarnEvery) {
			l.log.Warn("renewal due, and this bundle has no source to renew from; drop a renewed bundle into the inbox",
				"inbox", l.b.Inbox, "renew_at", plan.RenewAt, "not_after", leaf.NotAfter)
			l.dueWarned, l.dueWarnedFor = now, fp
		}
	}
	l.st.update(func(s *BundleState) {
		s.Generation, s.Serial, s.NotAfter, s.RenewAt, s.RenewalDue, s.RenewalError = gen.Name, "", time.Time{}, plan.RenewAt, plan.Due, ""
		if live != nil {
			if c := live.Leafish(); c != nil {
				s.Serial, s.NotAfter = pki.Serial(c), c.NotAfter
			}
		}
		if plan.Err != nil {
			s.RenewalError = plan.Err.Error()
		}
	})
	if l.src == nil {
		return
	}
	renewAt := plan.RenewAt
	if leaf == nil || plan.Err != nil && plan.Due {
		renewAt = l.fetch.Started // nothing (valid) installed: fetch at once
	}
	interval := DefaultPullInterval
	if sc := l.d.cfg().Source; sc != nil {
		interval = sc.PullInterval.Duration
	}
	l.fetch.NextTry = NextFetch(l.fetch, renewAt, interval)
	if now.Before(l.fetch.NextTry) {
		l.publishFetch()
		return
	}
	l.fetchNow(ctx, work, now)
	l.fetch.NextTry = NextFetch(l.fetch, renewAt, interval)
	l.publishFetch()
}

func (l *bundleLoop) publishFetch() {
	f := l.fetch
	l.st.update(func(s *BundleState) { s.Source = &f })
}

// fetchNow calls the Source and installs what it brings with
// InstallNewer: identical content is a no-op, an older leaf is refused.
func (l *bundleLoop) fetchNow(ctx, work context.Context, now time.Time) {
	timeout := 5 * time.Minute
	if sc := l.d.cfg().Source; sc != nil && sc.Timeout.Duration > 0 {
		timeout = 4 * sc.Timeout.Duration
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	inputs, err := l.src.Fetch(fctx, l.b)
	cancel()
	l.fetch.LastAttempt, l.fetch.Jitter = now, l.d.rand()
	if err == nil && len(inputs) > 0 {
		l.st.mu.Lock()
		bad := l.st.badLeaf
		l.st.mu.Unlock()
		if c := rotate.Classify(inputs); c.Leaf != nil && bad != "" && pki.Fingerprint(c.Leaf.Cert) == bad {
			err = errors.New("the source offers the certificate whose check failed and was rolled back; waiting for another")
		}
	}
	var res rotate.Result
	if err == nil && len(inputs) > 0 {
		res, err = l.m.InstallNewer(inputs, sourceName(l.src, l.b))
	}
	if err != nil {
		l.fetch.Failures++
		l.fetch.LastError = err.Error()
		l.log.Warn("fetch from the source failed", "err", err, "failures", l.fetch.Failures,
			"retry_in", Backoff(l.fetch.Failures, l.fetch.Jitter).Round(time.Second).String())
		l.st.update(func(s *BundleState) {
			s.Counters.SourceErrors++
			s.LastError = &Event{Time: now, Result: ResultFailed, Detail: "source: " + err.Error()}
		})
		return
	}
	l.fetch.Failures, l.fetch.LastError, l.fetch.LastSuccess = 0, "", now
	switch {
	case len(inputs) == 0:
		l.fetch.LastResult = "nothing offered"
	case res.Changed:
		l.fetch.LastResult = "installed " + res.Generation.Name
		l.installed(work, res, sourceName(l.src, l.b), now)
	default:
		l.fetch.LastResult = ResultUnchanged
	}
}
