package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options are what the caller of Run may set; the zero value runs the
// daemon as `certkeeper agent` does.
type Options struct {
	// Logger, when set, replaces the logger built from log_format and
	// log_level (tests capture the log this way).
	Logger *slog.Logger
	// LogOutput is where the built logger writes; default os.Stderr.
	LogOutput io.Writer
	// Now and Rand are the clock and the jitter source (values in [0,1)).
	Now  func() time.Time
	Rand func() float64
	// SourceFor returns the Source of a bundle, or nil when it has none
	// (then a due renewal only warns). Called again after each config
	// reload. nil: no bundle has a source.
	SourceFor func(*Config, *Bundle) Source
	// Notify receives sd_notify-style states: "READY=1" once every bundle
	// has been reconciled once (and again when a config reload is done),
	// "RELOADING=1" when SIGHUP handling starts, "STOPPING=1" on shutdown,
	// and "WATCHDOG=1" every WatchdogInterval while every bundle's loop is
	// alive. nil: nobody is told.
	Notify func(state string)
	// Version is the agent's version, for the fleet report.
	Version string
	// WatchdogInterval is how often WATCHDOG=1 is sent; 0 sends none.
	// systemd's WATCHDOG_USEC/2 is the usual choice.
	WatchdogInterval time.Duration
	// Hangup, when set, replaces SIGHUP as the request to re-read the
	// config (tests use it in-process).
	Hangup <-chan struct{}
	// Started, when set, is called with the daemon's facts once it runs.
	Started func(Info)
	// ReadyWait bounds how long a bundle with nothing installed holds the
	// ready report for its first fetch; 0 means DefaultReadyWait.
	ReadyWait time.Duration
	// ReportHeartbeat is how often the fleet report is rewritten when
	// nothing in it changed, so that fleet status can tell a running
	// agent from a dead one; 0 means DefaultReportHeartbeat.
	ReportHeartbeat time.Duration
}

// DefaultReadyWait keeps the ready report well inside the unit's
// TimeoutStartSec (5 min), whatever [source] timeout allows a fetch.
const DefaultReadyWait = 2 * time.Minute

// Info is what a started daemon reports.
type Info struct {
	// MetricsAddr is the address metrics are served on ("" when off); the
	// real port when metrics_listen asked for port 0.
	MetricsAddr string
}

// stuckAfter is how long one reconcile step may run before the watchdog
// considers its loop stuck, unless the bundle's reload actions and check
// may legally take longer (Bundle.longestStep); the config caps each of
// their timeouts (MaxReloadTimeout, MaxCheckTimeout). A fetch does not
// count: it runs beside the loop.
const stuckAfter = 15 * time.Minute

type daemon struct {
	path    string
	opts    Options
	log     *slog.Logger
	started time.Time
	rand    func() float64
	now     func() time.Time

	cfgMu  sync.Mutex
	config *Config

	statesMu sync.Mutex
	states   map[string]*bundleState
	order    []string

	saveMu     sync.Mutex
	lastState  []byte
	lastReport []byte
	// reportAt is when the report was last written (the daemon's clock).
	reportAt time.Time

	loopsMu sync.Mutex
	loops   []*runningLoop
}

type runningLoop struct {
	l      *bundleLoop
	cancel context.CancelFunc
	done   chan struct{}
	alive  atomic.Bool
}

func (d *daemon) reportHeartbeat() time.Duration {
	if d.opts.ReportHeartbeat > 0 {
		return max(d.opts.ReportHeartbeat, MinReportHeartbeat)
	}
	if c := d.cfg(); c != nil && c.ReportHeartbeat.Duration > 0 {
		return c.ReportHeartbeat.Duration
	}
	return DefaultReportHeartbeat
}

func (d *daemon) readyWait() time.Duration {
	if d.opts.ReadyWait > 0 {
		return d.opts.ReadyWait
	}
	return DefaultReadyWait
}

func (d *daemon) cfg() *Config {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	return d.config
}

