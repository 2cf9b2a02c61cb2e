//go:build unix

// Command testdaemon is a real reload target for certkeeper's tests: it
// serves mutual TLS on a loopback address with a bundle's files, as a
// cluster daemon would, and re-reads them on SIGHUP (package mtlsdaemon,
// which `certkeeper demo` runs too). Each connection from a client with a
// certificate signed by the CA gets one line, "serial=<hex serial of the
// certificate served> client=<CN> reloads=<N>", then the connection closes.
//
//	testdaemon -cert node.crt -key node.key -ca cluster.crt \
//	    -listen 127.0.0.1:0 -pidfile d.pid -addrfile d.addr
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/certkeeper/certkeeper/internal/mtlsdaemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := mtlsdaemon.Main(ctx, "testdaemon", os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
