package decision

import (
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// decideNow is the fixed time every Decide table test runs at.
var decideNow = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func mt(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

// decideBreaker is a URL breaker: threshold 3, timeout 2s, interval 200ms.
func decideBreaker(mutate ...func(*circuitv1alpha1.CircuitBreaker)) *circuitv1alpha1.CircuitBreaker {
	cb := &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", Generation: 3},
		Spec: circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{URL: "http://api.example:8080/healthz"},
			Threshold: 3, Timeout: "2s", RetryTimeout: "200ms", Interval: "200ms", SuccessThreshold: 1},
	}
	for _, m := range mutate {
		m(cb)
	}
	return cb
}

func resolvedFor(t *testing.T, cb *circuitv1alpha1.CircuitBreaker) Resolution {
	t.Helper()
	cfg, err := ParseSpec(cb.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return Resolution{Settings: cfg}
}

func closedWith(failures int32, lp *circuitv1alpha1.LastProbe) func(*circuitv1alpha1.CircuitBreaker) {
	return func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Status.State = circuitv1alpha1.StateClosed
		cb.Status.ConsecutiveFailures = failures
		cb.Status.LastTransitionTime = mt(decideNow.Add(-time.Hour))
		cb.Status.LastProbe = lp
	}
}

func openSince(openedAt time.Time) func(*circuitv1alpha1.CircuitBreaker) {
	return func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Status.State = circuitv1alpha1.StateOpen
		cb.Status.ConsecutiveFailures = 3
		cb.Status.LastTransitionTime = mt(openedAt)
		cb.Status.OpenedAt = mt(openedAt)
		cb.Status.NextRetryTime = mt(openedAt.Add(2 * time.Second))
	}
}

func failedProbe(start time.Time) []probe.Result {
	return []probe.Result{{Start: start, Latency: 3 * time.Millisecond, Reason: probe.ReasonHTTPStatus, HTTPStatus: 503}}
}

func okProbe(start time.Time) []probe.Result {
	return []probe.Result{{Start: start, Latency: 2 * time.Millisecond, Success: true, Reason: probe.ReasonOK, HTTPStatus: 200}}
}

func readyCondition(st circuitv1alpha1.CircuitBreakerStatus) *metav1.Condition {
	return apimeta.FindStatusCondition(st.Conditions, circuitv1alpha1.ConditionReady)
}

func TestDecideANewBreakerStartsClosedReadyAndProbesAtOnce(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker()
	d := decide(cb, resolvedFor(t, cb), nil, time.Time{}, decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.ObservedGeneration).To(Equal(int64(3)))
	g.Expect(d.Status.Target).To(Equal(targetSummary(cb.Spec.Target)))
	g.Expect(d.Status.LastTransitionTime.Time).To(Equal(decideNow))
	g.Expect(readyCondition(d.Status).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(readyCondition(d.Status).Reason).To(Equal(circuitv1alpha1.ReasonProbing))
	g.Expect(!d.NextProbe.IsZero()).To(BeTrue())
	g.Expect(d.NextProbe).To(Equal(decideNow))
	g.Expect(d.Effects.Wake).To(BeZero())
	g.Expect(d.Effects.Transitions).To(BeEmpty())
	g.Expect(cb.Status.State).To(BeEmpty(), "Decide changed its input")
}

func TestDecideABlockedBreakerProbesNothingAndSaysWhy(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker()
	res := Resolution{Blocked: &Problem{circuitv1alpha1.ReasonSecretNotAllowed, "Secret s is missing"}}
	d := decide(cb, res, okProbe(decideNow.Add(-time.Second)), decideNow.Add(-time.Second), decideNow)
	g.Expect(!d.NextProbe.IsZero()).To(BeFalse())
	g.Expect(d.Probed).To(BeNil(), "a blocked breaker records no result")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	ready := readyCondition(d.Status)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonSecretNotAllowed))
	g.Expect(ready.ObservedGeneration).To(Equal(int64(3)))
}

func TestDecideAFailureBelowTheThresholdCountsAndKeepsTheCadence(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(1, nil))
	start := decideNow.Add(-50 * time.Millisecond)
	d := decide(cb, resolvedFor(t, cb), failedProbe(start), start, decideNow)
	g.Expect(d.Status.ConsecutiveFailures).To(Equal(int32(2)))
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Probed).NotTo(BeNil())
	g.Expect(d.Status.LastProbe.Reason).To(Equal(probe.ReasonHTTPStatus))
	g.Expect(d.Status.LastProbe.Time.Time).To(Equal(start))
	g.Expect(d.NextProbe).To(Equal(start.Add(200 * time.Millisecond)))
	g.Expect(d.Effects.Transitions).To(BeEmpty())
}

