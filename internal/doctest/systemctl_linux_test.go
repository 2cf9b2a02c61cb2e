//go:build linux

package doctest

import (
	"reflect"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`/usr/bin/certkeeper agent --config /etc/certkeeper/certkeeper.toml`: {"/usr/bin/certkeeper", "agent", "--config", "/etc/certkeeper/certkeeper.toml"},
		`/bin/sh -c 'echo a; echo "b"'`:                                      {"/bin/sh", "-c", `echo a; echo "b"`},
		`/bin/kill -HUP $MAINPID`:                                            {"/bin/kill", "-HUP", "$MAINPID"},
		`x "esc \" q"`:                                                       {"x", `esc " q`},
	} {
		got, err := SplitCommand(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := SplitCommand(`sh -c 'unterminated`); err == nil {
		t.Error("an unterminated quote is accepted")
	}
}

// Drop-ins apply after the unit, and an empty assignment resets a list,
// as systemd does.
func TestParseUnit(t *testing.T) {
	u := &Unit{}
	main := `[Unit]
Description=the unit
ConditionPathExists=/var/lib/certkeeper/ca/cluster.crt
[Service]
Type=oneshot
ExecStart=/usr/bin/certkeeper ca renew \
  --dir /var/lib/certkeeper/ca --within 720h
# a comment
EnvironmentFile=-/etc/default/x
`
	dropin := `[Unit]
ConditionPathExists=
ConditionPathExists=/srv/ca/cluster.crt
OnSuccess=publish.service other.service
[Service]
ExecStart=
ExecStart=/usr/bin/certkeeper ca renew --dir /srv/ca --within 720h
Environment=A=1 "B=two words"
`
	if err := ParseUnit(u, main); err != nil {
		t.Fatal(err)
	}
	if err := ParseUnit(u, dropin); err != nil {
		t.Fatal(err)
	}
	want := &Unit{Type: "oneshot", Desc: "the unit",
		Exec:  map[string][][]string{"ExecStart": {{"/usr/bin/certkeeper", "ca", "renew", "--dir", "/srv/ca", "--within", "720h"}}},
		Env:   []string{"A=1", "B=two words"},
		Files: []string{"-/etc/default/x"},
		Cond:  []string{"/srv/ca/cluster.crt"},
		OnOK:  []string{"publish.service", "other.service"},
	}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("ParseUnit:\n got %+v\nwant %+v", u, want)
	}
	if err := ParseUnit(&Unit{}, "[Service]\nno equals sign\n"); err == nil {
		t.Fatal("a line without = is accepted")
	}
}

func TestCommandPrefixesAndMainPID(t *testing.T) {
	args, ignore, privileged := command([]string{"-/bin/kill", "-HUP", "${MAINPID}"}, 42)
	if !ignore || privileged || !reflect.DeepEqual(args, []string{"/bin/kill", "-HUP", "42"}) {
		t.Fatalf("command: %q %v %v", args, ignore, privileged)
	}
	// "+": full privileges, whatever User= says (the renew timer's sync).
	args, ignore, privileged = command([]string{"+/bin/sh", "-c", "x"}, 0)
	if ignore || !privileged || !reflect.DeepEqual(args, []string{"/bin/sh", "-c", "x"}) {
		t.Fatalf("command(+): %q %v %v", args, ignore, privileged)
	}
	if c, err := credential(&Unit{User: "certkeeper-ca"}, true); c != nil || err != nil {
		t.Errorf("a + line runs as root: %v %v", c, err)
	}
	if c, err := credential(&Unit{User: "root"}, false); c != nil || err != nil {
		t.Errorf("User=root: %v %v", c, err)
	}
	if _, err := credential(&Unit{User: "no-such-user-certkeeper"}, false); err == nil {
		t.Error("an unknown User= is accepted")
	}
	if got := unitName("ssh"); got != "ssh.service" {
		t.Errorf("unitName(ssh) = %q", got)
	}
	if got := unitName("certkeeper-ca-renew.timer"); got != "certkeeper-ca-renew.timer" {
		t.Errorf("unitName(timer) = %q", got)
	}
}
