package agent

import "testing"

// Which Source a fetch asks: a CSR source with a pull account reads the
// published files outside the renewal window and renews by CSR in it; a
// CSR source without one, and a pull source, are always asked themselves;
// a Failover of CSR sources follows its sources, all or none.
func TestFetchSource(t *testing.T) {
	pull := &SFTPSource{}
	withPull := &CSRSource{Pull: pull}
	csrOnly := &CSRSource{}
	for _, c := range []struct {
		name string
		src  Source
		due  bool
		want func(Source) bool
	}{
		{"csr with a pull account, between renewals", withPull, false, func(s Source) bool { return s == pull }},
		{"csr with a pull account, due", withPull, true, func(s Source) bool { return s == withPull }},
		{"csr alone, between renewals", csrOnly, false, func(s Source) bool { return s == csrOnly }},
		{"pull", pull, false, func(s Source) bool { return s == pull }},
		{"failover of csr sources with pull accounts", &Failover{Sources: []Source{withPull, withPull}}, false, func(s Source) bool {
			f, ok := s.(*Failover)
			return ok && len(f.Sources) == 2 && f.Sources[0] == pull && f.Sources[1] == pull
		}},
		{"failover with one csr source lacking a pull account", &Failover{Sources: []Source{withPull, csrOnly}}, false, func(s Source) bool {
			f, ok := s.(*Failover)
			return ok && f.Sources[1] == csrOnly
		}},
	} {
		if got := fetchSource(c.src, c.due); !c.want(got) {
			t.Errorf("%s: fetchSource = %T %+v", c.name, got, got)
		}
	}
	if publishedSource(nil) != nil || publishedSource(csrOnly) != nil {
		t.Error("publishedSource of a source without a pull account is not nil")
	}
}
