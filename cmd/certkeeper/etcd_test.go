//go:build linux

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const etcdRotations = 3

// etcdMember is one member of the cluster: its agent and its ports.
type etcdMember struct {
	*member
	name               string
	clientURL, peerURL string
	client, peer       string // host:port
	proc               *daemonProc
}

// The admin's story with a real 3-member etcd cluster, peer and client
// mutual TLS, each member's certificates installed by its own agent: etcd
// reads its certificate files again on each handshake, so the agents
// reload nothing; a put/get loop across the members goes on throughout
// with no failed request, and after each rotation every member serves its
// new serial on both ports.
func TestRealEtcdClusterRotatesUnderLoad(t *testing.T) {
	etcd := needDaemon(t, "/usr/bin/etcd", "etcd-server")
	etcdctl := needDaemon(t, "/usr/bin/etcdctl", "etcd-client")
	ca := newClusterCA(t)
	ca.issue("etcd-1", "etcd-2", "etcd-3", "client")
	var ms []*etcdMember
	var initial []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("etcd-%d", i)
		e := &etcdMember{name: name, member: newMember(t, name, ""),
			client: fmt.Sprintf("127.0.0.1:%d", freePort(t)), peer: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		e.clientURL, e.peerURL = "https://"+e.client, "https://"+e.peer
		e.drop(ca)
		e.waitLive(ca.serial(name))
		ms = append(ms, e)
		initial = append(initial, name+"="+e.peerURL)
	}
	for _, e := range ms {
		live := e.live
		dir := filepath.Dir(live)
		e.proc = startDaemon(t, e.name, dir, etcd,
			"--name", e.name, "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", e.clientURL, "--advertise-client-urls", e.clientURL,
			"--listen-peer-urls", e.peerURL, "--initial-advertise-peer-urls", e.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "certkeeper-test",
			"--cert-file", live+"/node.crt", "--key-file", live+"/node.key", "--trusted-ca-file", live+"/cluster.crt", "--client-cert-auth",
			"--peer-cert-file", live+"/node.crt", "--peer-key-file", live+"/node.key", "--peer-trusted-ca-file", live+"/cluster.crt", "--peer-client-cert-auth",
			"--heartbeat-interval", "200", "--election-timeout", "2000", "--listen-metrics-urls", "http://127.0.0.1:0")
	}
	cfg := ca.tlsConfig("client")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	// call is one request of etcd's v3 JSON API (the gRPC gateway on the
	// client port), on a new connection.
	call := func(e *etcdMember, path string, body any) (map[string]any, string, error) {
		b, _ := json.Marshal(body)
		resp, err := client.Post(e.clientURL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", e.name, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil, "", fmt.Errorf("%s %s: status %d: %s", e.name, path, resp.StatusCode, out)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			return nil, "", fmt.Errorf("%s %s: %v: %s", e.name, path, err, out)
		}
		return v, serialHex(resp.TLS.PeerCertificates[0].SerialNumber), nil
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	// The cluster is up when a put through every member succeeds.
	for _, e := range ms {
		waitPort(t, e.client, e.proc)
		deadline := time.Now().Add(40 * time.Second)
		for {
			_, _, err := call(e, "/v3/kv/put", map[string]string{"key": b64("up"), "value": b64(e.name)})
			if err == nil {
				break
			}
			if time.Now().After(deadline) || !e.proc.alive() {
				t.Fatalf("etcd cluster not up through %s: %v\n%s", e.name, err, e.proc.output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	load := runLoad(120*time.Second, 10*time.Millisecond, func(i int) (string, error) {
		e := ms[i%3]
		key, val := b64(fmt.Sprintf("k%d", i%50)), b64(fmt.Sprintf("v%d", i))
		if _, _, err := call(e, "/v3/kv/put", map[string]string{"key": key, "value": val}); err != nil {
			return "", err
		}
		// A linearizable read through the next member sees the put.
		v, serial, err := call(ms[(i+1)%3], "/v3/kv/range", map[string]string{"key": key})
		if err != nil {
			return "", err
		}
		kvs, _ := v["kvs"].([]any)
		if len(kvs) != 1 || kvs[0].(map[string]any)["value"] != val {
			return "", fmt.Errorf("get %d after put through %s: %v", i, e.name, v)
		}
		return serial, nil
	})
	load.waitRequests(t, 20)
	for r := 1; r <= etcdRotations; r++ {
		ca.issue("etcd-1", "etcd-2", "etcd-3")
		for _, e := range ms {
			e.drop(ca)
		}
		for _, e := range ms {
			serial := ca.serial(e.name)
			e.waitLive(serial)
			waitServed(t, cfg, e.client, serial)
			waitServed(t, cfg, e.peer, serial)
		}
		load.waitRequests(t, 20)
	}
	requests, failures, serials := load.finish()
	t.Logf("etcd: %d rotations of 3 members, %d put/get pairs (%d requests), %d failed, 0 reloads (none configured), %d serials seen by the client", etcdRotations, requests, 2*requests, len(failures), serials)
	if len(failures) > 0 {
		t.Fatalf("%d of %d put/get pairs failed; first: %s", len(failures), requests, failures[0])
	}
	if serials != 3*(etcdRotations+1) {
		t.Errorf("the client saw %d serials, want %d", serials, 3*(etcdRotations+1))
	}
	// etcd's own client agrees: every member healthy, with the client
	// certificate, after the rotations.
	var eps []string
	for _, e := range ms {
		eps = append(eps, e.clientURL)
		if !e.proc.alive() {
			t.Fatalf("%s died:\n%s", e.name, e.proc.output())
		}
	}
	ctl := exec.Command(etcdctl, "--endpoints", strings.Join(eps, ","), "--cacert", ca.path("client", "cluster.crt"),
		"--cert", ca.path("client", "node.crt"), "--key", ca.path("client", "node.key"), "endpoint", "health")
	ctl.Env = append(ctl.Environ(), "ETCDCTL_API=3")
	out, err := ctl.CombinedOutput()
	if err != nil || strings.Count(string(out), "is healthy") != 3 {
		t.Fatalf("etcdctl endpoint health: %v\n%s", err, out)
	}
	for _, e := range ms {
		e.agent.stop(t)
	}
}
