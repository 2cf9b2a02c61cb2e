package pki

import "fmt"

// MaxNodeIDLength is the X.509 upper bound of a common name, which a node
// id is.
const MaxNodeIDLength = 64

// NodeIDRule says in words what ValidateNodeID accepts, for messages that
// refuse an id.
const NodeIDRule = "1 to 64 letters, digits, '.', '-' and '_', not starting with '.' or '-'"

// ValidateNodeID checks a node id by the one rule every part of certkeeper
// shares (the CA, the inventory, the forced command of `ca sign`): the id
// is the certificate's CN, a directory name under the CA's nodes/ and an
// argument of an SSH forced command, so it is 1 to 64 letters, digits,
// dots, hyphens and underscores, and does not start with a dot (hidden
// files are certkeeper's unfinished writes) or a hyphen (it would read as
// a flag).
func ValidateNodeID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty id")
	case len(id) > MaxNodeIDLength:
		return fmt.Errorf("id %q is longer than %d characters (it is the certificate's CN)", id, MaxNodeIDLength)
	case id[0] == '.' || id[0] == '-':
		return fmt.Errorf("id %q must not start with %q", id, id[:1])
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("id %q: %q is not allowed (letters, digits, '.', '-' and '_' only)", id, r)
		}
	}
	return nil
}
