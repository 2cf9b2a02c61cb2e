package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
	"github.com/certkeeper/certkeeper/fleet"
	"github.com/certkeeper/certkeeper/pki"
)

func waveSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, usagef("--wave %q: give positive wave sizes, as 10,50", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// stagedPush is push --canary/--wave.
func stagedPush(ctx context.Context, e *env, nodes []distribute.Node, caDir string, concurrency, canary int, sizes []int, wait time.Duration, asJSON bool) error {
	waves := fleet.PlanWaves(len(nodes), canary, sizes)
	out, err := fleet.Rollout(ctx, nodes, fleet.RolloutOptions{
		Push:   distribute.PushOptions{CADir: caDir, Concurrency: concurrency},
		Canary: canary, Waves: sizes, Wait: wait,
		Want: func(n distribute.Node) (fleet.Want, error) {
			p := filepath.Join(caDir, "nodes", n.ID, "node.crt")
			data, err := os.ReadFile(p)
			if err != nil {
				return fleet.Want{}, fmt.Errorf("node %s: %w (issue the node's certificate first: certkeeper ca issue)", n.ID, err)
			}
			b, err := pki.Parse(data)
			if err != nil || len(b.Certificates) == 0 {
				return fleet.Want{}, fmt.Errorf("%s: not a certificate: %v", p, err)
			}
			return fleet.Want{Serial: pki.Serial(b.Certificates[0])}, nil
		},
		WaveDone: func(w int, part []fleet.NodeOutcome) {
			if asJSON {
				return
			}
			ok := 0
			for _, o := range part {
				if o.Outcome == fleet.OutcomeConfirmed {
					ok++
				}
			}
			fmt.Fprintf(e.stdout, "wave %d of %d: %d node(s), %d confirmed\n", w+1, len(waves), len(part), ok)
		},
	})
	if asJSON {
		writeJSON(e, struct {
			Nodes   []fleet.NodeOutcome `json:"nodes"`
			Stopped bool                `json:"stopped"`
		}{out, err != nil})
	} else {
		w := e.stdout
		if err != nil {
			w = e.stderr
		}
		fleet.WriteOutcomes(w, out)
	}
	if errors.Is(err, fleet.ErrRolloutStopped) {
		fmt.Fprintf(e.stderr, "certkeeper push: %v: nodes marked not-pushed still have their old bundle; fix the failed node and run the push again\n", err)
		return exitError(exitFailure)
	}
	return err
}
