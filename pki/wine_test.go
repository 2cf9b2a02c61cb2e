//go:build wine

package pki_test

import _ "github.com/certkeeper/certkeeper/internal/testenv" // under Wine, its workarounds
