package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/distribute"
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
	Roots *x509.CertPool
	// ClientCert is presented to daemons that ask for one (--probe-cert,
	// --probe-key; ProbeClientCert); nil: none (probe.go says what a probe
	// still reads then).
	ClientCert *tls.Certificate
	Timeout    time.Duration
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
			// The address as push names it, with its port: nodes
			// behind one address differ only by it.
			addr, err := n.SSH.HostPort()
			if err != nil {
				addr = n.SSH.Address
			}
			f := Fetched{ID: n.ID, Address: addr, NotReport: !o.Reports}
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
				r, err := ProbeEndpoint(ctx, n.Probe, ProbeOptions{ServerName: n.ProbeName, Roots: o.Roots, ClientCert: o.ClientCert, Timeout: o.Timeout})
				f.Served, f.ProbeErr = r.Serial, err
			}
			out[i] = f
		}()
	}
	wg.Wait()
	return out
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
