package agent

// Between renewals, a CSR-mode bundle with a pull account reads what the
// admin host publishes for it (its own certificate, cluster.crt and
// cluster.crl, docs/ca.md "ca sign"), every [source] pull_interval, as a
// pull-mode bundle does: so a new CRL (a revocation, or the refresh that
// `ca renew` makes before the CRL lapses) and a CA rotation's trust file
// reach it without a push. Renewals stay CSR requests: in the renewal
// window (or with nothing installed) the bundle's own Source is asked.
// Without a pull account (no [source] csr_user beside user), a CSR-mode
// node talks to the admin host only to renew, and gets these files by
// push.

// publishedSource returns the Source that reads a bundle's published
// files without renewing it, between renewals: the pull account of a CSR
// source (of every source of a Failover), or nil when there is none (a
// pull-mode Source already does this with every fetch).
func publishedSource(src Source) Source {
	switch s := src.(type) {
	case *CSRSource:
		if s.Pull != nil {
			return s.Pull
		}
	case *Failover:
		f := &Failover{Log: s.Log}
		for _, one := range s.Sources {
			p := publishedSource(one)
			if p == nil {
				return nil
			}
			f.Sources = append(f.Sources, p)
		}
		if len(f.Sources) > 0 {
			return f
		}
	}
	return nil
}

// fetchSource is the Source a fetch asks: the bundle's own, or, for a
// CSR-mode bundle outside its renewal window, its published files.
func fetchSource(src Source, due bool) Source {
	if !due {
		if p := publishedSource(src); p != nil {
			return p
		}
	}
	return src
}
