//go:build linux

package doctest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Cluster is a set of simulated machines sharing one private network
// (loopback only: each machine has its own 127.0.0.x address and name in
// every machine's /etc/hosts). A Machine is a private mount and UTS
// namespace in which every top-level directory (/etc, /var, /usr, /media…)
// is a copy-on-write overlay of the real one (writes land in a tmpfs that
// vanishes with the machine) and /run and /tmp are empty. So a guide writes the real
// paths (/etc/flocker, /var/lib/certkeeper, /etc/ssh/sshd_config.d) and
// installs real packages, and the machine running the test is unchanged.

// Require skips the test unless the machine can host simulated machines.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the doc test needs root (namespaces, overlays, sshd)")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip", "/usr/sbin/sshd", "ssh-keygen", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the doc test needs %s", tool)
		}
	}
	if out, err := exec.Command("unshare", "--net", "--mount", "--uts", "--propagation", "private", "sh", "-c",
		"d=$(mktemp -d) && mount -t tmpfs t $d && mkdir $d/u $d/w && mount -t overlay o -o lowerdir=/etc,upperdir=$d/u,workdir=$d/w /etc").CombinedOutput(); err != nil {
		t.Skipf("no namespaces with overlay mounts here: %v %s", err, out)
	}
}

// ClusterOptions shape the machines.
type ClusterOptions struct {
	// Machines by name ("admin", "node1"…), in the order of first use.
	Machines []string
	// Repo is a certkeeper checkout, mounted (copy-on-write) at
	// /root/certkeeper on the admin host; Dist holds the packages built
	// from it, copied into its dist/.
	Repo, Dist string
	// Deb, unless empty, is installed with dpkg -i on every machine: a
	// guide that starts after the install guides. It must be in Dist.
	Deb string
	// Shim is the systemctl/journalctl stand-in executable.
	Shim string
	// Units are stand-in unit files per machine (name -> content): the
	// daemons a guide reloads (flocker-dataset-agent.service…), which a
	// real node would have from the cluster's own packages.
	Units map[string]map[string]string
	// Log receives what the machines' set-up and stand-ins report.
	Log func(format string, args ...any)
}

// Cluster is a running set of machines.
type Cluster struct {
	t        testing.TB
	dir      string
	net      *exec.Cmd
	netIn    io.WriteCloser
	Machines map[string]*Machine
	order    []string
	log      func(string, ...any)
}

// Machine is one simulated host.
type Machine struct {
	Name, Host, Addr string
	holder           *exec.Cmd
	holderIn         io.WriteCloser
	pid              int
	sshd             *exec.Cmd
	sshdLog          *bytes.Buffer
	standinSeen      int
}

// Addr gives a machine's address: the admin host .2, the others from .11.
func addr(name string, i int) string {
	if name == "admin" {
		return "127.0.0.2"
	}
	return "127.0.0.1" + strconv.Itoa(i)
}

// HostName is the machine's name: admin.example.com, node1.example.com.
func HostName(name string) string { return name + ".example.com" }

// StartCluster builds the machines and starts an sshd on each. Cleanup
// (registered with t.Cleanup) stops every process in them and checks that
// none is left.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: t.TempDir(), Machines: map[string]*Machine{}, log: o.Log}
	if c.log == nil {
		c.log = t.Logf
	}
	t.Cleanup(c.Close)
	// The network: one namespace with only loopback, up.
	c.net = exec.Command("unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo ready && exec cat >/dev/null")
	var err error
	if c.netIn, err = c.net.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := startReady(c.net); err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	n := 1
	for _, name := range o.Machines {
		if name != "admin" {
			n++
		}
		m := &Machine{Name: name, Host: HostName(name), Addr: addr(name, n-1)}
		if name != "admin" && n-1 > 89 {
			t.Fatalf("too many machines")
		}
		c.Machines[name] = m
		c.order = append(c.order, name)
	}
	var hosts strings.Builder
	for _, name := range c.order {
		m := c.Machines[name]
		fmt.Fprintf(&hosts, "%s %s %s\n", m.Addr, m.Host, m.Name)
	}
	for _, name := range c.order {
		c.boot(c.Machines[name], o, hosts.String())
	}
	// The admin host's root can already log in to every machine as root
	// (the cluster exists; that is how its admin reaches it today), and
	// knows their host keys.
	if admin, ok := c.Machines["admin"]; ok {
		pub := c.ReadFile(admin, "/root/.ssh/id_ed25519.pub")
		var known strings.Builder
		for _, name := range c.order {
			m := c.Machines[name]
			c.mustRun(m, "cat >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys", pub)
			hk := strings.Fields(c.ReadFile(m, "/etc/ssh/ssh_host_ed25519_key.pub"))
			fmt.Fprintf(&known, "%s,%s,%s %s %s\n", m.Host, m.Name, m.Addr, hk[0], hk[1])
		}
		c.mustRun(admin, "cat > /root/.ssh/known_hosts", known.String())
	}
	return c
}

