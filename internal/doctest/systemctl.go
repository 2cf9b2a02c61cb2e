//go:build linux

package doctest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The systemctl stand-in. The doc test's machines have no systemd (no
// init runs inside a namespace), yet the guides say `systemctl restart
// certkeeper`, and the agent reloads daemons with `systemctl
// reload-or-restart`. On those machines /usr/local/sbin/systemctl (and
// journalctl) is the test binary, which runs SystemctlMain: it reads the
// real unit files (the package's, an admin's drop-ins) and does what
// systemd would with the few lines that matter here, without the
// sandboxing. Each thing it stands in for is written to the stand-in log,
// which the harness prints under the step that caused it, so nothing is
// passed over silently.
//
// Understood: ExecStart, ExecStartPre, ExecStartPost, ExecReload, Type
// (simple, exec, notify, oneshot), Environment, EnvironmentFile,
// ConditionPathExists, OnSuccess, User (the commands run as that account,
// but for a line prefixed "+", which systemd runs with full privileges);
// drop-ins in UNIT.d/*.conf; alias symlinks. Ignored, and said so:
// everything about sandboxing.

// StateDir holds the stand-in's pid files, logs and notes, inside each
// machine's private /run.
const StateDir = "/run/doctest-systemd"

// StandinLog is where each stand-in action is noted for the harness.
const StandinLog = StateDir + "/standin.log"

var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// Unit is what the stand-in reads of a unit file and its drop-ins.
type Unit struct {
	Name  string
	Path  string
	Type  string
	Exec  map[string][][]string // ExecStart, ExecStartPre, ExecStartPost, ExecReload: command lines
	Env   []string
	Files []string // EnvironmentFile, "-" prefix kept
	Cond  []string // ConditionPathExists
	OnOK  []string // OnSuccess
	User  string
	Desc  string
}

// ParseUnit reads unit-file text (the main file, then drop-ins, in order)
// into u. Lists reset on an empty assignment, as systemd's do.
func ParseUnit(u *Unit, text string) error {
	if u.Exec == nil {
		u.Exec = map[string][][]string{}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	var pending string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("unit line %q has no =", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop":
			if v == "" {
				delete(u.Exec, k)
				continue
			}
			argv, err := SplitCommand(v)
			if err != nil {
				return fmt.Errorf("%s=%s: %w", k, v, err)
			}
			u.Exec[k] = append(u.Exec[k], argv)
		case "Type":
			u.Type = v
		case "Description":
			u.Desc = v
		case "User":
			u.User = v
		case "Environment":
			if v == "" {
				u.Env = nil
				continue
			}
			words, err := SplitCommand(v)
			if err != nil {
				return err
			}
			u.Env = append(u.Env, words...)
		case "EnvironmentFile":
			u.Files = resetOrAppend(u.Files, v)
		case "ConditionPathExists":
			u.Cond = resetOrAppend(u.Cond, v)
		case "OnSuccess":
			if v == "" {
				u.OnOK = nil
				continue
			}
			u.OnOK = append(u.OnOK, strings.Fields(v)...)
		}
	}
	return sc.Err()
}

func resetOrAppend(list []string, v string) []string {
	if v == "" {
		return nil
	}
	return append(list, v)
}

// SplitCommand splits a unit's command line into words, with double and
// single quotes and backslash escapes inside double quotes.
func SplitCommand(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				out, inWord = append(out, cur.String()), false
				cur.Reset()
			}
		case c == '"' || c == '\'':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			i, inWord = j, true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// unitName adds ".service" to a bare name.
func unitName(n string) string {
	if strings.Contains(n, ".") && !strings.HasSuffix(n, ".") {
		switch filepath.Ext(n) {
		case ".service", ".timer", ".socket", ".target", ".path", ".mount":
			return n
		}
	}
	return n + ".service"
}