func TestDecideTheThresholdthFailureOpensAndSchedulesTheTrialAtNextRetryTime(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(2, nil))
	start := decideNow.Add(-50 * time.Millisecond)
	d := decide(cb, resolvedFor(t, cb), failedProbe(start), start, decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Effects.Transitions).To(Equal([]breaker.Transition{{From: breaker.Closed, To: breaker.Open, Reason: breaker.ReasonThresholdReached}}))
	g.Expect(d.Status.NextRetryTime.Time).To(Equal(decideNow.Add(2 * time.Second)))
	g.Expect(d.NextProbe).To(Equal(decideNow.Add(2*time.Second)), "the trial leaves on the runner's timer")
	g.Expect(d.Effects.Wake).To(Equal(2 * time.Second))
}

func TestDecideATrialBackBeforeHalfOpenWasRecordedWaitsForIt(t *testing.T) {
	g := NewWithT(t)
	openedAt := decideNow.Add(-2100 * time.Millisecond)
	cb := decideBreaker(openSince(openedAt))
	trialStart := openedAt.Add(2*time.Second + 10*time.Millisecond)
	d := decide(cb, resolvedFor(t, cb), okProbe(trialStart), trialStart, decideNow)
	g.Expect(d.Effects.Again).To(BeTrue(), "another reconcile records the trial")
	g.Expect(d.Probed).To(BeNil(), "the trial stays pending")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateHalfOpen))
	g.Expect(d.Status.LastTransitionTime.Time).To(Equal(trialStart), "HalfOpen began when the trial left")
	g.Expect(d.Effects.Transitions).To(Equal([]breaker.Transition{{From: breaker.Open, To: breaker.HalfOpen, Reason: breaker.ReasonTimeoutElapsed}}))

	// The next reconcile records the trial and closes the circuit.
	cb.Status = d.Status
	d = decide(cb, resolvedFor(t, cb), okProbe(trialStart), trialStart, decideNow)
	g.Expect(d.Effects.Again).To(BeFalse())
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.NextProbe).To(Equal(trialStart.Add(200*time.Millisecond)), "the cadence follows the trial")
}

func TestDecideAnOpenBreakerBeforeItsTimeoutStaysOpenAndWakesAtNextRetryTime(t *testing.T) {
	g := NewWithT(t)
	openedAt := decideNow.Add(-500 * time.Millisecond)
	cb := decideBreaker(openSince(openedAt))
	d := decide(cb, resolvedFor(t, cb), nil, openedAt.Add(-time.Second), decideNow)
	g.Expect(d.Status).To(Equal(decide(cb, resolvedFor(t, cb), nil, openedAt.Add(-time.Second), decideNow).Status),
		"Decide is a function of its inputs")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Effects.Wake).To(Equal(1500 * time.Millisecond))
	g.Expect(d.NextProbe).To(Equal(openedAt.Add(2 * time.Second)))
}

func TestDecideAResetDiscardsThePendingResultAndRecordsTheValue(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(2, nil), func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Annotations = map[string]string{circuitv1alpha1.ResetAnnotation: "r1"}
	})
	start := decideNow.Add(-50 * time.Millisecond)
	d := decide(cb, resolvedFor(t, cb), failedProbe(start), start, decideNow)
	g.Expect(!d.Effects.ResetAt.IsZero()).To(BeTrue())
	g.Expect(d.Effects.ResetAt).To(Equal(decideNow))
	g.Expect(d.Probed).NotTo(BeNil(), "acknowledged, so that it is not recorded later")
	g.Expect(d.Status.ConsecutiveFailures).To(BeZero(), "the failure that was under way is not counted")
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.LastHandledReset).To(Equal("r1"))

	// The same value again is not a new reset.
	cb.Status = d.Status
	d = decide(cb, resolvedFor(t, cb), failedProbe(decideNow), decideNow, decideNow)
	g.Expect(!d.Effects.ResetAt.IsZero()).To(BeFalse())
	g.Expect(d.Status.ConsecutiveFailures).To(Equal(int32(1)))
}

func TestDecideAResetOfAnOpenBreakerClosesIt(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(openSince(decideNow.Add(-time.Second)), func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Annotations = map[string]string{circuitv1alpha1.ResetAnnotation: "now"}
	})
	d := decide(cb, resolvedFor(t, cb), nil, decideNow.Add(-2*time.Second), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.NextRetryTime).To(BeNil())
	g.Expect(d.Effects.Transitions).To(Equal([]breaker.Transition{{From: breaker.Open, To: breaker.Closed, Reason: breaker.ReasonReset}}))
	g.Expect(d.Effects.Wake).To(BeZero())
}

