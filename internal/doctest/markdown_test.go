package doctest

import (
	"reflect"
	"strings"
	"testing"
)

func TestBlocks(t *testing.T) {
	doc := "# Title\n\ntext\n\n```sh\n# on node1\necho hi\n```\n\n" +
		"1. a step:\n\n   ```toml\n   # /etc/x.toml on the admin host\n   a = 1\n   ```\n\n" +
		"````console\n```sh\nnot a fence\n```\n````\n" +
		"an inline ```code``` span\n" +
		"~~~\nunclosed"
	got := Blocks("d.md", []byte(doc))
	want := []Block{
		{File: "d.md", Line: 5, Lang: "sh", Text: "# on node1\necho hi\n"},
		{File: "d.md", Line: 12, Lang: "toml", Text: "# /etc/x.toml on the admin host\na = 1\n"},
		{File: "d.md", Line: 17, Lang: "console", Text: "```sh\nnot a fence\n```\n"},
		{File: "d.md", Line: 23, Lang: "", Text: "unclosed\n"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Blocks:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseStep(t *testing.T) {
	for _, tc := range []struct {
		lang, text string
		want       Step
		err        string
	}{
		{"sh", "# on the admin host\nls\n", Step{Kind: Run, Machines: []string{"admin"}}, ""},
		{"sh", "# on node1, in the checkout\nls\n", Step{Kind: Run, Machines: []string{"node1"}}, ""},
		{"sh", "# on master and agent1\nls\n", Step{Kind: Run, Machines: []string{"master", "agent1"}}, ""},
		{"bash", "# on node1 (skipped by the doc test: no network)\ngit clone x\n", Step{Kind: Skip, Machines: []string{"node1"}, Reason: "no network"}, ""},
		{"sh", "ls\n", Step{}, `starts with "# on MACHINE"`},
		{"sh", "# on Node 1\nls\n", Step{}, "is not a machine name"},
		{"toml", "# /etc/certkeeper/certkeeper.toml on node1\na = 1\n", Step{Kind: File, Path: "/etc/certkeeper/certkeeper.toml", Machines: []string{"node1"}}, ""},
		{"toml", "# inventory: /etc/certkeeper/nodes.toml on the admin host\n", Step{Kind: File, Path: "/etc/certkeeper/nodes.toml", Machines: []string{"admin"}}, ""},
		{"toml", "# inventory\n[defaults]\n", Step{Kind: Example}, ""},
		{"ini", "[Service]\n", Step{Kind: Example}, ""},
		{"console", "# on node1\nls\n", Step{Kind: Example}, ""},
		{"", "# on node1\n", Step{Kind: Example}, ""},
	} {
		s, err := ParseStep(Block{File: "g.md", Line: 3, Lang: tc.lang, Text: tc.text})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "g.md:3:") {
				t.Errorf("%q: error %v, want one with %q at g.md:3", tc.text, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		s.Block = Block{}
		if !reflect.DeepEqual(s, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.text, s, tc.want)
		}
	}
}

func TestStepMachinesPutsTheAdminHostFirst(t *testing.T) {
	steps := []Step{{Machines: []string{"node1"}}, {Machines: []string{"admin", "node2"}}, {Machines: []string{"node1"}}}
	if got := StepMachines(steps); !reflect.DeepEqual(got, []string{"admin", "node1", "node2"}) {
		t.Fatalf("StepMachines: %v", got)
	}
}

func TestCodeSpans(t *testing.T) {
	for in, want := range map[string][]string{
		"`a` and `b`":                    {"a", "b"},
		"`` run `x` now ``":              {"run `x` now"},
		"no span":                        nil,
		"`unclosed":                      nil,
		"``a`b``":                        {"a`b"},
		"` `":                            {" "},
		"- `… is not a file name` \\":    {"… is not a file name"},
		"```triple``` and ``double`` ok": {"triple", "double"},
	} {
		if got := CodeSpans(in); !reflect.DeepEqual(got, want) {
			t.Errorf("CodeSpans(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSlugAndAnchors(t *testing.T) {
	for in, want := range map[string]string{
		"5. Let nodes pull: a chroot per node":                       "5-let-nodes-pull-a-chroot-per-node",
		"Settings: `DIR/ca.toml`":                                    "settings-dircatoml",
		"The admin host's side: each node reads only its own bundle": "the-admin-hosts-side-each-node-reads-only-its-own-bundle",
		"`ca sign` (CSR renewal, over SSH)":                          "ca-sign-csr-renewal-over-ssh",
	} {
		if got := Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
	doc := "# A\n## B\n```sh\n# not a heading\n```\n## B\n#nospace\n"
	if got := Anchors([]byte(doc)); !reflect.DeepEqual(got, map[string]bool{"a": true, "b": true, "b-1": true}) {
		t.Fatalf("Anchors: %v", got)
	}
}

func TestLinks(t *testing.T) {
	doc := "see [a](a.md#x) and `[not](code.md)`\n```\n[no](fence.md)\n```\n[b](https://example.com) [a](a.md#x)\n"
	got := Links([]byte(doc))
	want := map[string][]int{"a.md#x": {1, 5}, "https://example.com": {5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Links: %v, want %v", got, want)
	}
}

// FuzzBlocks: any document yields blocks whose lines come from it, and
// steps or errors naming the block; never a panic.
func FuzzBlocks(f *testing.F) {
	f.Add([]byte("```sh\n# on node1\necho hi\n```\n"))
	f.Add([]byte("   ~~~~toml\n   # /x on the admin host\n~~~~\n```"))
	f.Add([]byte("- `a` \\\n  `b`\n  text\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		for _, b := range Blocks("f.md", data) {
			if b.Line < 1 || b.Line > lines {
				t.Fatalf("block at line %d of %d", b.Line, lines)
			}
			s, err := ParseStep(b)
			if err != nil && !strings.HasPrefix(err.Error(), "f.md:") {
				t.Fatalf("error without its place: %v", err)
			}
			if err == nil && (s.Kind == Run || s.Kind == File || s.Kind == Skip) && len(s.Machines) == 0 {
				t.Fatalf("a step with no machine: %+v", s)
			}
		}
		for _, q := range CodeSpans(string(data)) {
			if !strings.Contains(string(data), q) {
				t.Fatalf("span %q is not in the input", q)
			}
		}
		DocQuotes(data)
		Anchors(data)
		Links(data)
	})
}