// LoadUnit finds a unit the way systemd does (first directory wins,
// aliases followed) and applies its drop-ins.
func LoadUnit(name string) (*Unit, error) {
	name = unitName(name)
	for _, d := range unitDirs {
		p := filepath.Join(d, name)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err == nil && filepath.Base(target) != name && filepath.Base(target) != "/dev/null" {
				return LoadUnit(filepath.Base(target))
			}
			if filepath.Base(target) == "null" {
				return nil, fmt.Errorf("unit %s is masked", name)
			}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		u := &Unit{Name: name, Path: p}
		if err := ParseUnit(u, string(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		var dropins []string
		for _, dd := range unitDirs {
			m, _ := filepath.Glob(filepath.Join(dd, name+".d", "*.conf"))
			dropins = append(dropins, m...)
		}
		sort.SliceStable(dropins, func(i, j int) bool { return filepath.Base(dropins[i]) < filepath.Base(dropins[j]) })
		for _, p := range dropins {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := ParseUnit(u, string(data)); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		return u, nil
	}
	return nil, fmt.Errorf("unit %s not found", name)
}

// SystemctlMain is the stand-in's entry point; args exclude the program
// name.
func SystemctlMain(args []string, stdout, stderr io.Writer) int {
	os.MkdirAll(StateDir, 0o755)
	var verbs, units []string
	now, quiet, value, noBlock := false, false, false, false
	var props []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--now":
			now = true
		case a == "-q" || a == "--quiet":
			quiet = true
		case a == "--value":
			value = true
		case a == "-p" || a == "--property":
			if i+1 < len(args) {
				props = append(props, args[i+1])
				i++
			}
		case strings.HasPrefix(a, "--property="):
			props = append(props, strings.TrimPrefix(a, "--property="))
		case a == "--no-block":
			noBlock = true
		case strings.HasPrefix(a, "-"):
			// --system, --no-pager: nothing to do here.
		case len(verbs) == 0:
			verbs = append(verbs, a)
		default:
			units = append(units, a)
		}
	}
	if len(verbs) == 0 {
		fmt.Fprintln(stderr, "systemctl (doc test stand-in): no verb")
		return 1
	}
	verb := verbs[0]
	note(fmt.Sprintf("systemctl %s: no systemd in the doc test's machines; stood in for (%s)", strings.Join(args, " "), standinWhat(verb)))
	switch verb {
	case "daemon-reload":
		return 0
	case "is-system-running":
		fmt.Fprintln(stdout, "offline")
		return 1
	}
	if noBlock && (verb == "start" || verb == "restart") {
		// --no-block: the job runs on without the caller, as systemd's
		// does (a cluster member's Type=notify start waits for quorum,
		// which the other members' starts bring).
		var rest []string
		for _, a := range args {
			if a != "--no-block" {
				rest = append(rest, a)
			}
		}
		self, err := os.Executable()
		if err == nil {
			cmd := exec.Command(self, rest...)
			cmd.Args[0] = "systemctl"
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintf(stderr, "systemctl --no-block: %v\n", err)
			return 1
		}
		return 0
	}
	code := 0
	for _, n := range units {
		if c := one(verb, n, now, quiet, value, props, stdout, stderr); c != 0 {
			code = c
		}
	}
	return code
}

func standinWhat(verb string) string {
	switch verb {
	case "start", "restart", "enable", "try-restart":
		return "runs the unit's ExecStart lines as systemd would, without its sandbox"
	case "reload", "reload-or-restart", "try-reload-or-restart":
		return "runs ExecReload with $MAINPID, or restarts"
	case "stop", "disable":
		return "SIGTERM to the unit's process"
	}
	return "reports the stand-in's view of the unit"
}

func one(verb, name string, now, quiet, value bool, props []string, stdout, stderr io.Writer) int {
	u, err := LoadUnit(name)
	if err != nil {
		fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, unitName(name), err)
		return 5
	}
	switch verb {
	case "enable", "preset":
		os.WriteFile(filepath.Join(StateDir, u.Name+".enabled"), nil, 0o644)
		if now {
			return start(u, stderr)
		}
		return 0
	case "disable":
		os.Remove(filepath.Join(StateDir, u.Name+".enabled"))
		if now {
			return stop(u)
		}
		return 0
	case "is-enabled":
		// Enabled by the stand-in, or by deb-systemd-helper's links as the
		// package's maintainer scripts do.
		links, _ := filepath.Glob(filepath.Join("/etc/systemd/system", "*.wants", u.Name))
		if _, err := os.Stat(filepath.Join(StateDir, u.Name+".enabled")); err == nil || len(links) > 0 {
			fmt.Fprintln(stdout, "enabled")
			return 0
		}
		fmt.Fprintln(stdout, "disabled")
		return 1
	case "start":
		if active(u) {
			return 0
		}
		return start(u, stderr)
	case "stop":
		return stop(u)
	case "restart":
		stop(u)
		return start(u, stderr)
	case "try-restart":
		if !active(u) {
			return 0
		}
		stop(u)
		return start(u, stderr)
	case "reload":
		return reload(u, stderr)
	case "reload-or-restart", "try-reload-or-restart":
		if !active(u) {
			if verb == "try-reload-or-restart" {
				return 0
			}
			return start(u, stderr)
		}
		if len(u.Exec["ExecReload"]) > 0 {
			return reload(u, stderr)
		}
		stop(u)
		return start(u, stderr)
	case "is-active":
		if active(u) {
			if !quiet {
				fmt.Fprintln(stdout, "active")
			}
			return 0
		}
		if !quiet {
			fmt.Fprintln(stdout, "inactive")
		}
		return 3
	case "status":
		state := "inactive (dead)"
		if active(u) {
			state = fmt.Sprintf("active (running); main PID %d", mainPID(u))
		}
		fmt.Fprintf(stdout, "● %s - %s\n     Loaded: loaded (%s)\n     Active: %s\n\n", u.Name, u.Desc, u.Path, state)
		tail(stdout, logPath(u), 10)
		if !active(u) {
			return 3
		}
		return 0
	case "show":
		for _, p := range props {
			v := ""
			switch p {
			case "MainPID":
				v = strconv.Itoa(mainPID(u))
			case "ActiveState":
				v = "inactive"
				if active(u) {
					v = "active"
				}
			}
			if value {
				fmt.Fprintln(stdout, v)
			} else {
				fmt.Fprintf(stdout, "%s=%s\n", p, v)
			}
		}
		return 0
	}
	fmt.Fprintf(stderr, "systemctl (doc test stand-in): verb %q is not stood in for\n", verb)
	return 1
}

