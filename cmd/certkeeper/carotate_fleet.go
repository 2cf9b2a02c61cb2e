package main

import (
	"context"
	"time"

	"github.com/certkeeper/certkeeper/authority"
	"github.com/certkeeper/certkeeper/fleet"
)

// rotationInstalled reads the inventory's nodes' reports (as fleet status
// does) and returns the INSTALLED hook of `ca rotate status`; nil without
// an inventory.
func rotationInstalled(ctx context.Context, a *authority.Authority, inventory string) (authority.InstalledFunc, error) {
	if inventory == "" {
		return nil, nil
	}
	_, nodes, err := loadInventory(inventory, "")
	if err != nil {
		return nil, err
	}
	ca, err := fleet.LoadCA(a.Dir)
	if err != nil {
		return nil, err
	}
	st := fleet.Join(fleet.Collect(ctx, nodes, fleet.CollectOptions{}), ca, fleet.JoinOptions{Now: time.Now()})
	return fleet.RotationInstalled(st, ca), nil
}
