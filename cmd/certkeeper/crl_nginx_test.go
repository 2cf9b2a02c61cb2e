//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Revoke a node: ca revoke writes the CRL into every node directory, the
// next drop (as push delivers) installs it in the live directory with one
// reload, and a real nginx with ssl_crl refuses the revoked node's client
// certificate in the handshake while another node still gets in.
func TestRealNginxRefusesARevokedClient(t *testing.T) {
	nginx := needDaemon(t, "/usr/sbin/nginx", "nginx")
	ca := newClusterCA(t)
	ca.issue("nginx", "good", "bad")
	if r := certkeeper(t, "ca", "crl", "--dir", ca.dir); r.code != 0 {
		t.Fatalf("ca crl: %+v", r)
	}
	dir := t.TempDir()
	m := newMember(t, "nginx", fmt.Sprintf("crl_file = \"cluster.crl\"\n\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n", filepath.Join(dir, "nginx.pid")))
	dropAll := func() {
		m.drop(ca)
		crl, err := os.ReadFile(ca.path("nginx", "cluster.crl"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(m.inbox, "cluster.crl"), crl, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	liveCRL := func() bool {
		want, _ := os.ReadFile(ca.path("nginx", "cluster.crl"))
		got, err := os.ReadFile(filepath.Join(m.live, "cluster.crl"))
		return err == nil && len(want) > 0 && bytes.Equal(got, want)
	}
	dropAll()
	m.waitLive(ca.serial("nginx"))
	waitFor(t, "the first CRL in the live directory", liveCRL)

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "nginx.conf")
	cfgText := strings.Replace(nginxConfig(dir, m.live, port), "ssl_verify_client on;",
		fmt.Sprintf("ssl_verify_client on;\n\t\tssl_crl %s/cluster.crl;", m.live), 1)
	if err := os.WriteFile(conf, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "nginx", dir, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	waitPort(t, addr, d)
	errorLog := filepath.Join(dir, "error.log")
	get := func(id string) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.tlsConfig(id), DisableKeepAlives: true}}
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.ReadAll(resp.Body)
		return resp.StatusCode, nil
	}
	waitFor(t, "both clients served before the revocation", func() bool {
		g, _ := get("good")
		b, _ := get("bad")
		return g == 200 && b == 200
	})

	if r := certkeeper(t, "ca", "revoke", "--dir", ca.dir, "bad", "--reason", "keyCompromise"); r.code != 0 {
		t.Fatalf("ca revoke: %+v", r)
	}
	before := countIn(errorLog, "(SIGHUP) received")
	dropAll()
	waitFor(t, "the CRL listing bad in the live directory", liveCRL)
	waitFor(t, "nginx's reload", func() bool { return countIn(errorLog, "(SIGHUP) received") > before })
	waitFor(t, "bad refused, good still served", func() bool {
		b, _ := get("bad")
		g, _ := get("good")
		return b != 200 && g == 200
	})
	if n := countIn(errorLog, "(SIGHUP) received") - before; n != 1 {
		t.Errorf("the new CRL reloaded nginx %d times, want 1", n)
	}
	if !d.alive() {
		t.Fatalf("nginx died:\n%s", d.output())
	}
	m.agent.stop(t)
}
