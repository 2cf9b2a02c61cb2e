//go:build wine

package testenv

import _ "github.com/certkeeper/certkeeper/internal/wine" // Wine's workarounds
