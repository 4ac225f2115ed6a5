package breaker

import (
	"math"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func ratePolicy(threshold int32, window, minimum, percent int32) Policy {
	p := policy(threshold, 1, 30*time.Second)
	p.FailureRate = &RatePolicy{Window: window, MinimumProbes: minimum, Percent: percent}
	return p
}

func backoffPolicy(timeout time.Duration, multiplier int32, maxTimeout time.Duration, jitter int32) Policy {
	p := policy(3, 1, timeout)
	p.Backoff = &Backoff{Multiplier: multiplier, MaxTimeout: maxTimeout, JitterPercent: jitter}
	return p
}

func withMode(p Policy, m Mode) Policy {
	p.Mode = m
	return p
}

func closedWith(window string, failures int32) Status {
	return Status{State: Closed, ConsecutiveFailures: failures, LastTransitionTime: earlier, Window: window}
}

// closedLed is closedWith the given successes recorded before the window.
func closedLed(leading int32, window string, failures int32) Status {
	s := closedWith(window, failures)
	s.Leading = leading
	return s
}

func TestObserveFailureRate(t *testing.T) {
	opened := func(failures int32) Status {
		return Status{
			State: Open, ConsecutiveFailures: failures, LastTransitionTime: now,
			OpenedAt: now, NextRetryTime: now.Add(30 * time.Second),
		}
	}
	tests := []struct {
		name    string
		policy  Policy
		in      Status
		outcome Outcome
		want    Status
		wantT   *Transition
	}{
		{
			name:   "a failure that brings the window to the percent with enough probes opens by rate",
			policy: ratePolicy(100, 4, 0, 50),
			in:     closedWith("SFS", 0),
			want:   opened(1),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:   "a failure below the percent is recorded and the circuit stays closed",
			policy: ratePolicy(100, 4, 0, 75),
			in:     closedWith("SFS", 0),
			want:   closedLed(1, "FSF", 1),
		},
		{
			name:   "fewer recorded probes than minimumProbes never open by rate",
			policy: ratePolicy(100, 10, 4, 50),
			in:     closedWith("FF", 2),
			want:   closedWith("FFF", 3),
		},
		{
			name:   "reaching minimumProbes with the rate met opens",
			policy: ratePolicy(100, 10, 4, 50),
			in:     closedWith("FFF", 3),
			want:   opened(4),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:   "minimumProbes 0 means the whole window",
			policy: ratePolicy(100, 4, 0, 50),
			in:     closedWith("FF", 2),
			want:   closedWith("FFF", 3),
		},
		{
			name:   "minimumProbes above the window counts as the window",
			policy: ratePolicy(100, 4, 9, 50),
			in:     closedWith("FFF", 3),
			want:   opened(4),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:    "a success never opens, even with the rate met once minimumProbes are recorded",
			policy:  ratePolicy(100, 4, 4, 50),
			in:      closedWith("FFF", 3),
			outcome: Outcome{Success: true},
			want:    closedWith("FFFS", 0),
		},
		{
			name:   "the window keeps only its last probes, oldest dropped first",
			policy: ratePolicy(100, 3, 0, 100),
			in:     closedWith("SSF", 1),
			want:   closedLed(1, "FF", 2),
		},
		{
			name:   "percent 100 does not open while one success is in the window",
			policy: ratePolicy(100, 3, 0, 100),
			in:     closedWith("FSF", 1),
			want:   closedLed(1, "FF", 2),
		},
		{
			name:   "the threshold reached first opens by threshold",
			policy: ratePolicy(2, 10, 10, 50),
			in:     closedWith("SSSF", 1),
			want:   opened(2),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:   "threshold and rate reached by the same probe open by threshold",
			policy: ratePolicy(3, 3, 0, 50),
			in:     closedWith("SFF", 2),
			want:   opened(3),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:    "a window full of successes (as an older manager kept it) becomes window - 1 leading successes",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      closedWith("SSSS", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(3, "", 0),
		},
		{
			name:    "a window not yet full records a success after a failure",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      closedWith("SF", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(1, "FS", 0),
		},
		{
			name:    "successes with no failure in the window count up to window - 1",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      closedLed(2, "", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(3, "", 0),
		},
		{
			name:    "at window - 1 leading successes another success changes nothing, so a healthy breaker writes nothing",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      closedLed(3, "", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(3, "", 0),
		},
		{
			name:    "an empty window starts at the first failure; the success before it is counted",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      closedWith("", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(1, "", 0),
		},
		{
			name:   "successes before the first failure count: 3 failures after 7 successes are 30 % of 10, not 100 % of 3",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedLed(7, "FF", 2),
			want:   closedLed(7, "FFF", 3),
		},
		{
			name:   "exactly percent of the last window probes opens",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedLed(5, "FFFF", 4),
			want:   opened(5),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:   "one failure short of percent stays closed",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedLed(6, "FFF", 3),
			want:   closedLed(6, "FFFF", 4),
		},
		{
			name:   "exactly minimumProbes recorded with the rate met opens",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedLed(1, "F", 1),
			want:   opened(2),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:   "one probe short of minimumProbes stays closed, whatever the rate",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedWith("F", 1),
			want:   closedWith("FF", 2),
		},
		{
			name:   "with fewer than window probes recorded the share is of those recorded: 2 of 4, not 2 of 10",
			policy: ratePolicy(100, 10, 3, 50),
			in:     closedLed(2, "F", 1),
			want:   opened(2),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:   "a full window slides: its oldest failure falls out and the rest stays under percent",
			policy: ratePolicy(100, 4, 4, 50),
			in:     closedWith("FSSS", 0),
			want:   closedLed(3, "F", 1),
		},
		{
			name:   "a full window slides: the new failure and the one still inside make percent",
			policy: ratePolicy(100, 4, 4, 50),
			in:     closedWith("FFSS", 0),
			want:   opened(1),
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached},
		},
		{
			name:    "leading successes slide out as the window after them fills",
			policy:  ratePolicy(100, 4, 4, 50),
			in:      closedLed(3, "F", 1),
			outcome: Outcome{Success: true},
			want:    closedLed(2, "FS", 0),
		},
		{
			name:    "without a failureRate no window is kept, and a stray one is dropped",
			policy:  policy(3, 1, 30*time.Second),
			in:      closedWith("FFS", 0),
			outcome: Outcome{Success: true},
			want:    closedWith("", 0),
		},
		{
			name:    "a window shortened by the policy is trimmed at the next probe",
			policy:  ratePolicy(3, 2, 0, 100),
			in:      closedWith("FFSS", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(1, "", 0),
		},
		{
			name:    "a window is never longer than 100",
			policy:  ratePolicy(3, 500, 0, 50),
			in:      closedWith(strings.Repeat("S", 150)+"F", 0),
			outcome: Outcome{Success: true},
			want:    closedLed(98, "FS", 0),
		},
		{
			name:    "half-open trials are not recorded in the window",
			policy:  func() Policy { p := ratePolicy(3, 4, 0, 50); p.SuccessThreshold = 2; return p }(),
			in:      Status{State: HalfOpen, LastTransitionTime: earlier},
			outcome: Outcome{Success: true},
			want:    Status{State: HalfOpen, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
		},
		{
			name:    "closing by a trial starts with an empty window",
			policy:  ratePolicy(3, 4, 0, 50),
			in:      Status{State: HalfOpen, LastTransitionTime: earlier, Window: "FFF", Leading: 2},
			outcome: Outcome{Success: true},
			want:    Status{State: Closed, LastTransitionTime: now},
			wantT:   &Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := Observe(tt.in, tt.policy, tt.outcome, now)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

// A target that fails every other probe never reaches a threshold of
// consecutive failures, but half of its probes fail.
func TestAlternatingFailuresOpenARateBreakerButNeverAThresholdOnlyOne(t *testing.T) {
	g := NewWithT(t)
	thresholdOnly := policy(3, 1, time.Minute)
	withRate := ratePolicy(3, 10, 10, 50)
	a, b := Start(earlier), Start(earlier)
	var opened *Transition
	openedAt := 0
	for i := 1; i <= 40; i++ {
		o := Outcome{Success: i%2 == 0}
		var tr *Transition
		a, tr = Observe(a, thresholdOnly, o, now)
		g.Expect(tr).To(BeNil(), "probe %d opened a threshold-only breaker", i)
		if b.State == Closed {
			b, tr = Observe(b, withRate, o, now)
			if tr != nil {
				opened, openedAt = tr, i
			}
		}
	}
	g.Expect(opened).To(Equal(&Transition{From: Closed, To: Open, Reason: ReasonFailureRateReached}))
	g.Expect(openedAt).To(Equal(11), "the first failure with ten probes recorded and half of them failed")
	g.Expect(b.Window).To(BeEmpty(), "opening clears the window")
}

func TestSlow(t *testing.T) {
	g := NewWithT(t)
	p := policy(3, 1, time.Minute)
	g.Expect(Slow(p, Outcome{Success: true, Latency: time.Hour})).To(BeFalse(), "slowProbe 0 is off")
	p.SlowProbe = 2 * time.Second
	g.Expect(Slow(p, Outcome{Success: true, Latency: time.Second})).To(BeFalse())
	g.Expect(Slow(p, Outcome{Success: true, Latency: 2 * time.Second})).To(BeFalse(), "exactly slowProbe is not slower")
	g.Expect(Slow(p, Outcome{Success: true, Latency: 2*time.Second + 1})).To(BeTrue())
	g.Expect(Slow(p, Outcome{Latency: time.Hour})).To(BeFalse(), "a failure is a failure, not slow")
}

func TestObserveCountsASlowSuccessAsAFailure(t *testing.T) {
	p := ratePolicy(2, 4, 0, 100)
	p.SlowProbe = time.Second
	slow := Outcome{Success: true, Latency: 1500 * time.Millisecond}
	tests := []struct {
		name    string
		in      Status
		outcome Outcome
		want    Status
		wantT   *Transition
	}{
		{
			name:    "a slow success is counted and recorded as a failure",
			in:      closedWith("S", 0),
			outcome: slow,
			want:    closedLed(1, "F", 1),
		},
		{
			name:    "a slow success can reach the threshold",
			in:      closedWith("SF", 1),
			outcome: slow,
			want: Status{
				State: Open, ConsecutiveFailures: 2, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(30 * time.Second),
			},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonThresholdReached},
		},
		{
			name:    "a slow trial fails",
			in:      Status{State: HalfOpen, LastTransitionTime: earlier},
			outcome: slow,
			want: Status{
				State: Open, ConsecutiveFailures: 1, Reopens: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: now.Add(30 * time.Second),
			},
			wantT: &Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed},
		},
		{
			name:    "a fast success is a success",
			in:      closedWith("SF", 1),
			outcome: Outcome{Success: true, Latency: time.Second},
			want:    closedLed(1, "FS", 0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := Observe(tt.in, p, tt.outcome, now)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestOpenPeriod(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		reopens int32
		want    time.Duration
	}{
		{"without backoff the period is the timeout whatever the reopens", policy(3, 1, 10*time.Second), 5, 10 * time.Second},
		{"the first opening lasts the timeout", backoffPolicy(10*time.Second, 2, 10*time.Minute, 0), 0, 10 * time.Second},
		{"one failed trial multiplies once", backoffPolicy(10*time.Second, 2, 10*time.Minute, 0), 1, 20 * time.Second},
		{"three failed trials multiply three times", backoffPolicy(10*time.Second, 2, 10*time.Minute, 0), 3, 80 * time.Second},
		{"growth stops at maxTimeout", backoffPolicy(10*time.Second, 2, 10*time.Minute, 0), 6, 10 * time.Minute},
		{"maxTimeout exactly reached", backoffPolicy(75*time.Second, 2, 10*time.Minute, 0), 3, 10 * time.Minute},
		{"a huge number of reopens neither overflows nor loops long", backoffPolicy(10*time.Second, 10, 24*time.Hour, 0), math.MaxInt32, 24 * time.Hour},
		{"the largest admitted values stay at the cap", backoffPolicy(24*time.Hour, 10, 24*time.Hour, 0), 40, 24 * time.Hour},
		{"multiplier 1 never grows", backoffPolicy(10*time.Second, 1, 10*time.Minute, 0), 9, 10 * time.Second},
		{"multiplier 0 counts as 1", backoffPolicy(10*time.Second, 0, 10*time.Minute, 0), 9, 10 * time.Second},
		{"maxTimeout below the timeout means no growth", backoffPolicy(10*time.Second, 2, 0, 0), 4, 10 * time.Second},
		{"negative reopens count as none", backoffPolicy(10*time.Second, 2, 10*time.Minute, 0), -3, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(OpenPeriod(tt.policy, tt.reopens)).To(Equal(tt.want))
		})
	}
}

func TestRetryTimeJitterIsBoundedAndDeterministic(t *testing.T) {
	g := NewWithT(t)
	p := backoffPolicy(10*time.Second, 2, 10*time.Minute, 10)
	const reopens = 2 // a 40s period, so a jitter of at most 4s either way
	openedAt := now.Add(123456789 * time.Nanosecond)
	lo, hi := openedAt.Add(36*time.Second), openedAt.Add(44*time.Second)
	below, above := 0, 0
	seen := map[time.Time]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		p.Seed = seed
		at := RetryTime(p, openedAt, reopens)
		g.Expect(at).To(BeTemporally(">=", lo), "seed %d", seed)
		g.Expect(at).To(BeTemporally("<=", hi), "seed %d", seed)
		g.Expect(RetryTime(p, openedAt, reopens)).To(Equal(at), "the same seed and openedAt give the same deadline")
		stored := openedAt.Truncate(time.Microsecond)
		g.Expect(RetryTime(p, stored, reopens).Sub(stored)).To(Equal(at.Sub(openedAt)),
			"openedAt as status stores it (to the microsecond) gives the same Open period after a restart")
		if at.Before(openedAt.Add(40 * time.Second)) {
			below++
		} else {
			above++
		}
		seen[at] = true
	}
	g.Expect(below).To(BeNumerically(">", 50), "deadlines are spread below the period")
	g.Expect(above).To(BeNumerically(">", 50), "and above it")
	g.Expect(len(seen)).To(BeNumerically(">", 190), "different seeds give different deadlines")

	p.Seed = 42
	first := RetryTime(p, openedAt, reopens)
	g.Expect(RetryTime(p, openedAt.Add(time.Second), reopens)).NotTo(Equal(first.Add(time.Second)),
		"each opening draws its own jitter")

	p.Backoff.JitterPercent = 0
	g.Expect(RetryTime(p, openedAt, reopens)).To(Equal(openedAt.Add(40*time.Second)), "no jitter, no spread")
	p.Backoff.JitterPercent = 90
	at := RetryTime(p, openedAt, reopens)
	g.Expect(at).To(BeTemporally(">=", openedAt.Add(20*time.Second)), "jitter is clamped to 50%")
	g.Expect(at).To(BeTemporally("<=", openedAt.Add(60*time.Second)))
}

func TestBackoffThroughTheMachine(t *testing.T) {
	g := NewWithT(t)
	p := backoffPolicy(10*time.Second, 3, time.Minute, 0)
	clock := now
	s := Status{State: HalfOpen, LastTransitionTime: earlier}

	s, tr := Observe(s, p, Outcome{}, clock)
	g.Expect(tr).To(Equal(&Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed}))
	g.Expect(s.Reopens).To(Equal(int32(1)))
	g.Expect(s.NextRetryTime).To(Equal(clock.Add(30*time.Second)), "the first failed trial triples the timeout")

	clock = s.NextRetryTime
	s, _ = Advance(s, p, clock)
	s, _ = Observe(s, p, Outcome{}, clock)
	g.Expect(s.Reopens).To(Equal(int32(2)))
	g.Expect(s.NextRetryTime).To(Equal(clock.Add(time.Minute)), "90s is capped at maxTimeout")

	p.Backoff.MaxTimeout = 5 * time.Minute
	s, tr = Advance(s, p, clock.Add(time.Minute))
	g.Expect(tr).To(BeNil())
	g.Expect(s.NextRetryTime).To(Equal(clock.Add(90*time.Second)), "a changed maxTimeout re-derives nextRetryTime at once")
	p.Timeout = 20 * time.Second
	s, _ = Advance(s, p, clock.Add(time.Minute))
	g.Expect(s.NextRetryTime).To(Equal(clock.Add(180*time.Second)), "so does a changed timeout")
	p.Backoff = nil
	s, tr = Advance(s, p, clock.Add(time.Minute))
	g.Expect(tr).To(Equal(&Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed}),
		"without backoff the timeout alone, already over")

	s, tr = Observe(s, p, Outcome{Success: true}, clock.Add(time.Minute))
	g.Expect(tr).To(Equal(&Transition{From: HalfOpen, To: Closed, Reason: ReasonTrialsSucceeded}))
	g.Expect(s.Reopens).To(BeZero(), "closing forgets the failed trials")
}

func TestApplyMode(t *testing.T) {
	base := policy(3, 1, 30*time.Second)
	openedAt := now.Add(-10 * time.Second)
	forcedOpen := Status{
		State: Open, ConsecutiveFailures: 2, LastTransitionTime: earlier, OpenedAt: earlier, Forced: ModeForcedOpen,
	}
	tests := []struct {
		name  string
		mode  Mode
		in    Status
		want  Status
		wantT *Transition
	}{
		{
			name:  "forced open opens a closed circuit with no nextRetryTime, keeping its counters",
			mode:  ModeForcedOpen,
			in:    closedWith("SF", 1),
			want:  Status{State: Open, ConsecutiveFailures: 1, LastTransitionTime: now, OpenedAt: now, Forced: ModeForcedOpen},
			wantT: &Transition{From: Closed, To: Open, Reason: ReasonForcedOpen},
		},
		{
			name:  "forced open opens a half-open circuit",
			mode:  ModeForcedOpen,
			in:    Status{State: HalfOpen, ConsecutiveSuccesses: 1, Reopens: 2, LastTransitionTime: earlier},
			want:  Status{State: Open, Reopens: 2, LastTransitionTime: now, OpenedAt: now, Forced: ModeForcedOpen},
			wantT: &Transition{From: HalfOpen, To: Open, Reason: ReasonForcedOpen},
		},
		{
			name: "forced open takes an open circuit's deadline away without a transition",
			mode: ModeForcedOpen,
			in:   openSince(openedAt, 30*time.Second, 3),
			want: Status{State: Open, ConsecutiveFailures: 3, LastTransitionTime: openedAt, OpenedAt: openedAt, Forced: ModeForcedOpen},
		},
		{
			name: "forced open replaces a trip",
			mode: ModeForcedOpen,
			in: Status{
				State: Open, LastTransitionTime: openedAt, OpenedAt: openedAt,
				NextRetryTime: now.Add(time.Hour), TrippedUntil: now.Add(time.Hour),
			},
			want: Status{State: Open, LastTransitionTime: openedAt, OpenedAt: openedAt, Forced: ModeForcedOpen},
		},
		{
			name: "forced open again changes nothing",
			mode: ModeForcedOpen,
			in:   forcedOpen,
			want: forcedOpen,
		},
		{
			name:  "forced closed closes an open circuit and forgets its failed trials",
			mode:  ModeForcedClosed,
			in:    func() Status { s := openSince(openedAt, 30*time.Second, 3); s.Reopens = 4; return s }(),
			want:  Status{State: Closed, LastTransitionTime: now, Forced: ModeForcedClosed},
			wantT: &Transition{From: Open, To: Closed, Reason: ReasonForcedClosed},
		},
		{
			name:  "forced closed closes a forced-open circuit",
			mode:  ModeForcedClosed,
			in:    forcedOpen,
			want:  Status{State: Closed, LastTransitionTime: now, Forced: ModeForcedClosed},
			wantT: &Transition{From: Open, To: Closed, Reason: ReasonForcedClosed},
		},
		{
			name:  "forced closed closes a half-open circuit",
			mode:  ModeForcedClosed,
			in:    Status{State: HalfOpen, ConsecutiveSuccesses: 1, LastTransitionTime: earlier},
			want:  Status{State: Closed, LastTransitionTime: now, Forced: ModeForcedClosed},
			wantT: &Transition{From: HalfOpen, To: Closed, Reason: ReasonForcedClosed},
		},
		{
			name: "forced closed keeps a closed circuit's counters and window",
			mode: ModeForcedClosed,
			in:   closedWith("FF", 2),
			want: Status{State: Closed, ConsecutiveFailures: 2, LastTransitionTime: earlier, Window: "FF", Forced: ModeForcedClosed},
		},
		{
			name:  "auto after forced open goes half-open at once for a trial",
			mode:  ModeAuto,
			in:    forcedOpen,
			want:  Status{State: HalfOpen, ConsecutiveFailures: 2, LastTransitionTime: now},
			wantT: &Transition{From: Open, To: HalfOpen, Reason: ReasonModeAuto},
		},
		{
			name:  "an empty mode is auto",
			mode:  "",
			in:    forcedOpen,
			want:  Status{State: HalfOpen, ConsecutiveFailures: 2, LastTransitionTime: now},
			wantT: &Transition{From: Open, To: HalfOpen, Reason: ReasonModeAuto},
		},
		{
			name:  "an unknown mode is auto",
			mode:  "Sideways",
			in:    forcedOpen,
			want:  Status{State: HalfOpen, ConsecutiveFailures: 2, LastTransitionTime: now},
			wantT: &Transition{From: Open, To: HalfOpen, Reason: ReasonModeAuto},
		},
		{
			name: "auto after forced closed stays closed with its counters, not opened retroactively",
			mode: ModeAuto,
			in: Status{
				State: Closed, ConsecutiveFailures: 7, LastTransitionTime: earlier, Window: "FF",
				Forced: ModeForcedClosed, WouldBeOpen: true,
			},
			want: Status{State: Closed, ConsecutiveFailures: 7, LastTransitionTime: earlier, Window: "FF"},
		},
		{
			name: "auto leaves a circuit opened by the policy alone",
			mode: ModeAuto,
			in:   openSince(openedAt, 30*time.Second, 3),
			want: openSince(openedAt, 30*time.Second, 3),
		},
		{
			name: "auto leaves a half-open circuit alone",
			mode: ModeAuto,
			in:   Status{State: HalfOpen, LastTransitionTime: earlier},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr := ApplyMode(tt.in, withMode(base, tt.mode), now)
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestForcedOpenStaysOpenWithNothingTimed(t *testing.T) {
	g := NewWithT(t)
	p := withMode(policy(3, 1, 30*time.Second), ModeForcedOpen)
	s, tr := ApplyMode(Start(earlier), p, now)
	g.Expect(tr).To(Equal(&Transition{From: Closed, To: Open, Reason: ReasonForcedOpen}))
	forced := s
	later := now.Add(24 * time.Hour)

	s, tr = Observe(s, p, Outcome{}, later)
	g.Expect(tr).To(BeNil())
	g.Expect(s).To(Equal(forced), "a late result is ignored")
	s, tr = Advance(s, p, later)
	g.Expect(tr).To(BeNil())
	g.Expect(s).To(Equal(forced), "no timeout ends a forced opening")
	s, tr = Reset(s, p, later)
	g.Expect(tr).To(BeNil(), "the mode wins over a reset")
	g.Expect(s.State).To(Equal(Open))
	s, tr, ok := Trip(s, p, later.Add(time.Hour), later)
	g.Expect(ok).To(BeFalse(), "the mode wins over a trip")
	g.Expect(tr).To(BeNil())
	g.Expect(s).To(Equal(forced))
	_, ok = NextProbe(s, time.Time{}, time.Second, later)
	g.Expect(ok).To(BeFalse(), "a forced-open circuit is not probed")
	g.Expect(WakeAfter(s, later)).To(BeZero())

	s, tr = ApplyMode(s, withMode(p, ModeAuto), later)
	g.Expect(tr).To(Equal(&Transition{From: Open, To: HalfOpen, Reason: ReasonModeAuto}))
	at, ok := NextProbe(s, now, time.Minute, later)
	g.Expect(ok).To(BeTrue())
	g.Expect(at).To(Equal(later), "back to auto, the trial leaves at once")
}

func TestForcedClosedIsADryRun(t *testing.T) {
	g := NewWithT(t)
	p := withMode(ratePolicy(3, 4, 0, 75), ModeForcedClosed)
	s, tr := ApplyMode(openSince(now.Add(-time.Second), 30*time.Second, 3), p, now)
	g.Expect(tr).To(Equal(&Transition{From: Open, To: Closed, Reason: ReasonForcedClosed}))

	var wouldOpen []string
	observe := func(success bool) {
		t.Helper()
		before := s
		s, tr = Observe(s, p, Outcome{Success: success}, now)
		g.Expect(tr).To(BeNil(), "a forced-closed circuit never changes state")
		g.Expect(s.State).To(Equal(Closed))
		if reason, ok := WouldOpen(before, s, p); ok {
			wouldOpen = append(wouldOpen, reason)
		}
	}
	for range 5 {
		observe(false)
	}
	g.Expect(wouldOpen).To(Equal([]string{ReasonThresholdReached}), "one would-be opening for a run of failures")
	g.Expect(s.ConsecutiveFailures).To(Equal(int32(5)), "failures are still counted")
	g.Expect(s.Window).To(BeEmpty(), "the would-be open circuit records no window")

	observe(true)
	g.Expect(s.WouldBeOpen).To(BeFalse(), "the next success is the would-be closing")
	observe(false)
	observe(false)
	g.Expect(wouldOpen).To(HaveLen(1))
	observe(true)
	observe(false)
	g.Expect(wouldOpen).To(Equal([]string{ReasonThresholdReached, ReasonFailureRateReached}),
		"three failures among four probes would open by rate")

	s, tr, ok := Trip(s, p, now.Add(time.Hour), now)
	g.Expect(ok).To(BeFalse(), "the mode wins over a trip")
	g.Expect(tr).To(BeNil())
	s, tr = Reset(s, p, now)
	g.Expect(tr).To(BeNil())
	g.Expect(s).To(Equal(Status{State: Closed, LastTransitionTime: now, Forced: ModeForcedClosed,
		Last: Transition{From: Open, To: Closed, Reason: ReasonForcedClosed}}),
		"a reset zeroes the counters and ends the would-be opening")
}

func TestWouldOpen(t *testing.T) {
	p := policy(3, 1, time.Minute)
	tests := []struct {
		name          string
		before, after Status
		wantReason    string
		wantOK        bool
	}{
		{"nothing would open", closedWith("", 1), closedWith("", 2), "", false},
		{
			"the threshold would open", closedWith("", 2),
			Status{State: Closed, ConsecutiveFailures: 3, WouldBeOpen: true}, ReasonThresholdReached, true,
		},
		{
			"the rate would open", closedWith("SFS", 0),
			Status{State: Closed, ConsecutiveFailures: 1, WouldBeOpen: true}, ReasonFailureRateReached, true,
		},
		{
			"an opening that would already have happened is not reported again",
			Status{State: Closed, ConsecutiveFailures: 3, WouldBeOpen: true},
			Status{State: Closed, ConsecutiveFailures: 4, WouldBeOpen: true}, "", false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			reason, ok := WouldOpen(tt.before, tt.after, p)
			g.Expect(ok).To(Equal(tt.wantOK))
			g.Expect(reason).To(Equal(tt.wantReason))
		})
	}
}

func TestTrip(t *testing.T) {
	base := policy(3, 1, 30*time.Second)
	until := now.Add(10 * time.Minute)
	openedAt := now.Add(-10 * time.Second)
	tests := []struct {
		name   string
		policy Policy
		in     Status
		until  time.Time
		want   Status
		wantT  *Transition
		wantOK bool
	}{
		{
			name:   "a closed circuit opens until the trip time",
			policy: base,
			in:     closedWith("SF", 1),
			until:  until,
			want: Status{
				State: Open, ConsecutiveFailures: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: until, TrippedUntil: until,
			},
			wantT:  &Transition{From: Closed, To: Open, Reason: ReasonTripped},
			wantOK: true,
		},
		{
			name:   "a half-open circuit opens until the trip time",
			policy: base,
			in:     Status{State: HalfOpen, ConsecutiveSuccesses: 1, Reopens: 1, LastTransitionTime: earlier},
			until:  until,
			want: Status{
				State: Open, Reopens: 1, LastTransitionTime: now,
				OpenedAt: now, NextRetryTime: until, TrippedUntil: until,
			},
			wantT:  &Transition{From: HalfOpen, To: Open, Reason: ReasonTripped},
			wantOK: true,
		},
		{
			name:   "an open circuit keeps openedAt and takes the trip time, even before its timeout",
			policy: base,
			in:     openSince(openedAt, 30*time.Second, 3),
			until:  now.Add(time.Second),
			want: Status{
				State: Open, ConsecutiveFailures: 3, LastTransitionTime: openedAt,
				OpenedAt: openedAt, NextRetryTime: now.Add(time.Second), TrippedUntil: now.Add(time.Second),
			},
			wantOK: true,
		},
		{
			name:   "a new trip time replaces the last",
			policy: base,
			in: Status{
				State: Open, LastTransitionTime: openedAt, OpenedAt: openedAt,
				NextRetryTime: now.Add(time.Hour), TrippedUntil: now.Add(time.Hour),
			},
			until: until,
			want: Status{
				State: Open, LastTransitionTime: openedAt, OpenedAt: openedAt,
				NextRetryTime: until, TrippedUntil: until,
			},
			wantOK: true,
		},
		{
			name:   "a time in the past is ignored",
			policy: base,
			in:     closedWith("", 1),
			until:  now.Add(-time.Second),
			want:   closedWith("", 1),
		},
		{
			name:   "now itself is not in the future and is ignored",
			policy: base,
			in:     closedWith("", 1),
			until:  now,
			want:   closedWith("", 1),
		},
		{
			name:   "forced closed wins over a trip",
			policy: withMode(base, ModeForcedClosed),
			in:     Status{State: Closed, LastTransitionTime: earlier, Forced: ModeForcedClosed},
			until:  until,
			want:   Status{State: Closed, LastTransitionTime: earlier, Forced: ModeForcedClosed},
		},
		{
			name:   "forced open wins over a trip",
			policy: withMode(base, ModeForcedOpen),
			in:     Status{State: Open, LastTransitionTime: earlier, OpenedAt: earlier, Forced: ModeForcedOpen},
			until:  until,
			want:   Status{State: Open, LastTransitionTime: earlier, OpenedAt: earlier, Forced: ModeForcedOpen},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tr, ok := Trip(tt.in, tt.policy, tt.until, now)
			g.Expect(ok).To(Equal(tt.wantOK))
			g.Expect(got).To(Equal(withLast(tt.want, tt.wantT)))
			g.Expect(tr).To(Equal(tt.wantT))
		})
	}
}

func TestTrippedCircuitGoesHalfOpenAtItsTripTimeWhateverTheTimeout(t *testing.T) {
	g := NewWithT(t)
	p := backoffPolicy(30*time.Second, 2, time.Hour, 20)
	until := now.Add(10 * time.Minute)
	s, _, ok := Trip(Start(earlier), p, until, now)
	g.Expect(ok).To(BeTrue())

	p.Timeout = time.Second
	s, tr := Advance(s, p, now.Add(time.Minute))
	g.Expect(tr).To(BeNil(), "a shorter timeout does not end a trip")
	g.Expect(s.NextRetryTime).To(Equal(until))
	g.Expect(WakeAfter(s, now.Add(time.Minute))).To(Equal(9 * time.Minute))
	_, ok = NextProbe(s, now, time.Second, now.Add(time.Minute))
	g.Expect(ok).To(BeFalse())

	s, tr = Advance(s, p, until)
	g.Expect(tr).To(Equal(&Transition{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed}))
	g.Expect(s.TrippedUntil).To(BeZero())

	s, tr = Observe(s, p, Outcome{}, until)
	g.Expect(tr).To(Equal(&Transition{From: HalfOpen, To: Open, Reason: ReasonTrialFailed}))
	g.Expect(s.TrippedUntil).To(BeZero(), "after the trip the policy decides again")
	g.Expect(s.NextRetryTime).To(Equal(RetryTime(p, until, 1)))
}

func TestResetClearsBackoffWindowAndTrip(t *testing.T) {
	p := ratePolicy(3, 4, 0, 50)
	tests := []struct {
		name  string
		in    Status
		want  Status
		wantT *Transition
	}{
		{
			name: "a tripped circuit closes and forgets the trip",
			in: Status{
				State: Open, Reopens: 2, LastTransitionTime: earlier, OpenedAt: earlier,
				NextRetryTime: now.Add(time.Hour), TrippedUntil: now.Add(time.Hour),
			},
			want:  Status{State: Closed, LastTransitionTime: now},
			wantT: &Transition{From: Open, To: Closed, Reason: ReasonReset},
		},
		{
			name:  "a half-open circuit forgets its failed trials",
			in:    Status{State: HalfOpen, Reopens: 3, LastTransitionTime: earlier},
			want:  Status{State: Closed, LastTransitionTime: now},
			wantT: &Transition{From: HalfOpen, To: Closed, Reason: ReasonReset},
		},
		{
			name: "a closed circuit empties its window",
			in:   closedWith("FSF", 1),
			want: Status{State: Closed, LastTransitionTime: earlier},
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

func TestFirstProbeDelaySpreadsBreakersOverOneInterval(t *testing.T) {
	g := NewWithT(t)
	const interval = 10 * time.Second
	g.Expect(FirstProbeDelay(7, 0)).To(BeZero())
	g.Expect(FirstProbeDelay(7, -time.Second)).To(BeZero())
	buckets := make([]int, 10)
	for seed := uint64(0); seed < 1000; seed++ {
		d := FirstProbeDelay(seed, interval)
		g.Expect(d).To(BeNumerically(">=", 0))
		g.Expect(d).To(BeNumerically("<", interval))
		g.Expect(FirstProbeDelay(seed, interval)).To(Equal(d), "the same breaker waits the same")
		buckets[d/(interval/10)]++
	}
	for i, n := range buckets {
		g.Expect(n).To(BeNumerically(">", 50), "tenth %d of the interval holds %d of 1000 breakers", i, n)
	}
}

func TestNormalizationOfNewFields(t *testing.T) {
	p := ratePolicy(3, 4, 0, 50)
	tests := []struct {
		name string
		step func(Status) (Status, *Transition)
		in   Status
		want Status
	}{
		{
			name: "a window with other bytes than S and F starts afresh",
			step: func(s Status) (Status, *Transition) { return Observe(s, p, Outcome{Success: true}, now) },
			in:   closedLed(2, "SXF", 0),
			want: closedLed(1, "", 0),
		},
		{
			name: "a window outside Closed is dropped",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: HalfOpen, LastTransitionTime: earlier, Window: "FF"},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
		},
		{
			name: "reopens of a closed circuit are zeroed",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: Closed, Reopens: 3, LastTransitionTime: earlier},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name: "negative reopens are clamped to zero",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: HalfOpen, Reopens: -3, LastTransitionTime: earlier},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
		},
		{
			name: "forced open on a circuit that is not open is dropped",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: HalfOpen, LastTransitionTime: earlier, Forced: ModeForcedOpen},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
		},
		{
			name: "an unknown forced mode is dropped",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: Closed, LastTransitionTime: earlier, Forced: "Sideways"},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name: "a trip outside Open is dropped",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: Closed, LastTransitionTime: earlier, TrippedUntil: now},
			want: Status{State: Closed, LastTransitionTime: earlier},
		},
		{
			name: "a would-be opening outside Closed is dropped",
			step: func(s Status) (Status, *Transition) { return Advance(s, p, now) },
			in:   Status{State: HalfOpen, LastTransitionTime: earlier, WouldBeOpen: true},
			want: Status{State: HalfOpen, LastTransitionTime: earlier},
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

func TestRetryTimeOfAHugePeriodDoesNotOverflow(t *testing.T) {
	g := NewWithT(t)
	p := backoffPolicy(math.MaxInt64, 10, math.MaxInt64, 50)
	for seed := uint64(0); seed < 50; seed++ {
		p.Seed = seed
		at := RetryTime(p, now, 3)
		g.Expect(at.After(now)).To(BeTrue(), "seed %d: %v", seed, at)
	}
}