func TestDecideWritesLastProbeOnlyWhenTheOutcomeChanges(t *testing.T) {
	recorded := lastProbeFromResult(okProbe(decideNow.Add(-time.Minute))[0])
	tests := []struct {
		name    string
		result  []probe.Result
		changed bool
	}{
		{name: "the same outcome later writes nothing", result: okProbe(decideNow.Add(-time.Millisecond))},
		{name: "another latency alone writes nothing", result: []probe.Result{{Start: decideNow, Latency: time.Second,
			Success: true, Reason: probe.ReasonOK, HTTPStatus: 200}}},
		{name: "another status code is recorded", result: []probe.Result{{Start: decideNow, Success: true,
			Reason: probe.ReasonOK, HTTPStatus: 204}}, changed: true},
		{name: "a failure is recorded", result: failedProbe(decideNow), changed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cb := decideBreaker(closedWith(0, recorded))
			cb.Status = decide(cb, resolvedFor(t, cb), nil, time.Time{}, decideNow).Status // Ready, target
			d := decide(cb, resolvedFor(t, cb), tt.result, tt.result[0].Start, decideNow)
			g.Expect(d.Probed).NotTo(BeNil(), "acknowledged either way")
			if tt.changed {
				g.Expect(d.Status.LastProbe.Time.Time).To(Equal(tt.result[0].Start))
			} else {
				g.Expect(d.Status).To(Equal(cb.Status), "steady probing writes nothing")
			}
		})
	}
}

func TestDecideAServiceProblemProbesAndSaysWhy(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Spec.Target = circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "api"}}
	})
	cb.Spec.Target.Service.Port.IntVal = 80
	res := resolvedFor(t, cb)
	res.Service.Problem = &Problem{circuitv1alpha1.ReasonServiceNotFound, "Service api does not exist"}
	d := decide(cb, res, nil, time.Time{}, decideNow)
	g.Expect(!d.NextProbe.IsZero()).To(BeTrue(), "rounds go on and fail, so the circuit can open")
	g.Expect(d.NextProbe).To(Equal(decideNow))
	g.Expect(readyCondition(d.Status).Reason).To(Equal(circuitv1alpha1.ReasonServiceNotFound))
}

func TestDecideADeniedLastProbeMakesReadyFalse(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(0, nil))
	denied := []probe.Result{{Start: decideNow, Reason: probe.ReasonDenied}}
	d := decide(cb, resolvedFor(t, cb), denied, decideNow, decideNow)
	ready := readyCondition(d.Status)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonProbeDenied))
}

func TestDecideAvailableFollowsTheState(t *testing.T) {
	g := NewWithT(t)
	available := func(st circuitv1alpha1.CircuitBreakerStatus) *metav1.Condition {
		return apimeta.FindStatusCondition(st.Conditions, circuitv1alpha1.ConditionAvailable)
	}
	cb := decideBreaker(closedWith(2, nil))
	closed := decide(cb, resolvedFor(t, cb), nil, time.Time{}, decideNow)
	g.Expect(available(closed.Status).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(available(closed.Status).Reason).To(Equal(circuitv1alpha1.ReasonCircuitClosed))

	cb.Status = closed.Status
	start := decideNow.Add(time.Second)
	opened := decide(cb, resolvedFor(t, cb), failedProbe(start), start, start)
	av := available(opened.Status)
	g.Expect(av.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(av.Reason).To(Equal(circuitv1alpha1.ReasonCircuitOpen))
	g.Expect(av.Message).To(ContainSubstring("until its trial at " + start.Add(2*time.Second).Format(time.RFC3339)))
	g.Expect(av.LastTransitionTime.Time).To(Equal(start))

	cb.Status = opened.Status
	half := decide(cb, resolvedFor(t, cb), nil, start, start.Add(3*time.Second))
	g.Expect(half.Status.State).To(Equal(circuitv1alpha1.StateHalfOpen))
	g.Expect(available(half.Status).Reason).To(Equal(circuitv1alpha1.ReasonCircuitHalfOpen))

	// Nothing changes while the state holds.
	cb.Status = closed.Status
	again := decide(cb, resolvedFor(t, cb), nil, time.Time{}, decideNow.Add(time.Minute))
	g.Expect(again.Status).To(Equal(closed.Status))
}

func TestDecideFoldsEveryWaitingResultInOneDecision(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(0, nil))
	t0 := decideNow.Add(-time.Second)
	pending := slices.Concat(failedProbe(t0), failedProbe(t0.Add(200*time.Millisecond)), failedProbe(t0.Add(400*time.Millisecond)))
	d := decide(cb, resolvedFor(t, cb), pending, t0.Add(400*time.Millisecond), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen), "three failures at threshold 3, one write")
	g.Expect(d.Effects.Transitions).To(HaveLen(1))
	g.Expect(d.Probed).To(HaveLen(3), "all of them are acknowledged after the write")
	g.Expect(d.Status.LastProbe.Time.Time).To(Equal(t0.Add(400*time.Millisecond)), "lastProbe is the newest")

	// A success among them resets the count as it would one at a time.
	pending[2] = okProbe(t0.Add(400 * time.Millisecond))[0]
	d = decide(cb, resolvedFor(t, cb), pending, t0.Add(400*time.Millisecond), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(d.Status.ConsecutiveFailures).To(BeZero())
}

func TestDecideAResultSentBeforeHalfOpenIsNoTrial(t *testing.T) {
	g := NewWithT(t)
	halfAt := decideNow.Add(-100 * time.Millisecond)
	cb := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Status.State = circuitv1alpha1.StateHalfOpen
		cb.Status.LastTransitionTime = mt(halfAt)
	})
	pending := slices.Concat(failedProbe(halfAt.Add(-time.Second)), okProbe(halfAt))
	d := decide(cb, resolvedFor(t, cb), pending, halfAt, decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateClosed), "the stale failure did not reopen it")
	g.Expect(d.Probed).To(HaveLen(2))
}

