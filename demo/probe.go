package demo

import (
	"fmt"
	"strconv"
	"strings"
)

// DaemonAnswer is what a node's daemon tells a mutual-TLS client: the
// serial of the certificate it serves (its own words, as the client saw
// them), and how often it re-read its files.
type DaemonAnswer struct {
	Serial  string
	Reloads int
}

// ParseDaemonLine reads the daemon's one line,
// "serial=<hex> client=<CN> reloads=<N>".
func ParseDaemonLine(line string) (DaemonAnswer, error) {
	var a DaemonAnswer
	seen := false
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "serial":
			if v == "" || strings.Trim(strings.ToLower(v), "0123456789abcdef") != "" {
				return DaemonAnswer{}, fmt.Errorf("the daemon answered %q: its serial is not hex", line)
			}
			a.Serial, seen = NormalizeSerial(v), true
		case "reloads":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return DaemonAnswer{}, fmt.Errorf("the daemon answered %q: its reload count is not a number", line)
			}
			a.Reloads = n
		}
	}
	if !seen {
		return DaemonAnswer{}, fmt.Errorf("the daemon answered %q, without a serial", line)
	}
	return a, nil
}
