// Package wine works around what Wine 8 lacks for Go's standard library,
// so that certkeeper's Windows build and its tests run under Wine
// (scripts/wine/). Test tooling only: it does something only in binaries
// built with -tags wine, which no release is.
package wine
