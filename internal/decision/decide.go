package decision

import (
	"reflect"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Decision is what one decision on a breaker found: the status to store, the
// probe results it records, what the runner should do next, and the effects
// that follow once the status is stored.
type Decision struct {
	// Status is the status to store.
	Status circuitv1alpha1.CircuitBreakerStatus
	// Probed are the probe results this decision recorded (or, after a reset,
	// discarded), oldest first; they are settled once the status is stored.
	Probed []probe.Result
	// Settings are what to probe with.
	Settings Settings
	// NextProbe is when the runner should probe next (for an Open circuit, its
	// trial at nextRetryTime); zero when nothing is to be probed (the breaker is
	// blocked or held Open). It is no effect: the runner keeps the cadence
	// itself, so a decision that moves nothing plans what is already planned.
	NextProbe time.Time
	// Effects are what the decision does besides recording results.
	Effects Effects
	// againPriority is, with Effects.Again, the priority of the decision that
	// records the trial's outcome (see Priority).
	againPriority int
}

// Effects are everything a decision does besides recording probe results.
// A decision whose Effects are all zero is quiet (see Quiet): a new field here
// makes every decision that sets it loud, with nothing else to change.
type Effects struct {
	// Transitions are the state changes, in order.
	Transitions []breaker.Transition
	// ResetAt is set when this decision handled a new reset annotation value:
	// results of probes that started before it are discarded.
	ResetAt time.Time
	// Wake is when the next timed move is due (Open to HalfOpen); zero if none.
	Wake time.Duration
	// Again asks for another decision at once: the trial's result waits for
	// the HalfOpen this decision records.
	Again bool
	// Forced is the mode that took hold in this decision (an Event says so).
	Forced breaker.Mode
	// WouldOpen lists the reasons the policy would have opened a ForcedClosed
	// circuit in this decision, one per would-be opening.
	WouldOpen []string
	// Trip is the trip-until annotation value handled by this decision, if any.
	Trip Trip
	// DeferWrite holds a new breaker's first status back until its first probe
	// result (or its deadline) so that both go out in one write; Wake is then
	// when to write it anyway.
	DeferWrite bool
	// Enforce is what the guarded Service of spec.enforce should hold; nil when
	// there is none to write (no spec.enforce, a conflict, or a blocked breaker).
	Enforce *EnforcementPlan
}

// None reports whether the effects are all zero.
func (e Effects) None() bool {
	return reflect.ValueOf(e).IsZero()
}

// Quiet reports whether the decision only records results that change nothing
// in the stored status: it may be settled without a write.
func (d Decision) Quiet(stored circuitv1alpha1.CircuitBreakerStatus) bool {
	return len(d.Probed) > 0 && d.Effects.None() && equality.Semantic.DeepEqual(stored, d.Status)
}

// Writes reports whether the decision's status differs from the stored one
// and is due now.
func (d Decision) Writes(stored circuitv1alpha1.CircuitBreakerStatus) bool {
	return !d.Effects.DeferWrite && !equality.Semantic.DeepEqual(stored, d.Status)
}

// AckThrough is the start of the newest result the decision recorded; zero if none.
func (d Decision) AckThrough() time.Time {
	if n := len(d.Probed); n > 0 {
		return d.Probed[n-1].Start
	}
	return time.Time{}
}

// Runner is what the probe runner knows of a breaker for its current spec.
type Runner struct {
	// Known: the runner has probed or planned the breaker since the manager
	// started (a manager that restarted knows none).
	Known bool
	// Pending are the results waiting to be recorded, oldest first.
	Pending []probe.Result
	// LastStart is when the last probe for this spec started; zero if none.
	LastStart time.Time
}

// firstResultGrace is how long past its first probe's start (or its creation)
// plus retryTimeout a new breaker's first status waits for its first result:
// the creation time has whole seconds, and the probe may start a little after
// the reconcile.
const firstResultGrace = 2 * time.Second

// Decide moves a breaker's status forward to now. It is pure: it reads the
// recorded object, what was resolved for it, what the runner knows (the probe
// results waiting to be recorded, oldest first, are folded through the state
// machine in order, so that one write records them all; and when the runner
// last started a probe for these settings), and now; it changes nothing it is
// given. It is the one place where results are folded.
func Decide(cb *circuitv1alpha1.CircuitBreaker, res Resolution, run Runner, now time.Time) Decision {
	next := cb.DeepCopy()
	next.Status.ObservedGeneration = cb.Generation
	next.Status.Target = targetSummary(cb.Spec.Target)
	if res.Member != "" {
		next.Status.ProbedBy = res.Member
	}
	d := Decision{Settings: res.Settings}
	if res.Blocked != nil {
		notProbing(next, now, res.Blocked.Reason, res.Blocked.Message)
		setAvailable(next, now)
		d.Status = next.Status
		return d
	}
	cfg := res.Settings
	pending, lastStart := run.Pending, run.LastStart
	e := &d.Effects

	s := statusFromAPI(next.Status, now)
	record := func(after breaker.Status, t *breaker.Transition) {
		s = after
		if t != nil {
			e.Transitions = append(e.Transitions, *t)
		}
	}
	forcedBefore := s.Forced
	record(breaker.ApplyMode(s, cfg.Policy, now))
	if s.Forced != forcedBefore && s.Forced != "" {
		e.Forced = s.Forced
	}
	if v, ok := cb.Annotations[circuitv1alpha1.ResetAnnotation]; ok && v != cb.Status.LastHandledReset {
		record(breaker.Reset(s, cfg.Policy, now))
		next.Status.LastHandledReset = v
		e.ResetAt = now
	}
	if v, ok := cb.Annotations[circuitv1alpha1.TripUntilAnnotation]; ok && v != cb.Status.LastHandledTrip {
		next.Status.LastHandledTrip = v
		e.Trip = tripOf(v, s, cfg.Policy, now)
		if e.Trip.Ignored == "" {
			after, t, _ := breaker.Trip(s, cfg.Policy, e.Trip.Until, now)
			record(after, t)
		}
	}
	wasOpen := s.State == breaker.Open
	record(breaker.Advance(s, cfg.Policy, halfOpenTime(s, lastStart, now)))
	switch {
	case len(pending) == 0:
	case wasOpen && s.State == breaker.HalfOpen:
		// The trial came back before this decision recorded HalfOpen: record
		// HalfOpen on its own first, so that it is seen before the trial's
		// outcome. The results stay pending for the next decision.
		e.Again = true
		d.againPriority = trialPriority(s, cfg.Policy, pending)
	case !e.ResetAt.IsZero():
		// Probes that were under way when the breaker was reset must not count
		// against the fresh circuit.
		d.Probed = judged(pending, cfg.Policy)
	default:
		d.Probed = judged(pending, cfg.Policy)
		for _, r := range d.Probed {
			if s.State == breaker.HalfOpen && r.Start.Before(s.LastTransitionTime) {
				// Sent before the circuit went HalfOpen: not a trial.
				continue
			}
			before := s
			record(breaker.Observe(s, cfg.Policy, breaker.Outcome{Success: r.Success, Latency: r.Latency}, now))
			if reason, ok := breaker.WouldOpen(before, s, cfg.Policy); ok {
				e.WouldOpen = append(e.WouldOpen, reason)
			}
		}
	}
	recordStatus(next, s, d.Probed, res.Service)
	e.Enforce = planEnforcement(next, &cb.Status, res.Enforce)
	switch c := res.Enforce.Conflict; {
	case res.Service.Problem != nil:
		setReady(next, now, metav1.ConditionFalse, res.Service.Problem.Reason, res.Service.Problem.Message)
	case c != nil:
		setReady(next, now, metav1.ConditionFalse, c.Reason, c.Message)
	default:
		setReadyFromProbe(next, now, cfg)
	}
	setAvailable(next, now)
	d.NextProbe = nextProbe(s, lastStart, cfg.Interval, now)
	if !run.Known && cb.Status.LastProbe != nil && s.State != breaker.Open {
		// Probed before, by a manager that has since restarted: spread the first
		// probes of all breakers over one interval instead of sending them at once.
		d.NextProbe = spreadFirstProbe(cfg.Policy.Seed, cfg.Interval, now)
	}
	e.Wake = breaker.WakeAfter(s, now)
	d.Status = next.Status
	if cb.Status.State == "" && len(pending) == 0 && !d.NextProbe.IsZero() && len(e.Transitions) == 0 &&
		e.Forced == "" && e.Trip.Value == "" {
		// A new breaker: its first status goes out with its first result. One
		// that has something to report (a mode, a trip) writes at once. The
		// result is due retryTimeout after the first probe started: the one
		// this decision schedules when the runner does not know the breaker yet
		// (it starts at once, however late after the creation this first
		// decision comes, as in a burst of creations), else the one it started.
		// A probe that has not started by a later decision (waiting for a slot)
		// no longer holds the status back past creation + retryTimeout.
		anchor := cb.CreationTimestamp.Time
		if !run.Known && now.After(anchor) {
			anchor = now
		}
		if lastStart.After(anchor) {
			anchor = lastStart
		}
		if due := anchor.Add(cfg.Target.Timeout + firstResultGrace); now.Before(due) {
			e.DeferWrite, e.Wake = true, due.Sub(now)
		}
	}
	return d
}

// recordStatus writes the state machine's status, a Service target's endpoints
// and the probes' outcome into cb. lastProbe (the newest result) changes only
// when something else did or the outcome differs, so that steady probing
// writes nothing.
func recordStatus(cb *circuitv1alpha1.CircuitBreaker, s breaker.Status, probed []probe.Result, svc ServiceEndpoints) {
	before := cb.Status.DeepCopy()
	statusToAPI(s, &cb.Status)
	if cb.Spec.Target.Service == nil {
		setEndpoints(&cb.Status, nil)
		cb.Status.EndpointsTotal, cb.Status.EndpointsOmitted, cb.Status.EndpointsFailing = 0, 0, 0
	}
	for _, r := range probed {
		if cb.Spec.Target.Service != nil {
			eps, failing := endpointStatuses(allEndpoints(&cb.Status), r.Endpoints, svc.Refs)
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

// Trip is a trip-until annotation value, handled once.
type Trip struct {
	Value string
	Until time.Time
	// Ignored says why the value did nothing: not a time, not in the future,
	// or a mode holds the state. Empty when it opened the circuit.
	Ignored string
}

// tripOf reads a trip-until value.
func tripOf(v string, s breaker.Status, p breaker.Policy, now time.Time) Trip {
	t := Trip{Value: v}
	until, err := time.Parse(time.RFC3339, v)
	switch {
	case err != nil:
		t.Ignored = "is not an RFC 3339 time"
	case !until.After(now):
		t.Ignored = "is not in the future"
	case p.Mode == breaker.ModeForcedOpen || p.Mode == breaker.ModeForcedClosed:
		t.Ignored = "is overridden by mode " + string(p.Mode)
	}
	t.Until = until.UTC()
	if _, _, ok := breaker.Trip(s, p, t.Until, now); !ok && t.Ignored == "" {
		t.Ignored = "changes nothing"
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