func TestDecideANewBreakersFirstStatusWaitsForItsFirstResult(t *testing.T) {
	g := NewWithT(t)
	created := decideNow.Add(-time.Second).Truncate(time.Second)
	cb := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) { cb.CreationTimestamp = metav1.NewTime(created) })
	d := decide(cb, resolvedFor(t, cb), nil, time.Time{}, decideNow)
	g.Expect(d.Effects.DeferWrite).To(BeTrue())
	g.Expect(d.NextProbe).To(Equal(decideNow), "its first probe still goes at once")
	g.Expect(d.Effects.Wake).To(Equal(created.Add(200*time.Millisecond + firstResultGrace).Sub(decideNow)))

	start := decideNow.Add(10 * time.Millisecond)
	d = decide(cb, resolvedFor(t, cb), okProbe(start), start, start.Add(5*time.Millisecond))
	g.Expect(d.Effects.DeferWrite).To(BeFalse())
	g.Expect(d.Status.LastProbe).NotTo(BeNil(), "Ready, target and the first result in one write")
	g.Expect(readyCondition(d.Status).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(d.Status.Target).NotTo(BeEmpty())

	// No result by its deadline (retryTimeout after the probe started): written without one.
	late := decideNow.Add(200*time.Millisecond + firstResultGrace)
	d = decide(cb, resolvedFor(t, cb), nil, decideNow, late.Add(-time.Millisecond))
	g.Expect(d.Effects.DeferWrite).To(BeTrue(), "its probe may still answer")
	d = decide(cb, resolvedFor(t, cb), nil, decideNow, late)
	g.Expect(d.Effects.DeferWrite).To(BeFalse())

	// In a burst of creations the first reconcile may come long after the
	// creation: the probe it schedules starts at once, and its result is
	// still what the first status waits for.
	burst := created.Add(30 * time.Second)
	first := resolvedFor(t, cb)
	d = decideUnknown(cb, first, nil, time.Time{}, burst)
	g.Expect(d.Effects.DeferWrite).To(BeTrue())
	g.Expect(d.NextProbe).To(Equal(burst))
	g.Expect(d.Effects.Wake).To(Equal(200*time.Millisecond + firstResultGrace))
	// A probe that never started (no slot free) does not hold it back again.
	d = decide(cb, resolvedFor(t, cb), nil, time.Time{}, burst.Add(3*time.Second))
	g.Expect(d.Effects.DeferWrite).To(BeFalse())

	// A blocked new breaker says why at once.
	d = decide(cb, Resolution{Blocked: &Problem{circuitv1alpha1.ReasonInvalidSpec, "bad"}}, nil, time.Time{}, decideNow)
	g.Expect(d.Effects.DeferWrite).To(BeFalse())
}

