package breaker

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// The operations FuzzMachine decodes from its input, one byte each, some
// followed by argument bytes. A byte below 128 is one of the first numOldOps
// operations (byte % numOldOps), so that the seeds committed before the newer
// operations keep their meaning; a byte from 128 up is one of the newer ones.
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
	numOldOps
)

const (
	opSlowSuccess = numOldOps + iota // Observe a success that took arg*50ms
	opRate                           // FailureRate: nil when arg0 is 0, else window 2+arg0%99, minimumProbes arg1%(window+1), percent 1+arg2%100
	opSlowProbe                      // SlowProbe = arg*50ms (0 is off)
	opBackoff                        // Backoff: nil when arg0 is 0, else multiplier 1+arg0%10, maxTimeout timeout+arg1*10s (at most 24h), jitter arg2%51
	opSeed                           // Seed derived from arg
	opMode                           // Mode = Auto, ForcedOpen, ForcedClosed or "" by arg%4, then ApplyMode
	opApplyMode                      // ApplyMode again: nothing may change
	opTrip                           // Trip until now + (arg-32)*2s: ignored when not after now
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
	// latency, until and tripped are the arguments and result of the last
	// slow success and trip.
	latency time.Duration
	until   time.Time
	tripped bool
	// history is the model of the rate window: every probe recorded since the
	// circuit last started counting (true: failed), in full, oldest first;
	// probed is it with the last observed probe, before a transition or a
	// would-be opening starts the count afresh.
	history, probed []bool
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
	// Open by rate, fail trials under backoff with jitter, close.
	f.Add(newOps(
		opThreshold, 255, opRate, 9, 4, 49, opBackoff, 1, 30, 25, opSeed, 7,
		opFailure, opSuccess, opFailure, opSuccess, opFailure, opSuccess, opFailure, opSuccess, opFailure, opSuccess, opFailure,
		opSleepToRetry, 0, opAdvance, opFailure, opAdvance, opSleepToRetry, 0, opAdvance, opFailure,
		opSleepToRetry, 0, opAdvance, opSuccess, opSuccess, opSuccess,
	))
	// Slow successes open; every mode from every state; trips.
	f.Add(newOps(
		opSlowProbe, 4, opSlowSuccess, 1, opSlowSuccess, 5, opSlowSuccess, 9, opSlowSuccess, 20, opSlowSuccess, 90,
		opMode, 1, opAdvance, opSuccess, opReset, opTrip, 200, opApplyMode, opMode, 0, opFailure, opMode, 2,
		opFailure, opFailure, opFailure, opFailure, opFailure, opFailure, opSuccess, opFailure, opTrip, 99, opMode, 3,
		opTrip, 10, opTrip, 90, opSleepToRetry, 1, opAdvance, opSleepToRetry, 0, opAdvance, opMode, 1, opMode, 2,
	))

	// The rate counts the successes before the first failure: 3 failures after
	// 7 successes are 30 % of 10 and do not open; two more (5 of 10) do.
	f.Add(newOps(
		opThreshold, 255, opRate, 8, 3, 49,
		opSuccess, opSuccess, opSuccess, opSuccess, opSuccess, opSuccess, opSuccess,
		opFailure, opFailure, opFailure, opFailure, opFailure,
	))
	// A full window slides, a shorter one is set, a longer one, and reset.
	f.Add(newOps(
		opThreshold, 255, opRate, 2, 4, 49, opFailure, opSuccess, opSuccess, opSuccess, opFailure, opFailure,
		opSuccess, opSuccess, opSuccess, opSuccess, opSuccess, opRate, 1, 0, 99, opFailure, opSuccess,
		opRate, 40, 2, 9, opSuccess, opFailure, opReset, opSuccess, opFailure, opFailure,
	))

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
			op := decodeOp(ops[i])
			var args [3]byte
			for j := range numArgs(op) {
				if i+1 < len(ops) {
					i++
					args[j] = ops[i]
				}
			}
			m.apply(op, args)
		}
	})
}

