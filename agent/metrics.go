package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/certkeeper/certkeeper/internal/promtext"
	"github.com/certkeeper/certkeeper/platform"
)

// Metric names, per bundle (label bundle="NAME"). docs/agent.md lists them.
const (
	mNotAfter        = "certkeeper_bundle_not_after_timestamp_seconds"
	mExpiry          = "certkeeper_bundle_expiry_seconds"
	mRenewal         = "certkeeper_bundle_renewal_timestamp_seconds"
	mRenewalDue      = "certkeeper_bundle_renewal_due"
	mExpiryCritical  = "certkeeper_bundle_expiry_critical"
	mHealth          = "certkeeper_bundle_health"
	mReloadOwed      = "certkeeper_bundle_reload_owed"
	mLastInstall     = "certkeeper_bundle_last_install_timestamp_seconds"
	mLastInstallOK   = "certkeeper_bundle_last_install_success"
	mInstalls        = "certkeeper_installs_total"
	mReloads         = "certkeeper_reloads_total"
	mReloadFailures  = "certkeeper_reload_failures_total"
	mRepairs         = "certkeeper_repairs_total"
	mRejected        = "certkeeper_rejected_inputs_total"
	mRollbacks       = "certkeeper_rollbacks_total"
	mCheckFailures   = "certkeeper_check_failures_total"
	mSourceErrors    = "certkeeper_source_errors_total"
	mSourceFailures  = "certkeeper_source_consecutive_failures"
	mSourceNextTry   = "certkeeper_source_next_try_timestamp_seconds"
	mSourceLastOK    = "certkeeper_source_last_success_timestamp_seconds"
	mSourceNothing   = "certkeeper_source_nothing_newer"
	mSourceFetches   = "certkeeper_source_fetches_total"
	mServedMatches   = "certkeeper_served_matches_live"
	mServedChecked   = "certkeeper_served_check_timestamp_seconds"
	mAgentStart      = "certkeeper_agent_start_timestamp_seconds"
	mAgentCPU        = "certkeeper_agent_cpu_seconds_total"
	metricsHTTPRoute = "/metrics"
)

// metricHelp is each family's HELP text, as docs/agent.md's table says it
// (TestMetricsHaveHelp keeps them together).
var metricHelp = map[string]string{
	mNotAfter:       "the live certificate's expiry (unix time)",
	mExpiry:         "seconds until the live certificate expires (negative when expired)",
	mRenewal:        "the next renewal time",
	mRenewalDue:     "1 while a renewal is due",
	mExpiryCritical: "1 within the critical threshold of expiry (or expired) without a renewal",
	mHealth:         "as check judges the bundle: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
	mReloadOwed:     "1 while the live generation is owed its reload or check",
	mLastInstall:    "when the last install attempt ended",
	mLastInstallOK:  "1 if the last install attempt installed (or was identical), 0 if rejected or failed",
	mInstalls:       "installs that changed the bundle",
	mReloads:        "reload actions run",
	mReloadFailures: "reload actions that failed",
	mRepairs:        "drift repaired",
	mRejected:       "inbox sets rejected",
	mRollbacks:      "rollbacks after a failed check",
	mCheckFailures:  "failed checks",
	mSourceErrors:   "failed fetches from the source",
	mSourceFailures: "source failures since the last success",
	mSourceNextTry:  "when the source is called next",
	mSourceLastOK:   "the last successful fetch",
	mSourceNothing:  "fetches in a row, in the renewal window, that brought nothing newer",
	mSourceFetches:  "calls of the source (the admin host), successful or not",
	mServedMatches:  "1 when the daemon served the live leaf at the last served check, 0 when not (or unreachable)",
	mServedChecked:  "when the served check last ran",
	mAgentStart:     "when the agent started",
	mAgentCPU:       "CPU time the agent used (getrusage)",
}

func init() { metrics.ExposeMetadata(true) }

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// WriteMetrics writes the bundles' metrics in the Prometheus text format.
// A fresh set per call keeps it simple: a bundle dropped by a config
// reload simply stops appearing.
func WriteMetrics(w io.Writer, started time.Time, bundles []BundleState, now time.Time) {
	s := metrics.NewSet()
	gauge := func(name, bundle string, v float64) {
		s.NewGauge(name+`{bundle="`+bundle+`"}`, nil).Set(v)
	}
	counter := func(name, bundle string, v uint64) {
		s.NewCounter(name + `{bundle="` + bundle + `"}`).Set(v)
	}
	s.NewGauge(mAgentStart, nil).Set(unix(started))
	if cpu, ok := platform.CPUTime(); ok {
		// process_cpu_seconds_total counts 10 ms ticks; an idle agent
		// uses less than that in minutes.
		s.NewFloatCounter(mAgentCPU).Set(cpu.Seconds())
	}
	for _, b := range bundles {
		n := b.Name
		if !b.NotAfter.IsZero() {
			gauge(mNotAfter, n, unix(b.NotAfter))
			gauge(mExpiry, n, b.NotAfter.Sub(now).Seconds())
		}
		if !b.RenewAt.IsZero() {
			gauge(mRenewal, n, unix(b.RenewAt))
		}
		gauge(mRenewalDue, n, boolf(b.RenewalDue))
		gauge(mExpiryCritical, n, boolf(b.ExpiryCritical))
		gauge(mReloadOwed, n, boolf(b.Owed != nil))
		h, _ := b.Health()
		gauge(mHealth, n, float64(h))
		if e := b.LastInstall; e != nil {
			gauge(mLastInstall, n, unix(e.Time))
			gauge(mLastInstallOK, n, boolf(e.Result == ResultInstalled || e.Result == ResultUnchanged))
		}
		c := b.Counters
		counter(mInstalls, n, c.Installs)
		counter(mReloads, n, c.Reloads)
		counter(mReloadFailures, n, c.ReloadFailures)
		counter(mRepairs, n, c.Repairs)
		counter(mRejected, n, c.Rejected)
		counter(mRollbacks, n, c.Rollbacks)
		counter(mCheckFailures, n, c.CheckFailures)
		if sv := b.Served; sv != nil {
			gauge(mServedMatches, n, boolf(sv.Match))
			gauge(mServedChecked, n, unix(sv.Checked))
		}
		if src := b.Source; src != nil {
			counter(mSourceErrors, n, c.SourceErrors)
			gauge(mSourceFailures, n, float64(src.Failures))
			gauge(mSourceNextTry, n, unix(src.NextTry))
			gauge(mSourceLastOK, n, unix(src.LastSuccess))
			gauge(mSourceNothing, n, float64(src.NothingNewer))
			counter(mSourceFetches, n, c.Fetches)
		}
	}
	// Metadata is on: WritePrometheus writes an empty "# HELP name" per
	// family; give each its text.
	var buf bytes.Buffer
	s.WritePrometheus(&buf)
	w.Write(promtext.WithHelp(buf.Bytes(), metricHelp))
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics serves /metrics on addr until ctx ends: the bundles'
// metrics and the process's own (memory, CPU, file descriptors).
func serveMetrics(ctx context.Context, addr string, write func(io.Writer)) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc(metricsHTTPRoute, func(w http.ResponseWriter, _ *http.Request) {
		var buf, proc bytes.Buffer
		write(&buf)
		// The process's own families come with empty HELP lines too;
		// they have no text of ours to give, so the lines go.
		metrics.WriteProcessMetrics(&proc)
		metrics.WriteFDMetrics(&proc)
		buf.Write(promtext.WithHelp(proc.Bytes(), nil))
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(buf.Bytes())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under it; stop reports nothing more
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, ln.Addr().String(), nil
}