// The decision on waiting results tells transitions from counters: the quiet
// path, the work-queue priority and the runner's hold all read it.
func TestDecideTellsTransitionsFromCounters(t *testing.T) {
	closed := func(failures int32) circuitv1alpha1.CircuitBreakerStatus {
		return circuitv1alpha1.CircuitBreakerStatus{State: circuitv1alpha1.StateClosed, ConsecutiveFailures: failures,
			LastTransitionTime: mt(decideNow.Add(-time.Hour))}
	}
	open := circuitv1alpha1.CircuitBreakerStatus{State: circuitv1alpha1.StateOpen, ConsecutiveFailures: 3,
		LastTransitionTime: mt(decideNow.Add(-3 * time.Second)), OpenedAt: mt(decideNow.Add(-3 * time.Second)),
		NextRetryTime: mt(decideNow.Add(-time.Second))}
	half := circuitv1alpha1.CircuitBreakerStatus{State: circuitv1alpha1.StateHalfOpen, LastTransitionTime: mt(decideNow.Add(-time.Second))}
	tests := []struct {
		name    string
		status  circuitv1alpha1.CircuitBreakerStatus
		results []probe.Result
		want    bool
	}{
		{name: "a failure below the threshold only counts", status: closed(1), results: failedProbe(decideNow)},
		{name: "the threshold-th failure opens", status: closed(2), results: failedProbe(decideNow), want: true},
		{name: "two waiting failures reach the threshold", status: closed(1),
			results: slices.Concat(failedProbe(decideNow), failedProbe(decideNow)), want: true},
		{name: "a success while Closed changes nothing", status: closed(0), results: okProbe(decideNow)},
		{name: "a trial of an Open circuit past its timeout", status: open, results: okProbe(decideNow), want: true},
		{name: "one of two trial successes only counts", status: half, results: okProbe(decideNow)},
		{name: "a failed trial reopens", status: half, results: failedProbe(decideNow), want: true},
		{name: "a new breaker's first result is no transition", status: circuitv1alpha1.CircuitBreakerStatus{},
			results: failedProbe(decideNow)},
		{name: "no results", status: closed(2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) {
				cb.Spec.SuccessThreshold = 2
				cb.Status = tt.status
			})
			d := decide(cb, resolvedFor(t, cb), tt.results, decideNow, decideNow)
			NewWithT(t).Expect(len(d.Effects.Transitions) > 0).To(Equal(tt.want))
		})
	}
}

// decide is Decide with a runner that knows the breaker: it has probed it
// since the manager started.
func decide(cb *circuitv1alpha1.CircuitBreaker, res Resolution, pending []probe.Result, lastStart, now time.Time) Decision {
	return Decide(cb, res, Runner{Known: true, Pending: pending, LastStart: lastStart}, now)
}

// decideUnknown is Decide with a runner that does not know the breaker yet:
// it is new, or the manager restarted.
func decideUnknown(cb *circuitv1alpha1.CircuitBreaker, res Resolution, pending []probe.Result, lastStart, now time.Time) Decision {
	return Decide(cb, res, Runner{Pending: pending, LastStart: lastStart}, now)
}

// Under sharding the owner's identity is recorded as status.probedBy: a new
// owner's decision writes once (the name changes), its own steady decisions
// are quiet; without sharding probedBy is left as stored.
func TestDecideRecordsTheOwningMemberAsProbedByOnlyWhenItChanges(t *testing.T) {
	g := NewWithT(t)
	start := decideNow.Add(-50 * time.Millisecond)
	cb := decideBreaker(closedWith(0, nil))
	settled := decide(cb, resolvedFor(t, cb), okProbe(start), start, decideNow)
	cb.Status = settled.Status
	cb.Status.ProbedBy = "m-0"

	res := resolvedFor(t, cb)
	res.Member = "m-1"
	moved := decide(cb, res, okProbe(start), start, decideNow)
	g.Expect(moved.Status.ProbedBy).To(Equal("m-1"))
	g.Expect(moved.Writes(cb.Status)).To(BeTrue(), "a new owner writes its name")
	g.Expect(moved.Quiet(cb.Status)).To(BeFalse(), "a new owner's result is not settled without a write")

	res.Member = "m-0"
	same := decide(cb, res, okProbe(start), start, decideNow)
	g.Expect(same.Writes(cb.Status)).To(BeFalse(), "the same owner writes nothing for a healthy probe")
	g.Expect(same.Quiet(cb.Status)).To(BeTrue())

	unsharded := decide(cb, resolvedFor(t, cb), okProbe(start), start, decideNow)
	g.Expect(unsharded.Status.ProbedBy).To(Equal("m-0"), "without sharding probedBy is left as stored")
}
