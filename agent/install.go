package agent

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
)

// ReadInputs reads the files offered for a bundle. A symlink, a device or a
// FIFO is refused (someone could point certkeeper at a file it should not
// read), and so is a file over the 1 MiB limit.
func ReadInputs(paths []string) ([]rotate.Input, error) {
	var inputs []rotate.Input
	for _, p := range paths {
		data, err := readInput(p)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, rotate.Input{Name: filepath.Base(p), Data: data})
	}
	return inputs, nil
}

func readInput(p string) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symlink; give the file itself (certkeeper does not follow links in its inputs)", p)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", p, platform.FileType(fi.Mode()))
	}
	f, err := platform.OpenInput(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while being opened", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, pki.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) > pki.MaxFileSize {
		return nil, fmt.Errorf("%s: larger than the 1 MiB limit for certificate and key files", p)
	}
	return data, nil
}

// Install is `certkeeper install`: the delivery pipeline (Deliver) for
// files the admin gives by hand. Only when the live content changed, or
// when the live generation is still owed its reload or check (an agent
// killed before it ran), do the bundle's reload actions and check run.
func Install(ctx context.Context, b *Bundle, inputs []rotate.Input, source string, log *slog.Logger) (Outcome, error) {
	return Deliver(ctx, b, Delivery{Kind: ByHand, Inputs: inputs, From: source}, log)
}

// RollbackResult is what a rollback did.
type RollbackResult struct {
	From, To rotate.Generation
	Reloads  []platform.ReloadResult
	// Refused is what of the generation rolled away from is on the
	// refused list (RefusedCertificate, or RefusedSet when the leaf is the
	// same as the one rolled back to), so the agent will not pull it
	// again. RefuseErr says why it could not be put there; nothing is
	// recorded for a bundle without a certificate.
	Refused   string
	RefuseErr error
}

// Rollback makes the bundle's previous generation live and reloads.
func Rollback(ctx context.Context, b *Bundle, force bool, log *slog.Logger) (RollbackResult, error) {
	var r RollbackResult
	p := NewPipeline(b, log)
	if unlock, err := p.lockSettle(); err == nil {
		defer unlock()
	}
	m := p.M
	from, to, err := m.RollbackHook(force, func(from, to rotate.Generation) error {
		// The admin rolled away from this certificate (or, when the
		// leaf stays, from this set): the agent's next pull must not
		// bring it back from the admin host.
		r.Refused, r.RefuseErr = RefuseRolledAway(b, m, from, to, "rolled back by hand from "+from.Name, time.Now())
		return oweRollbackByHand(b, from, to, time.Now())
	})
	if err != nil {
		return RollbackResult{}, fmt.Errorf("bundle %q: %w", b.Name, err)
	}
	r.From, r.To = from, to
	log.Info("rolled back", "bundle", b.Name, "from", from.Name, "to", to.Name)
	r.Reloads = RunReloads(ctx, b, log)
	if err := paidOwed(b, to.Name, true, true); err != nil {
		log.Error("cannot record the rollback's reload as done; it may run again", "bundle", b.Name, "err", err)
	}
	return r, nil
}

// RunReloads runs every reload action of a bundle in order, logging each
// with its exit status and output.
func RunReloads(ctx context.Context, b *Bundle, log *slog.Logger) []platform.ReloadResult {
	var results []platform.ReloadResult
	for _, r := range b.Reload {
		res := platform.RunReload(ctx, r.Action())
		results = append(results, res)
		attrs := []any{"bundle", b.Name, "action", res.Action}
		if res.Err == nil || res.ExitCode != 0 {
			// An action that failed with no exit status never ran (no
			// pid file, no such service): "exit=0" would say it did.
			attrs = append(attrs, "exit", res.ExitCode)
		}
		attrs = append(attrs, "duration", res.Duration.Round(1e6))
		if res.Output != "" {
			attrs = append(attrs, "output", res.Output)
		}
		switch {
		case res.Skipped != "":
			log.Info("reload skipped", append(attrs, "why", res.Skipped)...)
		case res.Err != nil:
			log.Error("reload failed", append(attrs, "err", res.Err)...)
		default:
			log.Info("reloaded", attrs...)
		}
	}
	return results
}

// Action converts the config's reload entry.
func (r Reload) Action() platform.ReloadAction {
	t := r.Timeout.Duration
	if t == 0 {
		t = DefaultReloadTimeout
	}
	return platform.ReloadAction{Systemd: r.Systemd, WindowsService: r.WindowsService, Signal: r.Signal, Pidfile: r.Pidfile, Command: r.Command,
		Shell: r.Shell, OnlyIfRunning: r.OnlyIfRunning, Timeout: t}
}

// logRepaired logs what an install of unchanged content restored in the
// live directory, one line per drift, as the agent's own repairs are.
func logRepaired(log *slog.Logger, b *Bundle, repaired []rotate.Drift) {
	for _, d := range repaired {
		log.Info("repaired drift", "bundle", b.Name, "file", filepath.Join(b.Resolved.Dir, d.Name), "drift", string(d.Kind), "was", d.Detail)
	}
}
