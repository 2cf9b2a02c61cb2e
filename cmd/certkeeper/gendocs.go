package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// gendocsCommand is the hidden `certkeeper gendocs DIR`, run at build time
// (packaging/build.sh): man pages in DIR/man1 and shell completion in
// DIR/completion, made from the command tree itself so they cannot drift.
func gendocsCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR",
		Short:  "write man pages and shell completion scripts into DIR (for packaging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
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
			hdr := &doc.GenManHeader{Title: "CERTKEEPER", Section: "1", Source: "certkeeper " + version, Manual: "certkeeper manual"}
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
			fmt.Fprintf(e.stdout, "wrote %s and %s\n", man, comp)
			return nil
		},
	}
}
