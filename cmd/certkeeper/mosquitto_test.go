//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const mosquittoRotations = 3

// The admin's story with a real mosquitto, which drops privileges to its
// own user before it reads its certificates (and reads them again on
// SIGHUP): the bundle gives the key to the group mosquitto (key_mode 0640,
// dir_mode 0750); clients publish and subscribe with client certificates
// (mosquitto_pub, mosquitto_sub) through rotations, each followed by one
// reload and the new serial served.
func TestRealMosquittoGroupReadableKey(t *testing.T) {
	broker := needDaemon(t, "/usr/sbin/mosquitto", "mosquitto")
	pub := needDaemon(t, "/usr/bin/mosquitto_pub", "mosquitto-clients")
	sub := needDaemon(t, "/usr/bin/mosquitto_sub", "mosquitto-clients")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: mosquitto drops privileges to its own user only when started as root")
		}
		t.Skip("needs root: mosquitto drops privileges to its own user only when started as root")
	}
	mu, err := user.Lookup("mosquitto")
	if err != nil {
		t.Fatalf("no user mosquitto (the mosquitto package makes it): %v", err)
	}
	muid, _ := strconv.Atoi(mu.Uid)
	ca := newClusterCA(t)
	ca.issue("broker", "client")
	dir := t.TempDir()
	// mosquitto writes its pid file after dropping privileges, as Debian's
	// /run/mosquitto/ is the user's.
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(run, muid, -1)
	os.Chmod(dir, 0o711)
	pidfile := filepath.Join(run, "mosquitto.pid")
	m := newMember(t, "broker", fmt.Sprintf("group = \"mosquitto\"\nkey_mode = \"0640\"\ndir_mode = \"0750\"\n\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n", pidfile))
	// The user mosquitto must be able to walk to the live directory: the
	// test's temporary directories are 0700.
	for p := m.root; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	m.drop(ca)
	m.waitLive(ca.serial("broker"))
	fi, err := os.Stat(filepath.Join(m.live, "node.key"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("node.key: %v %v, want 0640", fi, err)
	}

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`pid_file %s
user mosquitto
persistence false
log_dest stderr
log_type all
listener %d 127.0.0.1
cafile %[3]s/cluster.crt
certfile %[3]s/node.crt
keyfile %[3]s/node.key
require_certificate true
use_identity_as_username true
`, pidfile, port, m.live)), 0o644)
	d := startDaemon(t, "mosquitto", dir, broker, "-c", conf)
	waitPort(t, addr, d)
	if uid := procUID(t, d.cmd.Process.Pid); uid != muid {
		t.Fatalf("mosquitto runs as uid %d, want %d (mosquitto)", uid, muid)
	}
	reloads := func() int { return strings.Count(d.output(), "Reloading config") }
	cfg := ca.tlsConfig("client")
	waitServed(t, cfg, addr, ca.serial("broker"))

	tlsArgs := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "--cafile", ca.path("client", "cluster.crt"),
		"--cert", ca.path("client", "node.crt"), "--key", ca.path("client", "node.key")}
	// One subscriber for the whole test, connected before the rotations.
	subOut := filepath.Join(dir, "sub.out")
	s := startDaemon(t, "mosquitto_sub", dir, "/bin/sh", "-c", fmt.Sprintf("exec %s %s -q 1 -t 'load/#' >%s", sub, strings.Join(tlsArgs, " "), subOut))
	waitFor(t, "the subscriber to connect", func() bool {
		if !s.alive() {
			t.Fatalf("mosquitto_sub exited:\n%s\n%s", s.output(), d.output())
		}
		return strings.Contains(d.output(), "SUBACK")
	})
	// The publishers: each message a new mosquitto_pub, so a new handshake
	// against the certificate served at that moment.
	load := runLoad(90*time.Second, 20*time.Millisecond, func(i int) (string, error) {
		out, err := exec.Command(pub, append(tlsArgs, "-q", "1", "-t", fmt.Sprintf("load/%d", i), "-m", strconv.Itoa(i))...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("mosquitto_pub %d: %v: %s", i, err, out)
		}
		return "", nil
	})
	load.waitRequests(t, 10)
	for r := 1; r <= mosquittoRotations; r++ {
		ca.issue("broker")
		serial := ca.serial("broker")
		m.drop(ca)
		m.waitLive(serial)
		waitServed(t, cfg, addr, serial)
		waitFor(t, fmt.Sprintf("mosquitto's reload %d", r), func() bool { return reloads() >= r })
		// A fresh subscriber gets a retained message through the new
		// certificate.
		topic := fmt.Sprintf("rotation/%d", r)
		if out, err := exec.Command(pub, append(tlsArgs, "-r", "-q", "1", "-t", topic, "-m", serial)...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub after rotation %d: %v: %s", r, err, out)
		}
		out, err := exec.Command(sub, append(tlsArgs, "-C", "1", "-W", "20", "-t", topic)...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != serial {
			t.Fatalf("mosquitto_sub after rotation %d: %v: %q", r, err, out)
		}
		load.waitRequests(t, 10)
		if n := reloads(); n != r {
			t.Fatalf("after rotation %d mosquitto reloaded %d times, want %d", r, n, r)
		}
	}
	requests, failures, _ := load.finish()
	received := func() int {
		f, err := os.Open(subOut)
		if err != nil {
			return 0
		}
		defer f.Close()
		n := 0
		for sc := bufio.NewScanner(f); sc.Scan(); {
			n++
		}
		return n
	}
	waitFor(t, "the subscriber to receive every published message", func() bool { return received() >= requests-len(failures) })
	t.Logf("mosquitto: %d rotations, %d messages published, %d failed, %d received by the long-lived subscriber, %d reloads",
		mosquittoRotations, requests, len(failures), received(), reloads())
	if len(failures) > 0 {
		t.Fatalf("%d of %d publishes failed; first: %s", len(failures), requests, failures[0])
	}
	if !d.alive() || !s.alive() {
		t.Fatalf("mosquitto alive %v, subscriber alive %v:\n%s", d.alive(), s.alive(), d.output())
	}
	m.agent.stop(t)
}

