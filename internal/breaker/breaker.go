// Package breaker is the circuit-breaker state machine. It is pure: it knows
// nothing of Kubernetes, clocks or networks. Callers pass the recorded status,
// the policy from the spec, a probe outcome and the current time; the package
// returns the new status, the transition that happened (if any) and when the
// caller must act next. Everything it needs to resume is in Status, so a caller
// that persists Status loses nothing across restarts.
//
// A reconcile applies the steps in this order: ApplyMode (the mode wins over
// the annotations), then Reset or Trip for a new annotation value, then
// Advance, then Observe for a probe result.
package breaker

import (
	"math"
	"strings"
	"time"
)

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

// Mode is who decides the state: the policy (Auto) or the user.
type Mode string

// The modes of a breaker. The empty Mode, and any unknown one, is Auto.
const (
	ModeAuto         Mode = "Auto"
	ModeForcedOpen   Mode = "ForcedOpen"
	ModeForcedClosed Mode = "ForcedClosed"
)

// Reasons for transitions, in the CamelCase of Kubernetes condition reasons.
// They are the API's words of status.lastTransition.reason (TransitionReason
// in api/v1alpha1, documented there); internal/decision checks that they match.
const (
	ReasonThresholdReached   = "ThresholdReached"
	ReasonFailureRateReached = "FailureRateReached"
	ReasonTrialFailed        = "TrialFailed"
	ReasonTimeoutElapsed     = "TimeoutElapsed"
	ReasonTrialsSucceeded    = "TrialsSucceeded"
	ReasonReset              = "Reset"
	ReasonForcedOpen         = "ForcedOpen"
	ReasonForcedClosed       = "ForcedClosed"
	// ReasonModeAuto is the move of a forced-open circuit to HalfOpen when its
	// mode goes back to Auto.
	ReasonModeAuto = "ModeAuto"
	// ReasonTripped is the move to Open asked for by a trip-until time.
	ReasonTripped = "Tripped"
	// ReasonWouldOpen is not a transition: it names a would-be opening under
	// ForcedClosed, as reported by WouldOpen.
	ReasonWouldOpen = "WouldOpen"
)

// maxWindow bounds the rate window, whatever the policy says.
const maxWindow = 100

// Policy is the part of a breaker's spec that drives the state machine.
type Policy struct {
	// Threshold is the number of consecutive failures that opens a Closed circuit.
	Threshold int32
	// SuccessThreshold is the number of consecutive successes that closes a HalfOpen circuit.
	SuccessThreshold int32
	// Timeout is how long a circuit stays Open (before backoff).
	Timeout time.Duration
	// FailureRate, when set, also opens a Closed circuit by the share of
	// failures among the last probes.
	FailureRate *RatePolicy
	// SlowProbe, when positive, makes a success that took longer than it count
	// as a failure. Zero is off.
	SlowProbe time.Duration
	// Backoff, when set, lengthens each Open period after a failed trial and
	// spreads deadlines by a jitter.
	Backoff *Backoff
	// Mode is who decides the state; empty is Auto.
	Mode Mode
	// Seed is a per-breaker number (a hash of its UID) from which the jitter
	// is derived, so that deadlines are spread yet the same on every reconcile.
	Seed uint64
}

// RatePolicy opens a circuit when, among the last Window probes recorded while
// Closed (successes before the first failure included), at least Percent
// failed, once at least MinimumProbes are recorded since the circuit started
// counting (it was created, closed or reset). With fewer than Window recorded,
// the share is of those recorded.
type RatePolicy struct {
	// Window is how many of the last probes count, 2 to 100 (clamped to 1..100).
	Window int32
	// MinimumProbes is how many probes must be recorded before the rate can
	// open the circuit, 1 to Window; 0 means Window.
	MinimumProbes int32
	// Percent is the share of failures that opens, 1 to 100 (clamped).
	Percent int32
}

// Backoff lengthens the Open period after each failed trial: the period of an
// opening is min(Timeout * Multiplier^Reopens, MaxTimeout), then moved by up to
// JitterPercent of itself either way.
type Backoff struct {
	// Multiplier is the growth per failed trial, 1 to 10; below 1 counts as 1.
	Multiplier int32
	// MaxTimeout caps the period; below Timeout (zero included) it is Timeout.
	MaxTimeout time.Duration
	// JitterPercent is the largest share of the period the deadline moves by,
	// 0 to 50 (clamped).
	JitterPercent int32
}

