package breaker

import (
	"fmt"
	"testing"
	"time"
)

// The operations FuzzMachine decodes from its input, one byte each, some
// followed by an argument byte.
const (
	opSuccess          = iota // Observe a success
	opFailure                 // Observe a failure
	opSleep                   // move the clock forward by arg*250ms (0 to 63.75s)
	opAdvance                 // Advance
	opReset                   // Reset
	opThreshold               // Threshold = 1 + arg%8, or 1000 when arg is 255
	opSuccessThreshold        // SuccessThreshold = 1 + arg%4, or 100 when arg is 255
	opTimeout                 // Timeout = 1s + arg*500ms (1s to 128.5s), or 24h when arg is 255
	opSleepToRetry            // move the clock to nextRetryTime, or just before it when arg is odd
	numOps
)

// machine is the state FuzzMachine drives: the status, the policy in force and
// the clock, with the status before the last step to judge transitions by.
type machine struct {
	t      *testing.T
	p      Policy
	now    time.Time
	s      Status
	prev   Status
	tr     *Transition
	step   int
	trace  []string
	timeIn time.Time
}

// FuzzMachine drives the state machine through arbitrary sequences of results,
// clock moves, timed advances, resets and policy changes within the ranges the
// CRD admits, and checks after every step what must always hold.
func FuzzMachine(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{opFailure, opFailure, opFailure, opFailure, opFailure})
	// Open, wait out the timeout, fail the trial, wait again, pass three trials.
	f.Add([]byte{
		opSuccessThreshold, 2, opFailure, opFailure, opFailure, opFailure, opFailure,
		opSleepToRetry, 1, opAdvance, opSleepToRetry, 0, opAdvance, opFailure,
		opSleepToRetry, 0, opAdvance, opSuccess, opSuccess, opSuccess,
	})
	// Lower the threshold below the count, then fail once more.
	f.Add([]byte{opThreshold, 7, opFailure, opFailure, opFailure, opFailure, opThreshold, 0, opAdvance, opFailure})
	// Change the timeout while open, both ways.
	f.Add([]byte{
		opThreshold, 0, opFailure, opSleep, 20, opTimeout, 255, opAdvance,
		opTimeout, 0, opAdvance, opSuccess,
	})
	// Reset from every state.
	f.Add([]byte{
		opReset, opThreshold, 0, opFailure, opReset, opFailure, opSleep, 255,
		opAdvance, opReset, opFailure, opSleepToRetry, 0, opAdvance, opSuccessThreshold, 255, opSuccess, opReset,
	})
	// Results that arrive while open are ignored.
	f.Add([]byte{opThreshold, 0, opFailure, opSuccess, opSuccess, opFailure, opSleep, 3, opSuccess, opAdvance})

	f.Fuzz(func(t *testing.T, ops []byte) {
		m := &machine{
			t:   t,
			p:   Policy{Threshold: 5, SuccessThreshold: 1, Timeout: 60 * time.Second},
			now: now,
		}
		m.s = Start(m.now)
		m.timeIn = m.now
		m.check("Start", -1)
		for i := 0; i < len(ops); i++ {
			op := int(ops[i]) % numOps
			arg := byte(0)
			if takesArg(op) {
				if i+1 < len(ops) {
					i++
					arg = ops[i]
				}
			}
			m.apply(op, arg)
		}
	})
}

func takesArg(op int) bool {
	switch op {
	case opSleep, opThreshold, opSuccessThreshold, opTimeout, opSleepToRetry:
		return true
	}
	return false
}

