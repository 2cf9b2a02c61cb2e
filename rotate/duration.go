package rotate

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

var daysRe = regexp.MustCompile(`^(\d+)d(.*)$`)

// ParseDuration is time.ParseDuration plus a leading day count ("30d",
// "1d12h"), the unit certificate lifetimes are talked about in. The agent's
// config and the CA's commands (`ca renew --within 30d`) both read it.
func ParseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if m := daysRe.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("duration %q: day count out of range", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		if m[2] == "" {
			return days, nil
		}
		s = m[2]
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: \"720h\", \"30d\", \"1h30m\")", s)
	}
	return days + d, nil
}
