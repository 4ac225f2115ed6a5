package decision

import (
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

func withMode(m circuitv1alpha1.Mode) func(*circuitv1alpha1.CircuitBreaker) {
	return func(cb *circuitv1alpha1.CircuitBreaker) { cb.Spec.Mode = m }
}

func TestDecideASlowSuccessIsAFailureWithReasonSlow(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(0, nil), func(cb *circuitv1alpha1.CircuitBreaker) { cb.Spec.SlowProbe = "50ms" })
	slow := []probe.Result{{Start: decideNow, Latency: 80 * time.Millisecond, Success: true, Reason: probe.ReasonOK, HTTPStatus: 200}}
	d := decide(cb, resolvedFor(t, cb), slow, decideNow, decideNow)
	g.Expect(d.Status.ConsecutiveFailures).To(Equal(int32(1)))
	g.Expect(d.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeFailure))
	g.Expect(d.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonSlow))
	g.Expect(d.Probed[0].Success).To(BeFalse(), "metrics count it as a failure")
	g.Expect(d.Probed[0].Reason).To(Equal(circuitv1alpha1.ProbeReasonSlow))
}

func TestDecideForcedOpenSendsNoProbeAndAutoSendsATrialAtOnce(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(0, nil), withMode(circuitv1alpha1.ModeForcedOpen))
	d := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Status.NextRetryTime).To(BeNil())
	g.Expect(d.Status.ForcedMode).To(Equal(circuitv1alpha1.ModeForcedOpen))
	g.Expect(d.NextProbe).To(BeZero(), "no probe while ForcedOpen")
	g.Expect(d.Effects.Wake).To(BeZero())
	g.Expect(d.Effects.Forced).To(Equal(breaker.ModeForcedOpen), "an Event says so once")

	cb.Status = d.Status
	later := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow.Add(time.Hour))
	g.Expect(later.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(later.Effects.Forced).To(BeEmpty(), "no second Event")

	cb.Spec.Mode = circuitv1alpha1.ModeAuto
	auto := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow.Add(time.Hour))
	g.Expect(auto.Status.State).To(Equal(circuitv1alpha1.StateHalfOpen))
	g.Expect(auto.NextProbe).To(Equal(decideNow.Add(time.Hour)), "a trial at once")
}

func TestDecideForcedClosedRecordsProbesAndReportsWouldBeOpenings(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(2, nil), withMode(circuitv1alpha1.ModeForcedClosed))
	d := decide(cb, resolvedFor(t, cb), failedProbe(decideNow), decideNow, decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.ConsecutiveFailures).To(Equal(int32(3)))
	g.Expect(d.Effects.WouldOpen).To(Equal([]string{breaker.ReasonThresholdReached}))
	g.Expect(d.NextProbe).NotTo(BeZero(), "probes go on")

	cb.Status = d.Status
	d = decide(cb, resolvedFor(t, cb), failedProbe(decideNow.Add(time.Second)), decideNow.Add(time.Second), decideNow.Add(time.Second))
	g.Expect(d.Effects.WouldOpen).To(BeEmpty(), "once per would-be opening")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
}

func TestDecideTripUntilOpensUntilThenAndIsHandledOnce(t *testing.T) {
	g := NewWithT(t)
	until := decideNow.Add(10 * time.Minute).Truncate(time.Second)
	cb := decideBreaker(closedWith(0, nil), func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Annotations = map[string]string{circuitv1alpha1.TripUntilAnnotation: until.Format(time.RFC3339)}
	})
	d := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Status.NextRetryTime.Time).To(Equal(until))
	g.Expect(d.Status.LastHandledTrip).To(Equal(until.Format(time.RFC3339)))
	g.Expect(d.Effects.Transitions).To(Equal([]breaker.Transition{{From: breaker.Closed, To: breaker.Open, Reason: breaker.ReasonTripped}}))
	g.Expect(d.NextProbe).To(Equal(until), "its trial at that time")

	// Handled once: a reset after it closes it and the value is not applied again.
	cb.Status = d.Status
	cb.Annotations[circuitv1alpha1.ResetAnnotation] = "r"
	d = decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow.Add(time.Minute))
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.TrippedUntil).To(BeNil())

	// Without a reset, it goes HalfOpen at the trip's end, whatever timeout says.
	tripped := decideBreaker(closedWith(0, nil), func(c *circuitv1alpha1.CircuitBreaker) {
		c.Annotations = map[string]string{circuitv1alpha1.TripUntilAnnotation: until.Format(time.RFC3339)}
	})
	tripped.Status = decide(tripped, resolvedFor(t, tripped), nil, decideNow.Add(-time.Second), decideNow).Status
	stillOpen := decide(tripped, resolvedFor(t, tripped), nil, decideNow.Add(-time.Second), decideNow.Add(5*time.Minute))
	g.Expect(stillOpen.Status.State).To(Equal(circuitv1alpha1.StateOpen), "timeout (2s) does not end a trip")
	half := decide(tripped, resolvedFor(t, tripped), nil, decideNow.Add(-time.Second), until.Add(time.Millisecond))
	g.Expect(half.Status.State).To(Equal(circuitv1alpha1.StateHalfOpen))
}

