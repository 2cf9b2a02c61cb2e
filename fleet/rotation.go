package fleet

import (
	"crypto/x509"

	"github.com/certkeeper/certkeeper/authority"
)

// What `ca rotate status --inventory` shows in its INSTALLED column, from
// the nodes' reports: which CA signed the leaf each node runs with.
const (
	InstalledOld          = "old"
	InstalledNew          = "new"
	InstalledOther        = "other"         // a leaf the CA has no record of, or from neither CA
	InstalledUnreachable  = "unreachable"   // the report could not be read
	InstalledBadReport    = "bad-report"    // read, but damaged or over its bounds
	InstalledNotInstalled = "not-installed" // the report holds no certificate of the node
)

// RotationInstalled turns fleet status (Join's result) into the hook `ca
// rotate status` calls per node: which CA signed the leaf the node
// reports installed, looked up by serial in the CA's records. A node
// absent from st (not in the inventory) is "" (unknown). It is pure: the
// reports were read before.
func RotationInstalled(st []NodeStatus, ca CA) authority.InstalledFunc {
	ix := index(ca)
	byID := make(map[string]*NodeStatus, len(st))
	for i := range st {
		byID[st[i].ID] = &st[i]
	}
	return func(id string, oldCA, newCA *x509.Certificate) string {
		s := byID[id]
		switch {
		case s == nil:
			return ""
		case s.Has(StateBadReport):
			return InstalledBadReport
		case s.Installed == "" && s.Has(StateUnreachable):
			return InstalledUnreachable
		case s.Installed == "":
			return InstalledNotInstalled
		}
		c := ix.bySerial[NormSerial(s.Installed)]
		if c == nil {
			return InstalledOther
		}
		leaf, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return InstalledOther
		}
		return signedBy(leaf, oldCA, newCA)
	}
}

// signedBy names the CA of the rotation that signed leaf.
func signedBy(leaf, oldCA, newCA *x509.Certificate) string {
	switch {
	case newCA != nil && leaf.CheckSignatureFrom(newCA) == nil:
		return InstalledNew
	case oldCA != nil && leaf.CheckSignatureFrom(oldCA) == nil:
		return InstalledOld
	}
	return InstalledOther
}
