package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certkeeper/certkeeper/demo"
)

// openPTY opens a real pseudo-terminal: the master, and the terminal a
// program writes to.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("cannot open the pseudo-terminal's side: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// demoLines prints what the demo prints (a section, a note, steps that
// pass and fail, the status table as it changes and when final) to o.
func demoLines(o *demoOutput) {
	rows := []demo.Row{{Node: "node-1", Layout: "flocker-node", RenewsBy: "push", Serial: "0a", NotAfter: time.Now().Add(time.Hour), RenewAt: time.Now().Add(30 * time.Minute)}}
	o.Section("a section")
	o.Status(rows, time.Now(), false)
	o.Note("a note")
	o.Step(true, "a step that passed")
	o.Step(false, "a step that failed\nand why")
	o.Status(rows, time.Now(), true)
}

var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// Colour is used only by the demo, only on a terminal, and never under
// NO_COLOR (https://no-color.org); output that is not a terminal has no
// escape sequence at all. The terminal here is a real pseudo-terminal.
func TestNoColor(t *testing.T) {
	onTTY := func(t *testing.T, plain bool) (*demoOutput, string) {
		m, tty := openPTY(t)
		o := newDemoOutput(tty, plain)
		read := make(chan string, 1)
		go func() {
			var b bytes.Buffer
			buf := make([]byte, 4096)
			for {
				n, err := m.Read(buf)
				b.Write(buf[:n])
				if err != nil || strings.Contains(b.String(), "END-OF-TEST") {
					break
				}
			}
			read <- b.String()
		}()
		demoLines(o)
		fmt.Fprintln(tty, "END-OF-TEST")
		select {
		case s := <-read:
			return o, s
		case <-time.After(10 * time.Second):
			t.Fatal("nothing read from the pseudo-terminal")
			return nil, ""
		}
	}

	t.Run("a terminal colours", func(t *testing.T) {
		t.Setenv("NO_COLOR", "")
		o, out := onTTY(t, false)
		if !o.live || !o.color || !strings.Contains(out, "\x1b[32mok  \x1b[0m") || !strings.Contains(out, "\x1b[31;1mFAIL\x1b[0m") {
			t.Fatalf("live %v color %v:\n%q", o.live, o.color, out)
		}
	})
	t.Run("NO_COLOR on a terminal", func(t *testing.T) {
		t.Setenv("NO_COLOR", "1")
		o, out := onTTY(t, false)
		if !o.live || o.color {
			t.Fatalf("live %v color %v, want a live table without colour", o.live, o.color)
		}
		if m := sgr.FindAllString(out, -1); len(m) > 0 {
			t.Fatalf("colour escapes under NO_COLOR: %q\n%q", m, out)
		}
		if !strings.Contains(out, "ok    a step that passed") || !strings.Contains(out, "FAIL  a step that failed") {
			t.Fatalf("the steps are missing:\n%q", out)
		}
	})
	t.Run("--non-interactive on a terminal", func(t *testing.T) {
		t.Setenv("NO_COLOR", "")
		o, out := onTTY(t, true)
		if o.live || o.color || strings.Contains(out, "\x1b") {
			t.Fatalf("live %v color %v:\n%q", o.live, o.color, out)
		}
	})
	t.Run("not a terminal", func(t *testing.T) {
		t.Setenv("NO_COLOR", "")
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var buf bytes.Buffer
		for _, dst := range []io.Writer{w, &buf} {
			o := newDemoOutput(dst, false)
			if o.live || o.color {
				t.Fatalf("%T: live %v color %v", dst, o.live, o.color)
			}
			demoLines(o)
		}
		w.Close()
		piped, _ := io.ReadAll(r)
		for _, out := range []string{string(piped), buf.String()} {
			if strings.Contains(out, "\x1b") || !strings.Contains(out, "ok    a step that passed") {
				t.Fatalf("output that is not a terminal:\n%q", out)
			}
		}
	})
}
