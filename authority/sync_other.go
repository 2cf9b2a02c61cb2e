//go:build !linux

package authority

import (
	"errors"
	"os"
)

// canSyncFS: elsewhere every file and directory is fsynced on its own.
const canSyncFS = false

func syncFS(*os.File) error { return errors.New("syncfs is Linux only") }
