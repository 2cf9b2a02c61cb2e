package rotate_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/rotate"
)

// A key may be group-readable only on purpose: the bundle names the group
// (mosquitto's, ssl-cert) and lets it into the directory. Others never.
func TestKeyModeRules(t *testing.T) {
	m := func(v fs.FileMode) *fs.FileMode { return &v }
	for name, c := range map[string]struct {
		o    rotate.Overrides
		want string // "" = accepted
	}{
		"0600":                      {rotate.Overrides{KeyMode: m(0o600)}, ""},
		"0400":                      {rotate.Overrides{KeyMode: m(0o400)}, ""},
		"0640 with group, dir 0750": {rotate.Overrides{KeyMode: m(0o640), DirMode: m(0o750), Group: "ssl-cert"}, ""},
		"0440 with group, dir 0710": {rotate.Overrides{KeyMode: m(0o440), DirMode: m(0o710), Group: "mosquitto"}, ""},
		"0640 without group":        {rotate.Overrides{KeyMode: m(0o640), DirMode: m(0o750)}, "names no group"},
		"0640 with dir 0700":        {rotate.Overrides{KeyMode: m(0o640), Group: "ssl-cert"}, `set dir_mode = "0750"`},
		"0644 with group":           {rotate.Overrides{KeyMode: m(0o644), DirMode: m(0o755), Group: "ssl-cert"}, "lets other users read the private key"},
		"0604 with group":           {rotate.Overrides{KeyMode: m(0o604), DirMode: m(0o750), Group: "ssl-cert"}, "lets other users read the private key"},
		"0644":                      {rotate.Overrides{KeyMode: m(0o644)}, "lets other users read the private key"},
		"0660 with group":           {rotate.Overrides{KeyMode: m(0o660), DirMode: m(0o750), Group: "ssl-cert"}, "lets the group change"},
		"0650 with group":           {rotate.Overrides{KeyMode: m(0o650), DirMode: m(0o750), Group: "ssl-cert"}, "lets the group change"},
		"dir 0755 with group":       {rotate.Overrides{KeyMode: m(0o640), DirMode: m(0o757), Group: "ssl-cert"}, "lets other users add files"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := rotate.ResolveLayout("glow", "n1", c.o)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ResolveLayout = %v, want %q", err, c.want)
			}
		})
	}
}
