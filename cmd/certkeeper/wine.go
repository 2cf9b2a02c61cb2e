//go:build wine

package main

// Built for the tests under Wine only (scripts/wine/gotest).
import _ "github.com/certkeeper/certkeeper/internal/wine"