func TestDecideTripUntilIgnoresThePastGarbageAndForcedModes(t *testing.T) {
	tests := []struct {
		name, value string
		mode        circuitv1alpha1.Mode
		ignored     string
	}{
		{name: "a time in the past", value: decideNow.Add(-time.Minute).Format(time.RFC3339), ignored: "is not in the future"},
		{name: "not a time", value: "tomorrow", ignored: "is not an RFC 3339 time"},
		{name: "under ForcedClosed", value: decideNow.Add(time.Hour).Format(time.RFC3339), mode: circuitv1alpha1.ModeForcedClosed,
			ignored: "is overridden by mode ForcedClosed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cb := decideBreaker(closedWith(0, nil), withMode(tt.mode), func(cb *circuitv1alpha1.CircuitBreaker) {
				cb.Annotations = map[string]string{circuitv1alpha1.TripUntilAnnotation: tt.value}
			})
			d := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-time.Second), decideNow)
			g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
			g.Expect(d.Effects.Trip.Ignored).To(Equal(tt.ignored))
			g.Expect(d.Status.LastHandledTrip).To(Equal(tt.value), "handled (and warned about) once")
		})
	}
}

func TestDecideKeepsTheRateWindowAndBackoffInStatus(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(0, nil), func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Spec.Threshold = 100
		cb.Spec.FailureRate = &circuitv1alpha1.FailureRate{Window: 4, MinimumProbes: 3, Percent: 50}
		cb.Spec.Backoff = &circuitv1alpha1.Backoff{Multiplier: 2, MaxTimeout: "1m"}
	})
	t0 := decideNow
	var results []probe.Result
	for i := range 3 {
		if i%2 == 0 {
			results = append(results, okProbe(t0.Add(time.Duration(i)*time.Second))...)
		} else {
			results = append(results, failedProbe(t0.Add(time.Duration(i)*time.Second))...)
		}
	}
	d := decide(cb, resolvedFor(t, cb), results, t0.Add(2*time.Second), t0.Add(2*time.Second))
	g.Expect(d.Status.RecentProbes).To(Equal("FS"), "the window (from its first failure) survives a restart in status")
	g.Expect(d.Status.LeadingSuccesses).To(Equal(int32(1)), "and so does the success before it")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))

	cb.Status = d.Status
	d = decide(cb, resolvedFor(t, cb), failedProbe(t0.Add(3*time.Second)), t0.Add(3*time.Second), t0.Add(3*time.Second))
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen), "2 of the 4 recorded failed: at least 50%")
	g.Expect(d.Effects.Transitions[0].Reason).To(Equal(breaker.ReasonFailureRateReached))
	g.Expect(d.Status.RecentProbes).To(BeEmpty())

	// A failed trial doubles the next Open period, and status holds what a restart needs.
	cb.Status = d.Status
	trialAt := cb.Status.NextRetryTime.Time
	d = decide(cb, resolvedFor(t, cb), nil, trialAt, trialAt.Add(time.Millisecond))
	cb.Status = d.Status
	d = decide(cb, resolvedFor(t, cb), failedProbe(trialAt), trialAt, trialAt.Add(2*time.Millisecond))
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Status.Reopens).To(Equal(int32(1)))
	g.Expect(d.Status.NextRetryTime.Time.Sub(d.Status.OpenedAt.Time)).To(Equal(4*time.Second), "2s * 2^1")
	again := decide(&circuitv1alpha1.CircuitBreaker{ObjectMeta: cb.ObjectMeta, Spec: cb.Spec, Status: d.Status},
		resolvedFor(t, cb), nil, time.Time{}, trialAt.Add(time.Second))
	g.Expect(again.Status.NextRetryTime).To(Equal(d.Status.NextRetryTime), "a restart computes the same deadline")
}

