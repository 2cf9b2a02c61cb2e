package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// The served check: a bundle with served = "host:port" names its daemon's
// TLS endpoint, and the agent connects to it after each reload (in Settle)
// and every rescan to see that the daemon serves the live leaf, not the
// one it had before its reload (a daemon that ignored SIGHUP, a reload
// that reloaded something else).

// Policies of served_mismatch.
const (
	ServedReport   = "report"
	ServedRollback = "rollback"
)

const (
	// DefaultServedWait is how long a daemon may take to serve the new
	// leaf after a reload before it is reloaded again.
	DefaultServedWait = 5 * time.Second
	MaxServedWait     = time.Minute
	// ServedMaxReloads is how many times the reload actions run again
	// for a daemon that still serves another leaf, each followed by a
	// wait twice as long as the one before.
	ServedMaxReloads = 2
	// servedDialTimeout bounds one connection and its handshake.
	servedDialTimeout = 5 * time.Second
	// servedPoll is how often a wait connects again.
	servedPoll = 100 * time.Millisecond
)

// ServedStep is what to do after a served check.
type ServedStep int

const (
	// ServedDone: the daemon serves the live leaf.
	ServedDone ServedStep = iota
	// ServedReloadAgain: run the reload actions again, then wait.
	ServedReloadAgain
	// ServedRollBack: give up on the new generation and make the previous
	// one live again (served_mismatch = "rollback").
	ServedRollBack
	// ServedGiveUp: keep the live generation and report the mismatch
	// (served_mismatch = "report", or no generation to roll back to).
	ServedGiveUp
)

func (s ServedStep) String() string {
	return [...]string{"done", "reload again", "roll back", "report"}[s]
}

// DecideServed is the served check's decision after a wait: match is
// whether the daemon served the live leaf; reloads is how many extra
// reloads already ran for this generation; policy is served_mismatch;
// canRollback is whether a rollback is still possible (a new generation,
// not one a rollback just made live).
func DecideServed(match bool, reloads int, policy string, canRollback bool) ServedStep {
	switch {
	case match:
		return ServedDone
	case reloads < ServedMaxReloads:
		return ServedReloadAgain
	case policy == ServedRollback && canRollback:
		return ServedRollBack
	}
	return ServedGiveUp
}

// ServedWaitFor is the wait after the reloads-th extra reload (0: after
// the change's own reload): the bundle's served_wait, doubled each time.
func ServedWaitFor(base time.Duration, reloads int) time.Duration {
	return base << min(reloads, 8)
}

// ServedResult is one look at the daemon's endpoint.
type ServedResult struct {
	Endpoint   string
	Serial     string // of the served leaf; empty when none was seen
	LiveSerial string
	Match      bool
	Err        error // the connection, or the mismatch
	Time       time.Time
}

// ServedError is a daemon serving a leaf other than the live one.
type ServedError struct {
	Endpoint, Served, Live string
}

func (e *ServedError) Error() string {
	return fmt.Sprintf("%s serves serial %s, not the live serial %s: the daemon did not take its reload", e.Endpoint, e.Served, e.Live)
}

