//go:build wine

package rotate_test

import _ "github.com/certkeeper/certkeeper/internal/testenv" // under Wine, its workarounds
