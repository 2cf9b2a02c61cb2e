package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// DefaultProbeTimeout bounds one probe (connect and handshake) when the
// caller gives none.
const DefaultProbeTimeout = 10 * time.Second

// acceptWait bounds how long a TLS 1.3 probe that presented a client
// certificate waits for the daemon's verdict on it: in TLS 1.3 the
// client's handshake ends before the server has read the client's
// certificate, so a refusal arrives as an alert after it. A daemon that
// accepts says so sooner: Go and OpenSSL servers send their session
// tickets once they have checked the client's certificate and Finished
// (ticketSignal), a daemon with a greeting sends it. Only one that does
// neither (tickets off, waiting for a request) costs the whole wait.
const acceptWait = time.Second

// ticketSignal is a session cache that resumes nothing and tells when the
// server sent a ticket: in TLS 1.3 with client authentication, the
// server's word that it took the client's certificate.
type ticketSignal struct{ got func() }

func (ticketSignal) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (s ticketSignal) Put(string, *tls.ClientSessionState) {
	if s.got != nil {
		s.got()
	}
}

// ProbeOptions shape a probe of one daemon's TLS endpoint.
type ProbeOptions struct {
	// ServerName is sent as SNI; empty: the address's host.
	ServerName string
	// Roots verify the served chain (the CA); nil: not verified. The name
	// is not checked: the admin host may reach a node by another name than
	// its certificate holds.
	Roots *x509.CertPool
	// ClientCert, when set, is presented to a daemon that asks for one (a
	// control certificate the CA issued: ProbeClientCert). The probe then
	// also proves the daemon accepts the CA's clients, and a refusal is an
	// error. Without it a mutual-TLS daemon still shows its certificate
	// before it refuses the handshake, and the probe reads that.
	ClientCert *tls.Certificate
	// Timeout bounds connect, handshake and the wait for a verdict;
	// 0: DefaultProbeTimeout.
	Timeout time.Duration
	// MaxVersion caps the TLS version offered (tls.VersionTLS12); 0: the
	// highest both sides support.
	MaxVersion uint16
}

// ProbeResult is what a probe saw.
type ProbeResult struct {
	// Serial of the served leaf (pki.Serial), and the leaf itself.
	Serial string
	Leaf   *x509.Certificate
	// Version is the TLS version negotiated (0 when the handshake failed
	// before the server's Finished).
	Version uint16
	// ClientCertRequested: the daemon asked for a client certificate.
	ClientCertRequested bool
	// Refused is why the daemon ended the handshake after it showed its
	// certificate: no client certificate, or one it does not trust. Without
	// ProbeOptions.ClientCert that is expected of a mutual-TLS daemon and
	// not an error.
	Refused error
}

// ProbeEndpoint connects to a daemon's TLS endpoint and reads the leaf it
// serves, even from a handshake the daemon then aborts because the probe
// has no client certificate: the server's Certificate message comes before
// the client's in TLS 1.2 and 1.3 alike, and the probe captures it as soon
// as it arrives (VerifyPeerCertificate). The error is set when nothing was
// read (nothing listens, not TLS, a timeout), when the chain does not
// verify against Roots (the serial is returned all the same), or when the
// daemon refused the client certificate the probe presented.
func ProbeEndpoint(ctx context.Context, addr string, o ProbeOptions) (ProbeResult, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	name := o.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(addr)
	}
	var r ProbeResult
	var chain []*x509.Certificate
	var conn net.Conn
	ticket := func() {
		if conn != nil {
			conn.SetReadDeadline(time.Now()) // accepted: end awaitVerdict's read
		}
	}
	cfg := &tls.Config{
		ClientSessionCache: ticketSignal{got: ticket},
		ServerName:         name,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         o.MaxVersion,
		// Verified below against Roots, names aside: the serial is
		// wanted even of a certificate that does not verify.
		InsecureSkipVerify: true, //nolint:gosec // verified by hand below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return fmt.Errorf("served certificate does not parse: %w", err)
				}
				chain = append(chain, c)
			}
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.ClientCertRequested = true
			if o.ClientCert != nil {
				return o.ClientCert, nil
			}
			return &tls.Certificate{}, nil // none: the daemon decides
		},
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: o.Timeout}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		// Tickets are read only in awaitVerdict's Read, after conn is set.
		tc := conn.(*tls.Conn)
		r.Version = tc.ConnectionState().Version
		if r.ClientCertRequested && r.Version == tls.VersionTLS13 && o.ClientCert != nil {
			err = awaitVerdict(ctx, tc)
		}
		conn.Close()
	}
	if len(chain) == 0 {
		if err == nil {
			err = errors.New("no certificate served")
		}
		return r, fmt.Errorf("%s: %w", addr, err)
	}
	r.Leaf, r.Serial = chain[0], pki.Serial(chain[0])
	if err != nil {
		// The daemon showed its certificate, then ended the handshake.
		r.Refused = err
	}
	if o.Roots != nil {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, verr := r.Leaf.Verify(x509.VerifyOptions{Roots: o.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); verr != nil {
			return r, fmt.Errorf("%s serves %s, which does not verify against the CA: %w", addr, r.Serial, verr)
		}
	}
	if r.Refused != nil && o.ClientCert != nil {
		return r, fmt.Errorf("%s serves %s but refused the probe's client certificate (%s): %w; is the daemon's client CA this cluster's?", addr, r.Serial, describeCert(o.ClientCert), r.Refused)
	}
	return r, nil
}

// awaitVerdict reads from a TLS 1.3 connection until the daemon says
// something, closes, or acceptWait passes: only a TLS alert (the daemon
// refused our certificate) is an error.
func awaitVerdict(ctx context.Context, c *tls.Conn) error {
	deadline := time.Now().Add(acceptWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetReadDeadline(deadline)
	var buf [1]byte
	_, err := c.Read(buf[:])
	var oe *net.OpError
	var ne net.Error
	switch {
	case err == nil:
		return nil // it spoke: accepted
	case errors.As(err, &oe) && oe.Op == "remote error":
		return err // a TLS alert: "remote error: tls: certificate required"
	case errors.As(err, &ne) && ne.Timeout():
		return nil // silent: waiting for our request, so accepted
	}
	// EOF or a reset: a daemon that refuses without an alert, or one that
	// closes after its greeting. Neither proves a refusal.
	return nil
}

func describeCert(c *tls.Certificate) string {
	if c.Leaf != nil {
		return "CN=" + c.Leaf.Subject.CommonName + ", serial " + pki.Serial(c.Leaf)
	}
	if len(c.Certificate) > 0 {
		if l, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			return "CN=" + l.Subject.CommonName + ", serial " + pki.Serial(l)
		}
	}
	return "no certificate"
}

// Probe is ProbeEndpoint without a client certificate, for the served
// serial only.
func Probe(ctx context.Context, addr, serverName string, roots *x509.CertPool, timeout time.Duration) (string, error) {
	r, err := ProbeEndpoint(ctx, addr, ProbeOptions{ServerName: serverName, Roots: roots, Timeout: timeout})
	return r.Serial, err
}

// ProbeClientCert loads the client certificate fleet status --probe
// presents (--probe-cert and --probe-key, both or neither): a control
// certificate the CA issued (`certkeeper ca issue control HOST` writes
// nodes/control-HOST/control-service.{crt,key}). Empty names: nil.
func ProbeClientCert(certFile, keyFile string) (*tls.Certificate, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--probe-cert and --probe-key go together: give the client certificate and its key")
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("probe client certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}