// shimPath is where the stand-in is bound inside each machine.
const shimPath = "/run/doctest/doctest.test"

// topLevelDirs lists the directories of / that a machine gets a
// copy-on-write view of: all but the kernel's (/proc, /sys, /dev) and
// the ones it gets empty (/run, /tmp).
func topLevelDirs() ([]string, error) {
	ents, err := os.ReadDir("/")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		switch e.Name() {
		case "proc", "sys", "dev", "run", "tmp", "lost+found":
			continue
		}
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// startReady starts a holder and waits for its "ready" line.
func startReady(cmd *exec.Cmd) error {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("did not start: %q %s", line, stderr.String())
	}
	return nil
}

// boot makes the machine's namespace, provisions it and starts its sshd.
func (c *Cluster) boot(m *Machine, o ClusterOptions, hosts string) {
	t := c.t
	scratch := filepath.Join(c.dir, m.Name)
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "set -e\nhostname %s\nmount -t tmpfs -o mode=0700 doctest %s\n", m.Name, shq(scratch))
	// Every top-level directory is copy-on-write, so nothing a guide
	// writes (/etc, /media, /srv…) reaches the real machine; /run and /tmp
	// are empty tmpfs.
	dirs, err := topLevelDirs()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		up, work := filepath.Join(scratch, d), filepath.Join(scratch, d+".work")
		fmt.Fprintf(&s, "mkdir %s %s\nmount -t overlay overlay -o lowerdir=/%s,upperdir=%s,workdir=%s /%s\n",
			shq(up), shq(work), d, shq(up), shq(work), d)
	}
	if m.Name == "admin" && o.Repo != "" {
		up, work := filepath.Join(scratch, "src"), filepath.Join(scratch, "src.work")
		fmt.Fprintf(&s, "mkdir -p /root/certkeeper %s %s\nmount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s /root/certkeeper\n",
			up, work, shq(o.Repo), up, work)
	}
	// /run/systemd/system tells maintainer scripts that systemd runs, so
	// they call systemctl, which is the stand-in. The stand-in (this test
	// binary) and the packages are bound into /run/doctest before /tmp,
	// where they live, is replaced.
	s.WriteString("mount -t tmpfs -o mode=0755 run /run\nmkdir -m 0755 /run/sshd\nmkdir -p /run/systemd/system /run/doctest/dist\n")
	fmt.Fprintf(&s, "touch %[1]s\nmount --bind %[2]s %[1]s\n", shimPath, shq(o.Shim))
	if o.Dist != "" {
		fmt.Fprintf(&s, "mount --bind %s /run/doctest/dist\n", shq(o.Dist))
	}
	s.WriteString("mount -t tmpfs -o mode=1777 tmp /tmp\n")
	s.WriteString("echo ready\nexec cat >/dev/null\n")
	m.holder = exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(c.net.Process.Pid)+"/ns/net", "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", "-c", s.String())
	if m.holderIn, err = m.holder.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := startReady(m.holder); err != nil {
		t.Fatalf("machine %s: %v", m.Name, err)
	}
	m.pid = m.holder.Process.Pid

	// Provisioning: a fresh host key and sshd listening on the machine's
	// address, root's own SSH key, /etc/hosts, the systemctl stand-in. A
	// container image's policy-rc.d (which forbids starting services) is
	// removed: a real machine has none.
	var p strings.Builder
	fmt.Fprintf(&p, "cat >> /etc/hosts <<'EOF'\n%sEOF\n", hosts)
	fmt.Fprintf(&p, `rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C root@%[1]s -f /etc/ssh/ssh_host_ed25519_key
printf 'ListenAddress %[2]s\nHostKey /etc/ssh/ssh_host_ed25519_key\n' > /etc/ssh/sshd_config.d/00-doctest.conf
rm -f /usr/sbin/policy-rc.d
rm -rf /root/.ssh && install -d -m 0700 /root/.ssh
ssh-keygen -q -t ed25519 -N '' -C root@%[1]s -f /root/.ssh/id_ed25519
mkdir -p /usr/local/sbin %[3]s
ln -sf %[4]s /usr/local/sbin/systemctl
ln -sf %[4]s /usr/local/sbin/journalctl
`, m.Name, m.Addr, StateDir, shimPath)
	for name, content := range o.Units[m.Name] {
		fmt.Fprintf(&p, "cat > /lib/systemd/system/%s <<'EOF'\n%sEOF\n", name, content)
	}
	if o.Deb != "" {
		fmt.Fprintf(&p, "dpkg -i %s >/dev/null\n", shq("/run/doctest/dist/"+filepath.Base(o.Deb)))
	}
	if m.Name == "admin" && o.Dist != "" && o.Repo != "" {
		p.WriteString("mkdir -p /root/certkeeper/dist && cp /run/doctest/dist/* /root/certkeeper/dist/\n")
	}
	c.mustRun(m, p.String(), "")
	for name := range o.Units[m.Name] {
		c.mustRun(m, "systemctl start "+name, "")
	}
	c.startSSHD(m)
	c.Standins(m) // the set-up's own stand-in notes are not a guide's
}

