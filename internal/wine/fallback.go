//go:build windows && wine

package wine

import _ "unsafe" // for go:linkname

// Wine 8's NtSetInformationFile answers STATUS_NOT_IMPLEMENTED for
// FileDispositionInformationEx, which Go's os.Root.Remove and os.RemoveAll
// try first, and Go falls back to the older FileDispositionInformation
// only for the statuses real Windows gives. This makes Go take the
// fallback at once: test tooling only, for binaries built with
// -tags wine -ldflags=-checklinkname=0 (scripts/wine/gotest).
//
//go:linkname deleteatFallback internal/syscall/windows.TestDeleteatFallback
var deleteatFallback bool

func init() { deleteatFallback = true }