func pidPath(u *Unit) string { return filepath.Join(StateDir, u.Name+".pid") }
func logPath(u *Unit) string { return filepath.Join(StateDir, u.Name+".log") }

func mainPID(u *Unit) int {
	data, err := os.ReadFile(pidPath(u))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 || !Alive(pid) {
		return 0
	}
	return pid
}

func active(u *Unit) bool { return mainPID(u) > 0 }

func conditionsHold(u *Unit) (bool, string) {
	for _, c := range u.Cond {
		neg := strings.HasPrefix(c, "!")
		_, err := os.Stat(strings.TrimPrefix(c, "!"))
		if (err == nil) == neg {
			return false, c
		}
	}
	return true, ""
}

func environment(u *Unit) ([]string, error) {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	for _, f := range u.Files {
		optional := strings.HasPrefix(f, "-")
		data, err := os.ReadFile(strings.TrimPrefix(f, "-"))
		if err != nil {
			if optional {
				continue
			}
			return nil, fmt.Errorf("EnvironmentFile %s: %w", f, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			env = append(env, strings.TrimSpace(k)+"="+strings.Trim(strings.TrimSpace(v), `"'`))
		}
	}
	return append(env, u.Env...), nil
}

func command(argv []string, pid int) (args []string, ignoreFail, privileged bool) {
	first := argv[0]
	for len(first) > 0 && strings.ContainsRune("-@:+!", rune(first[0])) {
		switch first[0] {
		case '-':
			ignoreFail = true
		case '+':
			privileged = true
		}
		first = first[1:]
	}
	args = append([]string{first}, argv[1:]...)
	for i, a := range args {
		a = strings.ReplaceAll(a, "${MAINPID}", strconv.Itoa(pid))
		a = strings.ReplaceAll(a, "$MAINPID", strconv.Itoa(pid))
		// "%%" is systemd's escape for a literal "%" (the renew timer's
		// --within 40%%); the other specifiers do not occur in our units.
		args[i] = strings.ReplaceAll(a, "%%", "%")
	}
	return args, ignoreFail, privileged
}

// credential is the account a unit's command runs as: User= unless the
// line is privileged ("+"); nil for root. A User= that does not exist
// fails the command, as it does under systemd.
func credential(u *Unit, privileged bool) (*syscall.Credential, error) {
	if u.User == "" || u.User == "root" || privileged {
		return nil, nil
	}
	acct, err := user.Lookup(u.User)
	if err != nil {
		return nil, fmt.Errorf("the unit's User=%s: %w", u.User, err)
	}
	uid, err1 := strconv.ParseUint(acct.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(acct.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the unit's User=%s: uid %q, gid %q", u.User, acct.Uid, acct.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if ids, err := acct.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// runSync runs the unit's command lines of one kind in the foreground,
// output to the unit's log and to w.
func runSync(u *Unit, kind string, env []string, w io.Writer) error {
	log, err := os.OpenFile(logPath(u), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	for _, argv := range u.Exec[kind] {
		args, ignore, privileged := command(argv, mainPID(u))
		cred, err := credential(u, privileged)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, strings.Join(args, " "), err)
		}
		if cred != nil {
			note(fmt.Sprintf("%s: %s %s as User=%s", u.Name, kind, strings.Join(args, " "), u.User))
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Dir = env, "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Stdout, cmd.Stderr = io.MultiWriter(log, w), io.MultiWriter(log, w)
		if err := cmd.Run(); err != nil && !ignore {
			return fmt.Errorf("%s %s: %w", kind, strings.Join(args, " "), err)
		}
	}
	return nil
}

func start(u *Unit, stderr io.Writer) int {
	if strings.HasSuffix(u.Name, ".timer") {
		// A timer is only noted: the guide starts its service itself
		// when it wants to see a run.
		os.WriteFile(pidPath(u), []byte(strconv.Itoa(os.Getppid())), 0o644)
		note(u.Name + ": timers are not scheduled by the stand-in; start the .service to see one run")
		return 0
	}
	if ok, c := conditionsHold(u); !ok {
		note(fmt.Sprintf("%s: ConditionPathExists=%s is not met; skipped, as systemd would", u.Name, c))
		return 0
	}
	env, err := environment(u)
	if err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	if err := runSync(u, "ExecStartPre", env, io.Discard); err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	if u.Type == "oneshot" {
		if err := runSync(u, "ExecStart", env, io.Discard); err != nil {
			fmt.Fprintf(stderr, "Job for %s failed: %v\nSee \"journalctl -u %s\" for details; it ends:\n", u.Name, err, u.Name)
			tail(stderr, logPath(u), 5)
			return 1
		}
		if err := runSync(u, "ExecStartPost", env, io.Discard); err != nil {
			fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
			return 1
		}
		for _, next := range u.OnOK {
			note(fmt.Sprintf("%s succeeded: starting OnSuccess=%s", u.Name, next))
			nu, err := LoadUnit(next)
			if err != nil {
				fmt.Fprintf(stderr, "OnSuccess=%s: %v\n", next, err)
				return 1
			}
			if c := start(nu, stderr); c != 0 {
				return c
			}
		}
		return 0
	}
	lines := u.Exec["ExecStart"]
	if len(lines) != 1 {
		fmt.Fprintf(stderr, "%s: a service of Type=%s needs exactly one ExecStart (has %d)\n", u.Name, u.Type, len(lines))
		return 1
	}
	args, _, privileged := command(lines[0], 0)
	cred, err := credential(u, privileged)
	if err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	log, err := os.OpenFile(logPath(u), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer log.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, "/", log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	var sock *net.UnixConn
	if u.Type == "notify" {
		path := filepath.Join(StateDir, u.Name+".notify")
		os.Remove(path)
		sock, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer func() { sock.Close(); os.Remove(path) }()
		// systemd's notify socket is writable by every user: a daemon
		// that drops privileges (mosquitto) says READY=1 afterwards.
		os.Chmod(path, 0o666)
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+path)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	os.WriteFile(pidPath(u), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if sock != nil {
		// systemctl start returns once a Type=notify service says READY=1.
		ready := make(chan bool, 1)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, _, err := sock.ReadFromUnix(buf)
				if err != nil {
					ready <- false
					return
				}
				for _, l := range strings.Split(string(buf[:n]), "\n") {
					if l == "READY=1" {
						ready <- true
						return
					}
				}
			}
		}()
		select {
		case <-ready:
			note(fmt.Sprintf("%s: started %s (pid %d); it said READY=1", u.Name, strings.Join(args, " "), cmd.Process.Pid))
		case err := <-exited:
			fmt.Fprintf(stderr, "Job for %s failed: the process exited before READY=1 (%v).\nSee \"journalctl -u %s\" for details.\n", u.Name, err, u.Name)
			return 1
		case <-time.After(90 * time.Second):
			fmt.Fprintf(stderr, "Job for %s failed: no READY=1 within 90s\n", u.Name)
			return 1
		}
	} else {
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "Job for %s failed: the process exited at once (%v).\n", u.Name, err)
			return 1
		case <-time.After(100 * time.Millisecond):
		}
		note(fmt.Sprintf("%s: started %s (pid %d)", u.Name, strings.Join(args, " "), cmd.Process.Pid))
	}
	if err := runSync(u, "ExecStartPost", env, io.Discard); err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	return 0
}

func stop(u *Unit) int {
	pid := mainPID(u)
	if pid == 0 {
		return 0
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if Alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	os.Remove(pidPath(u))
	note(fmt.Sprintf("%s: stopped pid %d", u.Name, pid))
	return 0
}

func reload(u *Unit, stderr io.Writer) int {
	if !active(u) {
		fmt.Fprintf(stderr, "%s is not active, cannot reload.\n", u.Name)
		return 7
	}
	if len(u.Exec["ExecReload"]) == 0 {
		fmt.Fprintf(stderr, "Failed to reload %s: Job type reload is not applicable for unit %s.\n", u.Name, u.Name)
		return 1
	}
	env, err := environment(u)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := runSync(u, "ExecReload", env, io.Discard); err != nil {
		fmt.Fprintf(stderr, "Job for %s failed: %v\n", u.Name, err)
		return 1
	}
	if u.Name == "ssh.service" {
		// sshd re-executes itself on SIGHUP and does not listen until the
		// new image is up. On a real host the admin's next ssh comes
		// seconds later; a guide's next block comes at once, so the
		// stand-in waits (bounded) for what the admin would have found.
		waitListening(net.JoinHostPort(sshdListenAddress(), "22"), 10*time.Second)
	}
	note(fmt.Sprintf("%s: reloaded (pid %d)", u.Name, mainPID(u)))
	return 0
}

// sshdListenAddress is the address the machine's provisioning gave sshd
// (ListenAddress in /etc/ssh/sshd_config.d/00-doctest.conf).
func sshdListenAddress() string {
	data, err := os.ReadFile("/etc/ssh/sshd_config.d/00-doctest.conf")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "ListenAddress" {
				return f[1]
			}
		}
	}
	return "127.0.0.1"
}

// waitListening returns once addr accepts a TCP connection, or after max.
func waitListening(addr string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func note(s string) {
	f, err := os.OpenFile(StandinLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format("15:04:05.000"), s)
}

func tail(w io.Writer, path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// JournalctlMain stands in for `journalctl -u UNIT [-n N]`: the unit's
// output as the stand-in captured it.
func JournalctlMain(args []string, stdout, stderr io.Writer) int {
	n := 1 << 30
	var units []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-u" || a == "--unit":
			if i+1 < len(args) {
				units = append(units, args[i+1])
				i++
			}
		case strings.HasPrefix(a, "--unit="):
			units = append(units, strings.TrimPrefix(a, "--unit="))
		case a == "-n" || a == "--lines":
			if i+1 < len(args) {
				n, _ = strconv.Atoi(args[i+1])
				i++
			}
		case strings.HasPrefix(a, "-n") && len(a) > 2:
			n, _ = strconv.Atoi(a[2:])
		}
	}
	if len(units) == 0 {
		fmt.Fprintln(stderr, "journalctl (doc test stand-in): give -u UNIT")
		return 1
	}
	note(fmt.Sprintf("journalctl %s: no journal in the doc test's machines; printed the output the systemctl stand-in captured", strings.Join(args, " ")))
	for _, name := range units {
		u, err := LoadUnit(name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		tail(stdout, logPath(u), n)
	}
	return 0
}

// Alive reports whether pid runs (a zombie waiting for a parent that does
// not reap it counts as gone).
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}