func decodeOp(b byte) int {
	if b < 128 {
		return int(b) % numOldOps
	}
	return numOldOps + int(b-128)%(numOps-numOldOps)
}

// newOps encodes operations for f.Add, each followed by its argument bytes,
// which are kept as they are; the newer operations are written from 128 up.
func newOps(ops ...int) []byte {
	b := make([]byte, 0, len(ops))
	for i := 0; i < len(ops); i++ {
		op := ops[i]
		if op >= numOldOps {
			b = append(b, byte(128+op-numOldOps))
		} else {
			b = append(b, byte(op))
		}
		for range numArgs(op) {
			if i+1 < len(ops) {
				i++
				b = append(b, byte(ops[i]))
			}
		}
	}
	return b
}

func numArgs(op int) int {
	switch op {
	case opSleep, opThreshold, opSuccessThreshold, opTimeout, opSleepToRetry,
		opSlowSuccess, opSlowProbe, opSeed, opMode, opTrip:
		return 1
	case opRate, opBackoff:
		return 3
	}
	return 0
}

func (m *machine) apply(op int, args [3]byte) {
	m.prev, m.tr = m.s, nil
	arg := args[0]
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
	case opSlowSuccess:
		m.latency = time.Duration(arg) * 50 * time.Millisecond
		name = fmt.Sprintf("Observe(success in %v)", m.latency)
		m.s, m.tr = Observe(m.s, m.p, Outcome{Success: true, Latency: m.latency}, m.now)
	case opRate:
		m.p.FailureRate = nil
		if arg != 0 {
			w := 2 + int32(arg%99)
			m.p.FailureRate = &RatePolicy{Window: w, MinimumProbes: int32(args[1]) % (w + 1), Percent: 1 + int32(args[2]%100)}
			name = fmt.Sprintf("failureRate=%+v", *m.p.FailureRate)
		} else {
			name = "failureRate=nil"
		}
	case opSlowProbe:
		m.p.SlowProbe = time.Duration(arg) * 50 * time.Millisecond
		name = fmt.Sprintf("slowProbe=%v", m.p.SlowProbe)
	case opBackoff:
		m.p.Backoff = nil
		if arg != 0 {
			m.p.Backoff = &Backoff{
				Multiplier:    1 + int32(arg%10),
				MaxTimeout:    min(m.p.Timeout+time.Duration(args[1])*10*time.Second, 24*time.Hour),
				JitterPercent: int32(args[2] % 51),
			}
			name = fmt.Sprintf("backoff=%+v", *m.p.Backoff)
		} else {
			name = "backoff=nil"
		}
	case opSeed:
		m.p.Seed = uint64(arg) * 0x9e3779b97f4a7c15
		name = fmt.Sprintf("seed=%#x", m.p.Seed)
	case opMode:
		m.p.Mode = [...]Mode{ModeAuto, ModeForcedOpen, ModeForcedClosed, ""}[arg%4]
		name = fmt.Sprintf("mode=%q, ApplyMode", m.p.Mode)
		m.s, m.tr = ApplyMode(m.s, m.p, m.now)
	case opApplyMode:
		name = "ApplyMode"
		m.s, m.tr = ApplyMode(m.s, m.p, m.now)
	case opTrip:
		m.until = m.now.Add(time.Duration(int(arg)-32) * 2 * time.Second)
		name = fmt.Sprintf("Trip until now%+v", m.until.Sub(m.now))
		m.s, m.tr, m.tripped = Trip(m.s, m.p, m.until, m.now)
	}
	m.probed = m.history
	if (op == opSuccess || op == opFailure || op == opSlowSuccess) && m.prev.State == Closed && !m.prev.WouldBeOpen {
		success := op == opSuccess || (op == opSlowSuccess && !Slow(m.p, Outcome{Success: true, Latency: m.latency}))
		m.probed = append(m.history[:len(m.history):len(m.history)], !success)
	}
	m.check(name, op)
	m.history = m.probed
	_, wouldOpen := WouldOpen(m.prev, m.s, m.p)
	switch {
	case m.p.FailureRate == nil || m.tr != nil || op == opReset || wouldOpen:
		m.history = nil
	case op == opRate:
		// What the status kept of the probes before is all a new policy can
		// judge by: its leading successes, then its window.
		m.history = make([]bool, m.s.Leading)
		for _, b := range m.s.Window {
			m.history = append(m.history, b == 'F')
		}
	}
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
	forcedOpen := s.Forced == ModeForcedOpen
	tripped := !s.TrippedUntil.IsZero()

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
	m.checkNewFields()
	if s.State == Open {
		if s.OpenedAt.IsZero() || s.NextRetryTime.IsZero() != forcedOpen {
			m.fail("open without openedAt, or with nextRetryTime set %v while forced open %v", !s.NextRetryTime.IsZero(), forcedOpen)
		}
		if s.OpenedAt.After(m.now) {
			m.fail("openedAt in the future")
		}
		if s.ConsecutiveSuccesses != 0 {
			m.fail("open with successes counted")
		}
		if s.ConsecutiveFailures == 0 && !forcedOpen && !tripped {
			m.fail("open without a failure counted")
		}
		want := max(s.NextRetryTime.Sub(m.now), time.Nanosecond)
		if forcedOpen {
			want = 0
		}
		if WakeAfter(s, m.now) != want {
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
		if want := m.reasonFor(op, m.tr.From, m.tr.To); m.tr.Reason != want {
			m.fail("reason %q, want %q", m.tr.Reason, want)
		}
		if !s.LastTransitionTime.Equal(m.now) {
			m.fail("transition without lastTransitionTime = now")
		}
		if s.Last != *m.tr {
			m.fail("last transition %+v is not the transition %+v", s.Last, *m.tr)
		}
		if s.State == Open {
			if !s.OpenedAt.Equal(m.now) {
				m.fail("opened without openedAt = now")
			}
			switch {
			case forcedOpen:
			case tripped:
				if !s.NextRetryTime.Equal(m.until) {
					m.fail("tripped without nextRetryTime = the trip time")
				}
			default:
				m.checkRetryTime()
			}
		}
	} else if !s.LastTransitionTime.Equal(prev.LastTransitionTime) || s.Last != prev.Last {
		m.fail("lastTransitionTime or the last transition moved without a transition")
	}
	switch {
	case m.tr != nil && m.tr.Reason == ReasonTrialFailed:
		if s.Reopens != inc(prev.Reopens) {
			m.fail("a failed trial did not count one reopen")
		}
	case s.State == Closed || op == opReset:
		if s.Reopens != 0 {
			m.fail("closed or reset with reopens %d", s.Reopens)
		}
	case s.Reopens != prev.Reopens:
		m.fail("reopens went %d -> %d without a failed trial", prev.Reopens, s.Reopens)
	}

	switch op {
	case opSuccess, opFailure, opSlowSuccess:
		m.checkObserve(op)
	case opAdvance:
		if s.State == Open {
			switch {
			case forcedOpen:
			case tripped:
				if !s.NextRetryTime.Equal(s.TrippedUntil) {
					m.fail("tripped nextRetryTime %v is not the trip time after Advance", s.NextRetryTime)
				}
			default:
				m.checkRetryTime()
			}
			if !forcedOpen && !m.now.Before(s.NextRetryTime) {
				m.fail("still open at or after nextRetryTime")
			}
			if !s.OpenedAt.Equal(prev.OpenedAt) {
				m.fail("Advance moved openedAt")
			}
			if again, _ := Advance(s, m.p, m.now); again != s {
				m.fail("Advance again changed the status: %+v", again)
			}
		}
		if prev.State != Open && s != prev {
			m.fail("Advance changed a %s circuit", prev.State)
		}
		if m.tr != nil && s.ConsecutiveSuccesses != 0 {
			m.fail("half-open entered with successes counted")
		}
	case opReset:
		want := Closed
		if m.p.Mode == ModeForcedOpen {
			want = Open
		}
		if s.State != want || s.ConsecutiveFailures != 0 || s.ConsecutiveSuccesses != 0 || s.Window != "" || s.WouldBeOpen || tripped {
			m.fail("Reset did not leave a %s circuit with zero counters, no window and no trip", want)
		}
	case opMode, opApplyMode:
		if op == opApplyMode && s != prev {
			m.fail("ApplyMode again changed the status")
		}
	case opTrip:
		ignored := !m.until.After(m.now) || m.p.Mode == ModeForcedOpen || m.p.Mode == ModeForcedClosed
		if m.tripped == ignored {
			m.fail("Trip ok %v, want %v", m.tripped, !ignored)
		}
		if ignored && s != prev {
			m.fail("an ignored trip changed the status")
		}
		if !ignored && (s.State != Open || !s.TrippedUntil.Equal(m.until) || !s.NextRetryTime.Equal(m.until)) {
			m.fail("a trip did not open the circuit until its time")
		}
		if !ignored && prev.State == Open && !s.OpenedAt.Equal(prev.OpenedAt) {
			m.fail("a trip of an open circuit moved openedAt")
		}
	default:
		if s != prev {
			m.fail("%s changed the status", opName(op))
		}
	}
}