func TestDecideSpreadsFirstProbesAfterARestartButProbesNewBreakersAtOnce(t *testing.T) {
	g := NewWithT(t)
	probed := decideBreaker(closedWith(0, lastProbeFromResult(okProbe(decideNow.Add(-5 * time.Second))[0])))
	res := resolvedFor(t, probed)
	var ats []time.Time
	for _, uid := range []string{"a", "b", "c", "d", "e", "f"} {
		probed.UID = "uid-" + types.UID(uid)
		res.Settings.Policy.Seed = SeedOf(probed.UID)
		d := decideUnknown(probed, res, nil, time.Time{}, decideNow)
		g.Expect(d.NextProbe).To(BeTemporally(">=", decideNow))
		g.Expect(d.NextProbe).To(BeTemporally("<", decideNow.Add(200*time.Millisecond)), "within one interval")
		again := decideUnknown(probed, res, nil, time.Time{}, decideNow.Add(10*time.Millisecond))
		if d.NextProbe.After(decideNow.Add(10 * time.Millisecond)) {
			g.Expect(again.NextProbe).To(Equal(d.NextProbe), "stable from one reconcile to the next")
		}
		ats = append(ats, d.NextProbe)
	}
	slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
	g.Expect(slices.Compact(ats)).To(HaveLen(len(ats)), "spread, not all at one instant")

	fresh := decideBreaker()
	res = resolvedFor(t, fresh)
	g.Expect(decideUnknown(fresh, res, nil, time.Time{}, decideNow).NextProbe).To(Equal(decideNow), "a new breaker at once")
}

func TestDecideRecordsEveryTransitionInLastTransition(t *testing.T) {
	openedAt := decideNow.Add(-2100 * time.Millisecond)
	trialStart := openedAt.Add(2*time.Second + 10*time.Millisecond)
	previous := &circuitv1alpha1.LastTransition{From: circuitv1alpha1.StateOpen, To: circuitv1alpha1.StateClosed,
		Reason: circuitv1alpha1.ReasonReset, Time: *mt(decideNow.Add(-time.Hour))}
	annotate := func(key, value string) func(*circuitv1alpha1.CircuitBreaker) {
		return func(cb *circuitv1alpha1.CircuitBreaker) { cb.Annotations = map[string]string{key: value} }
	}
	rate := func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Spec.Threshold = 100
		cb.Spec.FailureRate = &circuitv1alpha1.FailureRate{Window: 4, MinimumProbes: 2, Percent: 50}
		cb.Status.RecentProbes, cb.Status.LeadingSuccesses = "F", 1
	}
	tests := []struct {
		name      string
		cb        *circuitv1alpha1.CircuitBreaker
		pending   []probe.Result
		lastStart time.Time
		want      *circuitv1alpha1.LastTransition
	}{
		{
			name: "a new breaker has none",
			cb:   decideBreaker(),
		},
		{
			name:    "the threshold-th failure",
			cb:      decideBreaker(closedWith(2, nil)),
			pending: failedProbe(decideNow.Add(-50 * time.Millisecond)),
			want:    &circuitv1alpha1.LastTransition{From: "Closed", To: "Open", Reason: "ThresholdReached", Time: *mt(decideNow)},
		},
		{
			name:    "the failure rate",
			cb:      decideBreaker(closedWith(1, nil), rate),
			pending: failedProbe(decideNow.Add(-50 * time.Millisecond)),
			want:    &circuitv1alpha1.LastTransition{From: "Closed", To: "Open", Reason: "FailureRateReached", Time: *mt(decideNow)},
		},
		{
			name:      "the timeout, at the time the trial left",
			cb:        decideBreaker(openSince(openedAt)),
			pending:   okProbe(trialStart),
			lastStart: trialStart,
			want:      &circuitv1alpha1.LastTransition{From: "Open", To: "HalfOpen", Reason: "TimeoutElapsed", Time: *mt(trialStart)},
		},
		{
			name: "a reset",
			cb:   decideBreaker(openSince(openedAt), annotate(circuitv1alpha1.ResetAnnotation, "r1")),
			want: &circuitv1alpha1.LastTransition{From: "Open", To: "Closed", Reason: "Reset", Time: *mt(decideNow)},
		},
		{
			name: "a trip",
			cb: decideBreaker(closedWith(0, nil),
				annotate(circuitv1alpha1.TripUntilAnnotation, decideNow.Add(time.Hour).Format(time.RFC3339))),
			want: &circuitv1alpha1.LastTransition{From: "Closed", To: "Open", Reason: "Tripped", Time: *mt(decideNow)},
		},
		{
			name: "mode ForcedOpen",
			cb:   decideBreaker(closedWith(0, nil), withMode(circuitv1alpha1.ModeForcedOpen)),
			want: &circuitv1alpha1.LastTransition{From: "Closed", To: "Open", Reason: "ForcedOpen", Time: *mt(decideNow)},
		},
		{
			name: "a failure below the threshold keeps the last one",
			cb: decideBreaker(closedWith(0, nil), func(cb *circuitv1alpha1.CircuitBreaker) {
				cb.Status.LastTransition = previous
			}),
			pending: failedProbe(decideNow.Add(-50 * time.Millisecond)),
			want:    previous,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			d := decide(tt.cb, resolvedFor(t, tt.cb), tt.pending, tt.lastStart, decideNow)
			g.Expect(d.Status.LastTransition).To(Equal(tt.want))
			if tt.want != nil {
				g.Expect(d.Status.LastTransition.Time).To(Equal(*d.Status.LastTransitionTime), "the same time as lastTransitionTime")
			}
		})
	}
}
