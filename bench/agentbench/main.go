//go:build linux

// Command agentbench measures `certkeeper agent` on real directories; run
// it through bench/agent.sh.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type pair struct{ cert, key []byte }

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA() *ca {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench cluster"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		fatalf("%v", err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: k, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *ca) issue(cn string) pair {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(20 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &k.PublicKey, c.key)
	if err != nil {
		fatalf("%v", err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	return pair{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})}
}

type node struct {
	root, config, marks string
	ca                  *ca
}

// newNode writes a config with three bundles whose reload appends the
// time the action started (date +%s%N) to a marks file.
func newNode(root string, metrics bool) *node {
	n := &node{root: root, config: filepath.Join(root, "certkeeper.toml"), marks: filepath.Join(root, "reload-marks"), ca: newCA()}
	var b strings.Builder
	if metrics {
		fmt.Fprintf(&b, "node_id = \"node-1\"\nstate_dir = %q\nmetrics_listen = \"127.0.0.1:0\"\n", filepath.Join(root, "state"))
	} else {
		fmt.Fprintf(&b, "node_id = \"node-1\"\nstate_dir = %q\nlog_level = \"warn\"\n", filepath.Join(root, "state"))
	}
	for _, name := range []string{"one", "two", "three"} {
		fmt.Fprintf(&b, "\n[[bundle]]\nname = %q\nlayout = \"flocker-node\"\ndir = %q\n\n  [[bundle.reload]]\n  command = [\"/bin/sh\", \"-c\", \"date +%%s%%N >> %s\"]\n",
			name, filepath.Join(root, "live", name), n.marks)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		fatalf("%v", err)
	}
	if err := os.WriteFile(n.config, []byte(b.String()), 0o600); err != nil {
		fatalf("%v", err)
	}
	return n
}

func (n *node) inbox(bundle string) string { return filepath.Join(n.root, "state", "inbox", bundle) }

func (n *node) marksCount() int {
	b, _ := os.ReadFile(n.marks)
	return bytes.Count(b, []byte("\n"))
}

func (n *node) lastMark() time.Time {
	b, _ := os.ReadFile(n.marks)
	lines := strings.Fields(string(b))
	ns, _ := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	return time.Unix(0, ns)
}

type agentProc struct {
	cmd *exec.Cmd
}

