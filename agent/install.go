package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
		return nil, fmt.Errorf("%s is not a regular file (%s)", p, fi.Mode().Type())
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

// Outcome is what installing into a bundle did.
type Outcome struct {
	Bundle string
	Result rotate.Result
	Change
}

// Change is what followed an install that changed the live bundle: the
// reload actions, the bundle's check and, when the check failed, the
// rollback and its reloads.
type Change struct {
	Reloads []platform.ReloadResult
	// Check is the check command's run; nil when the bundle has none.
	Check *platform.ReloadResult
	// RolledBack: the check failed and From (the new generation) was
	// rolled back to To; RollbackReloads are the reloads after it.
	RolledBack      bool
	From, To        rotate.Generation
	RollbackReloads []platform.ReloadResult
	// RollbackErr is a rollback that was refused after a failed check:
	// the new bundle stayed live.
	RollbackErr error
}

// CheckFailed returns the check's error, nil when it passed or there is
// none.
func (c Change) CheckFailed() error {
	if c.Check == nil {
		return nil
	}
	return c.Check.Err
}

// Err is the failed check as the error of an install, naming what was done
// about it; nil when the check passed or there is none.
func (c Change) Err(b *Bundle, installed rotate.Generation) error {
	err := c.CheckFailed()
	switch {
	case err == nil:
		return nil
	case c.RolledBack:
		return fmt.Errorf("bundle %q: check failed after installing %s, rolled back to %s: %w", b.Name, installed.Name, c.To.Name, err)
	default:
		return fmt.Errorf("bundle %q: check failed after installing %s, and the rollback was refused (%v), so the new bundle stays live: %w", b.Name, installed.Name, c.RollbackErr, err)
	}
}

// applyChange is what follows every install that changed the live bundle,
// the same for the agent's loop and for install, pull and renew: the
// reload actions, then the bundle's check; when the check fails, the new
// certificate goes on the refused list (a source must not bring it back),
// the previous generation is made live again, and the reload actions run
// again.
func applyChange(ctx context.Context, b *Bundle, m *rotate.Manager, res rotate.Result, now func() time.Time, log *slog.Logger) Change {
	var c Change
	c.Reloads = RunReloads(ctx, b, log)
	if len(b.Check) == 0 {
		return c
	}
	cr := platform.RunReload(ctx, platform.ReloadAction{Command: b.Check, Timeout: b.CheckTimeout.Duration})
	c.Check = &cr
	attrs := []any{"bundle", b.Name, "command", strings.Join(b.Check, " "), "exit", cr.ExitCode, "duration", cr.Duration.Round(time.Millisecond)}
	if cr.Output != "" {
		attrs = append(attrs, "output", cr.Output)
	}
	if cr.Err == nil {
		log.Info("check passed", attrs...)
		return c
	}
	log.Error("check failed after the install; rolling back", append(attrs, "err", cr.Err)...)
	if leaf := res.Bundle.Leafish(); leaf != nil {
		if err := RefuseLeaf(b, leaf, "its check failed after the install and it was rolled back", now()); err != nil {
			log.Error("cannot record the certificate as refused; a source may offer it again", "bundle", b.Name, "err", err)
		}
	}
	from, to, err := m.Rollback(false)
	if err != nil {
		log.Error("rollback refused; the new bundle stays live", "bundle", b.Name, "err", err)
		c.RollbackErr = err
		return c
	}
	log.Warn("rolled back", "bundle", b.Name, "from", from.Name, "to", to.Name)
	c.RolledBack, c.From, c.To = true, from, to
	c.RollbackReloads = RunReloads(ctx, b, log)
	return c
}

// ReloadFailed reports whether any reload action failed.
func (o Outcome) ReloadFailed() error {
	var errs []error
	for _, r := range o.Reloads {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// Install runs inputs through the pipeline into a bundle and, only when the
// live content changed, runs the bundle's reload actions in order and its
// check, rolling back when the check fails (applyChange); the error then
// says so.
func Install(ctx context.Context, b *Bundle, inputs []rotate.Input, source string, log *slog.Logger) (Outcome, error) {
	m := rotate.NewManager(b.Spec())
	res, err := m.Install(inputs, source)
	out := Outcome{Bundle: b.Name, Result: res}
	if err != nil {
		// The caller reports it: a command prints it, the agent logs it
		// with the inbox it came from.
		return out, fmt.Errorf("bundle %q: %w", b.Name, err)
	}
	if !res.Changed {
		log.Info("bundle unchanged; no reload", "bundle", b.Name, "generation", res.Generation.Name)
		logRepaired(log, b, res.Repaired)
		return out, nil
	}
	log.Info("installed", "bundle", b.Name, "generation", res.Generation.Name, "dir", b.Resolved.Dir,
		"serial", pki.Serial(res.Bundle.Leafish()), "source", source)
	out.Change = applyChange(ctx, b, m, res, time.Now, log)
	return out, out.Err(b, res.Generation)
}

// RollbackResult is what a rollback did.
type RollbackResult struct {
	From, To rotate.Generation
	Reloads  []platform.ReloadResult
	// Refused: the certificate rolled away from is on the refused list,
	// so the agent will not pull it again. RefuseErr says why it could
	// not be put there; nothing is recorded for a bundle without a leaf.
	Refused   bool
	RefuseErr error
}

// Rollback makes the bundle's previous generation live and reloads.
func Rollback(ctx context.Context, b *Bundle, force bool, log *slog.Logger) (RollbackResult, error) {
	var r RollbackResult
	m := rotate.NewManager(b.Spec())
	live, _, _ := m.Live()
	from, to, err := m.Rollback(force)
	if err != nil {
		return r, fmt.Errorf("bundle %q: %w", b.Name, err)
	}
	r.From, r.To = from, to
	log.Info("rolled back", "bundle", b.Name, "from", from.Name, "to", to.Name)
	// The admin rolled away from this certificate: the agent's next pull
	// must not bring it back from the admin host.
	if live != nil && live.Leaf != nil {
		if r.RefuseErr = RefuseLeaf(b, live.Leaf, "rolled back by hand from "+from.Name, time.Now()); r.RefuseErr == nil {
			r.Refused = true
		}
	}
	r.Reloads = RunReloads(ctx, b, log)
	return r, nil
}

// RunReloads runs every reload action of a bundle in order, logging each
// with its exit status and output.
func RunReloads(ctx context.Context, b *Bundle, log *slog.Logger) []platform.ReloadResult {
	var results []platform.ReloadResult
	for _, r := range b.Reload {
		res := platform.RunReload(ctx, r.Action())
		results = append(results, res)
		attrs := []any{"bundle", b.Name, "action", res.Action, "exit", res.ExitCode, "duration", res.Duration.Round(1e6)}
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
