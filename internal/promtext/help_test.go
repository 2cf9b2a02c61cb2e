package promtext

import "testing"

func TestWithHelp(t *testing.T) {
	help := map[string]string{"a_total": `installs, \ and
more`}
	for _, c := range []struct{ name, in, want string }{
		{"empty HELP given its text", "# HELP a_total\n# TYPE a_total counter\na_total 1\n",
			"# HELP a_total installs, \\\\ and\\nmore\n# TYPE a_total counter\na_total 1\n"},
		{"empty HELP with no text dropped", "# HELP b\n# TYPE b gauge\nb 2\n", "# TYPE b gauge\nb 2\n"},
		{"a HELP that has text kept", "# HELP b says b\nb 2\n", "# HELP b says b\nb 2\n"},
		{"no metadata", "a_total 1\nb 2\n", "a_total 1\nb 2\n"},
		{"no final newline", "b 2", "b 2\n"},
		{"nothing", "", ""},
	} {
		if got := string(WithHelp([]byte(c.in), help)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
