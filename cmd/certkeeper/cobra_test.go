package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/platform"
)

// certkeeperEnv runs the binary with extra environment variables.
func certkeeperEnv(t *testing.T, envv []string, args ...string) result {
	t.Helper()
	return runBinary(t, nil, envv, args...)
}

// A mistyped command or flag: exit 2, a suggestion, a pointer to --help,
// and no wall of usage.
func TestMistakesSuggestAndStayShort(t *testing.T) {
	cases := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"verfy"}, "Did you mean verify?", 0},
		{[]string{"install", "--confg", "x"}, "Did you mean --config?", 0},
		{[]string{"check", "--conf", "x"}, "Did you mean --config?", 3}, // check's usage errors are UNKNOWN
		{[]string{"ca", "isue"}, "Did you mean issue?", 0},
		{[]string{"ca", "issue", "--dsn", "x", "node", "a"}, "Did you mean --dns?", 0},
		{[]string{"push"}, "push: --inventory FILE is required", 0}, // --ca-dir has a default
		{[]string{"help", "stauts"}, "certkeeper: unknown command \"stauts\"\nDid you mean status?", 0},
		{[]string{"help", "ca", "isue"}, "certkeeper: unknown command \"ca isue\"\nDid you mean ca issue?", 0},
		{[]string{"ca", "issue", "nod", "a"}, `unknown kind "nod": give node [ID...] or control HOSTNAME`, 0},
	}
	for _, c := range cases {
		r := certkeeper(t, c.args...)
		if c.code == 0 {
			c.code = exitUsage
		}
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
		if len(r.stderr) > 300 || !strings.Contains(r.stderr, "--help` for usage") {
			t.Errorf("%v: the error is %d bytes, or has no pointer to --help:\n%s", c.args, len(r.stderr), r.stderr)
		}
	}
}

// Help shows flags one way, --config, never Go's -config; the old
// single-dash spelling is still accepted.
func TestOneFlagStyle(t *testing.T) {
	r := certkeeper(t, "status", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "--config string") || strings.Contains(r.stdout, "\n  -config") {
		t.Fatalf("status --help: %+v", r)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("(default %q)", platform.DefaultConfigPath())) {
		t.Errorf("status --help does not show the default config:\n%s", r.stdout)
	}
	if r := certkeeper(t, "check", "-config", "/nonexistent.toml"); r.code != 3 || !strings.Contains(r.stdout+r.stderr, "nonexistent") {
		t.Errorf("check -config: %+v", r)
	}
}

// --config and --dir default to the environment, then to the FHS paths.
func TestDefaultsFromEnvironment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CA_DIR=" + dir}, "ca", "init", "--name", "envcluster"); r.code != 0 {
		t.Fatalf("ca init with CERTKEEPER_CA_DIR: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.crt")); err != nil {
		t.Fatalf("ca init did not use CERTKEEPER_CA_DIR: %v", err)
	}
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CA_DIR=" + dir}, "ca", "list"); r.code != 0 {
		t.Fatalf("ca list with CERTKEEPER_CA_DIR: %+v", r)
	}
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CA_DIR=/nonexistent-ca"}, "ca", "list"); r.code != 1 || !strings.Contains(r.stderr, "/nonexistent-ca") {
		t.Fatalf("ca list names the CA dir it looked in: %+v", r)
	}
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CONFIG=/nonexistent-env.toml"}, "status"); r.code != 1 || !strings.Contains(r.stderr, "/nonexistent-env.toml") {
		t.Fatalf("status with CERTKEEPER_CONFIG: %+v", r)
	}
	// A config that is not there says how to point at one.
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CONFIG=/nonexistent-env.toml"}, "check"); r.code != 3 || !strings.Contains(r.stdout, "point --config or $CERTKEEPER_CONFIG at yours") {
		t.Errorf("check without a config: %+v", r)
	}
	if r := certkeeperEnv(t, []string{"CERTKEEPER_CONFIG="}, "status"); !strings.Contains(r.stderr, platform.DefaultConfigPath()) && r.code != 0 {
		t.Fatalf("status without config: %+v", r)
	}
}

// certkeeper completion SHELL prints a script; gendocs writes man pages
// for every command and the three completion scripts.
func TestCompletionAndGendocs(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if r := certkeeper(t, "completion", sh); r.code != 0 || !strings.Contains(r.stdout, "certkeeper") {
			t.Errorf("completion %s: exit %d, %d bytes", sh, r.code, len(r.stdout))
		}
	}
	if r := certkeeper(t, "completion"); r.code != exitUsage || !strings.Contains(r.stderr, "give a shell") {
		t.Errorf("completion without a shell: %+v", r)
	}
	// A mistyped shell is named as one (cobra's completion command takes
	// no arguments of its own and called it an unknown command).
	if r := certkeeper(t, "completion", "bsh"); r.code != exitUsage || !strings.Contains(r.stderr, `certkeeper completion: unknown shell "bsh": give bash, zsh, fish or powershell`) {
		t.Errorf("completion bsh: %+v", r)
	}
	if r := certkeeper(t, "completion", "bash", "extra"); r.code != exitUsage || !strings.Contains(r.stderr, "certkeeper completion bash: unexpected arguments: extra") {
		t.Errorf("completion bash extra: %+v", r)
	}
	dir := t.TempDir()
	if r := certkeeper(t, "gendocs", dir); r.code != 0 {
		t.Fatalf("gendocs: %+v", r)
	}
	for _, f := range []string{"man1/certkeeper.1", "man1/certkeeper-install.1", "man1/certkeeper-ca-issue.1", "man1/certkeeper-fleet.1", "man1/certkeeper-fleet-status.1",
		"completion/certkeeper.bash", "completion/_certkeeper", "completion/certkeeper.fish"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("gendocs did not write %s", f)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "man1/certkeeper-install.1"))
	if !strings.Contains(string(b), "config") {
		t.Errorf("certkeeper-install(1) does not list --config:\n%s", b)
	}
	// Completion knows the commands and a command's flags.
	if r := certkeeper(t, "__complete", "ver"); !strings.Contains(r.stdout, "verify") || !strings.Contains(r.stdout, "version") {
		t.Errorf("__complete ver: %+v", r)
	}
	if r := certkeeper(t, "__complete", "status", "--"); !strings.Contains(r.stdout, "--config") {
		t.Errorf("__complete status --: %+v", r)
	}
	// fleet is a group: its subcommand and the subcommand's flags complete.
	if r := certkeeper(t, "__complete", "fleet", ""); !strings.Contains(r.stdout, "status") {
		t.Errorf("__complete fleet: %+v", r)
	}
	if r := certkeeper(t, "__complete", "fleet", "status", "--inv"); !strings.Contains(r.stdout, "--inventory") {
		t.Errorf("__complete fleet status --inv: %+v", r)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "man1/certkeeper-fleet-status.1"))
	if !strings.Contains(string(b), "inventory") || !strings.Contains(string(b), "textfile") {
		t.Errorf("certkeeper-fleet-status(1) does not list its flags:\n%s", b)
	}
}

