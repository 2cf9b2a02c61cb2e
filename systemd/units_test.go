package systemd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/rotate"
	"github.com/certkeeper/certkeeper/systemd"
)

// MaxExposure is the highest `systemd-analyze security` figure a shipped
// service may have (0 is locked down, 10 is unprotected).
const MaxExposure = 3.0

var exposureRe = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`)

// exposure finds the overall figure in systemd-analyze security's output.
func exposure(out string) (float64, error) {
	m := exposureRe.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no \"Overall exposure level\" in:\n%s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func TestExposureParses(t *testing.T) {
	got, err := exposure("✓ UMask= ...\n\n→ Overall exposure level for certkeeper.service: 2.2 OK 🙂\n")
	if err != nil || got != 2.2 {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := exposure("Failed to parse"); err == nil {
		t.Error("parsed a figure from nothing")
	}
}

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	return p
}

// units writes the shipped units into a directory, their ExecStart
// pointing at an executable that exists here (verify checks it does).
func units(t *testing.T) (dir string, names []string) {
	t.Helper()
	dir = t.TempDir()
	for name, text := range map[string]string{
		"certkeeper.service":          systemd.Agent,
		"certkeeper-ca-renew.service": systemd.CARenewService,
		"certkeeper-ca-renew.timer":   systemd.CARenewTimer,
	} {
		text = strings.ReplaceAll(text, "=/usr/bin/certkeeper ", "=/bin/true ")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Join(dir, name))
	}
	return dir, names
}

func TestUnitsVerify(t *testing.T) {
	a := analyze(t)
	_, names := units(t)
	out, err := exec.Command(a, append([]string{"verify"}, names...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestUnitsExposure(t *testing.T) {
	a := analyze(t)
	dir, _ := units(t)
	for _, name := range []string{"certkeeper.service", "certkeeper-ca-renew.service"} {
		out, err := exec.Command(a, "security", "--offline=yes", filepath.Join(dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
		e, err := exposure(string(out))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: exposure %.1f", name, e)
		if e > MaxExposure {
			t.Errorf("%s: exposure %.1f, more than %.1f:\n%s", name, e, MaxExposure, out)
		}
	}
}

// The unit's ExecStart is what a rendered unit replaces.
func TestAgentExecStart(t *testing.T) {
	if !strings.Contains(systemd.Agent, "\nExecStart="+systemd.AgentExecStart+"\n") {
		t.Errorf("certkeeper.service does not run %q", systemd.AgentExecStart)
	}
}

// The shipped timer re-issues before any agent with the default policy
// starts asking for its renewed bundle: for every lifetime of 3 days or
// more, the window `ca renew --within` opens (40% of the lifetime left)
// leads the earliest agent (2/3 of the lifetime less the largest jitter)
// by more than the timer's period and its randomized delay.
func TestCARenewTimerLeadsTheAgents(t *testing.T) {
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/certkeeper ca renew .*--within (\S+)$`).FindStringSubmatch(systemd.CARenewService)
	if m == nil {
		t.Fatal("no ca renew --within in certkeeper-ca-renew.service")
	}
	w, err := authority.ParseWindow(strings.ReplaceAll(m[1], "%%", "%"))
	if err != nil || w != authority.DefaultWindow {
		t.Fatalf("the unit's --within %s is %+v (%v), want authority.DefaultWindow %+v", m[1], w, err, authority.DefaultWindow)
	}
	for _, want := range []string{"\nOnCalendar=hourly\n", "\nRandomizedDelaySec=10min\n"} {
		if !strings.Contains(systemd.CARenewTimer, want) {
			t.Fatalf("certkeeper-ca-renew.timer lacks %q", strings.TrimSpace(want))
		}
	}
	slack := time.Hour + 10*time.Minute
	day := 24 * time.Hour
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, life := range []time.Duration{3 * day, 7 * day, 30 * day, 90 * day, 365 * day} {
		na := nb.Add(life)
		earliest, err := rotate.RenewalTime(nb, na, rotate.RenewalPolicy{}, 0.999999)
		if err != nil {
			t.Fatal(err)
		}
		reissued := na.Add(-w.Span(nb, na))
		if lead := earliest.Sub(reissued); lead <= slack {
			t.Errorf("lifetime %s: ca renew re-issues only %s before the earliest agent asks; the timer needs %s", life, lead, slack)
		}
	}
}
