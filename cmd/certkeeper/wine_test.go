//go:build wine

package main_test

import _ "github.com/certkeeper/certkeeper/internal/testenv" // under Wine, its workarounds
