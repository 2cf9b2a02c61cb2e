package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/pki"
)

// DefaultConcurrency is how many nodes fleet status reads at once.
const DefaultConcurrency = distribute.DefaultConcurrency

// ReportPathOf is where a node's report is read from.
func ReportPathOf(n distribute.Node) string {
	if n.Report != "" {
		return n.Report
	}
	return DefaultReportPath
}

// FetchReport reads one node's report over SFTP, the host key checked
// against known_hosts as push does.
func FetchReport(ctx context.Context, n distribute.Node) ([]byte, error) {
	c, err := distribute.Dial(ctx, n.SSH)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ReadFile(ctx, ReportPathOf(n), MaxReportSize)
}

// CollectOptions shape Collect.
type CollectOptions struct {
	Concurrency int
	// Reports reads each node's report over SSH (the default when
	// neither is set); Probe connects to each node's probe endpoint.
	Reports, Probe bool
	// Roots verify what a probe is served (the CA); nil: not verified.
	Roots   *x509.CertPool
	Timeout time.Duration
	// Fetch replaces FetchReport (benchmarks, tests).
	Fetch func(context.Context, distribute.Node) ([]byte, error)
}

// Collect reads every node's report (and probes its endpoint), at most
// Concurrency at a time, and returns them in the order given. Every
// connection has its deadlines (distribute.Target), so one dead node
// costs its timeout, not the run.
func Collect(ctx context.Context, nodes []distribute.Node, o CollectOptions) []Fetched {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if !o.Reports && !o.Probe {
		o.Reports = true
	}
	if o.Fetch == nil {
		o.Fetch = FetchReport
	}
	out := make([]Fetched, len(nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i]
			f := Fetched{ID: n.ID, Address: n.SSH.Address, NotReport: !o.Reports}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				f.Err = fmt.Errorf("%s: not read: %w", n.ID, ctx.Err())
				out[i] = f
				return
			}
			defer func() { <-sem }()
			if o.Reports {
				f.Data, f.Err = o.Fetch(ctx, n)
			}
			if o.Probe && n.Probe != "" {
				f.Probed = true
				f.Served, f.ProbeErr = Probe(ctx, n.Probe, n.ProbeName, o.Roots, o.Timeout)
			}
			out[i] = f
		}()
	}
	wg.Wait()
	return out
}

// Probe connects to a daemon's TLS endpoint and returns the serial of the
// leaf it serves. With roots, the chain must verify against them (the
// name is not checked: the admin host may reach the node by another name
// than its certificate holds). A daemon that requires a client
// certificate still shows its own before refusing the handshake.
func Probe(ctx context.Context, addr, serverName string, roots *x509.CertPool, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(addr)
	}
	var leaf *x509.Certificate
	cfg := &tls.Config{
		ServerName: serverName,
		// Verified below against roots, names aside; we want the
		// serial even of a certificate that does not verify.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if leaf == nil {
		if err == nil {
			err = fmt.Errorf("no certificate served")
		}
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	if roots != nil {
		if _, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); verr != nil {
			return pki.Serial(leaf), fmt.Errorf("%s serves %s, which does not verify against the CA: %w", addr, pki.Serial(leaf), verr)
		}
	}
	return pki.Serial(leaf), nil
}

// LoadCA reads the CA's records from its directory (a shared lock, no key).
func LoadCA(dir string) (CA, error) {
	a, err := authority.Load(dir, authority.Options{})
	if err != nil {
		return CA{}, err
	}
	nodes, certs, err := a.Records()
	if err != nil {
		return CA{}, fmt.Errorf("%s: %w", dir, err)
	}
	return CA{Nodes: nodes, Certs: certs}, nil
}
