//go:build unix

// Command testdaemon is a real reload target for certkeeper's tests and
// demos: it serves mutual TLS on a loopback address with a bundle's files,
// as a cluster daemon would, and re-reads them on SIGHUP. Each connection
// from a client with a certificate signed by the CA gets one line,
// "serial=<hex serial of the certificate served>", then the connection
// closes.
//
//	testdaemon -cert node.crt -key node.key -ca cluster.crt \
//	    -listen 127.0.0.1:0 -pidfile d.pid -addrfile d.addr
//
// A bundle that fails to load on SIGHUP is reported on stderr and the
// daemon keeps serving the previous one, as careful daemons do.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

type bundle struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

func load(certFile, keyFile, caFile string) (*bundle, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no CA certificate", caFile)
	}
	return &bundle{cert: &c, pool: pool}, nil
}

func main() {
	certFile := flag.String("cert", "", "certificate (leaf first) to serve")
	keyFile := flag.String("key", "", "its private key")
	caFile := flag.String("ca", "", "CA that client certificates must chain to")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	pidfile := flag.String("pidfile", "", "file to write the process id to, once listening")
	addrfile := flag.String("addrfile", "", "file to write the listening address to, once listening")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("testdaemon: ")
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		log.Fatal("-cert, -key and -ca are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("-listen %s: only loopback addresses", *listen)
	}
	b, err := load(*certFile, *keyFile, *caFile)
	if err != nil {
		log.Fatal(err)
	}
	var cur atomic.Pointer[bundle]
	cur.Store(b)
	log.Printf("serving serial=%x", b.cert.Leaf.SerialNumber)

	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			b := cur.Load()
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*b.cert},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: b.pool}, nil
		},
	}
	ln, err := tls.Listen("tcp", *listen, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if *addrfile != "" {
		writeFile(*addrfile, ln.Addr().String())
	}
	if *pidfile != "" {
		writeFile(*pidfile, fmt.Sprint(os.Getpid()))
	}

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			if s != syscall.SIGHUP {
				log.Printf("stopping on %s", s)
				if *pidfile != "" {
					os.Remove(*pidfile)
				}
				os.Exit(0)
			}
			nb, err := load(*certFile, *keyFile, *caFile)
			if err != nil {
				log.Printf("reload failed, keeping serial=%x: %v", cur.Load().cert.Leaf.SerialNumber, err)
				continue
			}
			cur.Store(nb)
			log.Printf("reloaded: serving serial=%x", nb.cert.Leaf.SerialNumber)
		}
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go serve(conn.(*tls.Conn), &cur)
	}
}

func serve(c *tls.Conn, cur *atomic.Pointer[bundle]) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	fmt.Fprintf(c, "serial=%x client=%s\n", cur.Load().cert.Leaf.SerialNumber, leaf.Subject.CommonName)
}

// writeFile writes atomically, so a reader never sees a partial pid.
func writeFile(path, s string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		log.Fatal(err)
	}
}
