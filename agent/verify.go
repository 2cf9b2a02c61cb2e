package agent

import (
	"fmt"

	"github.com/certkeeper/certkeeper/pki"
	"github.com/certkeeper/certkeeper/rotate"
)

// Verification is what `certkeeper verify` judges: files read, classified
// and validated as one bundle under a layout's rules. Nothing is installed.
type Verification struct {
	// Candidate is the files by role, as classified.
	Candidate *rotate.Candidate
	// Bundle is the validated bundle; nil when Invalid is set.
	Bundle *rotate.Bundle
	// Invalid says why the files do not form a valid bundle.
	Invalid error
}

// Verify reads files and, when caFile is set, the cluster CA to trust, and
// validates the files as one bundle under p, the way an install would. The
// error is for files that could not be read; files that read but do not
// form a valid bundle give a Verification with Invalid set.
func Verify(files []string, caFile string, p rotate.Policy) (*Verification, error) {
	inputs, err := ReadInputs(files)
	if err != nil {
		return nil, err
	}
	var live *rotate.Bundle
	if caFile != "" {
		in, err := ReadInputs([]string{caFile})
		if err != nil {
			return nil, err
		}
		parsed, err := pki.Parse(in[0].Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caFile, err)
		}
		if len(parsed.Certificates) == 0 {
			return nil, fmt.Errorf("%s: no certificate", caFile)
		}
		live = &rotate.Bundle{CAs: parsed.Certificates}
	}
	v := &Verification{Candidate: rotate.Classify(inputs)}
	v.Bundle, v.Invalid = rotate.Validate(v.Candidate, p, live)
	if v.Invalid != nil {
		v.Bundle = nil
	}
	return v, nil
}
