package agent

import "io/fs"

const openNonblock = 0

// checkInboxOwner: Windows has no owner or mode bits in fs.FileInfo; the
// inbox's ACL is what the installer sets.
func checkInboxOwner(fs.FileInfo, string, string) error { return nil }

func checkAncestors(string, string) error { return nil }

func shareInbox(string, string) error { return nil }
