package breaker

import (
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// now is the fixed instant every table feeds the state machine.
var now = time.Date(2026, time.March, 14, 15, 9, 26, 0, time.UTC)

// earlier is a transition time well before now.
var earlier = now.Add(-time.Hour)

func policy(threshold, successThreshold int32, timeout time.Duration) Policy {
	return Policy{Threshold: threshold, SuccessThreshold: successThreshold, Timeout: timeout}
}

func openSince(openedAt time.Time, timeout time.Duration, failures int32) Status {
	return Status{
		State:               Open,
		ConsecutiveFailures: failures,
		LastTransitionTime:  openedAt,
		OpenedAt:            openedAt,
		NextRetryTime:       openedAt.Add(timeout),
	}
}

func TestStartReturnsAClosedCircuitWithNoFailures(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Start(now)).To(Equal(Status{State: Closed, LastTransitionTime: now}))
}

func TestStateValidAcceptsOnlyTheThreeStates(t *testing.T) {
	g := NewWithT(t)
	for _, s := range []State{Closed, Open, HalfOpen} {
		g.Expect(s.Valid()).To(BeTrue(), string(s))
	}
	for _, s := range []State{"", "closed", "OPEN", "Halfopen", "Broken"} {
		g.Expect(s.Valid()).To(BeFalse(), string(s))
	}
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		in      Status
		success bool
		want    Status
		wantT   *Transition
	}{
		{
			name:   "closed failure below threshold is counted and the circuit stays closed",
			policy: policy(3, 1, 30*time.Second),
			in:     Status{State: Closed, ConsecutiveFailures: 1, LastTransitionTime: earlier},
			want:   Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
		},
		{
			name:   "closed failure reaching threshold opens with openedAt now and nextRetryTime now plus timeout",
			policy: policy(3, 1, 30*time.Second),
			in:     Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
			want: Status{
				State: Open, ConsecutiveFailures: 3, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(30 * time.Second),
			},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:   "closed failure clears the consecutive successes",
			policy: policy(3, 1, 30*time.Second),
			in:     Status{State: Closed, ConsecutiveSuccesses: 7, LastTransitionTime: earlier},
			want:   Status{State: Closed, ConsecutiveFailures: 1, LastTransitionTime: earlier},
		},
		{
			name:    "closed success resets the failures and counts no success",
			policy:  policy(3, 1, 30*time.Second),
			in:      Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name:    "closed success clears a stray success count, since only half-open trials are counted",
			policy:  policy(3, 1, 30*time.Second),
			in:      Status{State: Closed, ConsecutiveSuccesses: 7, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name:   "failure count at the int32 limit does not overflow",
			policy: policy(3, 1, 30*time.Second),
			in:     Status{State: HalfOpen, ConsecutiveFailures: math.MaxInt32, LastTransitionTime: earlier},
			want: Status{
				State: Open, Reopens: 1, ConsecutiveFailures: math.MaxInt32, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(30 * time.Second),
			},
			wantT: &Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed},
		},
		{
			name:    "half-open success count at the int32 limit does not overflow and closes",
			policy:  policy(3, 100, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveSuccesses: math.MaxInt32, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: now},
			wantT:   &Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded},
		},
		{
			name:   "threshold 1 opens at the first failure",
			policy: policy(1, 1, time.Minute),
			in:     Status{State: Closed, LastTransitionTime: earlier},
			want: Status{
				State: Open, ConsecutiveFailures: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(time.Minute),
			},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:   "threshold 0 counts as 1 and opens at the first failure",
			policy: policy(0, 1, time.Minute),
			in:     Status{State: Closed, LastTransitionTime: earlier},
			want: Status{
				State: Open, ConsecutiveFailures: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(time.Minute),
			},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:   "threshold lowered below the current count opens at the next failure",
			policy: policy(2, 1, time.Minute),
			in:     Status{State: Closed, ConsecutiveFailures: 4, LastTransitionTime: earlier},
			want: Status{
				State: Open, ConsecutiveFailures: 5, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(time.Minute),
			},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:    "threshold lowered below the current count does not open on a success",
			policy:  policy(2, 1, time.Minute),
			in:      Status{State: Closed, ConsecutiveFailures: 4, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name:    "open ignores a success",
			policy:  policy(3, 1, 30*time.Second),
			in:      openSince(now.Add(-10*time.Second), 30*time.Second, 3),
			success: true,
			want:    openSince(now.Add(-10*time.Second), 30*time.Second, 3),
		},
		{
			name:   "open ignores a failure",
			policy: policy(3, 1, 30*time.Second),
			in:     openSince(now.Add(-10*time.Second), 30*time.Second, 3),
			want:   openSince(now.Add(-10*time.Second), 30*time.Second, 3),
		},
		{
			name:    "open ignores a result even after nextRetryTime has passed",
			policy:  policy(3, 1, 30*time.Second),
			in:      openSince(now.Add(-time.Minute), 30*time.Second, 3),
			success: true,
			want:    openSince(now.Add(-time.Minute), 30*time.Second, 3),
		},
		{
			name:    "half-open success with successThreshold 1 closes with zero counters",
			policy:  policy(3, 1, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: now},
			wantT:   &Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded},
		},
		{
			name:    "half-open success with successThreshold 0 counts as 1 and closes",
			policy:  policy(3, 0, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: now},
			wantT:   &Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded},
		},
		{
			name:    "half-open first success with successThreshold 3 is counted and the circuit stays half-open",
			policy:  policy(3, 3, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: HalfOpen, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
		},
		{
			name:    "half-open second success with successThreshold 3 stays half-open",
			policy:  policy(3, 3, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: HalfOpen, ConsecutiveSuccesses: 2, LastTransitionTime: earlier},
		},
		{
			name:    "half-open third success with successThreshold 3 closes",
			policy:  policy(3, 3, 30*time.Second),
			in:      Status{State: HalfOpen, ConsecutiveSuccesses: 2, LastTransitionTime: earlier},
			success: true,
			want:    Status{State: Closed, LastTransitionTime: now},
			wantT:   &Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded},
		},
		{
			name:   "half-open failure reopens and re-arms the timeout from now",
			policy: policy(3, 3, 45*time.Second),
			in:     Status{State: HalfOpen, ConsecutiveFailures: 3, ConsecutiveSuccesses: 2, LastTransitionTime: earlier},
			want: Status{
				State: Open, Reopens: 1, ConsecutiveFailures: 4, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(45 * time.Second),
			},
			wantT: &Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed},
		},
		{
			name:   "half-open failure reopens at once whatever the threshold",
			policy: policy(1000, 1, 45*time.Second),
			in:     Status{State: HalfOpen, LastTransitionTime: earlier},
			want: Status{
				State: Open, Reopens: 1, ConsecutiveFailures: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(45 * time.Second),
			},
			wantT: &Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := Observe(tt.in, tt.policy, Outcome{Success: tt.success}, now)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestAdvance(t *testing.T) {
	const timeout = 30 * time.Second
	openedAt := now.Add(-20 * time.Second)
	tests := []struct {
		name   string
		policy Policy
		in     Status
		at     time.Time
		want   Status
		wantT  *Transition
	}{
		{
			name:   "open before nextRetryTime stays open",
			policy: policy(3, 1, timeout),
			in:     openSince(openedAt, timeout, 3),
			at:     openedAt.Add(timeout - time.Nanosecond),
			want:   openSince(openedAt, timeout, 3),
		},
		{
			name:   "open at nextRetryTime goes half-open",
			policy: policy(3, 1, timeout),
			in:     openSince(openedAt, timeout, 3),
			at:     openedAt.Add(timeout),
			want:   Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: openedAt.Add(timeout)},
			wantT:  &Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		},
		{
			name:   "open after nextRetryTime goes half-open with the transition at now",
			policy: policy(3, 1, timeout),
			in:     openSince(openedAt, timeout, 3),
			at:     openedAt.Add(time.Hour),
			want:   Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: openedAt.Add(time.Hour)},
			wantT:  &Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		},
		{
			name:   "longer timeout moves nextRetryTime later, counted from openedAt",
			policy: policy(3, 1, 2*time.Minute),
			in:     openSince(openedAt, timeout, 3),
			at:     now,
			want:   openSince(openedAt, 2*time.Minute, 3),
		},
		{
			name:   "shorter timeout not yet elapsed moves nextRetryTime earlier, counted from openedAt",
			policy: policy(3, 1, 25*time.Second),
			in:     openSince(openedAt, timeout, 3),
			at:     now,
			want:   openSince(openedAt, 25*time.Second, 3),
		},
		{
			name:   "shorter timeout that has already elapsed goes half-open at once",
			policy: policy(3, 1, 10*time.Second),
			in:     openSince(openedAt, timeout, 3),
			at:     now,
			want:   Status{State: HalfOpen, ConsecutiveFailures: 3, LastTransitionTime: now},
			wantT:  &Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		},
		{
			name:   "open without openedAt restarts its timeout now",
			policy: policy(3, 1, timeout),
			in:     Status{State: Open, ConsecutiveFailures: 3, LastTransitionTime: earlier},
			at:     now,
			want: Status{
				State: Open, ConsecutiveFailures: 3, LastTransitionTime: earlier,
				OpenedAt: now, NextRetryTime: now.Add(timeout),
			},
		},
		{
			name:   "closed is left alone",
			policy: policy(3, 1, timeout),
			in:     Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
			at:     now,
			want:   Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
		},
		{
			name:   "closed with more failures than a lowered threshold is not opened retroactively",
			policy: policy(2, 1, timeout),
			in:     Status{State: Closed, ConsecutiveFailures: 4, LastTransitionTime: earlier},
			at:     now,
			want:   Status{State: Closed, ConsecutiveFailures: 4, LastTransitionTime: earlier},
		},
		{
			name:   "half-open is left alone",
			policy: policy(3, 3, timeout),
			in:     Status{State: HalfOpen, ConsecutiveSuccesses: 2, LastTransitionTime: earlier},
			at:     now,
			want:   Status{State: HalfOpen, ConsecutiveSuccesses: 2, LastTransitionTime: earlier},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := Advance(tt.in, tt.policy, tt.at)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestReset(t *testing.T) {
	p := policy(3, 2, 30*time.Second)
	tests := []struct {
		name  string
		in    Status
		want  Status
		wantT *Transition
	}{
		{
			name: "closed stays closed with zero counters and no transition",
			in:   Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name: "closed with successes is zeroed too",
			in:   Status{State: Closed, ConsecutiveSuccesses: 9, LastTransitionTime: earlier},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name:  "open closes, clears openedAt and nextRetryTime and zeroes the counters",
			in:    openSince(now.Add(-10*time.Second), 30*time.Second, 3),
			want:  Status{State: Closed, LastTransitionTime: now},
			wantT: &Transition{From: Open, To: Closed, Reason: ReasonReset},
		},
		{
			name:  "half-open closes and zeroes the counters",
			in:    Status{State: HalfOpen, ConsecutiveFailures: 3, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
			want:  Status{State: Closed, LastTransitionTime: now},
			wantT: &Transition{From: HalfOpen, To: Closed, Reason: ReasonReset},
		},
		{
			name: "empty status starts closed with no transition",
			in:   Status{},
			want: Status{State: Closed, LastTransitionTime: now},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := Reset(tt.in, p, now)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestWakeAfter(t *testing.T) {
	tests := []struct {
		name string
		in   Status
		want time.Duration
	}{
		{
			name: "open waits until nextRetryTime",
			in:   openSince(now.Add(-10*time.Second), 30*time.Second, 3),
			want: 20 * time.Second,
		},
		{
			name: "open at nextRetryTime still asks for a wake-up",
			in:   openSince(now.Add(-30*time.Second), 30*time.Second, 3),
			want: time.Nanosecond,
		},
		{
			name: "open past nextRetryTime still asks for a wake-up",
			in:   openSince(now.Add(-time.Hour), 30*time.Second, 3),
			want: time.Nanosecond,
		},
		{
			name: "open without nextRetryTime has nothing timed",
			in:   Status{State: Open, LastTransitionTime: earlier},
			want: 0,
		},
		{
			name: "closed has nothing timed",
			in:   Status{State: Closed, LastTransitionTime: earlier},
			want: 0,
		},
		{
			name: "half-open has nothing timed",
			in:   Status{State: HalfOpen, LastTransitionTime: earlier},
			want: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(WakeAfter(tt.in, now)).To(Equal(tt.want))
		})
	}
}

func TestNextProbe(t *testing.T) {
	const interval = 10 * time.Second
	tests := []struct {
		name      string
		in        Status
		lastStart time.Time
		wantAt    time.Time
		wantOK    bool
	}{
		{
			name:      "open sends no probe",
			in:        openSince(now.Add(-10*time.Second), 30*time.Second, 3),
			lastStart: now.Add(-time.Minute),
		},
		{
			name:   "closed never probed is probed now",
			in:     Status{State: Closed, LastTransitionTime: earlier},
			wantAt: now, wantOK: true,
		},
		{
			name:   "half-open never probed is probed now",
			in:     Status{State: HalfOpen, LastTransitionTime: earlier},
			wantAt: now, wantOK: true,
		},
		{
			name:      "half-open entered after the last probe started is probed now",
			in:        Status{State: HalfOpen, LastTransitionTime: now.Add(-time.Second)},
			lastStart: now.Add(-2 * time.Second),
			wantAt:    now, wantOK: true,
		},
		{
			name:      "closed after the last probe started keeps the cadence",
			in:        Status{State: Closed, LastTransitionTime: now.Add(-time.Millisecond)},
			lastStart: now.Add(-2 * time.Millisecond),
			wantAt:    now.Add(interval - 2*time.Millisecond), wantOK: true,
		},
		{
			name:      "closed probed recently waits one interval from the last start",
			in:        Status{State: Closed, LastTransitionTime: earlier},
			lastStart: now.Add(-3 * time.Second),
			wantAt:    now.Add(7 * time.Second), wantOK: true,
		},
		{
			name:      "half-open probed after its transition waits one interval from the last start",
			in:        Status{State: HalfOpen, LastTransitionTime: now.Add(-5 * time.Second)},
			lastStart: now.Add(-4 * time.Second),
			wantAt:    now.Add(6 * time.Second), wantOK: true,
		},
		{
			name:      "transition at the same instant as the last start waits one interval",
			in:        Status{State: Closed, LastTransitionTime: now.Add(-4 * time.Second)},
			lastStart: now.Add(-4 * time.Second),
			wantAt:    now.Add(6 * time.Second), wantOK: true,
		},
		{
			name:      "interval elapsed exactly now is due now",
			in:        Status{State: Closed, LastTransitionTime: earlier},
			lastStart: now.Add(-interval),
			wantAt:    now, wantOK: true,
		},
		{
			name:      "interval long past is due now, not in the past",
			in:        Status{State: Closed, LastTransitionTime: earlier},
			lastStart: now.Add(-time.Hour),
			wantAt:    now, wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			at, ok := NextProbe(tt.in, tt.lastStart, interval, now)
			g.Expect(ok).To(Equal(tt.wantOK))
			g.Expect(at).To(Equal(tt.wantAt))
		})
	}
}

func TestNormalization(t *testing.T) {
	p := policy(3, 1, 30*time.Second)
	tests := []struct {
		name string
		step func(Status) (Status, *Transition)
		in   Status
		want Status
	}{
		{
			name: "empty status observed as a success starts closed at now",
			step: func(s Status) (Status, *Transition) { return Observe(s, p, Outcome{Success: true}, now) },
			in:   Status{},
			want: Status{State: Closed, LastTransitionTime: now},
		},
		{
			name: "invalid state drops its counters and restarts closed",
			step: func(s Status) (Status, *Transition) { return Observe(s, p, Outcome{}, now) },
			in: Status{
				State: "Broken", ConsecutiveFailures: 2, LastTransitionTime: earlier,
				OpenedAt: earlier, NextRetryTime: earlier.Add(time.Minute),
			},
			want: Status{State: Closed, ConsecutiveFailures: 1, LastTransitionTime: now},
		},
		{
			name: "invalid state is not opened by Advance",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: "open", ConsecutiveFailures: 9, OpenedAt: earlier, NextRetryTime: earlier},
			want: Status{State: Closed, LastTransitionTime: now},
		},
		{
			name: "negative counters are clamped to zero before counting",
			step: func(s Status) (Status, *Transition) { return Observe(s, p, Outcome{}, now) },
			in:   Status{State: Closed, ConsecutiveFailures: -5, ConsecutiveSuccesses: -2, LastTransitionTime: earlier},
			want: Status{State: Closed, ConsecutiveFailures: 1, LastTransitionTime: earlier},
		},
		{
			name: "negative counters are clamped to zero by Advance",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: HalfOpen, ConsecutiveFailures: -1, ConsecutiveSuccesses: -1, LastTransitionTime: earlier},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
		},
		{
			name: "closed loses a stray openedAt and nextRetryTime",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: Closed, LastTransitionTime: earlier, OpenedAt: earlier, NextRetryTime: now},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name: "half-open loses a stray openedAt and nextRetryTime",
			step: func(s Status) (Status, *Transition) {
				return Observe(s, policy(3, 2, time.Minute), Outcome{Success: true}, now)
			},
			in:   Status{State: HalfOpen, LastTransitionTime: earlier, OpenedAt: earlier, NextRetryTime: now},
			want: Status{State: HalfOpen, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := tt.step(tt.in)
			g.Expect(got).To(Equal(tt.want))
			g.Expect(tr).To(BeNil())
		})
	}
}

// TestFullCycleReportsEachDeadline walks one circuit through every state with
// the clock a caller would use, checking the deadlines it is given on the way.
func TestFullCycleReportsEachDeadline(t *testing.T) {
	g := NewWithT(t)
	p := policy(2, 2, time.Minute)
	const interval = 10 * time.Second
	clock := now

	s := Start(clock)
	at, ok := NextProbe(s, time.Time{}, interval, clock)
	g.Expect(ok).To(BeTrue())
	g.Expect(at).To(Equal(clock), "a new breaker is probed at once")

	lastStart := clock
	clock = clock.Add(interval)
	s, tr := Observe(s, p, Outcome{}, clock)
	g.Expect(tr).To(BeNil())
	at, _ = NextProbe(s, lastStart, interval, clock)
	g.Expect(at).To(Equal(clock), "the next probe is one interval after the last start")

	lastStart = clock
	clock = clock.Add(time.Second)
	s, tr = Observe(s, p, Outcome{}, clock)
	g.Expect(tr).To(Equal(&Transition{From: Closed, To: Open, Reason: ReasonThresholdReached}))
	_, ok = NextProbe(s, lastStart, interval, clock)
	g.Expect(ok).To(BeFalse(), "an open circuit is not probed")
	g.Expect(WakeAfter(s, clock)).To(Equal(time.Minute))

	clock = clock.Add(40 * time.Second)
	s, tr = Advance(s, p, clock)
	g.Expect(tr).To(BeNil())
	g.Expect(WakeAfter(s, clock)).To(Equal(20 * time.Second))

	clock = clock.Add(20 * time.Second)
	s, tr = Advance(s, p, clock)
	g.Expect(tr).To(Equal(&Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed}))
	g.Expect(WakeAfter(s, clock)).To(BeZero())
	at, ok = NextProbe(s, lastStart, interval, clock)
	g.Expect(ok).To(BeTrue())
	g.Expect(at).To(Equal(clock), "a half-open circuit sends its trial at once")

	lastStart = clock
	clock = clock.Add(time.Second)
	s, tr = Observe(s, p, Outcome{Success: true}, clock)
	g.Expect(tr).To(BeNil())
	at, _ = NextProbe(s, lastStart, interval, clock)
	g.Expect(at).To(Equal(lastStart.Add(interval)))

	lastStart = lastStart.Add(interval)
	clock = lastStart.Add(time.Second)
	s, tr = Observe(s, p, Outcome{Success: true}, clock)
	g.Expect(tr).To(Equal(&Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded}))
	g.Expect(s).To(Equal(Status{State: Closed, LastTransitionTime: clock, Last: *tr}))
	at, _ = NextProbe(s, lastStart, interval, clock)
	g.Expect(at).To(Equal(lastStart.Add(interval)), "closing by a trial keeps the cadence")
}

// withLast is want with the transition t recorded as the last one, as every
// transition records itself.
func withLast(want Status, t *Transition) Status {
	if t != nil {
		want.Last = *t
	}
	return want
}
