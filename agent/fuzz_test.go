package agent_test

import (
	"testing"

	"github.com/certkeeper/certkeeper/agent"
)

// FuzzParseConfig: a config, however broken, yields a config or an error
// that names the file; never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte("node_id = \"n1\"\n[[bundle]]\nname = \"b\"\nlayout = \"mesos\"\nkey_mode = \"0400\"\nenv = { A = \"b c\" }\n"))
	f.Add([]byte("[[bundle]]\nname = 1\n[[bundle.reload]]\nsignal = \"HUP\"\n"))
	f.Add([]byte("renew_before = \"1d2h\"\n[source]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := agent.ParseConfig("fuzz.toml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(c.Bundles) == 0 {
			t.Fatal("a config without bundles was accepted")
		}
		for _, b := range c.Bundles {
			if b.Resolved.Dir == "" || b.Inbox == "" {
				t.Fatalf("bundle %q resolved without a directory or inbox", b.Name)
			}
		}
	})
}