// Status is what the state machine records between steps.
type Status struct {
	State                State
	ConsecutiveFailures  int32
	ConsecutiveSuccesses int32
	// LastTransitionTime is when State last changed.
	LastTransitionTime time.Time
	// OpenedAt and NextRetryTime are set only while Open. NextRetryTime is zero
	// while forced open: nothing is timed.
	OpenedAt      time.Time
	NextRetryTime time.Time
	// Reopens is the number of failed trials since the circuit was last
	// Closed; it drives the backoff. Zero while Closed.
	Reopens int32
	// Window is the rate window, oldest first, one byte per probe recorded
	// while Closed from the first failure among the last FailureRate.Window on:
	// 'S' for a success, 'F' for a failure (slow included). It starts with an
	// 'F' (or is empty), holds at most FailureRate.Window (and never more than
	// 100) bytes, is empty without a FailureRate, and is cleared by every
	// transition, so it is only ever set while Closed.
	Window string
	// Leading counts the successes recorded just before Window's first byte
	// (all of them while Window is empty), as many as can still count: at most
	// FailureRate.Window minus the length of Window, and never more than
	// FailureRate.Window - 1. The rate is judged over Leading + len(Window)
	// probes. Once Leading is at its cap, a success on an empty Window changes
	// nothing, so that a healthy breaker writes nothing. Zero whenever Window
	// is cleared.
	Leading int32
	// Forced is the mode ApplyMode last enforced: ModeForcedOpen (then State is
	// Open) or ModeForcedClosed (then State is Closed); empty under Auto.
	Forced Mode
	// TrippedUntil is set while Open by a trip-until time: the circuit goes
	// HalfOpen then, whatever Timeout and Backoff say. Zero otherwise.
	TrippedUntil time.Time
	// WouldBeOpen is set only while Closed under ForcedClosed, from a failure
	// at which the policy would have opened the circuit until the next counted
	// success (the trial that would have closed it again). While it is set,
	// failures are counted but are not another would-be opening, and the window
	// records nothing: it restarts empty, as after a real opening and closing.
	WouldBeOpen bool
	// Last is the most recent transition (its time is LastTransitionTime); its
	// Reason is empty before the first.
	Last Transition
}

// Transition is a change of state.
type Transition struct {
	From, To State
	Reason   string
}

// Outcome is the result of one probe.
type Outcome struct {
	Success bool
	// Latency is how long the probe took.
	Latency time.Duration
}

// Start returns the status of a new breaker: Closed, no failures.
func Start(now time.Time) Status {
	return Status{State: Closed, LastTransitionTime: now}
}

// Slow reports whether a successful probe took longer than the policy's
// slowProbe, and so counts as a failure with reason slow.
func Slow(p Policy, o Outcome) bool {
	return o.Success && p.SlowProbe > 0 && o.Latency > p.SlowProbe
}

