package distribute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Conn is an SFTP session on a verified SSH connection. Every operation
// runs under the target's timeout and its context; when either runs out,
// the connection is closed and the operation fails with an error that
// says which phase timed out. Operations may run concurrently.
type Conn struct {
	Host string // host:port
	ssh  *ssh.Client
	sftp *sftp.Client
	raw  net.Conn

	timeout   time.Duration
	closeAuth func()
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	expired string // the operation whose timeout closed the connection
}

// Dial connects to t, verifies its host key against known_hosts, logs in
// and opens an SFTP session. Each phase has t's timeout.
func Dial(ctx context.Context, t Target) (*Conn, error) {
	c, err := dialSSH(ctx, t)
	if err != nil {
		return nil, err
	}
	err = c.do(ctx, "opening the SFTP session", func() error {
		var err error
		// Concurrent writes would reorder a file's blocks; files here are
		// small, and a torn order helps no one.
		c.sftp, err = sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(false))
		return err
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialSSH connects to t, verifies its host key and logs in, with a
// keepalive running: a Conn without an SFTP session, for a command's
// session (the CSR exchange).
func dialSSH(ctx context.Context, t Target) (*Conn, error) {
	hp, err := t.HostPort()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Address, err)
	}
	am, closeAuth, err := auth(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hp, err)
	}
	cfg, err := clientConfig(t, hp, am)
	if err != nil {
		closeAuth()
		return nil, err
	}
	timeout := t.timeout()
	raw, err := dialTCP(ctx, hp, timeout)
	if err != nil {
		closeAuth()
		return nil, err
	}
	client, err := handshake(ctx, raw, hp, cfg, timeout)
	if err != nil {
		closeAuth()
		return nil, err
	}
	c := &Conn{Host: hp, ssh: client, raw: raw, timeout: timeout, closeAuth: closeAuth, done: make(chan struct{})}
	interval := t.Keepalive
	if interval <= 0 {
		interval = timeout / 3
	}
	go c.keepalive(interval)
	return c, nil
}

// Close ends the session and the connection.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		if c.sftp != nil {
			c.sftp.Close()
		}
		err = c.ssh.Close()
		c.closeAuth()
	})
	return err
}

// keepalive asks the server for a reply every interval; one that does not
// answer within the timeout is dropped, which fails whatever was waiting
// on it.
func (c *Conn) keepalive(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		timer := time.AfterFunc(c.timeout, func() { c.expire("waiting for a keepalive reply") })
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		timer.Stop()
		if err != nil {
			return
		}
	}
}

// do runs one operation under the connection's timeout and ctx. When
// either runs out, a watchdog closes the TCP connection: the SSH transport
// fails, and with it every operation waiting on the server, wherever it is
// blocked inside x/crypto or pkg/sftp.
func (c *Conn) do(ctx context.Context, what string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", c.Host, what, err)
	}
	timer := time.AfterFunc(c.timeout, func() { c.expire(what) })
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	err := fn()
	timer.Stop()
	stop()
	if err == nil {
		return nil
	}
	c.mu.Lock()
	expired := c.expired
	c.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %s: %w", c.Host, what, ctx.Err())
	case expired == what:
		return fmt.Errorf("%s: %s: no answer within %s; connection dropped", c.Host, what, c.timeout)
	case expired != "":
		return fmt.Errorf("%s: %s: connection dropped (no answer within %s while %s)", c.Host, what, c.timeout, expired)
	case isClosed(err):
		return fmt.Errorf("%s: %s: the connection was lost (the server closed it or died)", c.Host, what)
	}
	return fmt.Errorf("%s: %s: %w", c.Host, what, err)
}

func (c *Conn) expire(what string) {
	c.mu.Lock()
	if c.expired == "" {
		c.expired = what
	}
	c.mu.Unlock()
	c.raw.Close()
}

// isClosed reports errors that mean the connection is gone: the SSH layer
// reports a dead transport as EOF or a closed connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, sftp.ErrSSHFxConnectionLost)
}

// HasExtension reports whether the SFTP server offers an extension such as
// fsync@openssh.com.
func (c *Conn) HasExtension(name string) bool {
	_, ok := c.sftp.HasExtension(name)
	return ok
}
