//go:build unix

// Package sdnotifytest plays systemd's side of sd_notify(3) in tests: a
// real unix datagram socket to set as NOTIFY_SOCKET, and the messages
// that arrive on it.
package sdnotifytest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Socket is a listening notify socket.
type Socket struct {
	// Addr is the value for NOTIFY_SOCKET.
	Addr string
	conn *net.UnixConn
	seen []string
}

// Listen opens a socket in a temporary directory, closed when the test ends.
func Listen(t testing.TB) *Socket {
	t.Helper()
	// sun_path holds 108 bytes; t.TempDir() can be longer than that.
	dir, err := os.MkdirTemp("", "sdn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return listen(t, filepath.Join(dir, "notify"))
}

// ListenAbstract opens a socket in Linux's abstract namespace ("@name").
func ListenAbstract(t testing.TB, name string) *Socket {
	t.Helper()
	return listen(t, "@"+name)
}

func listen(t testing.TB, addr string) *Socket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Socket{Addr: addr, conn: conn}
}

// Env is the environment entry that points a process at the socket.
func (s *Socket) Env() string { return "NOTIFY_SOCKET=" + s.Addr }

// Next returns the next message, or an error when none comes within d.
func (s *Socket) Next(d time.Duration) (string, error) {
	buf := make([]byte, 8192)
	s.conn.SetReadDeadline(time.Now().Add(d))
	n, err := s.conn.Read(buf)
	if err != nil {
		return "", err
	}
	msg := string(buf[:n])
	s.seen = append(s.seen, msg)
	return msg, nil
}

// Expect reads messages until one has a line equal to want, and fails
// the test if none does within d. Messages before it (watchdog pings,
// say) are skipped and kept in Seen.
func (s *Socket) Expect(t testing.TB, want string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %q on NOTIFY_SOCKET within %s; got %q", want, d, s.seen)
		}
		msg, err := s.Next(left)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no %q on NOTIFY_SOCKET within %s; got %q", want, d, s.seen)
			}
			t.Fatal(err)
		}
		for _, line := range strings.Split(msg, "\n") {
			if line == want {
				return msg
			}
		}
	}
}

// Seen is every message read so far, in order.
func (s *Socket) Seen() []string { return s.seen }
