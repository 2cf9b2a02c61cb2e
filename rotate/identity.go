package rotate

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/pki"
)

// A finding is one identity rule's verdict on a leaf: a refusal, or a
// warning for a certificate that installs but that some peer will refuse.
type finding struct {
	reason, hint string
}

// reissueHint is the command that gives an old certificate the node id as
// a SAN: certkeeper's CA adds it to every certificate it issues now, and
// `ca issue --force` keeps the node's recorded names.
func reissueHint(id string) string {
	return fmt.Sprintf("re-issue it on the admin host: certkeeper ca issue node %s --force; names are kept, and a node in CSR mode gets the SAN at its next renewal", id)
}

// identity applies the rules TLS peers apply to a node's certificate:
//
//   - the name: a leaf with subject alternative names must carry the node
//     id as one of them (Go, and so reign, never read the CN when there
//     are SANs); the CN alone counts only for a leaf with no SANs, and then
//     only when no certificate of the chain has name constraints it
//     violates (OpenSSL checks the CN against them, Go does not). A layout
//     with RequireCN (reign) also needs the CN to be the id. Certificates
//     certkeeper's own CA issued before ids became SANs (CN = id, SANs
//     holding only the --dns and --ip names) are accepted with a warning;
//   - the usage: the leaf's extended key usage and key usage must allow
//     what the layout needs (pki.UsageProblems), and so must the chain's.
//
// id "" skips the name rules (verify without --node-id). chainOK says the
// chain verified, so its usages can be checked.
func identity(leaf *x509.Certificate, intermediates, cas []*x509.Certificate, l Layout, id string, now time.Time, chainOK bool) (refuse, warn []finding) {
	if id != "" {
		refuse, warn = nameRules(leaf, slices.Concat(intermediates, cas), l, id)
	}
	need := l.NeedUsage()
	hint := usageHint(need)
	for _, p := range pki.UsageProblems(leaf, need) {
		refuse = append(refuse, finding{"certificate's " + p, hint})
	}
	if chainOK && len(cas) > 0 {
		if err := pki.ChainUsageProblem(leaf, intermediates, cas, now, need); err != nil {
			refuse = append(refuse, finding{err.Error(), "issue the node's certificate under a CA chain that allows " + need.String()})
		}
	}
	return refuse, warn
}

func usageHint(need pki.Usage) string {
	purpose := "sslserver and sslclient"
	switch need {
	case pki.UsageServer:
		purpose = "sslserver"
	case pki.UsageClient:
		purpose = "sslclient"
	}
	h := "TLS peers refuse it (openssl verify -purpose " + purpose + ": unsuitable certificate purpose); certkeeper ca issue makes serverAuth and clientAuth with a key usage that fits the key"
	if need == pki.UsageBoth {
		h += "; if the daemon uses it only to serve or only to connect, set usage = [\"server\"] or [\"client\"] in the bundle"
	}
	return h
}

func nameRules(leaf *x509.Certificate, chain []*x509.Certificate, l Layout, id string) (refuse, warn []finding) {
	cn := leaf.Subject.CommonName
	reign := l.RequireCN
	if reign && cn != id {
		refuse = append(refuse, finding{
			fmt.Sprintf("certificate's CN is %q, this node is %q: the CN (the %s layout requires it) must be the node id, which reign checks at start-up", cn, id, l.Preset),
			"a node installs only its own certificate: issue one whose CN and SAN are the node id (certkeeper ca issue node " + id + ")"})
		return refuse, warn
	}
	switch pki.MatchNode(leaf, id) {
	case pki.NameInSAN:
		return refuse, warn
	case pki.NameAbsent:
		names := pki.NodeNames(leaf)
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = fmt.Sprintf("%q", n)
		}
		what := strings.Join(quoted, ", ")
		if len(names) == 0 {
			what = "no name (empty CN and no SANs)"
		}
		refuse = append(refuse, finding{fmt.Sprintf("certificate is for %s, this node is %q", what, id),
			"a node installs only its own certificate: a subject alternative name (the CN only for a certificate without SANs) must be the node_id"})
		return refuse, warn
	case pki.NameCNBesideSANs:
		if !pki.LooksIssuedByCertkeeper(leaf) {
			refuse = append(refuse, finding{
				fmt.Sprintf("certificate's SANs (%s) do not name this node %q; its CN does, but TLS peers check only the SANs of a certificate that has them", pki.Describe(leaf).SANs(), id),
				"issue it with the node id as a SAN: certkeeper ca issue node " + id + ", or with openssl subjectAltName = DNS:" + id})
			return refuse, warn
		}
		who := "peers that check names by SAN (Go programs, browsers) do not see it"
		if reign {
			who = fmt.Sprintf("reign will refuse it: a node dialling this one sets ServerName %q and Go verifies SANs only (x509: certificate relies on legacy Common Name field)", id)
		}
		warn = append(warn, finding{
			fmt.Sprintf("certificate names this node %q in its CN only, not in its SANs (%s), as certkeeper's CA issued certificates before node ids became SANs; %s", id, pki.Describe(leaf).SANs(), who),
			reissueHint(id)})
	case pki.NameCNOnly:
		if reign {
			warn = append(warn, finding{
				fmt.Sprintf("certificate has no SANs; reign will refuse it: a node dialling this one sets ServerName %q and Go verifies SANs only (x509: certificate relies on legacy Common Name field)", id),
				reissueHint(id)})
		}
	}
	// Accepted by its CN: the chain's name constraints must allow it.
	if c, why := pki.CNConstraintViolation(id, chain); c != nil {
		refuse = append(refuse, finding{
			fmt.Sprintf("certificate names this node %q only in its CN, and %q's name constraints %s: OpenSSL peers refuse it (excluded subtree violation)", id, pki.Name(c.Subject.String()), why),
			"issue it with the node id as a SAN, under a CA whose name constraints permit the id"})
		warn = nil
	}
	return refuse, warn
}