// CheckServed connects to the bundle's served endpoint, presenting the
// live leaf and key (so a mutual-TLS daemon answers), verifies the served
// chain against the live CA (and its name, with served_name), and compares
// the served leaf with the live one.
func CheckServed(ctx context.Context, b *Bundle, live *rotate.Bundle) ServedResult {
	r := ServedResult{Endpoint: b.Served, Time: time.Now()}
	if live == nil || live.Leaf == nil || live.Key == nil {
		r.Err = fmt.Errorf("served check of %s: no live leaf and key to compare with and to present", b.Served)
		return r
	}
	r.LiveSerial = pki.Serial(live.Leaf)
	pool := x509.NewCertPool()
	for _, ca := range live.CAs {
		pool.AddCert(ca)
	}
	chain := [][]byte{live.Leaf.Raw}
	for _, c := range live.Intermediates {
		chain = append(chain, c.Raw)
	}
	var served *x509.Certificate
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		ServerName:   b.ServedName,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: live.Key.Signer, Leaf: live.Leaf}},
		// Verified below: against the live CA, and the name only when
		// served_name is set (a daemon's certificate names its node, not
		// the address it listens on).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate served")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, d := range raw {
				c, err := x509.ParseCertificate(d)
				if err != nil {
					return fmt.Errorf("served certificate %d: %w", i, err)
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			served = certs[0]
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: b.ServedName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
	dctx, cancel := context.WithTimeout(ctx, servedDialTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	conn, err := d.DialContext(dctx, "tcp", b.Served)
	if served != nil {
		r.Serial = pki.Serial(served)
	}
	if err != nil {
		r.Err = fmt.Errorf("served check: connect to %s: %w", b.Served, err)
		return r
	}
	conn.Close()
	r.Match = bytes.Equal(served.Raw, live.Leaf.Raw)
	if !r.Match {
		r.Err = &ServedError{Endpoint: b.Served, Served: r.Serial, Live: r.LiveSerial}
	}
	return r
}

// waitServed checks the endpoint until it serves the live leaf or wait
// has passed; the last look is the result.
func (p *Pipeline) waitServed(ctx context.Context, wait time.Duration) ServedResult {
	deadline := time.Now().Add(wait)
	for {
		r := p.checkServedNow(ctx)
		if r.Match || !time.Now().Before(deadline) || ctx.Err() != nil {
			return r
		}
		t := time.NewTimer(min(servedPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (p *Pipeline) checkServedNow(ctx context.Context) ServedResult {
	live, _, err := p.M.Live()
	if err != nil {
		return ServedResult{Endpoint: p.B.Served, Time: time.Now(), Err: fmt.Errorf("served check: read the live bundle: %w", err)}
	}
	return CheckServed(ctx, p.B, live)
}

// CheckServedNow is one look at the bundle's endpoint (the periodic
// check; `certkeeper check` does not connect).
func (p *Pipeline) CheckServedNow(ctx context.Context) ServedResult { return p.checkServedNow(ctx) }

// ServedOutcome is what the served check in Settle did.
type ServedOutcome struct {
	Last ServedResult
	// ExtraReloads counts the reload runs after the change's own.
	ExtraReloads int
	Step         ServedStep
}

// served runs the served check after a change's reload (and check): wait
// for the daemon to serve the live leaf; reload again, with longer
// waits, up to ServedMaxReloads; then roll back or report, as the
// bundle's served_mismatch says. canRollback is false after a rollback.
func (p *Pipeline) served(ctx context.Context, c *Change, canRollback bool) *ServedOutcome {
	b, log := p.B, p.Log
	o := &ServedOutcome{}
	for {
		o.Last = p.waitServed(ctx, ServedWaitFor(b.ServedWait.Duration, o.ExtraReloads))
		o.Step = DecideServed(o.Last.Match, o.ExtraReloads, b.ServedMismatch, canRollback)
		if ctx.Err() != nil && o.Step == ServedReloadAgain {
			o.Step = ServedGiveUp
		}
		switch o.Step {
		case ServedDone:
			log.Info("daemon serves the live certificate", "bundle", b.Name, "served", b.Served, "serial", o.Last.Serial, "extra_reloads", o.ExtraReloads)
			return o
		case ServedReloadAgain:
			log.Warn("daemon does not serve the live certificate yet; reloading again", "bundle", b.Name, "served", b.Served,
				"served_serial", o.Last.Serial, "live_serial", o.Last.LiveSerial, "err", o.Last.Err)
			o.ExtraReloads++
			c.Reloads = append(c.Reloads, RunReloads(ctx, b, log)...)
			c.ReloadsAt = p.now()
			continue
		case ServedRollBack:
			log.Error("daemon still does not serve the live certificate after reloading again; rolling back", "bundle", b.Name,
				"served", b.Served, "extra_reloads", o.ExtraReloads, "err", o.Last.Err)
			return o
		default:
			log.Error("daemon still does not serve the live certificate; reported, the live bundle stays", "bundle", b.Name,
				"served", b.Served, "extra_reloads", o.ExtraReloads, "policy", b.ServedMismatch, "err", o.Last.Err)
			return o
		}
	}
}
