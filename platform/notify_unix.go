//go:build unix

package platform

import "net"

// sendNotify sends one datagram, as sd_notify(3) does. Go maps a leading
// "@" to Linux's abstract socket namespace.
func sendNotify(socket, state string) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
