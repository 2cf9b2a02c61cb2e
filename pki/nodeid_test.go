package pki_test

import (
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/pki"
)

// One rule for node ids, the CA's: what the inventory, `ca issue` and the
// forced command of `ca sign` all check.
func TestValidateNodeID(t *testing.T) {
	for _, ok := range []string{"1", "node-1", "8eab4b8d-c0a2-4ce2-80aa-0709277a9a7a", "n1.example.com", "A_b", "control-x", strings.Repeat("a", 64)} {
		if err := pki.ValidateNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for id, want := range map[string]string{
		"":                      "empty",
		strings.Repeat("a", 65): "longer than 64",
		".hidden":               "must not start",
		"-f":                    "must not start",
		"a/b":                   "not allowed",
		"..":                    "must not start",
		"a b":                   "not allowed",
		"n@x":                   `'@' is not allowed`,
		"host:1":                `':' is not allowed`,
		"ü":                     "not allowed",
	} {
		if err := pki.ValidateNodeID(id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", id, err, want)
		}
	}
}