// Run is `certkeeper agent`: it loads the config, looks after every bundle
// until ctx ends (SIGTERM), re-reads the config on SIGHUP (keeping the
// running one when the new one is bad), and returns nil after a clean stop.
// A config that does not load at start is the error it returns.
func Run(ctx context.Context, configPath string, o Options) error {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return err
	}
	d := &daemon{path: configPath, opts: o, config: cfg, states: map[string]*bundleState{}, now: o.Now, rand: o.Rand}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Float64
	}
	d.started = d.now()
	d.log = d.logger(cfg)
	notify := func(s string) {
		if o.Notify != nil {
			o.Notify(s)
		}
	}

	stopMetrics, addr, err := d.startMetrics(ctx, cfg)
	if err != nil {
		return err
	}
	if o.Started != nil {
		o.Started(Info{MetricsAddr: addr})
	}
	d.log.Info("agent started", "config", configPath, "bundles", len(cfg.Bundles), "pid", os.Getpid(), "metrics", addr)

	hup := o.Hangup
	if hup == nil {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP)
		defer signal.Stop(sig)
		ch := make(chan struct{}, 1)
		go func() {
			for range sig {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}()
		hup = ch
	}

	readyCh := d.startLoops(ctx, cfg)
	// The report's heartbeat: a tick every half heartbeat rewrites a
	// report older than half a heartbeat, so one is never older than a
	// heartbeat while the agent runs; at most two small writes a
	// heartbeat.
	beat := time.NewTicker(d.reportHeartbeat() / 2)
	defer beat.Stop()
	var watchdog <-chan time.Time
	if o.WatchdogInterval > 0 {
		t := time.NewTicker(o.WatchdogInterval)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-readyCh:
			readyCh = nil
			notify("READY=1")
			d.log.Info("every bundle reconciled; ready")
		case <-beat.C:
			d.saveState()
		case <-watchdog:
			if d.loopsHealthy() {
				notify("WATCHDOG=1")
			} else {
				d.log.Error("a bundle's loop is stuck or gone; withholding the watchdog keep-alive")
			}
		case <-hup:
			notify("RELOADING=1")
			newCfg, err := LoadConfig(configPath)
			if err != nil {
				d.log.Error("config reload failed; keeping the running config", "err", err)
				notify("READY=1")
				continue
			}
			d.log.Info("config reloaded; restarting the bundles' loops", "bundles", len(newCfg.Bundles))
			d.stopLoops()
			if newCfg.MetricsListen != cfg.MetricsListen {
				stopMetrics()
				var addr string
				if stopMetrics, addr, err = d.startMetrics(ctx, newCfg); err != nil {
					d.log.Error("metrics listener", "err", err)
					stopMetrics = func() {}
				} else if addr != "" {
					d.log.Info("metrics listener moved", "metrics", addr)
				}
			}
			cfg = newCfg
			d.cfgMu.Lock()
			d.config = newCfg
			d.cfgMu.Unlock()
			if o.Logger == nil {
				d.log = d.logger(newCfg)
			}
			beat.Reset(d.reportHeartbeat() / 2)
			readyCh = d.startLoops(ctx, newCfg)
		case <-ctx.Done():
			notify("STOPPING=1")
			d.log.Info("stopping; letting any install or reload in progress finish")
			d.stopLoops()
			stopMetrics()
			d.saveFinal()
			d.log.Info("stopped")
			return nil
		}
	}
}

func (d *daemon) logger(c *Config) *slog.Logger {
	if d.opts.Logger != nil {
		return d.opts.Logger
	}
	w := d.opts.LogOutput
	if w == nil {
		w = os.Stderr
	}
	return NewLogger(w, c.LogFormat, c.LogLevel)
}

func (d *daemon) startMetrics(ctx context.Context, c *Config) (func(), string, error) {
	if c.MetricsListen == "" {
		return func() {}, "", nil
	}
	stop, addr, err := serveMetrics(ctx, c.MetricsListen, func(w io.Writer) { d.writeMetrics(w) })
	if err != nil {
		return nil, "", errors.New("metrics_listen " + c.MetricsListen + ": " + err.Error())
	}
	return stop, addr, nil
}

func (d *daemon) writeMetrics(w io.Writer) {
	WriteMetrics(w, d.started, judged(d.cfg(), d.snapshot()), d.now())
}

// startLoops starts one loop per bundle; the channel closes when every
// loop has reconciled once.
func (d *daemon) startLoops(ctx context.Context, c *Config) <-chan struct{} {
	// On the first start, a bundle's source schedule continues where the
	// previous run left it: a fleet restarted together (a package upgrade)
	// then keeps its pulls spread over the hour instead of all asking the
	// admin host in the same minute.
	var previous map[string]*FetchState
	if len(d.states) == 0 {
		if prev, err := ReadState(c); err == nil && prev != nil {
			previous = map[string]*FetchState{}
			for _, b := range prev.Bundles {
				if f := b.Source; f != nil && !f.LastAttempt.IsZero() {
					// Started and Jitter are not written down: this run's.
					f.Started, f.Jitter = d.started, d.rand()
					previous[b.Name] = f
				}
			}
		}
	}
	d.statesMu.Lock()
	keep := map[string]*bundleState{}
	d.order = nil
	for i := range c.Bundles {
		name := c.Bundles[i].Name
		st := d.states[name]
		if st == nil {
			st = &bundleState{s: BundleState{Name: name, Source: previous[name]}}
		}
		keep[name] = st
		d.order = append(d.order, name)
	}
	d.states = keep
	d.statesMu.Unlock()

	var ready sync.WaitGroup
	d.loopsMu.Lock()
	for i := range c.Bundles {
		b := &c.Bundles[i]
		var src Source
		if d.opts.SourceFor != nil {
			src = d.opts.SourceFor(c, b)
		}
		l := newBundleLoop(d, b, keep[b.Name], src)
		lctx, cancel := context.WithCancel(ctx)
		rl := &runningLoop{l: l, cancel: cancel, done: make(chan struct{})}
		rl.alive.Store(true)
		d.loops = append(d.loops, rl)
		ready.Add(1)
		go func() {
			defer close(rl.done)
			defer rl.alive.Store(false)
			var once sync.Once
			defer once.Do(ready.Done)
			l.run(lctx, func() { once.Do(ready.Done) })
		}()
	}
	d.loopsMu.Unlock()
	ch := make(chan struct{})
	go func() { ready.Wait(); close(ch) }()
	return ch
}