// checkNewFields asserts what always holds of the window, the backoff, the
// modes and the trips.
func (m *machine) checkNewFields() {
	m.t.Helper()
	s := m.s
	if len(s.Window) > maxWindow || strings.Trim(s.Window, "SF") != "" {
		m.fail("window %q is too long or holds other bytes than S and F", s.Window)
	}
	if s.Window != "" && s.State != Closed {
		m.fail("%s with a window", s.State)
	}
	if s.Leading < 0 || s.Leading >= maxWindow || (s.Leading != 0 && s.State != Closed) {
		m.fail("leading successes %d while %s", s.Leading, s.State)
	}
	if s.Last.Reason == "" != (s.Last == Transition{}) || (s.Last.Reason != "" && s.Last.To != s.State) {
		m.fail("last transition %+v while %s", s.Last, s.State)
	}
	if s.Reopens < 0 || (s.State == Closed && s.Reopens != 0) {
		m.fail("reopens %d while %s", s.Reopens, s.State)
	}
	switch m.p.Mode {
	case ModeForcedOpen:
		if s.State != Open || s.Forced != ModeForcedOpen || !s.NextRetryTime.IsZero() {
			m.fail("forced open but %s, forced %q, nextRetryTime %v", s.State, s.Forced, s.NextRetryTime)
		}
		if _, ok := NextProbe(s, time.Time{}, time.Second, m.now); ok {
			m.fail("a forced-open circuit asks for a probe")
		}
	case ModeForcedClosed:
		if s.State != Closed || s.Forced != ModeForcedClosed {
			m.fail("forced closed but %s, forced %q", s.State, s.Forced)
		}
	default:
		if s.Forced != "" {
			m.fail("forced %q under Auto", s.Forced)
		}
	}
	if s.WouldBeOpen && (s.State != Closed || m.p.Mode != ModeForcedClosed) {
		m.fail("would be open while %s in mode %q", s.State, m.p.Mode)
	}
	if !s.TrippedUntil.IsZero() && (s.State != Open || !s.NextRetryTime.Equal(s.TrippedUntil)) {
		m.fail("tripped until %v while %s with nextRetryTime %v", s.TrippedUntil, s.State, s.NextRetryTime)
	}
	if d := FirstProbeDelay(m.p.Seed, 10*time.Second); d < 0 || d >= 10*time.Second {
		m.fail("FirstProbeDelay %v outside [0, 10s)", d)
	}
}

