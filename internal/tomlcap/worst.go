package tomlcap

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Worst builds, for tests and fuzz seeds, the inputs within lim that cost
// the decoder the most per byte: nested inline tables, dotted keys, deep
// table headers, nested arrays, arrays of tables, many flat keys and one
// wide array, each repeated to fill lim.Bytes at exactly lim.Depth.
func Worst(lim Limits) map[string][]byte {
	size, d := int(lim.Bytes), lim.Depth
	fill := func(prefix string, unit func(i int) string, suffix string) []byte {
		var b strings.Builder
		b.WriteString(prefix)
		for i := 0; ; i++ {
			u := unit(i)
			if b.Len()+len(u)+len(suffix) > size {
				break
			}
			b.WriteString(u)
		}
		b.WriteString(suffix)
		return []byte(b.String())
	}
	return map[string][]byte{
		"inline": fill("", func(i int) string {
			return fmt.Sprintf("k%d = ", i) + strings.Repeat("{a=", d-1) + "1" + strings.Repeat("}", d-1) + "\n"
		}, ""),
		"dotted": fill("", func(i int) string { return fmt.Sprintf("k%d", i) + strings.Repeat(".a", d-1) + " = 1\n" }, ""),
		"header": fill("", func(i int) string { return fmt.Sprintf("[k%d", i) + strings.Repeat(".a", d-1) + "]\n" }, ""),
		"arrays": fill("", func(i int) string {
			return fmt.Sprintf("k%d = ", i) + strings.Repeat("[", d-1) + "1" + strings.Repeat("]", d-1) + "\n"
		}, ""),
		"tables": fill("", func(int) string { return "[[a" + strings.Repeat(".a", max(d-1, 0)) + "]]\n" }, ""),
		"flat":   fill("", func(i int) string { return fmt.Sprintf("k%d=1\n", i) }, ""),
		"wide":   fill("k = [", func(int) string { return "{}," }, "]"),
	}
}

// Alloc reports the bytes f allocated (runtime.MemStats.TotalAlloc, so
// everything, not only what stayed live).
func Alloc(f func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	f()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// AddWorst adds Worst(lim) to a fuzz target's seed corpus when the target
// runs as a test (go test), where each checks the allocation bound at the
// limits. Under -fuzz they are left out: at half a second an input under
// coverage instrumentation, they would starve the fuzzer of executions.
func AddWorst(f *testing.F, lim Limits) {
	if fl := flag.Lookup("test.fuzz"); fl != nil && fl.Value.String() != "" {
		return
	}
	for _, data := range Worst(lim) {
		f.Add(data)
	}
}
