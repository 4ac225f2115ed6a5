package controller

import (
	"slices"
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
	// probed are the probe results this decision recorded (or, after a reset,
	// discarded), oldest first; they are acknowledged once the status is stored.
	probed []probe.Result
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
	// forced is the mode that took hold in this decision (an Event says so).
	forced breaker.Mode
	// wouldOpen lists the reasons the policy would have opened a ForcedClosed
	// circuit in this decision, one per would-be opening.
	wouldOpen []string
	// trip is the trip-until annotation value handled by this decision, if any.
	trip trip
	// deferWrite holds a new breaker's first status back until its first probe
	// result (or its deadline) so that both go out in one write; wake is then
	// when to write it anyway.
	deferWrite bool
	// enforce is what the guarded Service of spec.enforce should hold; nil when
	// there is none to write (no spec.enforce, a conflict, or a blocked breaker).
	enforce *enforcementPlan
}

// firstResultGrace is how long past its first probe's start (or its creation)
// plus retryTimeout a new breaker's first status waits for its first result:
// the creation time has whole seconds, and the probe may start a little after
// the reconcile.
const firstResultGrace = 2 * time.Second

// decide moves a breaker's status forward to now. It is pure: it reads the
// recorded object, what resolve found, the probe results waiting to be
// recorded (oldest first; they are folded through the state machine in order,
// so that one write records them all), when the runner last started a probe
// for these settings, and now; it changes nothing it is given.
func decide(cb *circuitv1alpha1.CircuitBreaker, res resolution, pending []probe.Result, lastStart, now time.Time) decision {
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
	forcedBefore := s.Forced
	record(breaker.ApplyMode(s, cfg.policy, now))
	if s.Forced != forcedBefore && s.Forced != "" {
		d.forced = s.Forced
	}
	if v, ok := cb.Annotations[circuitv1alpha1.ResetAnnotation]; ok && v != cb.Status.LastHandledReset {
		record(breaker.Reset(s, cfg.policy, now))
		next.Status.LastHandledReset = v
		d.reset, d.resetAt = true, now
	}
	if v, ok := cb.Annotations[circuitv1alpha1.TripUntilAnnotation]; ok && v != cb.Status.LastHandledTrip {
		next.Status.LastHandledTrip = v
		d.trip = tripOf(v, s, cfg.policy, now)
		if d.trip.ignored == "" {
			after, t, _ := breaker.Trip(s, cfg.policy, d.trip.until, now)
			record(after, t)
		}
	}
	wasOpen := s.State == breaker.Open
	record(breaker.Advance(s, cfg.policy, halfOpenTime(s, lastStart, now)))
	switch {
	case len(pending) == 0:
	case wasOpen && s.State == breaker.HalfOpen:
		// The trial came back before this reconcile recorded HalfOpen: record
		// HalfOpen on its own first, so that it is seen before the trial's
		// outcome. The results stay pending for the next reconcile.
		d.again = true
	case d.reset:
		// Probes that were under way when the breaker was reset must not count
		// against the fresh circuit.
		d.probed = judged(pending, cfg.policy)
	default:
		d.probed = judged(pending, cfg.policy)
		for _, r := range d.probed {
			if s.State == breaker.HalfOpen && r.Start.Before(s.LastTransitionTime) {
				// Sent before the circuit went HalfOpen: not a trial.
				continue
			}
			before := s
			record(breaker.Observe(s, cfg.policy, breaker.Outcome{Success: r.Success, Latency: r.Latency}, now))
			if reason, ok := breaker.WouldOpen(before, s, cfg.policy); ok {
				d.wouldOpen = append(d.wouldOpen, reason)
			}
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
	if res.unknownToRunner && cb.Status.LastProbe != nil && s.State != breaker.Open {
		// Probed before, by a manager that has since restarted: spread the first
		// probes of all breakers over one interval instead of sending them at once.
		d.nextProbe = spreadFirstProbe(cfg.policy.Seed, cfg.interval, now)
	}
	d.wake = breaker.WakeAfter(s, now)
	d.status = next.Status
	if cb.Status.State == "" && len(pending) == 0 && !d.nextProbe.IsZero() && len(d.transitions) == 0 &&
		d.forced == "" && d.trip.value == "" {
		// A new breaker: its first status goes out with its first result. One
		// that has something to report (a mode, a trip) writes at once. The
		// result is due retryTimeout after the first probe started: the one
		// this decision schedules when the runner does not know the breaker yet
		// (it starts at once, however late after the creation this first
		// reconcile comes, as in a burst of creations), else the one it started.
		// A probe that has not started by a later decision (waiting for a slot)
		// no longer holds the status back past creation + retryTimeout.
		anchor := cb.CreationTimestamp.Time
		if res.unknownToRunner && now.After(anchor) {
			anchor = now
		}
		if lastStart.After(anchor) {
			anchor = lastStart
		}
		if due := anchor.Add(cfg.target.Timeout + firstResultGrace); now.Before(due) {
			d.deferWrite, d.wake = true, due.Sub(now)
		}
	}
	return d
}

// recordStatus writes the state machine's status, a Service target's endpoints
// and the probes' outcome into cb. lastProbe (the newest result) changes only
// when something else did or the outcome differs, so that steady probing
// writes nothing.
func recordStatus(cb *circuitv1alpha1.CircuitBreaker, s breaker.Status, probed []probe.Result, svc resolved) {
	before := cb.Status.DeepCopy()
	statusToAPI(s, &cb.Status)
	if cb.Spec.Target.Service == nil {
		setEndpoints(&cb.Status, nil)
		cb.Status.EndpointsTotal, cb.Status.EndpointsOmitted, cb.Status.EndpointsFailing = 0, 0, 0
	}
	for _, r := range probed {
		if cb.Spec.Target.Service != nil {
			eps, failing := endpointStatuses(allEndpoints(&cb.Status), r.Endpoints, svc.refs)
			setEndpoints(&cb.Status, eps)
			cb.Status.EndpointsTotal, cb.Status.EndpointsFailing = int32(len(eps)), failing
			cb.Status.EndpointsOmitted = cb.Status.EndpointsTotal - int32(len(cb.Status.Endpoints))
		}
	}
	if len(probed) == 0 {
		return
	}
	last := probed[len(probed)-1]
	if !equality.Semantic.DeepEqual(before, &cb.Status) || lastProbeChanged(cb.Status.LastProbe, last) {
		cb.Status.LastProbe = lastProbeFromResult(last)
	}
}

// trip is a trip-until annotation value, handled once.
type trip struct {
	value string
	until time.Time
	// ignored says why the value did nothing: not a time, not in the future,
	// or a mode holds the state. Empty when it opened the circuit.
	ignored string
}

// tripOf reads a trip-until value.
func tripOf(v string, s breaker.Status, p breaker.Policy, now time.Time) trip {
	t := trip{value: v}
	until, err := time.Parse(time.RFC3339, v)
	switch {
	case err != nil:
		t.ignored = "is not an RFC 3339 time"
	case !until.After(now):
		t.ignored = "is not in the future"
	case p.Mode == breaker.ModeForcedOpen || p.Mode == breaker.ModeForcedClosed:
		t.ignored = "is overridden by mode " + string(p.Mode)
	}
	t.until = until.UTC()
	if _, _, ok := breaker.Trip(s, p, t.until, now); !ok && t.ignored == "" {
		t.ignored = "changes nothing"
	}
	return t
}

// judged marks the successes slower than slowProbe as failures with reason slow.
func judged(results []probe.Result, p breaker.Policy) []probe.Result {
	out := slices.Clone(results)
	for i, r := range out {
		if breaker.Slow(p, breaker.Outcome{Success: r.Success, Latency: r.Latency}) {
			out[i].Success, out[i].Reason = false, circuitv1alpha1.ProbeReasonSlow
		}
	}
	return out
}

// spreadFirstProbe is when a breaker probed before a restart probes first: at
// its own phase of the interval (from its seed), so that breakers spread over
// one interval. It is stable from one reconcile to the next.
func spreadFirstProbe(seed uint64, interval time.Duration, now time.Time) time.Time {
	at := now.Truncate(interval).Add(breaker.FirstProbeDelay(seed, interval))
	if at.Before(now) {
		at = at.Add(interval)
	}
	return at
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