// checkObserve asserts what a probe result did.
func (m *machine) checkObserve(op int) {
	m.t.Helper()
	s, prev := m.s, m.prev
	success := op == opSuccess || (op == opSlowSuccess && !Slow(m.p, Outcome{Success: true, Latency: m.latency}))
	if op == opSlowSuccess && Slow(m.p, Outcome{Success: true, Latency: m.latency}) != (m.p.SlowProbe > 0 && m.latency > m.p.SlowProbe) {
		m.fail("Slow misjudged %v against %v", m.latency, m.p.SlowProbe)
	}
	forcedClosed := m.p.Mode == ModeForcedClosed
	reason, wouldOpen := WouldOpen(prev, s, m.p)
	if wouldOpen && (success || !forcedClosed) {
		m.fail("a would-be opening by a success or outside ForcedClosed")
	}
	if m.tr != nil && m.tr.To == Open && success {
		m.fail("a success opened the circuit")
	}
	switch {
	case prev.State == Open:
		if s != prev {
			m.fail("a result changed an open circuit")
		}
	case s.State == Closed && m.tr == nil:
		if prev.WouldBeOpen || wouldOpen {
			if s.Window != "" || s.Leading != 0 {
				m.fail("window %q and %d leading successes, want none", s.Window, s.Leading)
			}
		} else {
			m.checkWindow()
		}
		if !success && !forcedClosed && s.ConsecutiveFailures >= max(m.p.Threshold, 1) {
			m.fail("closed at or over the threshold after a result that did not open it")
		}
		if !success && !forcedClosed && rateMet(m.probed, m.p.FailureRate) {
			m.fail("closed with the failure rate met after a failure that did not open it")
		}
		if wouldOpen {
			want := ReasonFailureRateReached
			if s.ConsecutiveFailures >= max(m.p.Threshold, 1) {
				want = ReasonThresholdReached
			} else if !rateMet(m.probed, m.p.FailureRate) {
				m.fail("would open by rate without the rate met")
			}
			if reason != want {
				m.fail("would open by %q, want %q", reason, want)
			}
		}
		if forcedClosed && !success && !prev.WouldBeOpen && !wouldOpen &&
			(s.ConsecutiveFailures >= max(m.p.Threshold, 1) || rateMet(m.probed, m.p.FailureRate)) {
			m.fail("the policy would open but no would-be opening was reported")
		}
		if !success && s.ConsecutiveFailures != inc(prev.ConsecutiveFailures) {
			m.fail("a failure was not counted once")
		}
		if success && (s.ConsecutiveFailures != 0 || s.WouldBeOpen) {
			m.fail("a success did not clear the failures and the would-be opening")
		}
		if rp := m.p.FailureRate; success && prev.State == Closed && prev.ConsecutiveFailures == 0 && !prev.WouldBeOpen &&
			prev.Window == "" && prev.Leading == leadingCap(rp) && s != prev {
			m.fail("another success changed a closed circuit with window - 1 successes and no failure in its window")
		}
	case s.State == HalfOpen:
		if !success || s.ConsecutiveFailures != 0 || s.ConsecutiveSuccesses != prev.ConsecutiveSuccesses+1 {
			m.fail("half-open after a result that was not a counted success")
		}
		if s.ConsecutiveSuccesses >= max(m.p.SuccessThreshold, 1) {
			m.fail("half-open at or over the success threshold")
		}
	case prev.State == HalfOpen:
		if success != (s.State == Closed) {
			m.fail("half-open %s led to %s", opName(op), s.State)
		}
	}
}

