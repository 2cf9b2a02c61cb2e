//go:build linux

package fleet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/pki"
)

// probePKI is a cluster CA with a daemon's certificate, the admin host's
// control certificate (a client of the same CA) and one from another CA.
type probePKI struct {
	dir             string
	roots           *x509.CertPool
	served          string // serial of the daemon's certificate
	control, forgen *tls.Certificate
}

func newProbePKI(t *testing.T) *probePKI {
	t.Helper()
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	daemon := ca.Issue(t, "node-1", testpki.Options{DNS: []string{"localhost", "node-1"}})
	p := &probePKI{dir: t.TempDir(), roots: x509.NewCertPool()}
	p.roots.AppendCertsFromPEM(ca.CertPEM())
	testpki.WriteFile(t, p.dir, "node.crt", daemon.CertPEM(), 0o644)
	testpki.WriteFile(t, p.dir, "node.key", daemon.KeyPEM(t), 0o600)
	testpki.WriteFile(t, p.dir, "cluster.crt", ca.CertPEM(), 0o644)
	c, _ := pki.Parse(daemon.CertPEM())
	p.served = pki.Serial(c.Certificates[0])
	pair := func(k *testpki.Pair) *tls.Certificate {
		c, err := tls.X509KeyPair(k.CertPEM(), k.KeyPEM(t))
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	control := ca.Issue(t, "control-admin", testpki.Options{})
	testpki.WriteFile(t, p.dir, "control-service.crt", control.CertPEM(), 0o644)
	testpki.WriteFile(t, p.dir, "control-service.key", control.KeyPEM(t), 0o600)
	p.control = pair(control)
	p.forgen = pair(testpki.NewCA(t, "other", testpki.Options{}).Issue(t, "intruder", testpki.Options{}))
	return p
}

var versions = map[string]uint16{"TLS 1.2": tls.VersionTLS12, "TLS 1.3": tls.VersionTLS13}

// The project's mutual-TLS daemon (RequireAndVerifyClientCert) aborts a
// handshake without a client certificate; the probe reads its certificate
// all the same, in TLS 1.2 and 1.3, and is not in error. With the admin
// host's control certificate the handshake completes; with a certificate
// of another CA the daemon refuses it, and the probe says so.
func TestProbeReadsAMutualTLSDaemonWithoutAClientCertificate(t *testing.T) {
	p := newProbePKI(t)
	d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(p.dir, "node.crt"), Key: filepath.Join(p.dir, "node.key"), CA: filepath.Join(p.dir, "cluster.crt")})
	ctx := context.Background()
	for name, v := range versions {
		t.Run(name, func(t *testing.T) {
			o := fleet.ProbeOptions{Roots: p.roots, Timeout: 5 * time.Second, MaxVersion: v}
			r, err := fleet.ProbeEndpoint(ctx, d.Addr, o)
			if err != nil || r.Serial != p.served || !r.ClientCertRequested {
				t.Fatalf("without a client certificate: %+v %v, want serial %s", r, err, p.served)
			}
			if v == tls.VersionTLS12 && r.Refused == nil {
				t.Errorf("TLS 1.2: the daemon's refusal is not recorded: %+v", r)
			}
			t.Logf("without a client certificate: serial %s, refused: %v", r.Serial, r.Refused)

			o.ClientCert = p.control
			r, err = fleet.ProbeEndpoint(ctx, d.Addr, o)
			if err != nil || r.Serial != p.served || r.Refused != nil || r.Version != v {
				t.Fatalf("with the control certificate: %+v %v", r, err)
			}

			o.ClientCert = p.forgen
			r, err = fleet.ProbeEndpoint(ctx, d.Addr, o)
			if err == nil || r.Serial != p.served || !strings.Contains(err.Error(), "refused the probe's client certificate (CN=intruder") {
				t.Fatalf("with another CA's client certificate: %+v %v", r, err)
			}
			t.Logf("with another CA's client certificate: %v", err)

			o.ClientCert, o.Roots = nil, x509.NewCertPool()
			o.Roots.AppendCertsFromPEM(testpki.NewCA(t, "third", testpki.Options{}).CertPEM())
			if r, err := fleet.ProbeEndpoint(ctx, d.Addr, o); err == nil || r.Serial != p.served || !strings.Contains(err.Error(), "does not verify against the CA") {
				t.Fatalf("against another CA: %+v %v", r, err)
			}
		})
	}
}

