package distribute_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/internal/testsshd"
)

// BenchmarkDialOpenSSH: a whole connection to a real sshd, as a push makes
// one per node: TCP, key exchange (curve25519 with OpenSSH 9.2), host key
// check, public key login, SFTP session.
func BenchmarkDialOpenSSH(b *testing.B) {
	s := testsshd.Start(b, testsshd.Options{})
	tg := target(s)
	for b.Loop() {
		c, err := distribute.Dial(context.Background(), tg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkKeyExchange compares the client's cost of the key exchanges
// x/crypto offers, each against an in-process x/crypto server on loopback
// (OpenSSH 9.2 has no mlkem768x25519, so it can not be compared there).
func BenchmarkKeyExchange(b *testing.B) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for _, kex := range []string{ssh.KeyExchangeCurve25519, ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeECDHP256} {
		b.Run(kex, func(b *testing.B) {
			for b.Loop() {
				cc, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				sc, err := l.Accept()
				if err != nil {
					b.Fatal(err)
				}
				srv := &ssh.ServerConfig{NoClientAuth: true}
				srv.KeyExchanges = []string{kex}
				srv.AddHostKey(hostSigner)
				done := make(chan error, 1)
				go func() {
					conn, chans, reqs, err := ssh.NewServerConn(sc, srv)
					if err == nil {
						go ssh.DiscardRequests(reqs)
						go func() {
							for ch := range chans {
								ch.Reject(ssh.Prohibited, "")
							}
						}()
						conn.Close()
					}
					done <- err
				}()
				cfg := &ssh.ClientConfig{User: "x", HostKeyCallback: ssh.FixedHostKey(hostSigner.PublicKey())}
				cfg.KeyExchanges = []string{kex}
				c, _, _, err := ssh.NewClientConn(cc, "pipe", cfg)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				<-done
			}
		})
	}
}
