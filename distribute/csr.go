package distribute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"golang.org/x/crypto/ssh"
)

// The CSR exchange: a node in CSR mode logs in to the admin host's CA
// account, where its key's authorized_keys line forces
// `certkeeper ca sign --dir DIR --node ID`, writes its certificate signing
// request on the session's standard input and reads the signed chain on
// standard output. The private key never travels; only the request (a
// public key and a name) and the certificate do.

// SignCommand is what the node asks the server to run. The forced command
// replaces it (sshd passes it on as SSH_ORIGINAL_COMMAND); an account
// without one runs it as it is, and `certkeeper ca sign` without --dir
// fails with a usage error that the caller reports with a hint.
const SignCommand = "certkeeper ca sign"

// Bounds of the exchange: a chain is a few KiB, and a reason a few lines.
const (
	MaxSignOutput = 1 << 20
	maxSignStderr = 16 << 10
)

// SignRefusedError is the admin host's refusal: `ca sign` exited non-zero
// with a reason on standard error (a revoked node, a name it may not
// have, an encrypted CA key without a passphrase file…).
type SignRefusedError struct {
	Host   string
	Status int
	Reason string
}

func (e *SignRefusedError) Error() string {
	msg := fmt.Sprintf("%s: the CA refused the certificate request (exit %d)", e.Host, e.Status)
	if e.Reason != "" {
		msg += ": " + e.Reason
	} else {
		// ca sign always says why it failed; a bare non-zero exit is
		// another program, most often the chroot account's
		// internal-sftp when csr_user is missing or wrong.
		msg += "; nothing said why, and ca sign always does, so something else answered: " +
			"is [source] csr_user (or user) the CA account, not the node's chroot account?"
	}
	if e.Status == 2 || strings.Contains(e.Reason, "--dir DIR is required") || strings.Contains(e.Reason, "command not found") {
		msg += "; is this node's key in the CA account's authorized_keys with " +
			`restrict,command="certkeeper ca sign --dir DIR --node ID"? (certkeeper sshd-config --authorized-keys prints the line)`
	}
	return msg
}

// RequestCertificate sends a certificate signing request to t, the admin
// host's CA account, and returns what `ca sign` wrote on standard output
// (at most MaxSignOutput bytes): the caller parses and checks it. Host
// keys are verified as for every connection; the dial, the handshake, the
// session and the command each have t's timeout, and ctx ends any of them.
func RequestCertificate(ctx context.Context, t Target, csr []byte) ([]byte, error) {
	c, err := dialSSH(ctx, t)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var sess *ssh.Session
	err = c.do(ctx, "opening a session", func() error {
		var err error
		sess, err = c.ssh.NewSession()
		return err
	})
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	stdout := &capped{max: MaxSignOutput}
	stderr := &capped{max: maxSignStderr}
	sess.Stdin = bytes.NewReader(csr)
	sess.Stdout, sess.Stderr = stdout, stderr
	status := 0
	runErr := c.do(ctx, "running ca sign", func() error {
		err := sess.Run(SignCommand)
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			// The command ran and answered: not a transport failure.
			status = exit.ExitStatus()
			return nil
		}
		return err
	})
	if runErr != nil {
		var missing *ssh.ExitMissingError
		if errors.As(runErr, &missing) {
			return nil, fmt.Errorf("%s: ca sign ended without an exit status (the server closed the session): %s", c.Host, Printable(stderr.String()))
		}
		return nil, runErr
	}
	if status != 0 {
		return nil, &SignRefusedError{Host: c.Host, Status: status, Reason: Printable(stderr.String())}
	}
	if stdout.over {
		return nil, fmt.Errorf("%s: ca sign wrote more than %d bytes; a certificate chain is a few KiB, so this is not one (is the forced command right?)", c.Host, MaxSignOutput)
	}
	return stdout.Bytes(), nil
}

// capped is a buffer that keeps at most max bytes and remembers that more
// came: the server's output is bounded however much it sends. (It does
// not embed bytes.Buffer: io.Copy would use the buffer's ReadFrom and
// bypass the bound.)
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.over = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
func (c *capped) String() string { return c.buf.String() }

var _ io.Writer = (*capped)(nil)

// Printable makes a remote message safe to log: control characters other
// than newlines become spaces, lines are joined with "; ", and it is cut to
// 2 KiB. A server's words are data, never terminal escapes.
func Printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || !unicode.IsControl(r) && unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s = strings.Join(lines, "; ")
	if len(s) > 2048 {
		s = s[:2048] + "…"
	}
	return s
}