// A real nginx with ssl_verify_client on, in TLS 1.2 and 1.3: without a
// client certificate nginx finishes the handshake (it answers 400 over
// HTTP), so the probe reads the serial; with the control certificate too.
// nginx judges a client certificate above TLS (a 400 again), so a probe
// with another CA's certificate does not see a refusal: the served serial
// is what it proves.
func TestProbeReadsNginxWithSslVerifyClientOn(t *testing.T) {
	const nginx = "/usr/sbin/nginx"
	if _, err := os.Stat(nginx); err != nil {
		t.Skipf("%s is missing (Debian: apt-get install nginx-light)", nginx)
	}
	p := newProbePKI(t)
	addr := startNginx(t, nginx, p.dir)
	ctx := context.Background()
	for name, v := range versions {
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				what string
				cert *tls.Certificate
			}{{"no client certificate", nil}, {"the control certificate", p.control}, {"another CA's client certificate", p.forgen}} {
				r, err := fleet.ProbeEndpoint(ctx, addr, fleet.ProbeOptions{Roots: p.roots, ClientCert: c.cert, Timeout: 5 * time.Second, MaxVersion: v})
				if err != nil || r.Serial != p.served || !r.ClientCertRequested || r.Version != v {
					t.Fatalf("%s: %+v %v, want serial %s over %s", c.what, r, err, p.served, name)
				}
			}
		})
	}
	// What openssl sees, for the record: the same serial.
	out, err := exec.Command("sh", "-c", fmt.Sprintf("openssl s_client -connect %s </dev/null 2>/dev/null | openssl x509 -noout -serial", addr)).Output()
	if err != nil || !strings.EqualFold(strings.TrimPrefix(strings.TrimSpace(string(out)), "serial="), strings.ReplaceAll(p.served, ":", "")) {
		t.Errorf("openssl s_client sees %q (%v), the probe %s", out, err, p.served)
	}
}

// startNginx runs nginx on a free loopback port with the files in dir,
// ssl_verify_client on, TLS 1.2 and 1.3; cleanup stops it (its process
// group) and checks it is gone.
func startNginx(t *testing.T, bin, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sdaemon off;
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
		listen %[3]s ssl;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_certificate        %[2]s/node.crt;
		ssl_certificate_key    %[2]s/node.key;
		ssl_client_certificate %[2]s/cluster.crt;
		ssl_verify_client on;
		location / { return 200 "hello $ssl_client_s_dn\n"; }
	}
}
`, user, dir, addr)
	path := testpki.WriteFile(t, dir, "nginx.conf", []byte(conf), 0o644)
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
			t.Errorf("nginx's process group %d is still there", cmd.Process.Pid)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", addr)
		}
	}
}

// fleet status --probe --no-report over the mutual-TLS daemon: Collect
// reads the served serial without a client certificate and with the
// control certificate; with a certificate the daemon refuses, the node's
// probe is in error with the reason.
func TestCollectProbesAMutualTLSDaemon(t *testing.T) {
	p := newProbePKI(t)
	d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(p.dir, "node.crt"), Key: filepath.Join(p.dir, "node.key"), CA: filepath.Join(p.dir, "cluster.crt")})
	nodes := []distribute.Node{{ID: "node-1", Probe: d.Addr}}
	for _, c := range []struct {
		what string
		cert *tls.Certificate
		err  string
	}{{"no client certificate", nil, ""}, {"the control certificate", p.control, ""}, {"another CA's", p.forgen, "refused the probe's client certificate"}} {
		f := fleet.Collect(context.Background(), nodes, fleet.CollectOptions{Probe: true, Roots: p.roots, ClientCert: c.cert, Timeout: 5 * time.Second})
		if len(f) != 1 || !f[0].Probed || f[0].Served != p.served || (c.err == "") != (f[0].ProbeErr == nil) || (c.err != "" && !strings.Contains(f[0].ProbeErr.Error(), c.err)) {
			t.Errorf("%s: %+v", c.what, f)
		}
	}
}
