// Package promtext finishes a Prometheus text exposition written by
// VictoriaMetrics/metrics: with metadata on (metrics.ExposeMetadata, which
// package agent turns on for the whole binary), its WritePrometheus writes
// every family's "# HELP name" line with no text. An empty HELP parses,
// but a scraper or a reader of the textfile learns nothing from it.
package promtext

import (
	"bytes"
	"strings"
)

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// WithHelp returns data with each empty "# HELP family" line given the
// text help holds for that family, and dropped when help has none (the
// format makes HELP optional; an empty one says nothing). Every other line
// is kept as it is.
func WithHelp(data []byte, help map[string]string) []byte {
	var out bytes.Buffer
	out.Grow(len(data) + 64*len(help))
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		data = rest
		if fam, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok && !bytes.ContainsAny(bytes.TrimSpace(fam), " \t") {
			text := help[string(bytes.TrimSpace(fam))]
			if text == "" {
				continue
			}
			out.WriteString("# HELP " + string(bytes.TrimSpace(fam)) + " " + helpEscaper.Replace(text) + "\n")
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}
