package breakerclient

import (
	"errors"
	"fmt"
	"time"
)

// ErrOpen matches (with errors.Is) the error Call returns when it rejects a
// call without running it.
var ErrOpen = errors.New("circuit open")

// ErrUnknown matches the error Call returns for a breaker it does not know
// when Options.FailClosedWhenUnknown is set; that error matches ErrOpen too.
var ErrUnknown = errors.New("breaker unknown")

// OpenError is the error of a rejected call.
type OpenError struct {
	// Breaker is the breaker's namespace/name.
	Breaker string
	// State is why the call was rejected: StateOpen, StateHalfOpen, or
	// StateUnknown with Options.FailClosedWhenUnknown.
	State State
	// Local is true when failures counted in this process opened the circuit.
	Local bool
	// RetryAt is when the circuit is due to leave Open: the breaker's
	// status.nextRetryTime, or the end of a local opening. Zero when not known.
	RetryAt time.Time
}

// Error says which breaker rejected the call and until when.
func (e *OpenError) Error() string {
	switch {
	case e.State == StateUnknown:
		return fmt.Sprintf("circuit open: breaker %s is unknown and unknown breakers fail closed", e.Breaker)
	case e.Local:
		return fmt.Sprintf("circuit open: breaker %s opened locally until %s", e.Breaker, e.RetryAt.UTC().Format(time.RFC3339))
	case e.State == StateHalfOpen:
		return fmt.Sprintf("circuit open: breaker %s is HalfOpen, trial probes decide", e.Breaker)
	case e.RetryAt.IsZero():
		return fmt.Sprintf("circuit open: breaker %s is Open", e.Breaker)
	}
	return fmt.Sprintf("circuit open: breaker %s is Open until %s", e.Breaker, e.RetryAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrOpen) true, and errors.Is(err, ErrUnknown) for
// unknown breakers.
func (e *OpenError) Is(target error) bool {
	return target == ErrOpen || (target == ErrUnknown && e.State == StateUnknown)
}

// RetryAfter is how long after now the circuit is due to leave Open; zero
// when that is not known or already past.
func (e *OpenError) RetryAfter(now time.Time) time.Duration {
	if e.RetryAt.IsZero() || !e.RetryAt.After(now) {
		return 0
	}
	return e.RetryAt.Sub(now)
}
