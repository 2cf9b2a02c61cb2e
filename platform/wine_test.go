//go:build wine

package platform_test

import _ "github.com/certkeeper/certkeeper/internal/testenv" // under Wine, its workarounds