// checkWindow asserts that the status keeps what the rate needs of the
// model's probes: the window from the first failure among the last
// failureRate.window on, and the successes before it, as many as fall within
// the window and at most window - 1.
func (m *machine) checkWindow() {
	m.t.Helper()
	s, rp := m.s, m.p.FailureRate
	if rp == nil {
		if s.Window != "" || s.Leading != 0 {
			m.fail("window %q and %d leading successes without a failure rate", s.Window, s.Leading)
		}
		return
	}
	size := int(min(rp.Window, maxWindow))
	last := m.probed[max(len(m.probed)-size, 0):]
	first := slices.Index(last, true)
	want, leading := "", min(len(last), size-1)
	if first >= 0 {
		want, leading = encode(last[first:]), first
	}
	if s.Window != want || int(s.Leading) != leading {
		m.fail("window %q after %d successes, want %q after %d (probes recorded %s)",
			s.Window, s.Leading, want, leading, encode(m.probed))
	}
}

// leadingCap is as many leading successes as the status keeps: window - 1,
// none without a failure rate.
func leadingCap(rp *RatePolicy) int32 {
	if rp == nil {
		return 0
	}
	return min(rp.Window, maxWindow) - 1
}

func encode(probes []bool) string {
	var b strings.Builder
	for _, failed := range probes {
		if failed {
			b.WriteByte('F')
		} else {
			b.WriteByte('S')
		}
	}
	return b.String()
}

