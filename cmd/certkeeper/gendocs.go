package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// gendocsCommand is the hidden `certkeeper gendocs DIR [CONFIG_MD]`, run
// at build time (packaging/build.sh): man pages in DIR/man1 and shell
// completion in DIR/completion, made from the command tree itself so they
// cannot drift, and with CONFIG_MD (docs/config.md) certkeeper.toml(5) in
// DIR/man5, converted by go-md2man as cobra's pages are.
func gendocsCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR [CONFIG_MD]",
		Short:  "write man pages and shell completion scripts into DIR (for packaging)",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			markRan(cmd)
			// The defaults shown must be the built-in ones, not the
			// builder's environment.
			os.Unsetenv(envConfig)
			os.Unsetenv(envCADir)
			root := newRoot(cmd.Context(), e, true)
			root.DisableAutoGenTag = true
			dir := args[0]
			man := filepath.Join(dir, "man1")
			comp := filepath.Join(dir, "completion")
			for _, d := range []string{man, comp} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			for _, c := range allCommands(root) {
				c.Long = manText(c.Long)
				c.Flags().VisitAll(func(f *pflag.Flag) { f.Usage = manEscape(f.Usage) })
			}
			hdr := &doc.GenManHeader{Section: "1", Source: "certkeeper " + version, Manual: "certkeeper manual"}
			if err := doc.GenManTree(root, hdr, man); err != nil {
				return fmt.Errorf("man pages in %s: %w", man, err)
			}
			gens := []struct {
				name string
				gen  func(string) error
			}{
				{"certkeeper.bash", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
				{"_certkeeper", root.GenZshCompletionFile},
				{"certkeeper.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
			}
			for _, g := range gens {
				if err := g.gen(filepath.Join(comp, g.name)); err != nil {
					return fmt.Errorf("completion %s: %w", g.name, err)
				}
			}
			if len(args) > 1 {
				if err := configManPage(args[1], filepath.Join(dir, "man5")); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "wrote %s and %s\n", man, comp)
			return nil
		},
	}
}

// configManPage writes certkeeper.toml(5) from the config reference.
func configManPage(src, dir string) error {
	md, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("certkeeper.toml(5): %w", err)
	}
	body := string(md)
	// The reference's title becomes the NAME section a man page has.
	if i := strings.Index(body, "\n"); i >= 0 && strings.HasPrefix(body, "# ") {
		body = body[i+1:]
	}
	body = tablesToLists(body)
	text := "% CERTKEEPER.TOML 5 \"certkeeper " + version + "\" \"certkeeper manual\"\n\n" +
		"# NAME\n\ncertkeeper.toml - the certkeeper node agent's config\n\n" +
		"# SYNOPSIS\n\n/etc/certkeeper/certkeeper.toml (or --config FILE, $CERTKEEPER_CONFIG)\n\n" +
		"# DESCRIPTION\n" + body +
		"\n# SEE ALSO\n\ncertkeeper(1), certkeeper-agent(1), certkeeper-check(1); /usr/share/doc/certkeeper/docs/config.md\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "certkeeper.toml.5"), md2man.Render([]byte(text)), 0o644)
}

// tablesToLists turns the reference's tables (key | default | meaning)
// into lists, which a terminal's width can hold.
func tablesToLists(md string) string {
	var out []string
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "|") || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "| -") {
			out = append(out, l)
			continue
		}
		i++ // the header and its rule
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "|") {
			i++
			cells := strings.Split(strings.Trim(lines[i], "| "), " | ")
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			switch len(cells) {
			case 3:
				item := "- " + cells[0]
				switch {
				case strings.HasPrefix(cells[1], "("):
					item += " " + cells[1]
				case cells[1] != "":
					item += " (default: " + cells[1] + ")"
				}
				out = append(out, item+": "+cells[2])
			default:
				out = append(out, "- "+strings.Join(cells, ": "))
			}
		}
	}
	return strings.Join(out, "\n")
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, allCommands(s)...)
	}
	return out
}

// manText makes a command's help markdown that keeps its shape: the
// indented lines (examples, tables of options) become code blocks.
func manText(help string) string {
	var out []string
	inBlock := false
	for _, l := range strings.Split(help, "\n") {
		indented := strings.HasPrefix(l, "  ")
		if !indented {
			l = manEscape(l)
		}
		switch {
		case indented && !inBlock:
			out = append(out, "", "    "+l)
		case indented:
			out = append(out, "    "+l)
		case inBlock && l != "":
			out = append(out, "", l)
		default:
			out = append(out, l)
		}
		inBlock = indented
	}
	return strings.Join(out, "\n")
}

// manEscape keeps a `<` of prose (DIR/nodes/<id>/) from being taken by
// go-md2man for the start of an HTML tag and dropped with what follows,
// which left "DIR/nodes//" in the pages. Code blocks need no escape.
func manEscape(s string) string { return strings.ReplaceAll(s, "<", `\<`) }
