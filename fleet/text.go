package fleet

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes fleet status for a terminal: a table of the nodes
// (issued, installed and served serial, expiry, health, states), each
// node's problems, the summary line (counts per problem state, in
// SummaryStates' order) and the expiry histogram by week.
func WriteText(w io.Writer, st []NodeStatus, sum Summary) {
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "NODE\tISSUED\tINSTALLED\tSERVED\tEXPIRES\tHEALTH\tSTATE")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, s := range st {
		exp := "-"
		if e := s.Expiry(); !e.IsZero() {
			exp = e.UTC().Format("2006-01-02")
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, dash(s.Issued), dash(s.Installed), dash(s.Served), exp, dash(s.Health), strings.Join(s.States, ","))
	}
	t.Flush()
	for _, s := range st {
		for _, p := range s.Problems {
			fmt.Fprintf(w, "%s: %s\n", s.ID, p)
		}
	}
	fmt.Fprintf(w, "\n%d node(s): %d healthy, %d not", sum.Nodes, sum.Healthy, sum.Nodes-sum.Healthy)
	for _, x := range SummaryStates {
		if n := sum.States[x]; n > 0 {
			fmt.Fprintf(w, ", %d %s", n, x)
		}
	}
	fmt.Fprintln(w)
	if len(sum.Weeks) > 0 || sum.Expired > 0 {
		fmt.Fprintln(w, "\nExpiry by week:")
		if sum.Expired > 0 {
			fmt.Fprintf(w, "  expired      %4d %s\n", sum.Expired, strings.Repeat("#", min(sum.Expired, 60)))
		}
		for _, wk := range sum.Weeks {
			fmt.Fprintf(w, "  %s   %4d %s\n", wk.Start.UTC().Format("2006-01-02"), wk.Nodes, strings.Repeat("#", min(wk.Nodes, 60)))
		}
	}
}
