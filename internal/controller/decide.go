package controller

import (
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// decision is what one reconcile decided: the status to store, and what to do
// once it is stored.
type decision struct {
	status      circuitv1alpha1.CircuitBreakerStatus
	transitions []breaker.Transition
	// probed is the probe result this decision recorded (or, after a reset,
	// discarded); it is acknowledged once the status is stored.
	probed *probe.Result
	// settings are what to probe with; probes is false when nothing is probed
	// (the breaker is blocked).
	settings settings
	probes   bool
	// nextProbe is when to probe next: for an Open circuit, its trial at
	// nextRetryTime; zero when nothing is to be probed.
	nextProbe time.Time
	// reset is set when this decision handled a new reset annotation value, at
	// resetAt: results of probes that started earlier are discarded.
	reset   bool
	resetAt time.Time
	// wake is when the next timed move is due (Open to HalfOpen); zero if none.
	wake time.Duration
	// again asks for another reconcile at once: the trial's result waits for
	// the HalfOpen this decision records.
	again bool
	// enforce is what the guarded Service of spec.enforce should hold; nil when
	// there is none to write (no spec.enforce, a conflict, or a blocked breaker).
	enforce *enforcementPlan
}

// decide moves a breaker's status forward to now. It is pure: it reads the
// recorded object, what resolve found, the probe result waiting to be recorded
// (nil if none), when the runner last started a probe for these settings, and
// now; it changes nothing it is given.
func decide(cb *circuitv1alpha1.CircuitBreaker, res resolution, pending *probe.Result, lastStart, now time.Time) decision {
	next := cb.DeepCopy()
	next.Status.ObservedGeneration = cb.Generation
	next.Status.Target = targetSummary(cb.Spec.Target)
	d := decision{settings: res.settings}
	if res.blocked != nil {
		notProbing(next, now, res.blocked.reason, res.blocked.message)
		setAvailable(next, now)
		d.status = next.Status
		return d
	}
	d.probes = true
	cfg := res.settings

	s := statusFromAPI(next.Status, now)
	record := func(after breaker.Status, t *breaker.Transition) {
		s = after
		if t != nil {
			d.transitions = append(d.transitions, *t)
		}
	}
	if v, ok := cb.Annotations[circuitv1alpha1.ResetAnnotation]; ok && v != cb.Status.LastHandledReset {
		record(breaker.Reset(s, cfg.policy, now))
		next.Status.LastHandledReset = v
		d.reset, d.resetAt = true, now
	}
	wasOpen := s.State == breaker.Open
	record(breaker.Advance(s, cfg.policy, halfOpenTime(s, lastStart, now)))
	if pending != nil {
		switch {
		case wasOpen && s.State == breaker.HalfOpen:
			// The trial came back before this reconcile recorded HalfOpen: record
			// HalfOpen on its own first, so that it is seen before the trial's
			// outcome. The result stays pending for the next reconcile.
			d.again = true
		case d.reset:
			// A probe that was under way when the breaker was reset must not count
			// against the fresh circuit.
			d.probed = pending
		default:
			d.probed = pending
			record(breaker.Observe(s, cfg.policy, pending.Success, now))
		}
	}
	recordStatus(next, s, d.probed, res.service)
	d.enforce = planEnforcement(next, &cb.Status, res.enforce)
	switch c := res.enforce.conflict; {
	case res.service.problem != nil:
		setReady(next, now, metav1.ConditionFalse, res.service.problem.reason, res.service.problem.message)
	case c != nil:
		setReady(next, now, metav1.ConditionFalse, c.reason, c.message)
	default:
		setReadyFromProbe(next, now, cfg)
	}
	setAvailable(next, now)
	d.nextProbe = nextProbe(s, lastStart, cfg.interval, now)
	d.wake = breaker.WakeAfter(s, now)
	d.status = next.Status
	return d
}

// recordStatus writes the state machine's status, a Service target's endpoints
// and the probe's outcome into cb. lastProbe changes only when something else
// did or the outcome differs, so that steady probing writes nothing.
func recordStatus(cb *circuitv1alpha1.CircuitBreaker, s breaker.Status, probed *probe.Result, svc resolved) {
	before := cb.Status.DeepCopy()
	statusToAPI(s, &cb.Status)
	switch {
	case cb.Spec.Target.Service == nil:
		cb.Status.Endpoints, cb.Status.EndpointsTotal, cb.Status.EndpointsFailing = nil, 0, 0
	case probed != nil:
		cb.Status.Endpoints, cb.Status.EndpointsTotal, cb.Status.EndpointsFailing =
			endpointStatuses(cb.Status.Endpoints, probed.Endpoints, svc.refs)
	}
	if probed != nil && (!equality.Semantic.DeepEqual(before, &cb.Status) || lastProbeChanged(cb.Status.LastProbe, *probed)) {
		cb.Status.LastProbe = lastProbeFromResult(*probed)
	}
}

// nextProbe is when the runner should probe next. An Open circuit's trial
// leaves on the runner's own timer the moment the timeout is over, not when a
// reconcile worker has found time to record HalfOpen: with many breakers due at
// once, the status writes queue up, the trials need not. Nothing is sent
// before nextRetryTime.
func nextProbe(s breaker.Status, lastStart time.Time, interval time.Duration, now time.Time) time.Time {
	if at, ok := breaker.NextProbe(s, lastStart, interval, now); ok {
		return at
	}
	if s.State == breaker.Open {
		return s.NextRetryTime
	}
	return time.Time{}
}

// halfOpenTime is the time to advance an Open breaker's state machine to: now,
// unless its trial has already left (at or after nextRetryTime, on the
// runner's timer), in which case the circuit went HalfOpen when the trial
// started. Recording that time keeps lastTransitionTime honest and makes the
// trial count as the HalfOpen state's first probe, so the next one follows an
// interval later rather than at once.
func halfOpenTime(s breaker.Status, lastStart, now time.Time) time.Time {
	if s.State != breaker.Open || s.NextRetryTime.IsZero() {
		return now
	}
	if !lastStart.Before(s.NextRetryTime) && lastStart.Before(now) {
		return lastStart.UTC().Truncate(time.Microsecond)
	}
	return now
}

// notProbing records why the breaker cannot probe. Its state stays as it is (a
// new breaker starts Closed): nothing was observed that could change it.
func notProbing(cb *circuitv1alpha1.CircuitBreaker, now time.Time, reason, message string) {
	if cb.Status.State == "" {
		statusToAPI(breaker.Start(now), &cb.Status)
	}
	setReady(cb, now, metav1.ConditionFalse, reason, message)
}
