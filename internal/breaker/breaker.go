// Package breaker is the circuit-breaker state machine. It is pure: it knows
// nothing of Kubernetes, clocks or networks. Callers pass the recorded status,
// the policy from the spec, a probe outcome and the current time; the package
// returns the new status, the transition that happened (if any) and when the
// caller must act next. Everything it needs to resume is in Status, so a caller
// that persists Status loses nothing across restarts.
package breaker

import "time"

// State is the state of a circuit.
type State string

// The three states of a circuit.
const (
	Closed   State = "Closed"
	Open     State = "Open"
	HalfOpen State = "HalfOpen"
)

// Valid reports whether s is one of the three states.
func (s State) Valid() bool { return s == Closed || s == Open || s == HalfOpen }

// Reasons for transitions, in the CamelCase of Kubernetes condition reasons.
const (
	ReasonThresholdReached = "ThresholdReached"
	ReasonTrialFailed      = "TrialFailed"
	ReasonTimeoutElapsed   = "TimeoutElapsed"
	ReasonTrialsSucceeded  = "TrialsSucceeded"
	ReasonReset            = "Reset"
)

// Policy is the part of a breaker's spec that drives the state machine.
type Policy struct {
	// Threshold is the number of consecutive failures that opens a Closed circuit.
	Threshold int32
	// SuccessThreshold is the number of consecutive successes that closes a HalfOpen circuit.
	SuccessThreshold int32
	// Timeout is how long a circuit stays Open.
	Timeout time.Duration
}

// Status is what the state machine records between steps.
type Status struct {
	State                State
	ConsecutiveFailures  int32
	ConsecutiveSuccesses int32
	// LastTransitionTime is when State last changed.
	LastTransitionTime time.Time
	// OpenedAt and NextRetryTime are set only while Open.
	OpenedAt      time.Time
	NextRetryTime time.Time
}

// Transition is a change of state.
type Transition struct {
	From, To State
	Reason   string
}

// Start returns the status of a new breaker: Closed, no failures.
func Start(now time.Time) Status {
	return Status{State: Closed, LastTransitionTime: now}
}

// Observe applies one probe outcome. A result that arrives while the circuit is
// Open (a probe started before it opened) is ignored: Open sends no probes and
// counts nothing.
func Observe(s Status, p Policy, success bool, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	if s.State == Open {
		return s, nil
	}
	if success {
		s.ConsecutiveFailures = 0
		if s.State != HalfOpen {
			// Successes are counted only as trials; a Closed circuit has nothing to count.
			s.ConsecutiveSuccesses = 0
			return s, nil
		}
		s.ConsecutiveSuccesses = inc(s.ConsecutiveSuccesses)
		if s.ConsecutiveSuccesses >= max(p.SuccessThreshold, 1) {
			return moveTo(s, Closed, ReasonTrialsSucceeded, p, now)
		}
		return s, nil
	}
	s.ConsecutiveSuccesses = 0
	s.ConsecutiveFailures = inc(s.ConsecutiveFailures)
	switch {
	case s.State == HalfOpen:
		return moveTo(s, Open, ReasonTrialFailed, p, now)
	case s.ConsecutiveFailures >= max(p.Threshold, 1):
		return moveTo(s, Open, ReasonThresholdReached, p, now)
	}
	return s, nil
}

// Advance performs the timed move: an Open circuit whose openedAt + timeout has
// passed goes HalfOpen. It also re-derives nextRetryTime from openedAt and the
// current timeout, so that a changed timeout takes effect at once.
func Advance(s Status, p Policy, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	if s.State != Open {
		return s, nil
	}
	if s.OpenedAt.IsZero() {
		// An Open status that lost openedAt (edited by hand) restarts its timeout now.
		s.OpenedAt = now
	}
	s.NextRetryTime = s.OpenedAt.Add(p.Timeout)
	if now.Before(s.NextRetryTime) {
		return s, nil
	}
	return moveTo(s, HalfOpen, ReasonTimeoutElapsed, p, now)
}

// Reset returns the circuit to Closed with zero counters, as the reset
// annotation asks. The transition is nil when it was already Closed.
func Reset(s Status, p Policy, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	s.ConsecutiveFailures, s.ConsecutiveSuccesses = 0, 0
	if s.State == Closed {
		return s, nil
	}
	return moveTo(s, Closed, ReasonReset, p, now)
}

// WakeAfter is how long the caller may wait before the next timed move: the
// time left until nextRetryTime while Open, and zero (nothing timed) otherwise.
func WakeAfter(s Status, now time.Time) time.Duration {
	if s.State != Open || s.NextRetryTime.IsZero() {
		return 0
	}
	return max(s.NextRetryTime.Sub(now), time.Nanosecond)
}

// NextProbe says when the next probe is due, given when the last one started
// (zero if none is known). Open circuits send no probes (ok is false). A circuit
// that went HalfOpen after the last probe started sends its trial at once;
// otherwise probes start interval apart, whatever a probe's outcome did to the
// state (a circuit closed by its last trial, or reset by hand, keeps the cadence).
func NextProbe(s Status, lastStart time.Time, interval time.Duration, now time.Time) (at time.Time, ok bool) {
	if s.State == Open {
		return time.Time{}, false
	}
	if lastStart.IsZero() || (s.State == HalfOpen && s.LastTransitionTime.After(lastStart)) {
		return now, true
	}
	next := lastStart.Add(interval)
	if next.Before(now) {
		return now, true
	}
	return next, true
}

func moveTo(s Status, to State, reason string, p Policy, now time.Time) (Status, *Transition) {
	t := &Transition{From: s.State, To: to, Reason: reason}
	s.State = to
	s.LastTransitionTime = now
	s.OpenedAt, s.NextRetryTime = time.Time{}, time.Time{}
	switch to {
	case Open:
		s.ConsecutiveSuccesses = 0
		s.OpenedAt = now
		s.NextRetryTime = now.Add(p.Timeout)
	case Closed:
		s.ConsecutiveFailures, s.ConsecutiveSuccesses = 0, 0
	case HalfOpen:
		s.ConsecutiveSuccesses = 0
	}
	return s, t
}

// normalize repairs what a hand-edited or empty status may lack.
func normalize(s Status, now time.Time) Status {
	if !s.State.Valid() {
		s = Status{State: Closed, LastTransitionTime: now}
	}
	s.ConsecutiveFailures = max(s.ConsecutiveFailures, 0)
	s.ConsecutiveSuccesses = max(s.ConsecutiveSuccesses, 0)
	if s.State != Open {
		s.OpenedAt, s.NextRetryTime = time.Time{}, time.Time{}
	}
	return s
}

// inc adds one without overflowing.
func inc(n int32) int32 {
	if n == 1<<31-1 {
		return n
	}
	return n + 1
}
