package platform

import "io/fs"

// FileType names what a path is when a regular file was wanted, in the
// words the config and inventory errors use: "a directory", "a FIFO",
// "a socket", "a device", "a symlink", else the mode.
func FileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "mode " + m.String()
}