// procUID is the real uid a process runs as.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// The issue's story: the bundle installed with certkeeper's defaults
// (root, 0600 in 0700), mosquitto, which reads its key as the user
// mosquitto, cannot start. The admin adds group, key_mode and dir_mode to
// the config and sends the agent SIGHUP: the live files follow the config
// with no new install, and mosquitto starts and serves.
func TestRealMosquittoAfterTheConfigGivesItTheKey(t *testing.T) {
	broker := needDaemon(t, "/usr/sbin/mosquitto", "mosquitto")
	pub := needDaemon(t, "/usr/bin/mosquitto_pub", "mosquitto-clients")
	sub := needDaemon(t, "/usr/bin/mosquitto_sub", "mosquitto-clients")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: mosquitto drops privileges to its own user only when started as root")
		}
		t.Skip("needs root: mosquitto drops privileges to its own user only when started as root")
	}
	mu, err := user.Lookup("mosquitto")
	if err != nil {
		t.Fatalf("no user mosquitto (the mosquitto package makes it): %v", err)
	}
	muid, _ := strconv.Atoi(mu.Uid)
	ca := newClusterCA(t)
	ca.issue("broker", "client")
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	os.Mkdir(run, 0o755)
	os.Chown(run, muid, -1)
	os.Chmod(dir, 0o711)
	m := newMember(t, "broker", "")
	for p := m.root; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o711)
	}
	m.drop(ca)
	m.waitLive(ca.serial("broker"))

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("pid_file %s/mosquitto.pid\nuser mosquitto\npersistence false\nlog_dest stderr\nlistener %d 127.0.0.1\n"+
		"cafile %[3]s/cluster.crt\ncertfile %[3]s/node.crt\nkeyfile %[3]s/node.key\nrequire_certificate true\nuse_identity_as_username true\n", run, port, m.live)), 0o644)
	// With the defaults: mosquitto, as its user, cannot read the files.
	d := startDaemon(t, "mosquitto-defaults", dir, broker, "-c", conf)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("mosquitto started with a key only root can read:\n%s", d.output())
	}
	if !strings.Contains(d.output(), "Unable to load") {
		t.Fatalf("mosquitto exited, but not for its certificates:\n%s", d.output())
	}

	old, _ := os.ReadFile(m.config)
	changed := strings.Replace(string(old), "\nlayout = ", "\ngroup = \"mosquitto\"\nkey_mode = \"0640\"\ndir_mode = \"0750\"\nlayout = ", 1)
	os.WriteFile(m.config, []byte(changed), 0o600)
	m.agent.signal(syscall.SIGHUP)
	took := waitFor(t, "the live files to follow the config", func() bool {
		fi, err := os.Stat(filepath.Join(m.live, "node.key"))
		if err != nil {
			return false
		}
		_, g, _ := statOwner(fi)
		return fi.Mode().Perm() == 0o640 && g == mosquittoGID(t)
	})
	t.Logf("the key was 0640 root:mosquitto %s after SIGHUP", took.Round(time.Millisecond))
	if gen, _ := os.Readlink(filepath.Join(m.live, "..data")); gen != "..gen-000001" {
		t.Fatalf("the change of modes made a new generation (%s):\n%s", gen, m.agent.log())
	}

	d2 := startDaemon(t, "mosquitto", dir, broker, "-c", conf)
	waitPort(t, addr, d2)
	waitServed(t, ca.tlsConfig("client"), addr, ca.serial("broker"))
	tlsArgs := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "--cafile", ca.path("client", "cluster.crt"),
		"--cert", ca.path("client", "node.crt"), "--key", ca.path("client", "node.key")}
	if out, err := exec.Command(pub, append(tlsArgs, "-r", "-q", "1", "-t", "hello", "-m", "world")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	if out, err := exec.Command(sub, append(tlsArgs, "-C", "1", "-W", "20", "-t", "hello")...).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "world" {
		t.Fatalf("mosquitto_sub: %v: %q", err, out)
	}
	m.agent.stop(t)
}

func mosquittoGID(t *testing.T) int {
	g, err := user.LookupGroup("mosquitto")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}
