package main

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// argWords are the words a command's first argument completes to, for the
// commands whose first argument is one of a few words.
var argWords = map[string][]string{
	"ca rotate": {"start", "issue", "finish", "abort", "status"},
	"ca issue":  {"node", "control"},
	"service":   {"install", "uninstall", "start", "stop", "restart", "status"},
}

// flagWords are the values a flag completes to, whichever command has it.
func flagWords(name string) []string {
	switch name {
	case "key-type":
		var out []string
		for _, k := range pki.KeyTypes() {
			out = append(out, string(k))
		}
		return out
	case "layout":
		return rotate.Presets()
	case "reason":
		out := make([]string, 0, len(pki.Reasons))
		for n := range pki.Reasons {
			out = append(out, n)
		}
		sort.Strings(out)
		return out
	}
	return nil
}

// addCompletion teaches a command's cobra twin what its arguments and flag
// values complete to: fixed words, the config's bundle names for --bundle,
// and the inventory's node ids for --only (comma-separated).
func addCompletion(cc *cobra.Command, c *command) {
	if words, ok := argWords[c.name]; ok {
		cc.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return words, cobra.ShellCompDirectiveNoFileComp
		}
	}
	fixed := func(words []string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return words, cobra.ShellCompDirectiveNoFileComp
		}
	}
	for _, name := range []string{"key-type", "layout", "reason"} {
		if cc.Flags().Lookup(name) != nil {
			_ = cc.RegisterFlagCompletionFunc(name, fixed(flagWords(name)))
		}
	}
	if cc.Flags().Lookup("bundle") != nil && cc.Flags().Lookup("config") != nil {
		_ = cc.RegisterFlagCompletionFunc("bundle", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			cfg, err := agent.LoadConfig(cmd.Flags().Lookup("config").Value.String())
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []string
			for _, b := range cfg.Bundles {
				out = append(out, b.Name)
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		})
	}
	if cc.Flags().Lookup("only") != nil && cc.Flags().Lookup("inventory") != nil {
		_ = cc.RegisterFlagCompletionFunc("only", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			inv, err := distribute.LoadInventory(cmd.Flags().Lookup("inventory").Value.String())
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			// --only a,b,<TAB>: the ids given so far stay in front.
			done, given := "", map[string]bool{}
			if i := strings.LastIndex(toComplete, ","); i >= 0 {
				done = toComplete[:i+1]
				for _, id := range strings.Split(toComplete[:i], ",") {
					given[id] = true
				}
			}
			var out []string
			for _, n := range inv.Nodes {
				if !given[n.ID] {
					out = append(out, done+n.ID)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		})
	}
}
