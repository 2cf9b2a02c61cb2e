package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// NewLogger makes the agent's logger for a config's log_format and
// log_level:
//   - "human": "15:04:05.000 INFO  message  key=value …", for a terminal;
//   - "text": key=value (logfmt), for journald and log files; under
//     systemd (JOURNAL_STREAM set) without a time, which journald adds;
//   - "json": one JSON object a line;
//   - "": human on a terminal, text otherwise.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	if format == "" {
		format = "text"
		if isTerminal(w) {
			format = "human"
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts))
	case "human":
		return slog.New(&humanHandler{w: w, level: lv, mu: &sync.Mutex{}})
	}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// humanHandler writes one short line per record for a person at a
// terminal.
type humanHandler struct {
	w     io.Writer
	level slog.Level
	attrs []slog.Attr
	mu    *sync.Mutex
}

func (h *humanHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *humanHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Time.Format(time.TimeOnly + ".000"))
	fmt.Fprintf(&b, " %-5s %s", r.Level.String(), r.Message)
	write := func(a slog.Attr) bool {
		v := a.Value.Resolve().String()
		if strings.ContainsAny(v, " \t\n\"=") || v == "" {
			v = fmt.Sprintf("%q", v)
		}
		b.WriteString("  " + a.Key + "=" + v)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteString("\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *humanHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

// WithGroup is not used by certkeeper; groups are flattened.
func (h *humanHandler) WithGroup(string) slog.Handler { return h }

// sayOnce remembers, per lasting condition, what was last logged of it
// and when, so the loop logs a condition that persists once (or once per
// interval) rather than on every wake.
type sayOnce struct {
	what map[string]string
	when map[string]time.Time
}

// changed reports whether value differs from what was last said of key,
// and remembers it; "" is the condition's end (never said, but
// remembered, so its return is said again).
func (s *sayOnce) changed(key, value string) bool {
	if s.what == nil {
		s.what, s.when = map[string]string{}, map[string]time.Time{}
	}
	if s.what[key] == value {
		return false
	}
	s.what[key] = value
	return true
}

// sticky reports whether value differs from what was last said of key; a
// condition that ends is not forgotten (a policy error is said once per
// certificate).
func (s *sayOnce) sticky(key, value string) bool {
	return value != "" && s.changed(key, value)
}

// every is changed, and also true when d has passed since key was last
// said with this value.
func (s *sayOnce) every(key, value string, now time.Time, d time.Duration) bool {
	if s.changed(key, value) || now.Sub(s.when[key]) >= d {
		s.when[key] = now
		return true
	}
	return false
}
