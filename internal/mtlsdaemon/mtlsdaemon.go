//go:build unix

// Package mtlsdaemon is a small daemon that serves mutual TLS with a
// bundle's files, as a cluster daemon would, and re-reads them on SIGHUP:
// the reload target of certkeeper's tests (the internal/testdaemon
// command) and of `certkeeper demo` (its hidden `demo daemon`). Each
// connection from a client whose certificate chains to the CA gets one
// line, then the connection closes:
//
//	serial=<hex serial of the certificate served> client=<client CN> reloads=<N>
//
// A bundle that fails to load on SIGHUP is reported and the daemon keeps
// serving the previous one, as careful daemons do.
package mtlsdaemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options are the daemon's flags.
type Options struct {
	Cert, Key, CA string
	// Listen must be a loopback address; port 0 picks a free one.
	Listen string
	// Pidfile and Addrfile, when set, receive the process id and the
	// listening address once the daemon listens (written atomically); the
	// pid file is removed when it stops.
	Pidfile, Addrfile string
	// IgnoreHUP makes SIGHUP change nothing (it is logged): a daemon
	// that ignores its reload, for the agent's served check.
	IgnoreHUP bool
}

type bundle struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

func load(o Options) (*bundle, error) {
	c, err := tls.LoadX509KeyPair(o.Cert, o.Key)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no CA certificate", o.CA)
	}
	return &bundle{cert: &c, pool: pool}, nil
}

// Main parses args as the command line and runs the daemon until ctx ends
// (SIGTERM or SIGINT, for the callers); it returns the exit code.
func Main(ctx context.Context, name string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Cert, "cert", "", "certificate (leaf first) to serve")
	fs.StringVar(&o.Key, "key", "", "its private key")
	fs.StringVar(&o.CA, "ca", "", "CA that client certificates must chain to")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:0", "loopback address to listen on")
	fs.StringVar(&o.Pidfile, "pidfile", "", "file to write the process id to, once listening")
	fs.StringVar(&o.Addrfile, "addrfile", "", "file to write the listening address to, once listening")
	fs.BoolVar(&o.IgnoreHUP, "ignore-hup", false, "log SIGHUP and keep serving the old files: a daemon that ignores its reload")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(stderr, name+": ", log.Lmicroseconds)
	if err := Run(ctx, o, logger); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

// Run serves until ctx ends, re-reading the files on each SIGHUP.
func Run(ctx context.Context, o Options, logger *log.Logger) error {
	if o.Cert == "" || o.Key == "" || o.CA == "" {
		return errors.New("-cert, -key and -ca are required")
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: only loopback addresses", o.Listen)
	}
	b, err := load(o)
	if err != nil {
		return err
	}
	var cur atomic.Pointer[bundle]
	var reloads atomic.Int64
	cur.Store(b)
	logger.Printf("serving serial=%x", b.cert.Leaf.SerialNumber)

	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			b := cur.Load()
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*b.cert},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: b.pool}, nil
		},
	}
	// Registered before the pid file exists: whoever reads the pid file
	// may signal at once, and an unhandled SIGHUP would end the process.
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ln, err := tls.Listen("tcp", o.Listen, cfg)
	if err != nil {
		return err
	}
	if o.Addrfile != "" {
		if err := writeFile(o.Addrfile, ln.Addr().String()); err != nil {
			ln.Close()
			return err
		}
	}
	if o.Pidfile != "" {
		if err := writeFile(o.Pidfile, fmt.Sprint(os.Getpid())); err != nil {
			ln.Close()
			return err
		}
		defer os.Remove(o.Pidfile)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				logger.Printf("stopping: %v", context.Cause(ctx))
				ln.Close()
				return
			case <-hup:
				if o.IgnoreHUP {
					logger.Printf("SIGHUP ignored (-ignore-hup), still serving serial=%x", cur.Load().cert.Leaf.SerialNumber)
					continue
				}
				nb, err := load(o)
				if err != nil {
					logger.Printf("reload failed, keeping serial=%x: %v", cur.Load().cert.Leaf.SerialNumber, err)
					continue
				}
				cur.Store(nb)
				reloads.Add(1)
				logger.Printf("reloaded: serving serial=%x", nb.cert.Leaf.SerialNumber)
			}
		}
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(conn.(*tls.Conn), &cur, &reloads)
		}()
	}
	wg.Wait()
	return nil
}

func serve(c *tls.Conn, cur *atomic.Pointer[bundle], reloads *atomic.Int64) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	fmt.Fprintf(c, "serial=%x client=%s reloads=%d\n", cur.Load().cert.Leaf.SerialNumber, leaf.Subject.CommonName, reloads.Load())
}

// writeFile writes atomically, so a reader never sees a partial pid.
func writeFile(path, s string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
