//go:build wine

package agent_test

import _ "github.com/certkeeper/certkeeper/internal/testenv" // under Wine, its workarounds