// startSSHD runs the machine's sshd in the foreground of a process the
// test owns; the stand-in's `systemctl reload ssh` signals it through the
// pid file, as ssh.service's ExecReload does.
func (c *Cluster) startSSHD(m *Machine) {
	m.sshdLog = &bytes.Buffer{}
	m.sshd = exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-m", "-n", "-u", "--", "/usr/sbin/sshd", "-D", "-e")
	m.sshd.Stdout, m.sshd.Stderr = &lockedBuffer{b: m.sshdLog}, &lockedBuffer{b: m.sshdLog}
	if err := m.sshd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err := os.ReadFile(c.Path(m, "/run/sshd.pid")); err == nil && len(data) > 0 {
			c.mustRun(m, "mkdir -p "+StateDir+" && cp /run/sshd.pid "+StateDir+"/ssh.service.pid", "")
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("machine %s: sshd did not start: %s", m.Name, m.sshdLog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Path is where a machine's file is seen from outside (through its
// process's root).
func (c *Cluster) Path(m *Machine, p string) string {
	return filepath.Join("/proc", strconv.Itoa(m.pid), "root", p)
}

// ReadFile reads a file on a machine; the test fails if it can not.
func (c *Cluster) ReadFile(m *Machine, p string) string {
	c.t.Helper()
	out, err := c.Exec(context.Background(), m, "cat "+shq(p), "")
	if err != nil {
		c.t.Fatalf("%s: cat %s: %v\n%s", m.Name, p, err, out)
	}
	return out
}

func (c *Cluster) mustRun(m *Machine, script, stdin string) {
	c.t.Helper()
	if out, err := c.Exec(context.Background(), m, "set -e\n"+script, stdin); err != nil {
		c.t.Fatalf("machine %s: %v\n%s\n--- script:\n%s", m.Name, err, out, script)
	}
}

// Env is the environment a guide's commands get: root's login, nothing
// from the test.
var Env = []string{"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash", "LANG=C.UTF-8", "TERM=dumb",
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// execHeader starts every script in the machine's own /root.
const execHeader = "cd /root || exit 97\n"

// Exec runs a bash script on a machine, in /root, with stdin; it returns
// stdout and stderr together.
func (c *Cluster) Exec(ctx context.Context, m *Machine, script, stdin string) (string, error) {
	// Not nsenter --wd: it opens the directory before entering the mount
	// namespace, so the step would run in the real /root.
	args := append([]string{"-t", strconv.Itoa(m.pid), "-m", "-n", "-u", "--", "env", "-i"}, Env...)
	args = append(args, "/bin/bash", "-c", execHeader+script)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A daemon a step starts (systemctl's stand-in does) must not keep the
	// step waiting on its output.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// Standins returns what the systemctl stand-in noted on m since the last
// call.
func (c *Cluster) Standins(m *Machine) []string {
	data, err := os.ReadFile(c.Path(m, StandinLog))
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if m.standinSeen > len(lines) {
		m.standinSeen = 0
	}
	out := lines[m.standinSeen:]
	m.standinSeen = len(lines)
	return out
}

// Close stops every process in every machine, sshd first, and checks that
// none is left; the overlays' tmpfs goes with the last of them.
func (c *Cluster) Close() {
	for i := len(c.order) - 1; i >= 0; i-- {
		m := c.Machines[c.order[i]]
		if m.holder == nil {
			continue
		}
		stopNamespace(c.t, m)
		if m.sshd != nil {
			m.sshd.Wait()
		}
		m.holderIn.Close()
		m.holder.Wait()
		m.holder = nil
	}
	if c.net != nil && c.net.Process != nil {
		c.netIn.Close()
		c.net.Wait()
		c.net = nil
	}
}

// stopNamespace ends every process whose mount namespace is m's, but the
// holder: SIGTERM, then SIGKILL after 10 s; then checks they are gone.
func stopNamespace(t testing.TB, m *Machine) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", m.pid))
	if err != nil {
		return
	}
	procs := func() []int {
		var out []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == m.pid {
				continue
			}
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && l == ns && Alive(pid) {
				out = append(out, pid)
			}
		}
		sort.Ints(out)
		return out
	}
	for _, p := range procs() {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(procs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range procs() {
		syscall.Kill(p, syscall.SIGKILL)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(procs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := procs(); len(left) > 0 {
		t.Errorf("machine %s: processes %v are still running after the cluster stopped", m.Name, left)
	}
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
