package testpki

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
)

// OpenSSL runs the real openssl binary in dir and returns its combined
// output, failing the test when it exits non-zero. Tests cross-check
// certkeeper against it, so a missing binary is a failure, not a skip:
// scripts/test installs it.
func OpenSSL(t testing.TB, dir string, args ...string) string {
	t.Helper()
	testenv.NeedUnix(t, "openssl")
	out, err := OpenSSLErr(dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// OpenSSLErr runs openssl and returns its output and error, for tests that
// expect it to fail.
func OpenSSLErr(dir string, args ...string) (string, error) {
	path, err := exec.LookPath("openssl")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// GlowConfig is the openssl.cnf from the Glow wiki, with its `certauth` and
// `node` sections, trimmed of the interactive prompts.
const GlowConfig = `
[ req ]
default_md = sha512
distinguished_name = req_distinguished_name
prompt = no

[ req_distinguished_name ]
O = Glow
CN = glow-ca

[ certauth ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer:always
basicConstraints = CA:true

[ node ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment, dataEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
`

// GlowRecipe runs the Glow wiki's steps in dir: a CA (ca.key, ca.cer) and a
// server certificate (server1.key, server1.cer, serial 101, CN cn) signed
// with `openssl x509 -req … -extensions node`.
func GlowRecipe(t testing.TB, dir, cn string) {
	t.Helper()
	WriteFile(t, dir, "openssl.cnf", []byte(GlowConfig), 0o644)
	OpenSSL(t, dir, "req", "-config", "openssl.cnf", "-newkey", "rsa:2048", "-nodes", "-keyform", "PEM",
		"-keyout", "ca.key", "-x509", "-days", "3650", "-extensions", "certauth", "-outform", "PEM", "-out", "ca.cer")
	OpenSSL(t, dir, "genrsa", "-out", "server1.key", "2048")
	OpenSSL(t, dir, "req", "-config", "openssl.cnf", "-new", "-key", "server1.key", "-subj", "/O=Glow/CN="+cn, "-out", "server1.req")
	OpenSSL(t, dir, "x509", "-req", "-in", "server1.req", "-CA", "ca.cer", "-CAkey", "ca.key", "-set_serial", "101",
		"-extfile", "openssl.cnf", "-extensions", "node", "-days", "3650", "-outform", "PEM", "-out", "server1.cer")
}

// ReignRecipe runs reign's steps in dir: a v1 signing certificate made with
// `openssl x509 -req -signkey` (signing.key, signing.crt) and a node
// certificate whose CN is the node id (node.ID.key, node.ID.crt), signed with
// -CAcreateserial. Keys are RSA 2048 rather than 4096 to keep tests quick.
func ReignRecipe(t testing.TB, dir, id string) {
	t.Helper()
	OpenSSL(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "signing.key", "-subj", "/O=reign/CN=signing", "-out", "signing.req")
	OpenSSL(t, dir, "x509", "-req", "-days", "3650", "-in", "signing.req", "-signkey", "signing.key", "-out", "signing.crt")
	OpenSSL(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node."+id+".key", "-subj", "/O=reign/CN="+id, "-out", "node."+id+".req")
	OpenSSL(t, dir, "x509", "-req", "-days", "3650", "-in", "node."+id+".req", "-CA", "signing.crt", "-CAkey", "signing.key",
		"-out", "node."+id+".crt", "-CAcreateserial")
}

// Shell runs a /bin/sh script and returns its standard output.
func Shell(t testing.TB, script string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return string(out)
}