// rateMet is the failure-rate rule, written again for the fuzz test: at
// least minimumProbes recorded, and at least percent of the last min(window,
// recorded) failed.
func rateMet(probes []bool, rp *RatePolicy) bool {
	if rp == nil {
		return false
	}
	size := int(min(rp.Window, maxWindow))
	minimum := int(rp.MinimumProbes)
	if minimum == 0 || minimum > size {
		minimum = size
	}
	last := probes[max(len(probes)-size, 0):]
	failed := 0
	for _, f := range last {
		if f {
			failed++
		}
	}
	return len(probes) >= minimum && failed*100 >= int(rp.Percent)*len(last)
}

// checkRetryTime asserts that an Open circuit's nextRetryTime is openedAt plus
// the capped period for its reopens, within the jitter either way (exactly
// openedAt + timeout without backoff), and the same as RetryTime says.
func (m *machine) checkRetryTime() {
	m.t.Helper()
	s := m.s
	period := wantPeriod(m.p, s.Reopens)
	var span time.Duration
	if m.p.Backoff != nil {
		span = time.Duration(new(big.Int).Div(
			new(big.Int).Mul(big.NewInt(int64(period)), big.NewInt(int64(m.p.Backoff.JitterPercent))),
			big.NewInt(100)).Int64())
	}
	lo, hi := s.OpenedAt.Add(period-span), s.OpenedAt.Add(period+span)
	if s.NextRetryTime.Before(lo) || s.NextRetryTime.After(hi) {
		m.fail("nextRetryTime %v outside [%v, %v] (period %v, jitter %v, reopens %d)", s.NextRetryTime, lo, hi, period, span, s.Reopens)
	}
	if !s.NextRetryTime.Equal(RetryTime(m.p, s.OpenedAt, s.Reopens)) {
		m.fail("nextRetryTime is not RetryTime's")
	}
}

// wantPeriod is timeout * multiplier^reopens capped at maxTimeout, in exact
// arithmetic.
func wantPeriod(p Policy, reopens int32) time.Duration {
	if p.Backoff == nil {
		return p.Timeout
	}
	limit := max(p.Backoff.MaxTimeout, p.Timeout)
	if p.Backoff.Multiplier <= 1 {
		return p.Timeout
	}
	// 2^64 seconds is far over any cap, so more reopens change nothing.
	n := min(reopens, 64)
	d := new(big.Int).Exp(big.NewInt(int64(p.Backoff.Multiplier)), big.NewInt(int64(n)), nil)
	d.Mul(d, big.NewInt(int64(p.Timeout)))
	if d.Cmp(big.NewInt(int64(limit))) > 0 {
		return limit
	}
	return time.Duration(d.Int64())
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

func (m *machine) reasonFor(op int, from, to State) string {
	switch {
	case op == opReset:
		return ReasonReset
	case op == opMode && to == Open:
		return ReasonForcedOpen
	case op == opMode && to == Closed:
		return ReasonForcedClosed
	case op == opMode && from == Open && to == HalfOpen:
		return ReasonModeAuto
	case op == opTrip && to == Open:
		return ReasonTripped
	case from == Closed && to == Open:
		if m.s.ConsecutiveFailures >= max(m.p.Threshold, 1) {
			return ReasonThresholdReached
		}
		if rateMet(m.probed, m.p.FailureRate) {
			return ReasonFailureRateReached
		}
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
		"slow success", "failureRate", "slowProbe", "backoff", "seed", "mode", "ApplyMode", "Trip",
	}[op]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