func start(bin string, n *node, env ...string) *agentProc {
	cmd := exec.Command(bin, "agent", "--config", n.config)
	cmd.Env = append(os.Environ(), env...)
	logf, _ := os.Create(filepath.Join(n.root, "agent.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	a := &agentProc{cmd: cmd}
	running = append(running, a)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ready := true
		for _, b := range []string{"one", "two", "three"} {
			if _, err := os.Stat(n.inbox(b)); err != nil {
				ready = false
			}
		}
		if ready {
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	fatalf("agent did not start; see %s", filepath.Join(n.root, "agent.log"))
	return nil
}

// running are the agents started, stopped by fatalf too: a failed
// benchmark leaves no process behind.
var running []*agentProc

func fatalf(format string, args ...any) {
	for _, a := range running {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			a.cmd.Wait()
		}
	}
	log.Fatalf(format, args...)
}

func (a *agentProc) stop() {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
}

// rss is VmRSS in KiB.
func (a *agentProc) rss() int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// cpu reads the agent's own CPU time from its metrics: getrusage, to the
// microsecond (/proc's ticks are 10 ms, too coarse for an idle agent, and
// schedstat is empty on this VM).
func (a *agentProc) cpu(n *node) time.Duration {
	logb, _ := os.ReadFile(filepath.Join(n.root, "agent.log"))
	m := regexp.MustCompile(`metrics=(127\.0\.0\.1:\d+)`).FindSubmatch(logb)
	if m == nil {
		fatalf("no metrics address in %s", filepath.Join(n.root, "agent.log"))
	}
	resp, err := http.Get("http://" + string(m[1]) + "/metrics")
	if err != nil {
		fatalf("%v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "certkeeper_agent_cpu_seconds_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return time.Duration(f * 1e9)
		}
	}
	fatalf("no certkeeper_agent_cpu_seconds_total in the metrics")
	return 0
}

func (n *node) drop(bundle string, p pair) time.Time {
	dir := n.inbox(bundle)
	// As scp writes them: one after another, in place, under the admin's
	// names.
	for _, f := range []struct {
		name string
		data []byte
	}{{"8eab4b8d.crt", p.cert}, {"8eab4b8d.key", p.key}, {"cluster.crt", n.ca.pem}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			fatalf("%v", err)
		}
	}
	return time.Now()
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func main() {
	bin := flag.String("certkeeper", "", "certkeeper binary")
	dir := flag.String("dir", os.TempDir(), "scratch directory")
	drops := flag.Int("drops", 30, "inbox drops to time")
	idle := flag.Duration("idle", time.Minute, "idle time for memory and CPU")
	flag.Parse()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("certkeeper agent benchmark: %d CPUs, load %s(a shared machine: figures vary between runs)\n\n", runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " ")+" ")

	// Latency: drop a bundle, wait for its reload mark.
	n := newNode(filepath.Join(*dir, "latency"), false)
	a := start(*bin, n)
	var lat []time.Duration
	bundles := []string{"one", "two", "three"}
	for i := 0; i < *drops; i++ {
		before := n.marksCount()
		written := n.drop(bundles[i%3], n.ca.issue("node-1"))
		deadline := time.Now().Add(10 * time.Second)
		for n.marksCount() == before {
			if time.Now().After(deadline) {
				fatalf("drop %d: no reload within 10s; see %s", i, filepath.Join(n.root, "agent.log"))
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, n.lastMark().Sub(written))
		time.Sleep(100 * time.Millisecond)
	}
	a.stop()
	fmt.Printf("inbox drop -> reload action started, %d drops of 3 files (settle time 150 ms included):\n", len(lat))
	fmt.Printf("  median %s   p90 %s   min %s   max %s   (goal <= 300 ms)\n\n",
		median(lat).Round(time.Millisecond), pct(lat, 0.9).Round(time.Millisecond), pct(lat, 0).Round(time.Millisecond), pct(lat, 1).Round(time.Millisecond))

	// Idle: three installed bundles, A (Go's default GC settings, what
	// certkeeper runs with) and B (a tighter GC: GOGC=50 GOMEMLIMIT=16MiB)
	// side by side, twice. Metrics are served (the CPU figure
	// comes from them), which the resident memory includes.
	type sample struct {
		rss []int
		cpu []time.Duration
	}
	res := map[string]*sample{"A": {}, "B": {}, "C": {}}
	env := map[string][]string{"A": nil, "B": {"GOGC=50", "GOMEMLIMIT=16MiB"}, "C": nil}
	for round := 1; round <= 2; round++ {
		procs := map[string]*agentProc{}
		nodes := map[string]*node{}
		for _, v := range []string{"A", "B", "C"} {
			// C serves no metrics: its resident memory without the HTTP
			// listener; its CPU is not measured.
			nodes[v] = newNode(filepath.Join(*dir, fmt.Sprintf("idle-%s-%d", v, round)), v != "C")
			procs[v] = start(*bin, nodes[v], env[v]...)
			for _, b := range bundles {
				nodes[v].drop(b, nodes[v].ca.issue("node-1"))
			}
		}
		for v := range nodes {
			for deadline := time.Now().Add(20 * time.Second); nodes[v].marksCount() < 3; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					fatalf("idle %s: bundles not installed", v)
				}
			}
		}
		time.Sleep(time.Second) // let the installs' own wakes pass
		c0 := map[string]time.Duration{"A": procs["A"].cpu(nodes["A"]), "B": procs["B"].cpu(nodes["B"])}
		time.Sleep(*idle)
		for _, v := range []string{"A", "B", "C"} {
			res[v].rss = append(res[v].rss, procs[v].rss())
			if v != "C" {
				res[v].cpu = append(res[v].cpu, procs[v].cpu(nodes[v])-c0[v])
			}
			procs[v].stop()
		}
	}
	mi := func(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
	// Two rounds: report the worse of the two.
	medInt := func(s []int) int { sort.Ints(s); return s[len(s)-1] }
	fmt.Printf("idle %s with 3 installed bundles (A: Go's GC defaults, as shipped; B: GOGC=50 GOMEMLIMIT=16MiB; both serving metrics), rounds A,B,C side by side x2:\n", *idle)
	for _, v := range []string{"A", "B"} {
		fmt.Printf("  %s  resident %s / %s -> worse %s   CPU %s / %s -> worse %s\n", v,
			mi(res[v].rss[0]), mi(res[v].rss[1]), mi(medInt(append([]int(nil), res[v].rss...))),
			res[v].cpu[0].Round(100*time.Microsecond), res[v].cpu[1].Round(100*time.Microsecond), median(res[v].cpu).Round(100*time.Microsecond))
	}
	fmt.Printf("  C  resident %s / %s -> worse %s   (as A, without metrics_listen)\n", mi(res["C"].rss[0]), mi(res["C"].rss[1]), mi(medInt(append([]int(nil), res["C"].rss...))))
	ra, rb := medInt(res["A"].rss), medInt(res["B"].rss)
	fmt.Printf("  ratio B/A: resident %.2fx   CPU %.2fx   (goals: <= 12 MiB; < 20 ms per %s; certmonger ~8.8 MiB, consul-template ~14.7 MiB here)\n",
		float64(rb)/float64(ra), float64(median(res["B"].cpu))/float64(max(median(res["A"].cpu), time.Microsecond)), *idle)
}