// Observe applies one probe outcome. A result that arrives while the circuit is
// Open (a probe started before it opened) is ignored: Open sends no probes and
// counts nothing. Under ForcedClosed the circuit never opens; where it would
// have, WouldBeOpen is set instead (see WouldOpen).
//
// While Closed, a failure opens the circuit when it reaches the threshold
// (ThresholdReached) or, with a FailureRate, when it leaves at least percent of
// the window failed with at least minimumProbes recorded (FailureRateReached).
// A success never opens: the rate is judged when a failure comes in.
func Observe(s Status, p Policy, o Outcome, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	if s.State == Open {
		return s, nil
	}
	success := o.Success && !Slow(p, o)
	if s.State == Closed && !s.WouldBeOpen {
		// A would-be open circuit would record nothing in its window: it would
		// be Open, then on trial.
		s.Window, s.Leading = record(s.Window, s.Leading, p.FailureRate, success)
	}
	if success {
		s.ConsecutiveFailures = 0
		if s.State != HalfOpen {
			// Successes are counted only as trials; a Closed circuit has nothing to count.
			s.ConsecutiveSuccesses = 0
			s.WouldBeOpen = false
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
		if p.mode() == ModeForcedClosed {
			// Unreachable after ApplyMode; a forced-closed circuit never opens.
			return s, nil
		}
		s.Reopens = inc(s.Reopens)
		return moveTo(s, Open, ReasonTrialFailed, p, now)
	case s.ConsecutiveFailures >= max(p.Threshold, 1):
		return open(s, ReasonThresholdReached, p, now)
	case rateReached(s.Window, s.Leading, p.FailureRate):
		return open(s, ReasonFailureRateReached, p, now)
	}
	return s, nil
}

// WouldOpen reports whether the step from before to after was a would-be
// opening under ForcedClosed (for the CircuitWouldOpen Event and the
// would-open counter), and the reason the policy would have opened with. It
// is true once per would-be opening.
func WouldOpen(before, after Status, p Policy) (reason string, ok bool) {
	if before.WouldBeOpen || !after.WouldBeOpen {
		return "", false
	}
	if after.ConsecutiveFailures >= max(p.Threshold, 1) {
		return ReasonThresholdReached, true
	}
	return ReasonFailureRateReached, true
}

// open opens a Closed circuit for reason, or under ForcedClosed records the
// would-be opening: WouldBeOpen is set and the window starts afresh, as an
// opening would have cleared it.
func open(s Status, reason string, p Policy, now time.Time) (Status, *Transition) {
	if p.mode() != ModeForcedClosed {
		return moveTo(s, Open, reason, p, now)
	}
	if !s.WouldBeOpen {
		s.WouldBeOpen, s.Window, s.Leading = true, "", 0
	}
	return s, nil
}

// Advance performs the timed move: an Open circuit whose nextRetryTime has
// passed goes HalfOpen. It also re-derives nextRetryTime from openedAt and the
// current timeout and backoff, so that a changed policy takes effect at once;
// a tripped circuit keeps its trip-until time, and a forced-open one has none.
func Advance(s Status, p Policy, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	if s.State != Open {
		return s, nil
	}
	if s.OpenedAt.IsZero() {
		// An Open status that lost openedAt (edited by hand) restarts its timeout now.
		s.OpenedAt = now
	}
	switch {
	case s.Forced == ModeForcedOpen:
		s.NextRetryTime = time.Time{}
		return s, nil
	case !s.TrippedUntil.IsZero():
		s.NextRetryTime = s.TrippedUntil
	default:
		s.NextRetryTime = RetryTime(p, s.OpenedAt, s.Reopens)
	}
	if now.Before(s.NextRetryTime) {
		return s, nil
	}
	return moveTo(s, HalfOpen, ReasonTimeoutElapsed, p, now)
}

// Reset returns the circuit to Closed with zero counters, an empty window and
// no trip, as the reset annotation asks. The transition is nil when it was
// already Closed. Under a forced mode the mode wins: a forced-open circuit
// only has its counters zeroed and stays Open.
func Reset(s Status, p Policy, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	s.ConsecutiveFailures, s.ConsecutiveSuccesses, s.Reopens = 0, 0, 0
	s.Window, s.Leading, s.WouldBeOpen = "", 0, false
	if s.State == Closed || p.mode() == ModeForcedOpen {
		return s, nil
	}
	return moveTo(s, Closed, ReasonReset, p, now)
}

// Trip opens the circuit until until, as the trip-until annotation asks; then
// Advance moves it to HalfOpen as usual. A circuit already Open keeps openedAt
// and takes the new deadline. ok is false, and s is returned unchanged, when
// the trip is ignored: until is not after now (the caller warns), or a forced
// mode is in force (the mode wins).
func Trip(s Status, p Policy, until, now time.Time) (Status, *Transition, bool) {
	s = normalize(s, now)
	if !until.After(now) || p.mode() != ModeAuto || s.Forced != "" {
		return s, nil, false
	}
	var t *Transition
	if s.State != Open {
		s, t = moveTo(s, Open, ReasonTripped, p, now)
	}
	s.TrippedUntil, s.NextRetryTime = until, until
	return s, t, true
}

// ApplyMode enforces the policy's mode. ForcedOpen opens the circuit with no
// nextRetryTime (reason ForcedOpen); ForcedClosed closes it (reason
// ForcedClosed) and keeps it so; Auto after ForcedOpen goes HalfOpen at once
// (reason ModeAuto) so that a trial is sent. Auto after ForcedClosed leaves the
// circuit Closed with its counters: it opens at the next failure that meets
// the policy, not retroactively. The transition is nil when the state does not
// change (a circuit already Open that is forced open, say); compare Forced
// before and after to see the mode take hold.
func ApplyMode(s Status, p Policy, now time.Time) (Status, *Transition) {
	s = normalize(s, now)
	var t *Transition
	switch p.mode() {
	case ModeForcedOpen:
		if s.State != Open {
			s, t = moveTo(s, Open, ReasonForcedOpen, p, now)
		}
		s.Forced, s.TrippedUntil, s.NextRetryTime = ModeForcedOpen, time.Time{}, time.Time{}
	case ModeForcedClosed:
		if s.State != Closed {
			s, t = moveTo(s, Closed, ReasonForcedClosed, p, now)
		}
		s.Forced = ModeForcedClosed
	default:
		switch s.Forced {
		case ModeForcedOpen:
			s, t = moveTo(s, HalfOpen, ReasonModeAuto, p, now)
		case ModeForcedClosed:
			s.Forced, s.WouldBeOpen = "", false
		}
	}
	return s, t
}

// RetryTime is the end of an Open period that began at openedAt after reopens
// failed trials: openedAt + min(timeout * multiplier^reopens, maxTimeout),
// moved by a jitter of at most jitterPercent of that period either way. The
// jitter is derived from the policy's seed and openedAt (to the microsecond,
// as status stores it), so every reconcile, and a restart, finds the same time.
func RetryTime(p Policy, openedAt time.Time, reopens int32) time.Time {
	period := OpenPeriod(p, reopens)
	span := jitterSpan(p, period)
	if span == 0 {
		return openedAt.Add(period)
	}
	h := mix(p.Seed ^ uint64(openedAt.UnixMicro()))
	offset := time.Duration(h%uint64(2*span+1)) - span
	if offset > 0 && period > math.MaxInt64-offset {
		// Only a period of centuries gets here; admission caps it at a day.
		offset = 0
	}
	return openedAt.Add(period + offset)
}

// OpenPeriod is the Open period before jitter after reopens failed trials:
// timeout * multiplier^reopens, capped at maxTimeout without overflowing.
func OpenPeriod(p Policy, reopens int32) time.Duration {
	d := p.Timeout
	if p.Backoff == nil || d <= 0 {
		return d
	}
	limit := max(p.Backoff.MaxTimeout, d)
	m := time.Duration(max(p.Backoff.Multiplier, 1))
	for i := int32(0); i < reopens && m > 1 && d < limit; i++ {
		if d > limit/m {
			return limit
		}
		d *= m
	}
	return min(d, limit)
}

// jitterSpan is the largest jitter for a period: jitterPercent of it.
func jitterSpan(p Policy, period time.Duration) time.Duration {
	if p.Backoff == nil || period <= 0 {
		return 0
	}
	pct := time.Duration(min(max(p.Backoff.JitterPercent, 0), 50))
	return period/100*pct + period%100*pct/100
}

// FirstProbeDelay is how long after a manager restart a breaker that was
// probed before waits for its first probe: a share of interval in
// [0, interval) derived from its seed, so that breakers are spread over one
// interval and each finds the same delay every time.
func FirstProbeDelay(seed uint64, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(mix(seed) % uint64(interval))
}

// WakeAfter is how long the caller may wait before the next timed move: the
// time left until nextRetryTime while Open, and zero (nothing timed) otherwise,
// forced open included.
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
	s.LastTransitionTime, s.Last = now, *t
	s.OpenedAt, s.NextRetryTime, s.TrippedUntil = time.Time{}, time.Time{}, time.Time{}
	s.Window, s.Leading, s.Forced, s.WouldBeOpen = "", 0, "", false
	switch to {
	case Open:
		s.ConsecutiveSuccesses = 0
		s.OpenedAt = now
		s.NextRetryTime = RetryTime(p, now, s.Reopens)
	case Closed:
		s.ConsecutiveFailures, s.ConsecutiveSuccesses, s.Reopens = 0, 0, 0
	case HalfOpen:
		s.ConsecutiveSuccesses = 0
	}
	return s, t
}