// stopLoops cancels every loop and waits: each finishes the step it is in
// (an install, a swap, a reload) before it returns.
func (d *daemon) stopLoops() {
	d.loopsMu.Lock()
	loops := d.loops
	d.loops = nil
	d.loopsMu.Unlock()
	for _, rl := range loops {
		rl.cancel()
	}
	for _, rl := range loops {
		<-rl.done
	}
}

func (d *daemon) loopsHealthy() bool {
	d.loopsMu.Lock()
	defer d.loopsMu.Unlock()
	for _, rl := range d.loops {
		if !rl.alive.Load() {
			return false
		}
		if s := rl.l.stepStart.Load(); s != 0 && time.Since(time.Unix(0, s)) > max(stuckAfter, rl.l.b.longestStep()) {
			return false
		}
	}
	return true
}

func (d *daemon) snapshot() []BundleState {
	d.statesMu.Lock()
	defer d.statesMu.Unlock()
	out := make([]BundleState, 0, len(d.order))
	for _, n := range d.order {
		out = append(out, d.states[n].snapshot())
	}
	return out
}

// saveState writes the runtime state file when it changed, and the
// metrics textfile when one is configured.
func (d *daemon) saveState() { d.save(time.Time{}) }

func (d *daemon) saveFinal() { d.save(d.now()) }

func (d *daemon) save(stopped time.Time) {
	// The snapshot is taken under the lock: taken before it, a slower
	// writer's older snapshot could overwrite a newer one.
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	c := d.cfg()
	bundles := d.snapshot()
	st := RuntimeState{PID: os.Getpid(), Started: d.started, Stopped: stopped, Config: d.path, Bundles: bundles}
	data, _ := json.MarshalIndent(st, "", "  ")
	if !bytes.Equal(data, d.lastState) {
		// 0600: the state directory is traversable (0711) for the CA
		// account on an admin host; what the agent knows stays root's.
		if err := writeFileAtomic(StatePath(c), append(data, '\n'), 0o600, 0o711, false); err != nil {
			d.log.Error("cannot write the state file; status will not show the agent's view", "err", err)
		} else {
			d.lastState = data
		}
	}
	// The fleet report, when its content (its time aside) changed, or
	// when its heartbeat is due (and every bundle's loop is alive: a stuck
	// agent's report goes stale, as a dead one's does). 0644: the push
	// account reads it over SFTP (fleet status); it holds serials, dates
	// and health, no key.
	seen := judged(c, bundles)
	rep := BuildReport(c, d.opts.Version, os.Getpid(), seen, time.Time{}, stopped)
	rep.Heartbeat = d.reportHeartbeat().Seconds()
	now := d.now()
	repData := rep.Marshal()
	if ReportDue(!bytes.Equal(repData, d.lastReport), d.reportAt, now, d.reportHeartbeat(), stopped.IsZero() && d.loopsHealthy()) {
		rep.Written = now
		if err := writeFileAtomic(ReportPath(c), rep.Marshal(), 0o644, 0o711, false); err != nil {
			d.log.Error("cannot write the fleet report; fleet status will not see this node's state", "err", err)
		} else {
			d.lastReport, d.reportAt = repData, now
		}
	}
	if c.MetricsTextfile != "" {
		var buf bytes.Buffer
		WriteMetrics(&buf, d.started, seen, d.now())
		// 0755: node_exporter's textfile collector, not root, lists the
		// directory.
		if err := writeFileAtomic(c.MetricsTextfile, buf.Bytes(), 0o644, 0o755, false); err != nil {
			d.log.Error("cannot write the metrics textfile", "err", err)
		}
	}
}