// certkeeper fleet is a group: alone a usage error (exit 2) that lists
// status; a mistyped subcommand is suggested; fleet --help lists status.
func TestFleetIsACommandGroup(t *testing.T) {
	if code, _, stderr := runIn("fleet"); code != exitUsage || !strings.Contains(stderr, "status") {
		t.Errorf("fleet alone: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runIn("fleet", "stauts"); code != exitUsage || !strings.Contains(stderr, `unknown subcommand "stauts"`) || !strings.Contains(stderr, "Did you mean status?") {
		t.Errorf("fleet stauts: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := runIn("fleet", "--help"); code != exitOK || !strings.Contains(stdout, "  status ") {
		t.Errorf("fleet --help: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := runIn("fleet", "status", "--inventory", "nodes.toml", "extra"); code != exitUsage || !strings.Contains(stderr, "certkeeper fleet status: unexpected arguments: extra") {
		t.Errorf("fleet status extra: exit %d, %q", code, stderr)
	}
}

// A `<` in help prose (DIR/nodes/<id>/) survives into the man pages:
// go-md2man took `<id>` for an HTML tag and dropped it, leaving
// "DIR/nodes//" in certkeeper-push(1), certkeeper-ca-issue(1) and the
// --ca-dir flag's text.
func TestManPagesKeepAngleBrackets(t *testing.T) {
	dir := t.TempDir()
	if r := certkeeper(t, "gendocs", dir); r.code != 0 {
		t.Fatalf("gendocs: %+v", r)
	}
	for _, page := range []string{"certkeeper-push.1", "certkeeper-ca-issue.1", "certkeeper-sshd-config.1", "certkeeper-ca.1"} {
		b, err := os.ReadFile(filepath.Join(dir, "man1", page))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Contains(s, "nodes//") || !strings.Contains(s, "nodes/<id>/") {
			t.Errorf("%s lost the <id> of nodes/<id>/", page)
		}
		if strings.Contains(s, `\\<`) || strings.Contains(s, `\<`) {
			t.Errorf("%s shows an escape for <", page)
		}
	}
}

// Completion knows the words a command takes (ca rotate's steps, service's
// actions), flag values (--key-type, --layout, --reason), the config's
// bundles for --bundle and the inventory's node ids for --only.
func TestCompletionOfArgumentsAndFlagValues(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("node_id = \"n1\"\nstate_dir = \""+filepath.ToSlash(dir)+"/state\"\n[[bundle]]\nname = \"web\"\nlayout = \"flocker-node\"\ndir = \""+filepath.ToSlash(dir)+"/live\"\n"), 0o600)
	inv := filepath.Join(dir, "nodes.toml")
	os.WriteFile(inv, []byte("[defaults]\nuser = \"root\"\ntarget = \"/in\"\n[[node]]\nid = \"node1\"\naddress = \"127.0.0.1\"\n[[node]]\nid = \"node2\"\naddress = \"127.0.0.2\"\n"), 0o600)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"ca", "rotate", ""}, []string{"start", "issue", "finish", "abort", "status"}},
		{[]string{"service", ""}, []string{"install", "uninstall", "status"}},
		{[]string{"ca", "issue", ""}, []string{"node", "control"}},
		{[]string{"ca", "init", "--key-type", ""}, []string{"ecdsa-p256", "ed25519", "rsa-4096"}},
		{[]string{"verify", "--layout", ""}, []string{"flocker-node", "mesos", "reign-init"}},
		{[]string{"ca", "revoke", "x", "--reason", ""}, []string{"keyCompromise", "superseded"}},
		{[]string{"rollback", "--config", cfg, "--bundle", ""}, []string{"web"}},
		{[]string{"push", "--inventory", inv, "--only", ""}, []string{"node1", "node2"}},
		{[]string{"push", "--inventory", inv, "--only", "node1,"}, []string{"node1,node2"}},
	} {
		code, stdout, stderr := runIn(append([]string{"__complete"}, c.args...)...)
		lines := strings.Split(stdout, "\n")
		for _, w := range c.want {
			if code != 0 || !slices.Contains(lines, w) {
				t.Errorf("__complete %q: exit %d, no %q in:\n%s%s", c.args, code, w, stdout, stderr)
			}
		}
	}
}