// record appends one probe to the rate window (w, with leading successes
// before it) and drops what falls out of the last size probes. A success with
// no failure among them only counts up leading to its cap, so that once it is
// there another success leaves everything as it was.
func record(w string, leading int32, rp *RatePolicy, success bool) (string, int32) {
	if rp == nil {
		return "", 0
	}
	switch {
	case !success:
		w += "F"
	case w != "":
		w += "S"
	default:
		leading++
	}
	return fit(w, leading, windowSize(rp))
}

// fit brings a window and its leading successes to the canonical form for
// size: the last size probes at most, w starting at its first failure (the
// successes before it counted in leading), leading at most size - max(len(w), 1).
func fit(w string, leading int32, size int32) (string, int32) {
	if len(w) > int(size) {
		// The leading successes, and the oldest bytes, fall out of the window.
		w, leading = w[len(w)-int(size):], 0
	}
	if first := strings.IndexByte(w, 'F'); first < 0 {
		leading, w = leading+int32(len(w)), ""
	} else {
		leading, w = leading+int32(first), w[first:]
	}
	return w, min(max(leading, 0), size-max(int32(len(w)), 1))
}

// windowSize is the rate window's length: Window, clamped to 1..100.
func windowSize(rp *RatePolicy) int32 {
	return min(max(rp.Window, 1), maxWindow)
}

