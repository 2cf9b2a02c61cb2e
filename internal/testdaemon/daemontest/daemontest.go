//go:build unix

// Package daemontest builds, starts and talks to internal/testdaemon, the
// mutual-TLS reload target of certkeeper's tests (the agent's, the soak
// test's, the demo's).
package daemontest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// Build compiles testdaemon once per test binary and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "..")
		dir, err := os.MkdirTemp("", "testdaemon-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "testdaemon")
		out, err := exec.Command("go", "build", "-o", built, src).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build testdaemon: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// Daemon is a running testdaemon.
type Daemon struct {
	Cmd     *exec.Cmd
	Addr    string
	Pidfile string
	log     *os.File
	LogPath string
}

// Options are testdaemon's flags.
type Options struct {
	Cert, Key, CA string
	// Dir holds the pidfile, address file and log; a temporary one if empty.
	Dir string
	// IgnoreHUP runs it with -ignore-hup: SIGHUP changes nothing.
	IgnoreHUP bool
}

// Start runs testdaemon and waits until it listens; t.Cleanup stops it and
// checks that it is gone.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	bin := Build(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	d := &Daemon{Pidfile: filepath.Join(o.Dir, "testdaemon.pid"), LogPath: filepath.Join(o.Dir, "testdaemon.log")}
	addrfile := filepath.Join(o.Dir, "testdaemon.addr")
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	d.log = logf
	args := []string{"-cert", o.Cert, "-key", o.Key, "-ca", o.CA, "-listen", "127.0.0.1:0", "-pidfile", d.Pidfile, "-addrfile", addrfile}
	if o.IgnoreHUP {
		args = append(args, "-ignore-hup")
	}
	d.Cmd = exec.Command(bin, args...)
	d.Cmd.Stdout, d.Cmd.Stderr = logf, logf
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(t) })
	for i := 0; i < 500; i++ {
		if b, err := os.ReadFile(addrfile); err == nil && strings.HasSuffix(string(b), "\n") {
			if _, err := os.Stat(d.Pidfile); err == nil {
				d.Addr = strings.TrimSpace(string(b))
				return d
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("testdaemon did not start within 5s:\n%s", d.Log())
	return nil
}

// Log returns what testdaemon wrote.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Stop ends testdaemon and checks that it is gone.
func (d *Daemon) Stop(t testing.TB) {
	if d.Cmd.ProcessState != nil {
		return
	}
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.Cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = d.Cmd.Process.Kill()
		<-done
		t.Errorf("testdaemon ignored SIGTERM for 5s; killed")
	}
	d.log.Close()
	if err := syscall.Kill(d.Cmd.Process.Pid, 0); err == nil {
		t.Errorf("testdaemon pid %d still exists", d.Cmd.Process.Pid)
	}
}

// Serial connects with a client certificate and returns the serial (hex)
// of the certificate the daemon serves; the server's chain is verified
// against caPEM.
func (d *Daemon) Serial(t testing.TB, clientCertPEM, clientKeyPEM, caPEM []byte) string {
	t.Helper()
	s, err := d.TrySerial(clientCertPEM, clientKeyPEM, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TrySerial is Serial returning its error.
func (d *Daemon) TrySerial(clientCertPEM, clientKeyPEM, caPEM []byte) (string, error) {
	cert, err := tls.X509KeyPair(clientCertPEM, clientKeyPEM)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", d.Addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool,
		ServerName: "localhost", MinVersion: tls.VersionTLS12,
		// The served certificate names the node, not "localhost": check
		// the chain, not the name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		}})
	if err != nil {
		return "", fmt.Errorf("connect to testdaemon %s: %w", d.Addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from testdaemon: %w", err)
	}
	f := strings.Fields(line)
	if len(f) == 0 || !strings.HasPrefix(f[0], "serial=") {
		return "", fmt.Errorf("testdaemon said %q", line)
	}
	return strings.TrimPrefix(f[0], "serial="), nil
}