func (m *machine) apply(op int, arg byte) {
	m.prev, m.tr = m.s, nil
	var name string
	switch op {
	case opSuccess:
		name = "Observe(success)"
		m.s, m.tr = Observe(m.s, m.p, Outcome{Success: true}, m.now)
	case opFailure:
		name = "Observe(failure)"
		m.s, m.tr = Observe(m.s, m.p, Outcome{}, m.now)
	case opSleep:
		d := time.Duration(arg) * 250 * time.Millisecond
		name = fmt.Sprintf("sleep %v", d)
		m.now = m.now.Add(d)
	case opAdvance:
		name = "Advance"
		m.s, m.tr = Advance(m.s, m.p, m.now)
	case opReset:
		name = "Reset"
		m.s, m.tr = Reset(m.s, m.p, m.now)
	case opThreshold:
		m.p.Threshold = 1 + int32(arg%8)
		if arg == 255 {
			m.p.Threshold = 1000
		}
		name = fmt.Sprintf("threshold=%d", m.p.Threshold)
	case opSuccessThreshold:
		m.p.SuccessThreshold = 1 + int32(arg%4)
		if arg == 255 {
			m.p.SuccessThreshold = 100
		}
		name = fmt.Sprintf("successThreshold=%d", m.p.SuccessThreshold)
	case opTimeout:
		m.p.Timeout = time.Second + time.Duration(arg)*500*time.Millisecond
		if arg == 255 {
			m.p.Timeout = 24 * time.Hour
		}
		name = fmt.Sprintf("timeout=%v", m.p.Timeout)
	case opSleepToRetry:
		name = "sleep to nextRetryTime"
		if m.s.NextRetryTime.After(m.now) {
			m.now = m.s.NextRetryTime
			if arg%2 == 1 {
				m.now = m.now.Add(-time.Nanosecond)
				name += " - 1ns"
			}
		}
	}
	m.check(name, op)
}

func (m *machine) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("step %d: %s\nafter %v\npolicy %+v, now %v\nbefore %+v\nafter  %+v\ntransition %+v",
		m.step, fmt.Sprintf(format, args...), m.trace, m.p, m.now, m.prev, m.s, m.tr)
}

// check asserts what holds after every step, and what holds after the
// particular operation op (-1 for Start).
func (m *machine) check(name string, op int) {
	m.t.Helper()
	m.step++
	m.trace = append(m.trace, name)
	s, prev := m.s, m.prev

	// Always.
	if !s.State.Valid() {
		m.fail("invalid state %q", s.State)
	}
	if s.ConsecutiveFailures < 0 || s.ConsecutiveSuccesses < 0 {
		m.fail("negative counter")
	}
	if s.ConsecutiveFailures > 0 && s.ConsecutiveSuccesses > 0 {
		m.fail("both failures and successes are counted")
	}
	if s.State == Closed && s.ConsecutiveSuccesses != 0 {
		m.fail("closed with successes counted: only half-open trials are counted")
	}
	if s.LastTransitionTime.IsZero() || s.LastTransitionTime.After(m.now) || s.LastTransitionTime.Before(m.timeIn) {
		m.fail("lastTransitionTime %v outside [%v, now]", s.LastTransitionTime, m.timeIn)
	}
	if s.State == Open {
		if s.OpenedAt.IsZero() || s.NextRetryTime.IsZero() {
			m.fail("open without openedAt or nextRetryTime")
		}
		if s.OpenedAt.After(m.now) {
			m.fail("openedAt in the future")
		}
		if s.ConsecutiveSuccesses != 0 {
			m.fail("open with successes counted")
		}
		if s.ConsecutiveFailures == 0 {
			m.fail("open without a failure counted")
		}
		if want := max(s.NextRetryTime.Sub(m.now), time.Nanosecond); WakeAfter(s, m.now) != want {
			m.fail("WakeAfter = %v, want %v", WakeAfter(s, m.now), want)
		}
		if _, ok := NextProbe(s, m.now.Add(-time.Second), time.Second, m.now); ok {
			m.fail("an open circuit asks for a probe")
		}
	} else {
		if !s.OpenedAt.IsZero() || !s.NextRetryTime.IsZero() {
			m.fail("%s with openedAt or nextRetryTime set", s.State)
		}
		if WakeAfter(s, m.now) != 0 {
			m.fail("WakeAfter = %v outside Open", WakeAfter(s, m.now))
		}
		m.checkNextProbe()
	}

	if op < 0 {
		return
	}
	// Transitions are reported exactly when the state changes, with a reason
	// that belongs to the move, and stamp lastTransitionTime.
	if (m.tr != nil) != (s.State != prev.State) {
		m.fail("transition reported %v but state went %s -> %s", m.tr != nil, prev.State, s.State)
	}
	if m.tr != nil {
		if m.tr.From != prev.State || m.tr.To != s.State {
			m.fail("transition %s -> %s does not match the states", m.tr.From, m.tr.To)
		}
		if want := reasonFor(op, m.tr.From, m.tr.To); m.tr.Reason != want {
			m.fail("reason %q, want %q", m.tr.Reason, want)
		}
		if !s.LastTransitionTime.Equal(m.now) {
			m.fail("transition without lastTransitionTime = now")
		}
		if s.State == Open && (!s.OpenedAt.Equal(m.now) || !s.NextRetryTime.Equal(m.now.Add(m.p.Timeout))) {
			m.fail("opened without openedAt = now and nextRetryTime = now + timeout")
		}
	} else if !s.LastTransitionTime.Equal(prev.LastTransitionTime) {
		m.fail("lastTransitionTime moved without a transition")
	}

	switch op {
	case opSuccess, opFailure:
		switch {
		case prev.State == Open:
			if s != prev {
				m.fail("a result changed an open circuit")
			}
		case s.State == Closed && m.tr == nil:
			if s.ConsecutiveFailures >= max(m.p.Threshold, 1) {
				m.fail("closed at or over the threshold after a result that did not open it")
			}
			if op == opFailure && s.ConsecutiveFailures != prev.ConsecutiveFailures+1 {
				m.fail("a failure was not counted once")
			}
			if op == opSuccess && s.ConsecutiveFailures != 0 {
				m.fail("a success did not clear the failures")
			}
		case s.State == HalfOpen:
			if op != opSuccess || s.ConsecutiveFailures != 0 || s.ConsecutiveSuccesses != prev.ConsecutiveSuccesses+1 {
				m.fail("half-open after a result that was not a counted success")
			}
			if s.ConsecutiveSuccesses >= max(m.p.SuccessThreshold, 1) {
				m.fail("half-open at or over the success threshold")
			}
		case prev.State == HalfOpen:
			if (op == opSuccess) != (s.State == Closed) {
				m.fail("half-open %s led to %s", opName(op), s.State)
			}
		}
	case opAdvance:
		if s.State == Open {
			if !s.NextRetryTime.Equal(s.OpenedAt.Add(m.p.Timeout)) {
				m.fail("nextRetryTime %v is not openedAt + timeout after Advance", s.NextRetryTime)
			}
			if !m.now.Before(s.NextRetryTime) {
				m.fail("still open at or after nextRetryTime")
			}
			if !s.OpenedAt.Equal(prev.OpenedAt) {
				m.fail("Advance moved openedAt")
			}
		}
		if prev.State != Open && s != prev {
			m.fail("Advance changed a %s circuit", prev.State)
		}
		if m.tr != nil && s.ConsecutiveSuccesses != 0 {
			m.fail("half-open entered with successes counted")
		}
	case opReset:
		if s.State != Closed || s.ConsecutiveFailures != 0 || s.ConsecutiveSuccesses != 0 {
			m.fail("Reset did not leave a closed circuit with zero counters")
		}
	default:
		if s != prev {
			m.fail("%s changed the status", opName(op))
		}
	}
}