// rateReached reports whether the last probes meet the rate policy: at least
// minimumProbes recorded, and at least percent of the last min(window,
// recorded) failed.
func rateReached(w string, leading int32, rp *RatePolicy) bool {
	if rp == nil {
		return false
	}
	size := windowSize(rp)
	w, leading = fit(w, leading, size)
	minimum := rp.MinimumProbes
	if minimum <= 0 || minimum > size {
		minimum = size
	}
	n := leading + int32(len(w))
	if n < minimum {
		return false
	}
	percent := min(max(rp.Percent, 1), 100)
	return int32(strings.Count(w, "F"))*100 >= percent*n
}

func (p Policy) mode() Mode {
	switch p.Mode {
	case ModeForcedOpen, ModeForcedClosed:
		return p.Mode
	}
	return ModeAuto
}

// normalize repairs what a hand-edited or empty status may lack.
func normalize(s Status, now time.Time) Status {
	if !s.State.Valid() {
		s = Status{State: Closed, LastTransitionTime: now}
	}
	s.ConsecutiveFailures = max(s.ConsecutiveFailures, 0)
	s.ConsecutiveSuccesses = max(s.ConsecutiveSuccesses, 0)
	s.Reopens = max(s.Reopens, 0)
	if s.State != Open {
		s.OpenedAt, s.NextRetryTime, s.TrippedUntil = time.Time{}, time.Time{}, time.Time{}
	}
	if s.State != Closed || strings.Trim(s.Window, "SF") != "" {
		s.Window, s.Leading = "", 0
	}
	if len(s.Window) > maxWindow {
		s.Window = s.Window[len(s.Window)-maxWindow:]
	}
	s.Leading = min(max(s.Leading, 0), maxWindow-1)
	if s.Last.To != s.State || !s.Last.From.Valid() || s.Last.From == s.State {
		// A last transition that does not lead to the state (edited by hand) is dropped.
		s.Last = Transition{}
	}
	if s.State == Closed {
		s.Reopens = 0
	} else {
		s.WouldBeOpen = false
	}
	switch {
	case s.Forced == ModeForcedOpen && s.State == Open, s.Forced == ModeForcedClosed && s.State == Closed:
	default:
		s.Forced = ""
	}
	return s
}

// mix is splitmix64's finalizer: a well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// inc adds one without overflowing.
func inc(n int32) int32 {
	if n == 1<<31-1 {
		return n
	}
	return n + 1
}
