package main

import (
	"os"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
)

// Where this process cannot make symbolic links (Wine 8; Windows without
// SeCreateSymbolicLinkPrivilege), a bundle that insists on links
// (link_mode = "symlink") is refused before anything is written, saying
// why; with the default, the store uses copies (the next test).
func TestInstallWithoutSymlinksSaysWhyAndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("x", dir+`\probe`); err == nil {
		if _, err := os.Lstat(dir + `\probe`); err == nil {
			t.Skip("this process can make symbolic links")
		}
	}
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "link_mode = \"symlink\"\n")
	r := n.install(n.files(map[string][]byte{"node.crt": leaf.CertPEM(), "node.key": leaf.KeyPEM(t), "cluster.crt": ca.CertPEM()})...)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot make symbolic links here") || !strings.Contains(r.stderr, `link_mode = "copy"`) {
		t.Fatalf("install: %+v, want exit 1 saying symbolic links cannot be made", r)
	}
	entries, _ := os.ReadDir(n.live)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..lock") {
			t.Errorf("%s written into the live directory", e.Name())
		}
	}
}

// Without symbolic links, the default link_mode installs copies, and
// status says the live files are copies and why.
func TestInstallWithoutSymlinksUsesCopiesAndSaysSo(t *testing.T) {
	if testenv.SymlinksErr() == nil {
		t.Skip("this process can make symbolic links: auto uses them")
	}
	ca := testpki.NewCA(t, "cluster", testpki.Options{})
	leaf := ca.Issue(t, "node-1", testpki.Options{})
	n := newNode(t, "flocker-node", "node-1", "")
	if r := n.install(n.files(map[string][]byte{"node.crt": leaf.CertPEM(), "node.key": leaf.KeyPEM(t), "cluster.crt": ca.CertPEM()})...); r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	for _, name := range []string{"node.crt", "node.key", "cluster.crt"} {
		if fi, err := os.Lstat(n.live + `\` + name); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v, %v; want a regular file", name, fi, err)
		}
	}
	r := certkeeper(t, "status", "--config", n.config)
	if r.code != 0 || !strings.Contains(r.stdout, "live files") || !strings.Contains(r.stdout, "copies (the directory was installed with copies") {
		t.Fatalf("status: %+v, want a live files line saying copies and why", r)
	}
}

// The service through Windows' service manager: install, start, status,
// stop, uninstall. Under Wine (scripts/wine/gotest) its manager is
// private to the test's prefix; on a real Windows this changes the
// machine's services, so it runs only when CERTKEEPER_TEST_SERVICE=1.
func TestServiceLifecycleThroughTheServiceManager(t *testing.T) {
	if !testenv.UnderWine() && os.Getenv("CERTKEEPER_TEST_SERVICE") != "1" {
		t.Skip("registers a real Windows service; set CERTKEEPER_TEST_SERVICE=1 (as an administrator) to run it")
	}
	n := newNode(t, "flocker-node", "node-1", "")
	certkeeper(t, "service", "uninstall", "--config", n.config) // a leftover of an interrupted run
	t.Cleanup(func() { certkeeper(t, "service", "uninstall", "--config", n.config) })
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"install"}, 0, "installed certkeeper into the Windows service control manager"},
		{[]string{"status"}, 3, "certkeeper: stopped"},
		{[]string{"start"}, 0, "start done"},
		{[]string{"status"}, 0, "certkeeper: running"},
		{[]string{"stop"}, 0, "stop done"},
		{[]string{"status"}, 3, "certkeeper: stopped"},
		{[]string{"uninstall"}, 0, "uninstall done"},
		{[]string{"status"}, 3, "certkeeper: not installed"},
	}
	for _, s := range steps {
		r := certkeeper(t, append([]string{"service"}, append(s.args, "--config", n.config)...)...)
		if r.code != s.code || !strings.Contains(r.stdout, s.out) {
			t.Fatalf("service %s: %+v, want exit %d and %q", s.args[0], r, s.code, s.out)
		}
	}
}
