//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const nginxRotations = 5

// nginxConfig is a mutual-TLS nginx (ssl_verify_client on) reading the
// agent's live files, with its pid file, logs and temporary files in dir.
func nginxConfig(dir, live string, port int) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers as root: the test's files are root's
	}
	return fmt.Sprintf(`%sdaemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log notice;
events { worker_connections 64; }
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/tmp-body;
	proxy_temp_path %[2]s/tmp-proxy;
	fastcgi_temp_path %[2]s/tmp-fastcgi;
	uwsgi_temp_path %[2]s/tmp-uwsgi;
	scgi_temp_path %[2]s/tmp-scgi;
	server {
		listen 127.0.0.1:%[4]d ssl;
		ssl_certificate        %[3]s/node.crt;
		ssl_certificate_key    %[3]s/node.key;
		ssl_client_certificate %[3]s/cluster.crt;
		ssl_verify_client on;
		location / { return 200 "hello $ssl_client_s_dn\n"; }
	}
}
`, user, dir, live, port)
}

// The admin's story with a real nginx: the agent installs each renewed
// certificate and sends SIGHUP to nginx's pid file; a mutual-TLS client
// loop goes on throughout with no failed request; each rotation's serial is
// served, with exactly one reload per rotation and none when the same files
// are dropped again.
func TestRealNginxRotatesUnderLoad(t *testing.T) {
	nginx := needDaemon(t, "/usr/sbin/nginx", "nginx")
	ca := newClusterCA(t)
	ca.issue("nginx", "client")
	dir := t.TempDir()
	m := newMember(t, "nginx", fmt.Sprintf("\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n", filepath.Join(dir, "nginx.pid")))
	m.drop(ca)
	m.waitLive(ca.serial("nginx"))

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(dir, m.live, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "nginx", dir, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	waitPort(t, addr, d)
	errorLog := filepath.Join(dir, "error.log")
	reloads := func() int { return countIn(errorLog, "(SIGHUP) received") }

	cfg := ca.tlsConfig("client")
	waitServed(t, cfg, addr, ca.serial("nginx"))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	load := runLoad(90*time.Second, 10*time.Millisecond, func(int) (string, error) {
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "CN=client") {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return serialHex(resp.TLS.PeerCertificates[0].SerialNumber), nil
	})
	load.waitRequests(t, 20)

	for i := 1; i <= nginxRotations; i++ {
		ca.issue("nginx")
		serial := ca.serial("nginx")
		m.drop(ca)
		m.waitLive(serial)
		waitServed(t, cfg, addr, serial)
		waitFor(t, fmt.Sprintf("nginx's reload %d", i), func() bool { return reloads() >= i })
		load.waitRequests(t, 20)
		if r := reloads(); r != i {
			b, _ := os.ReadFile(errorLog)
			t.Fatalf("after rotation %d nginx reloaded %d times, want %d:\n%s\n%s", i, r, i, b, m.agent.log())
		}
		// The same files again: taken from the inbox, no reload.
		m.drop(ca)
		m.waitInboxTaken()
		waitFor(t, "the re-drop to be judged unchanged", func() bool {
			return strings.Count(m.agent.log(), "bundle unchanged; no reload") >= i
		})
		load.waitRequests(t, 20)
		if r := reloads(); r != i {
			t.Fatalf("a re-drop of the same files reloaded nginx (%d reloads after %d rotations)", r, i)
		}
	}
	requests, failures, serials := load.finish()
	t.Logf("nginx: %d rotations, %d requests, %d failed, %d reloads, %d serials seen by the client", nginxRotations, requests, len(failures), reloads(), serials)
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", len(failures), requests, failures[0])
	}
	if serials != nginxRotations+1 {
		t.Errorf("the client saw %d serials, want %d", serials, nginxRotations+1)
	}
	if !d.alive() {
		t.Fatalf("nginx died:\n%s", d.output())
	}
	m.agent.stop(t)
}
