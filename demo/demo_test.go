package demo

import (
	"strings"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := []Row{
		{Node: "node1", Layout: "flocker-node", RenewsBy: "push", Serial: "5e63fca6aabbccdd", NotAfter: now.Add(28400 * time.Millisecond),
			RenewAt: now.Add(-time.Second), Installs: 2, Reloads: 1, DaemonSerial: "5e63fca6aabbccdd", DaemonReloads: 1},
		{Node: "node2", Layout: "mesos", RenewsBy: "pull"},
		{Node: "node3", Layout: "glow", RenewsBy: "csr", Serial: "ab", DaemonErr: "connection refused"},
	}
	got := strings.Join(Table(rows, now), "\n")
	want := strings.Join([]string{
		"NODE   LAYOUT        RENEWS BY  SERIAL     EXPIRES IN  WINDOW IN  INSTALLS  RELOADS  DAEMON SERVES  DAEMON RELOADS",
		"node1  flocker-node  push       5e63fca6…  28.4s       due        2         1        5e63fca6…      1",
		"node2  mesos         pull       -          -           -          0         0        -              -",
		"node3  glow          csr        ab         -           -          0         0        (down)         -",
	}, "\n")
	if got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"0A:BC": "abc", "abc": "abc", "00": "0", "": "", "5E:63": "5e63"} {
		if got := NormalizeSerial(in); got != want {
			t.Errorf("NormalizeSerial(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDaemonLine(t *testing.T) {
	a, err := ParseDaemonLine("serial=0abc client=demo-client reloads=2\n")
	if err != nil || a.Serial != "abc" || a.Reloads != 2 {
		t.Fatalf("%+v, %v", a, err)
	}
	// The old testdaemon's line, without a reload count.
	if a, err := ParseDaemonLine("serial=ff client=x"); err != nil || a.Serial != "ff" || a.Reloads != 0 {
		t.Fatalf("%+v, %v", a, err)
	}
	for _, bad := range []string{"", "hello", "serial=", "serial=xyz", "serial=ab reloads=-1", "serial=ab reloads=many"} {
		if _, err := ParseDaemonLine(bad); err == nil {
			t.Errorf("ParseDaemonLine(%q) took it", bad)
		}
	}
}

// The daemon's answer comes over the network: whatever it says, the
// parser returns a hex serial or an error.
func FuzzParseDaemonLine(f *testing.F) {
	f.Add("serial=0abc client=demo-client reloads=2\n")
	f.Add("serial= reloads=")
	f.Fuzz(func(t *testing.T, line string) {
		a, err := ParseDaemonLine(line)
		if err != nil {
			return
		}
		if a.Serial == "" || strings.Trim(a.Serial, "0123456789abcdef") != "" || a.Reloads < 0 {
			t.Fatalf("ParseDaemonLine(%q) = %+v", line, a)
		}
	})
}
