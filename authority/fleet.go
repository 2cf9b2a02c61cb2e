package authority

import (
	bolt "go.etcd.io/bbolt"
)

// Records returns every node record (by id) and every certificate ever
// issued, for joining with what nodes report (fleet status). Like List,
// it takes only a shared lock and does not need the CA key.
func (a *Authority) Records() (map[string]NodeRecord, []CertRecord, error) {
	var nodes map[string]NodeRecord
	var certs []CertRecord
	err := a.view(func(tx *bolt.Tx) error {
		ns, err := allNodes(tx)
		if err != nil {
			return err
		}
		nodes = make(map[string]NodeRecord, len(ns))
		for _, n := range ns {
			nodes[n.ID] = n
		}
		certs, err = allCerts(tx)
		return err
	})
	return nodes, certs, err
}
