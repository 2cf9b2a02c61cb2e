package doctest

import (
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func TestSkeleton(t *testing.T) {
	for in, want := range map[string]string{
		"%s: no leaf certificate (%q)":        "…: no leaf certificate (…)",
		"100%% done in %6.2fs":                "100% done in …s",
		"  two   spaces\n":                    "two spaces",
		"comes from <ca-dir>/nodes/<id>/":     "comes from …/nodes/…/",
		"a %[1]s b %-8v c %x":                 "a … b … c …",
		"key_mode %04o lets other users read": "key_mode … lets other users read",
	} {
		if got := Skeleton(in); got != want {
			t.Errorf("Skeleton(%q) = %q, want %q", in, got, want)
		}
	}
	if got := DocSkeleton("<file>: no leaf certificate (<files>)"); got != "…: no leaf certificate (…)" {
		t.Errorf("DocSkeleton: %q", got)
	}
}

func TestIsWrapper(t *testing.T) {
	for skel, want := range map[string]bool{
		"…: …":                          true,
		"node …: …":                     true,
		"read the file …: …":            true,
		"sftp://…@…/…":                  true,
		"node[…]":                       true,
		"; rolled back to …":            true,
		"RSA …":                         true,
		"bundle …: reload[…]":           true,
		"empty id":                      false,
		"no CA here":                    false,
		"nothing installed in …":        false,
		"expired … ago (…)":             false,
		"certificate does not parse: …": false,
		"setting mode … on …":           false,
	} {
		if got := IsWrapper(skel); got != want {
			t.Errorf("IsWrapper(%q) = %v, want %v", skel, got, want)
		}
	}
}

// Each way of making a message is found, wrappers and tokens are not.
func TestMessages(t *testing.T) {
	ms, err := Messages(filepath.Join("testdata"), []string{"msgs"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Kind+": "+m.Skeleton)
	}
	sort.Strings(got)
	want := []string{
		"error: --dir DIR is required",
		"error: 100% of … files; key … is … bytes",
		"error: key does not match",
		"error: missing: id; it comes from …/nodes/…/",
		"error: no CA here",
		"error: remove one",
		"error: take both from the same issue",
		"log: fetch from the source failed",
		"output: certkeeper: unknown command …",
		"text: a second key (the first is in …)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Messages:\n got %q\nwant %q", got, want)
	}
}

func TestDocQuotes(t *testing.T) {
	doc := "intro `not a quote`\n\n" +
		"- `first <file> message` \\\n" +
		"  `` second `with` ticks `` \\\n" +
		"  Explanation with `code` in it.\n" +
		"  `only code but after the explanation`\n" +
		"- `third` and text\n" +
		"- [a link](x.md)\n"
	got := DocQuotes([]byte(doc))
	want := map[string]int{"first … message": 3, "second `with` ticks": 4}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DocQuotes: %v, want %v", got, want)
	}
}
