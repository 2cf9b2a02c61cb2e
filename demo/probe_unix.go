//go:build unix

package demo

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"
)

// probe connects to a daemon as a cluster client would: it shows a client
// certificate from the cluster CA, and checks the daemon's chain against
// that CA and its IP address (127.0.0.1) against the certificate's names.
func probe(ctx context.Context, addr string, client tls.Certificate, roots *x509.CertPool) (DaemonAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return DaemonAnswer{}, err
	}
	d := tls.Dialer{Config: &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return DaemonAnswer{}, fmt.Errorf("mutual TLS with the daemon at %s: %w", addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return DaemonAnswer{}, fmt.Errorf("read the daemon's answer from %s: %w", addr, err)
	}
	return ParseDaemonLine(line)
}
