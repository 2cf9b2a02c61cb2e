package authority

import (
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	cases := []struct {
		in   string
		want Window
		err  string
	}{
		{in: "40%", want: Window{Fraction: 0.40}},
		{in: "37.5%", want: Window{Fraction: 0.375}},
		{in: " 50 % ", want: Window{Fraction: 0.5}},
		{in: "30d", want: Window{Duration: 30 * day}},
		{in: "720h", want: Window{Duration: 720 * time.Hour}},
		{in: "1d12h", want: Window{Duration: 36 * time.Hour}},
		{in: "0%", err: "more than 0% and less than 100%"},
		{in: "100%", err: "more than 0% and less than 100%"},
		{in: "-5%", err: "more than 0% and less than 100%"},
		{in: "x%", err: "more than 0% and less than 100%"},
		{in: "0s", err: "a duration such as"},
		{in: "30", err: "a duration such as"},
		{in: "", err: "a duration such as"},
	}
	for _, c := range cases {
		got, err := ParseWindow(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseWindow(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want || got.Check() != nil {
			t.Errorf("ParseWindow(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

// A window as a fraction follows each certificate's lifetime; a duration
// means the same for every lifetime.
func TestWindowDue(t *testing.T) {
	cases := []struct {
		name string
		w    Window
		life time.Duration
		left time.Duration
		want bool
	}{
		{"40% of 90 days is 36 days: 37 left", Window{Fraction: 0.4}, 90 * day, 37 * day, false},
		{"40% of 90 days is 36 days: 36 left", Window{Fraction: 0.4}, 90 * day, 36 * day, true},
		{"40% of 30 seconds is 12 s: 13 left", Window{Fraction: 0.4}, 30 * time.Second, 13 * time.Second, false},
		{"40% of 30 seconds is 12 s: 11 left", Window{Fraction: 0.4}, 30 * time.Second, 11 * time.Second, true},
		{"30 days of a 90-day certificate: 31 left", Window{Duration: 30 * day}, 90 * day, 31 * day, false},
		{"30 days of a 90-day certificate: 30 left", Window{Duration: 30 * day}, 90 * day, 30 * day, true},
		{"30 days of a 7-day certificate: always", Window{Duration: 30 * day}, 7 * day, 7 * day, true},
		{"expired", Window{Fraction: 0.1}, 90 * day, -time.Second, true},
	}
	for _, c := range cases {
		nb := t0.Add(c.left - c.life)
		if got := c.w.Due(nb, nb.Add(c.life), t0); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if s := (Window{Fraction: 0.4}).String(); s != "40% of its lifetime" {
		t.Errorf("String() = %q", s)
	}
	for _, w := range []Window{{}, {Duration: day, Fraction: 0.1}, {Duration: -day}, {Fraction: 1}} {
		if w.Check() == nil {
			t.Errorf("%+v accepted", w)
		}
	}
}