// checkNextProbe asserts NextProbe's rules for a circuit that may be probed.
func (m *machine) checkNextProbe() {
	const interval = 10 * time.Second
	s := m.s
	for _, lastStart := range []time.Time{
		{}, s.LastTransitionTime.Add(-time.Nanosecond), s.LastTransitionTime,
		s.LastTransitionTime.Add(time.Nanosecond), m.now.Add(-interval), m.now,
	} {
		at, ok := NextProbe(s, lastStart, interval, m.now)
		if !ok {
			m.fail("%s circuit asks for no probe", s.State)
		}
		if at.Before(m.now) {
			m.fail("next probe %v is in the past", at)
		}
		fresh := lastStart.IsZero() || (s.State == HalfOpen && s.LastTransitionTime.After(lastStart))
		if fresh && !at.Equal(m.now) {
			m.fail("a circuit not probed since its transition (last start %v) waits until %v", lastStart, at)
		}
		if !fresh && !at.Equal(maxTime(lastStart.Add(interval), m.now)) {
			m.fail("next probe %v is not one interval after %v", at, lastStart)
		}
	}
}

func reasonFor(op int, from, to State) string {
	switch {
	case op == opReset:
		return ReasonReset
	case from == Closed && to == Open:
		return ReasonThresholdReached
	case from == HalfOpen && to == Open:
		return ReasonTrialFailed
	case from == Open && to == HalfOpen:
		return ReasonTimeoutElapsed
	case from == HalfOpen && to == Closed:
		return ReasonTrialsSucceeded
	}
	return fmt.Sprintf("no move %s -> %s by %s", from, to, opName(op))
}

func opName(op int) string {
	return [...]string{
		"success", "failure", "sleep", "Advance", "Reset", "threshold", "successThreshold", "timeout", "sleep to retry",
	}[op]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
