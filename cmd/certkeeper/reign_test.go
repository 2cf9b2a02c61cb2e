package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testpki"
)

// reignNode is a node as reign (github.com/thejerf/reign, commit ec31c0e)
// sets itself up from its cluster spec, written from reading its
// definition.go (none of its code is here): the node certificate and key
// loaded with tls.LoadX509KeyPair; the certificate's CN must be the node
// id in decimal, or reign refuses to start; the cluster certificate is the
// first PEM block of its file, which must be a CERTIFICATE, alone in the
// root pool.
type reignNode struct {
	id    int
	cert  tls.Certificate
	roots *x509.CertPool
}

func loadReignNode(id int, certFile, keyFile, clusterFile string) (*reignNode, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the node cert from the disk: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if nodeID := fmt.Sprintf("%d", id); leaf.Subject.CommonName != nodeID {
		return nil, fmt.Errorf("the current node ID (%s) does not match the certificate's common name (%s)", nodeID, leaf.Subject.CommonName)
	}
	data, err := os.ReadFile(clusterFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("cluster cert not the first thing found in cluster cert file")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &reignNode{id: id, cert: cert, roots: pool}, nil
}

// tlsConfig is reign's Cluster.tlsConfig(serverNode), used by both ends
// of a connection: the cluster CA as roots, this node's certificate, the
// default cipher suite list (one ECDSA suite, which only limits TLS 1.2),
// no session tickets, at least TLS 1.2, and ServerName = the id of the
// node being dialled. The listener asks for no client certificate.
func (n *reignNode) tlsConfig(serverNode int) *tls.Config {
	return &tls.Config{
		RootCAs:                n.roots,
		Certificates:           []tls.Certificate{n.cert},
		CipherSuites:           []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		SessionTicketsDisabled: true,
		MinVersion:             tls.VersionTLS12,
		ServerName:             fmt.Sprintf("%d", serverNode),
	}
}

// reignDial connects from to server over loopback as reign's node
// connection and listener do (tls.Client and tls.Server with their own
// tlsConfig(server id)), handshakes both ends and sends one line through.
func reignDial(t *testing.T, from, server *reignNode) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, server.tlsConfig(server.id))
		if err := s.Handshake(); err != nil {
			served <- err
			return
		}
		line, err := bufio.NewReader(s).ReadString('\n')
		if err == nil {
			_, err = fmt.Fprintf(s, "pong %d\n", server.id)
		}
		if err == nil && line != fmt.Sprintf("ping %d\n", from.id) {
			err = fmt.Errorf("server read %q", line)
		}
		served <- err
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, from.tlsConfig(server.id))
	if err := cl.Handshake(); err != nil {
		c.Close()
		<-served
		return err
	}
	if _, err := fmt.Fprintf(cl, "ping %d\n", from.id); err != nil {
		return err
	}
	line, err := bufio.NewReader(cl).ReadString('\n')
	if err != nil {
		return err
	}
	if line != fmt.Sprintf("pong %d\n", server.id) {
		return fmt.Errorf("client read %q", line)
	}
	return <-served
}

// Certificates from `certkeeper ca issue`, installed by `certkeeper
// install` under the reign layouts, pass reign's own checks: each node
// starts (CN = its id), and each dials the other with ServerName = the
// other's id and a real TLS handshake over loopback. A certificate without
// the id as a SAN (the old guide's openssl recipe) fails that handshake
// exactly as reign does, and certkeeper warns that it will.
func TestReignAcceptsCertkeeperCertificates(t *testing.T) {
	for _, c := range []struct {
		layout, cert, key, ca, keyType string
	}{
		{"reign", "node.%d.crt", "node.%d.key", "signing.crt", "ecdsa-p256"},
		{"reign-init", "reign_node.%d.crt", "reign_node.%d.key", "reign_ca.crt", "rsa-2048"},
	} {
		t.Run(c.layout+" "+c.keyType, func(t *testing.T) {
			ca := filepath.Join(t.TempDir(), "ca")
			if r := certkeeper(t, "ca", "init", "--dir", ca, "--name", "reign-cluster", "--node-key-type", c.keyType); r.code != 0 {
				t.Fatalf("ca init: %+v", r)
			}
			if r := certkeeper(t, "ca", "issue", "--dir", ca, "node", "1", "2"); r.code != 0 {
				t.Fatalf("ca issue: %+v", r)
			}
			nodes := map[int]*reignNode{}
			for _, id := range []int{1, 2} {
				n := newNode(t, c.layout, fmt.Sprint(id), "")
				pub := filepath.Join(ca, "nodes", fmt.Sprint(id))
				if r := n.install(filepath.Join(pub, "node.crt"), filepath.Join(pub, "node.key"), filepath.Join(pub, "cluster.crt")); r.code != 0 {
					t.Fatalf("install node %d: %+v", id, r)
				}
				if r := certkeeper(t, "check", "--config", n.config); r.code != 0 || strings.Contains(r.stdout, "reign will refuse") {
					t.Fatalf("check node %d: %+v", id, r)
				}
				rn, err := loadReignNode(id, filepath.Join(n.live, fmt.Sprintf(c.cert, id)), filepath.Join(n.live, fmt.Sprintf(c.key, id)), filepath.Join(n.live, c.ca))
				if err != nil {
					t.Fatalf("reign refuses to start node %d: %v", id, err)
				}
				nodes[id] = rn
			}
			for _, d := range [][2]int{{1, 2}, {2, 1}} {
				if err := reignDial(t, nodes[d[0]], nodes[d[1]]); err != nil {
					t.Fatalf("node %d dialling node %d: %v", d[0], d[1], err)
				}
			}
		})
	}

	t.Run("the old guide's CN-only certificates", func(t *testing.T) {
		dir := t.TempDir()
		testpki.ReignRecipe(t, dir, "1")
		testpki.OpenSSL(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.2.key", "-subj", "/O=reign/CN=2", "-out", "node.2.req")
		testpki.OpenSSL(t, dir, "x509", "-req", "-days", "30", "-in", "node.2.req", "-CA", "signing.crt", "-CAkey", "signing.key", "-out", "node.2.crt", "-CAcreateserial")
		n := newNode(t, "reign", "1", "")
		if r := n.install(filepath.Join(dir, "signing.crt"), filepath.Join(dir, "node.1.crt"), filepath.Join(dir, "node.1.key")); r.code != 0 {
			t.Fatalf("install: %+v", r)
		}
		r := certkeeper(t, "check", "--config", n.config)
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "reign will refuse it") || !strings.Contains(r.stdout+r.stderr, "certkeeper ca issue node 1 --force") {
			t.Fatalf("check of a CN-only reign certificate: %+v", r)
		}
		one, err := loadReignNode(1, filepath.Join(n.live, "node.1.crt"), filepath.Join(n.live, "node.1.key"), filepath.Join(n.live, "signing.crt"))
		if err != nil {
			t.Fatal(err)
		}
		two, err := loadReignNode(2, filepath.Join(dir, "node.2.crt"), filepath.Join(dir, "node.2.key"), filepath.Join(dir, "signing.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := reignDial(t, two, one); err == nil || !strings.Contains(err.Error(), "legacy Common Name field") {
			t.Fatalf("dialling a CN-only node: %v, want reign's legacy Common Name refusal", err)
		}
	})
}
