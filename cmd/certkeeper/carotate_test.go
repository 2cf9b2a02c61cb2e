//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testdaemon/daemontest"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// rotNode is one node of the rotation proof: a real agent and a real
// mutual-TLS daemon (testdaemon or nginx) serving its live files.
type rotNode struct {
	*member
	addr    string
	nginx   bool
	reloads func() int
}

// handshake connects from node `from` (its live certificate, key and
// trust file, read afresh) to node `to`, both sides verifying, and reads
// the daemon's answer: a request that gets through mutual TLS.
func handshake(from, to *rotNode) error {
	var cfg *tls.Config
	for range 20 { // the live files are swapped as one generation; a read may straddle it
		c, errc := os.ReadFile(filepath.Join(from.live, "node.crt"))
		k, errk := os.ReadFile(filepath.Join(from.live, "node.key"))
		ca, erra := os.ReadFile(filepath.Join(from.live, "cluster.crt"))
		if errc != nil || errk != nil || erra != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cfg = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		break
	}
	if cfg == nil {
		return fmt.Errorf("%s: no consistent live files to handshake with", from.id)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", to.addr, cfg)
	if err != nil {
		return fmt.Errorf("%s -> %s: %w", from.id, to.id, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if to.nginx {
		fmt.Fprint(conn, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s -> %s: read: %w", from.id, to.id, err)
	}
	if to.nginx && !strings.Contains(line, " 200 ") || !to.nginx && !strings.HasPrefix(line, "serial=") {
		return fmt.Errorf("%s -> %s: answer %q", from.id, to.id, line)
	}
	return nil
}

// The proof of issue 15 item 2: a CA rotation from start to finish
// across three real agents, two serving mutual TLS with testdaemon and one
// with nginx, while every node handshakes with every other one every
// 200 ms: no handshake fails, and each node reloads once per change it
// receives (three: the two-CA trust file, the new-CA leaf, the new CA
// alone), with no allow_ca_change anywhere. Every bundle installs the
// CA's cluster.crl (crl_file) and nginx checks it (ssl_crl): from start to
// finish the file holds a CRL from each CA the nodes trust, so nginx
// accepts the leaves of both CAs and refuses a revoked one of each.
func TestCARotationAcrossRealDaemons(t *testing.T) {
	nginx := needDaemon(t, "/usr/sbin/nginx", "nginx")
	ca := newClusterCA(t)
	ids := []string{"node-a", "node-b", "node-c"}
	ca.issue(ids...)
	// A revoked node of the old CA, so the CRLs list something.
	ca.issue("gone-old")
	mustCA(t, "revoke", "--dir", ca.dir, "gone-old")
	mustCA(t, "crl", "--dir", ca.dir)
	drop := func(m *member) {
		t.Helper()
		crl, err := os.ReadFile(ca.path(m.id, "cluster.crl"))
		if err != nil {
			t.Fatal(err)
		}
		testpki.WriteFile(t, m.inbox, "cluster.crl", crl, 0o600)
		m.drop(ca)
	}
	var nodes []*rotNode
	for i, id := range ids {
		dir := t.TempDir()
		pidfile := filepath.Join(dir, "testdaemon.pid")
		if i == 2 {
			pidfile = filepath.Join(dir, "nginx.pid")
		}
		m := newMember(t, id, fmt.Sprintf("crl_file = \"cluster.crl\"\n\n  [[bundle.reload]]\n  signal = \"HUP\"\n  pidfile = %q\n", pidfile))
		drop(m)
		m.waitLive(ca.serial(id))
		// The first install's reload finds no daemon yet (or one just
		// started, which would count it); wait until it is done so the
		// daemons count only the rotation's changes.
		waitFor(t, id+"'s first reload attempt", func() bool {
			l := m.agent.log()
			return strings.Contains(l, "msg=reloaded") || strings.Contains(l, `msg="reload failed"`)
		})
		n := &rotNode{member: m}
		if i < 2 {
			d := daemontest.Start(t, daemontest.Options{Cert: filepath.Join(m.live, "node.crt"), Key: filepath.Join(m.live, "node.key"), CA: filepath.Join(m.live, "cluster.crt"), Dir: dir})
			n.addr = d.Addr
			n.reloads = func() int { return strings.Count(d.Log(), "reloaded: serving") }
		} else {
			port := freePort(t)
			n.addr, n.nginx = fmt.Sprintf("127.0.0.1:%d", port), true
			conf := filepath.Join(dir, "nginx.conf")
			cfg := strings.Replace(nginxConfig(dir, m.live, port), "ssl_verify_client on;",
				fmt.Sprintf("ssl_verify_client on;\n\t\tssl_crl %s/cluster.crl;", m.live), 1)
			if !strings.Contains(cfg, "ssl_crl") {
				t.Fatal("nginx config without ssl_verify_client")
			}
			if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, "nginx", dir, nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
			waitPort(t, n.addr, d)
			errorLog := filepath.Join(dir, "error.log")
			n.reloads = func() int { return countIn(errorLog, "(SIGHUP) received") }
		}
		nodes = append(nodes, n)
	}

	// Every ordered pair, every 200 ms, throughout.
	var (
		mu       sync.Mutex
		total    int
		failures []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			wg.Go(func() {
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for end := time.Now().Add(5 * time.Minute); time.Now().Before(end); {
					err := handshake(from, to)
					mu.Lock()
					total++
					if err != nil {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return total }
	pause := func() { // a few rounds of every pair between steps
		n := count()
		waitFor(t, "30 handshakes", func() bool { return count() >= n+30 })
	}
	pause()
	if n := count(); n == 0 || len(failures) > 0 {
		t.Fatalf("before the rotation: %d handshakes, failures %v", n, failures)
	}

	// deliver drops each node's published files into its inbox, one node
	// after the other as a push reaches them (nginx last), and waits until
	// the node installed them and its daemon reloaded, with rounds of
	// handshakes between: nodes on either CA's leaf meet nginx holding the
	// CRLs of before the step.
	deliver := func(step string, want int) {
		t.Helper()
		for _, n := range nodes {
			drop(n.member)
			n.waitInboxTaken()
			waitFor(t, fmt.Sprintf("%s's reload after %s", n.id, step), func() bool { return n.reloads() >= want })
			trust, _ := os.ReadFile(filepath.Join(n.live, "cluster.crt"))
			pub, _ := os.ReadFile(ca.path(n.id, "cluster.crt"))
			if string(trust) != string(pub) {
				t.Fatalf("%s did not install the trust file of %s:\n%s", n.id, step, n.agent.log())
			}
			n.waitLive(ca.serial(n.id))
			crl, _ := os.ReadFile(filepath.Join(n.live, "cluster.crl"))
			if pub, _ := os.ReadFile(ca.path(n.id, "cluster.crl")); string(crl) != string(pub) {
				t.Fatalf("%s did not install the CRL of %s:\n%s", n.id, step, n.agent.log())
			}
			pause()
		}
	}
	web := nodes[2]
	// refused: nginx, checking the live CRL, turns the revoked id away.
	refused := func(id string) {
		t.Helper()
		if code, err := mtlsGet(ca, id, web.addr); code == 200 {
			t.Errorf("nginx with ssl_crl served revoked %s: %d %v", id, code, err)
		}
	}
	crls := func(step string, want int) {
		t.Helper()
		data, _ := os.ReadFile(filepath.Join(web.live, "cluster.crl"))
		if n := strings.Count(string(data), "BEGIN X509 CRL"); n != want {
			t.Errorf("after %s the live cluster.crl holds %d CRLs, want %d", step, n, want)
		}
	}
	rotate := func(step string, args ...string) string {
		t.Helper()
		r := certkeeper(t, append([]string{"ca", "rotate", step, "--dir", ca.dir}, args...)...)
		if r.code != 0 {
			t.Fatalf("ca rotate %s: %+v", step, r)
		}
		return r.stdout
	}
	oldSerials := map[string]string{}
	for _, n := range nodes {
		oldSerials[n.id] = ca.serial(n.id)
	}
	rotate("start")
	deliver("start", 1)
	crls("start", 2)
	refused("gone-old")
	for _, n := range nodes {
		if ca.serial(n.id) != oldSerials[n.id] {
			t.Fatalf("start re-issued %s", n.id)
		}
	}
	if r := certkeeper(t, "ca", "rotate", "finish", "--dir", ca.dir); r.code == 0 || !strings.Contains(r.stderr, "not yet issued") {
		t.Fatalf("finish before issue: %+v", r)
	}
	rotate("issue")
	// A revoked node of the new CA, in the same delivery.
	ca.issue("gone-new")
	mustCA(t, "revoke", "--dir", ca.dir, "gone-new")
	mustCA(t, "crl", "--dir", ca.dir)
	deliver("issue", 2)
	crls("issue", 2)
	refused("gone-old")
	refused("gone-new")
	st := rotate("status")
	if !strings.Contains(st, "phase: issued") || strings.Contains(st, "still on the old CA") {
		t.Fatalf("status after issue:\n%s", st)
	}
	rotate("finish")
	deliver("finish", 3)
	crls("finish", 1)
	refused("gone-new")
	close(stop)
	wg.Wait()

	var figures []string
	for _, n := range nodes {
		figures = append(figures, fmt.Sprintf("%s=%d", n.id, n.reloads()))
		if r := n.reloads(); r != 3 {
			t.Errorf("%s reloaded %d times for 3 changes:\n%s", n.id, r, n.agent.log())
		}
		if strings.Contains(n.agent.log(), "allow_ca_change") {
			t.Errorf("%s refused a step:\n%s", n.id, n.agent.log())
		}
	}
	t.Logf("CA rotation: %d handshakes between 6 ordered pairs, %d failed; reloads %s", total, len(failures), strings.Join(figures, " "))
	if len(failures) > 0 {
		t.Fatalf("%d of %d handshakes failed; first: %s", len(failures), total, failures[0])
	}
	if r := certkeeper(t, "ca", "rotate", "status", "--dir", ca.dir); !strings.Contains(r.stdout, "phase: none") {
		t.Errorf("status after finish:\n%+v", r)
	}
}

// A SIGKILL of `ca rotate` (the real binary) at a random instant of each
// step leaves a state `ca rotate status` explains, and the same command
// run again completes the step: start, issue, then finish or abort.
func TestCARotateSurvivesSIGKILL(t *testing.T) {
	for _, last := range []string{"finish", "abort"} {
		t.Run(last, func(t *testing.T) { rotateUnderKills(t, last) })
	}
}

func rotateUnderKills(t *testing.T, last string) {
	ca := newClusterCA(t)
	origCA, err := os.ReadFile(filepath.Join(ca.dir, "cluster.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 30 {
		ids = append(ids, fmt.Sprintf("node-%02d", i))
	}
	ca.issue(ids...)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	kills := 0
	phases := map[string]int{} // what status said after each kill
	for _, step := range []string{"start", "issue", last} {
		// The step's whole run, timed once, bounds the random instants.
		for try := range 6 {
			cmd := exec.Command(binary, "ca", "rotate", step, "--dir", ca.dir)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			delay := time.Duration(5+rng.IntN(20*(try+1))) * time.Millisecond
			select {
			case <-done:
			case <-time.After(delay):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				kills++
				r := certkeeper(t, "ca", "rotate", "status", "--dir", ca.dir)
				if r.code != 0 || !strings.Contains(r.stdout, "phase: ") {
					t.Fatalf("status after a kill %s into %s: %+v", delay, step, r)
				}
				phases[strings.SplitN(strings.TrimPrefix(r.stdout, "phase: "), "\n", 2)[0]]++
			}
		}
		want := map[string]string{"start": "phase: started", "issue": "phase: issued", "finish": "phase: none", "abort": "phase: none"}[step]
		// A run that was not killed has done the step; otherwise the same
		// command again completes it.
		if st := certkeeper(t, "ca", "rotate", "status", "--dir", ca.dir); !strings.Contains(st.stdout, want) {
			if r := certkeeper(t, "ca", "rotate", step, "--dir", ca.dir); r.code != 0 {
				t.Fatalf("ca rotate %s after the kills: %+v\nstatus:\n%s", step, r, st.stdout)
			}
		}
		st := certkeeper(t, "ca", "rotate", "status", "--dir", ca.dir)
		if !strings.Contains(st.stdout, want) {
			t.Fatalf("after %s: status\n%s", step, st.stdout)
		}
	}
	t.Logf("%d SIGKILLs of ca rotate across start, issue, %s; status after them: %v", kills, last, phases)
	nowCA, _ := os.ReadFile(filepath.Join(ca.dir, "cluster.crt"))
	if back := string(nowCA) == string(origCA); back != (last == "abort") {
		t.Fatalf("after %s the CA is the original one: %v", last, back)
	}
	// The CA is whole: every node has a new-CA leaf and the CA issues.
	if r := certkeeper(t, "ca", "issue", "--dir", ca.dir, "node", "node-new"); r.code != 0 {
		t.Fatalf("issue after the rotation: %+v", r)
	}
	for _, id := range ids {
		pool := x509.NewCertPool()
		trust, _ := os.ReadFile(ca.path(id, "cluster.crt"))
		pool.AppendCertsFromPEM(trust)
		leaf, _ := os.ReadFile(ca.path(id, "node.crt"))
		c, err := tls.X509KeyPair(leaf, ca.files(id)["node.key"])
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		if _, err := x.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: its leaf (issuer %s) does not verify with its cluster.crt (%d CAs): %v\n%s", id, x.Issuer, strings.Count(string(trust), "BEGIN"), err, certkeeper(t, "ca", "list", "--dir", ca.dir).stdout)
		}
		if strings.Count(string(trust), "BEGIN CERTIFICATE") != 1 {
			t.Errorf("%s: cluster.crt holds more than the new CA", id)
		}
	}
}

// With no rotation under way, status --json says "phase": "none", the word
// the text output prints, not an empty string a script must know about.
func TestCARotateStatusJSONSaysNone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if code, _, stderr := runIn("ca", "init", "--dir", dir, "--name", "c"); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := runIn("ca", "rotate", "status", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var st struct {
		Phase string `json:"phase"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != "none" {
		t.Errorf(`phase %q, want "none" as the text says`, st.Phase)
	}
	if _, text, _ := runIn("ca", "rotate", "status", "--dir", dir); !strings.Contains(text, "phase: none") {
		t.Errorf("text status: %s", text)
	}
}

// After ca rotate finish the CRL is signed by the new CA, the only one the
// nodes trust from then on: an agent with crl_file refuses a bundle whose
// CRL the old CA signed (and so never drops the old CA), and a daemon with
// ssl_crl would have no CRL of its CA. Until then the file holds one CRL
// per CA.
func TestCARotateFinishResignsTheCRL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	for _, args := range [][]string{
		{"ca", "init", "--dir", dir, "--name", "c"},
		{"ca", "issue", "--dir", dir, "node", "n1", "n2"},
		{"ca", "revoke", "--dir", dir, "n2"},
		{"ca", "rotate", "start", "--dir", dir},
		{"ca", "rotate", "issue", "--dir", dir},
		{"ca", "rotate", "finish", "--dir", dir},
	} {
		code, _, stderr := runIn(args...)
		if code != 0 {
			t.Fatalf("%v: %s", args, stderr)
		}
		// Between start and finish the CRL file holds a CRL from each CA.
		if args[1] == "rotate" && args[2] != "finish" {
			if out, err := testpki.OpenSSLErr(dir, "crl", "-in", filepath.Join(dir, "cluster.crl"), "-noout", "-issuer"); err != nil || stderr != "" {
				t.Errorf("%v: %v %s\n%s", args, err, stderr, out)
			}
			data, _ := os.ReadFile(filepath.Join(dir, "nodes", "n1", "cluster.crl"))
			if n := strings.Count(string(data), "BEGIN X509 CRL"); n != 2 {
				t.Errorf("%v: nodes/n1/cluster.crl holds %d CRLs, want one per CA", args, n)
			}
		}
	}
	for _, crl := range []string{filepath.Join(dir, "cluster.crl"), filepath.Join(dir, "nodes", "n1", "cluster.crl")} {
		if out, err := testpki.OpenSSLErr(dir, "crl", "-in", crl, "-CAfile", filepath.Join(dir, "cluster.crt"), "-noout"); err != nil || !strings.Contains(out, "verify OK") {
			t.Errorf("%s is not signed by the new CA: %v\n%s", crl, err, out)
		}
	}
}

// An abort after issue re-issues every node from the old CA, and says so:
// not "from the new CA", the words of `ca rotate issue`. The status table
// keeps its columns for the 36-character UUID ids `ca issue node` makes
// without an id.
func TestCARotateAbortSaysTheOldCAAndStatusAligns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCA(t, "init", "--dir", dir, "--name", "c")
	mustCA(t, "issue", "--dir", dir, "node")
	mustCA(t, "issue", "--dir", dir, "node", "n1")
	mustCA(t, "rotate", "start", "--dir", dir)
	if r := mustCA(t, "rotate", "issue", "--dir", dir); !strings.Contains(r.stdout, "re-issued n1 from the new CA") {
		t.Errorf("rotate issue: %s", r.stdout)
	}
	r := mustCA(t, "rotate", "abort", "--dir", dir)
	if !strings.Contains(r.stdout, "re-issued n1 from the old CA") || strings.Contains(r.stdout, "new CA") {
		t.Errorf("rotate abort re-issues from the old CA, but says:\n%s", r.stdout)
	}
	mustCA(t, "rotate", "start", "--dir", dir)
	st := mustCA(t, "rotate", "status", "--dir", dir).stdout
	var header string
	rows := 0
	for _, l := range strings.Split(st, "\n") {
		if strings.HasPrefix(l, "NODE ") {
			header = l
			continue
		}
		if header == "" || !strings.Contains(l, " issue ") {
			continue
		}
		rows++
		if want, got := strings.Index(header, "SOURCE"), strings.Index(l, " issue ")+1; got != want {
			t.Errorf("SOURCE column at %d in the header, %d in %q:\n%s", want, got, l, st)
		}
		if want, got := strings.Index(header, "TRUST"), strings.Index(l, "old+new"); got != want {
			t.Errorf("TRUST column at %d in the header, %d in %q:\n%s", want, got, l, st)
		}
	}
	if rows != 2 {
		t.Errorf("%d node rows, want 2:\n%s", rows, st)
	}
}

// A flag of another step is a usage error (exit 2), not silently ignored:
// `ca rotate start --json` printing text, or `abort --force` forcing
// nothing, would mislead. Nothing changes in the CA directory.
func TestCARotateRefusesAnotherStepsFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCA(t, "init", "--dir", dir, "--name", "c")
	for _, args := range [][]string{
		{"start", "--json"}, {"start", "--force"}, {"issue", "--days", "30"}, {"abort", "--force"}, {"finish", "--json"}, {"status", "--days", "30"},
	} {
		r := certkeeper(t, append([]string{"ca", "rotate", "--dir", dir}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, args[1]+" is for ca rotate ") || !strings.Contains(r.stderr, ", not "+args[0]) {
			t.Errorf("ca rotate %v: want exit 2 naming the flag's step: %+v", args, r)
		}
	}
	if st := mustCA(t, "rotate", "status", "--dir", dir, "--json").stdout; !strings.Contains(st, `"phase": "none"`) {
		t.Errorf("a refused step changed the CA:\n%s", st)
	}
}
