package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// report acts on a decision once its status is stored (cb holds it): it
// settles the recorded probe results with the runner and reports transitions
// as Events, log lines and metrics. Running it only after a successful write
// means a retried conflict never reports a transition twice, and a result is
// dropped only once it is stored.
func (r *CircuitBreakerReconciler) report(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key runner.Key, d decision.Decision) {
	log := logf.FromContext(ctx)
	var last *probe.Result
	if n := len(d.Probed); n > 0 {
		last = &d.Probed[n-1]
	}
	// A probe that was under way when a reset was handled must not count
	// against the fresh circuit, whenever it comes back.
	r.Runner.Settle(key, d.AckThrough(), d.Effects.ResetAt)
	observeProbes(cb, d.Probed)
	r.emitPolicyEvents(cb, d.Effects)
	if !d.Effects.ResetAt.IsZero() {
		log.Info("Circuit reset by annotation", "value", cb.Status.LastHandledReset)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitReset, "Reset",
			"Circuit reset to Closed by the %s annotation", circuitv1alpha1.ResetAnnotation)
	}
	for _, t := range d.Effects.Transitions {
		log.Info("Circuit state changed", "from", t.From, "to", t.To, "reason", t.Reason)
		metrics.ObserveTransition(cb.Namespace, cb.Name, string(t.From), string(t.To))
		r.emitTransition(cb, t, last)
	}
	metrics.SetState(cb.Namespace, cb.Name, string(cb.Status.State), cb.Status.ConsecutiveFailures)
	metrics.SetThreshold(cb.Namespace, cb.Name, thresholdOf(cb.Spec))
	metrics.SetInterval(cb.Namespace, cb.Name, d.Settings.Interval)
	r.emitEnforcementEvents(cb, d.Effects.Enforce)
	if e := cb.Status.Enforcement; e != nil {
		metrics.SetEnforcement(cb.Namespace, cb.Name, string(e.Routing), e.EndpointsEjected)
	} else {
		metrics.SetEnforcement(cb.Namespace, cb.Name, "", 0)
	}
}

// emitPolicyEvents reports what a mode or the trip-until annotation did, and
// the openings a ForcedClosed circuit did not make.
func (r *CircuitBreakerReconciler) emitPolicyEvents(cb *circuitv1alpha1.CircuitBreaker, e decision.Effects) {
	switch e.Forced {
	case breaker.ModeForcedOpen:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitForcedOpen, "ForceOpen",
			"Circuit held Open by mode ForcedOpen: nothing is probed until mode is Auto again")
	case breaker.ModeForcedClosed:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitForcedClosed, "ForceClose",
			"Circuit held Closed by mode ForcedClosed: probes go on as a dry run")
	}
	for _, reason := range e.WouldOpen {
		metrics.ObserveWouldOpen(cb.Namespace, cb.Name)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitWouldOpen, "WouldOpen",
			"The policy would have opened the circuit (%s); mode ForcedClosed keeps it Closed", reason)
	}
	if e.Trip.Value != "" && e.Trip.Ignored != "" {
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventTripIgnored, "Trip",
			"The %s annotation %s; it is ignored", circuitv1alpha1.TripUntilAnnotation, e.Trip.Ignored)
	}
}

func (r *CircuitBreakerReconciler) emitTransition(cb *circuitv1alpha1.CircuitBreaker, t breaker.Transition, probed *probe.Result) {
	last := "none"
	if probed != nil {
		last = string(probed.Reason)
	}
	switch {
	case t.Reason == breaker.ReasonReset, t.Reason == breaker.ReasonForcedOpen, t.Reason == breaker.ReasonForcedClosed:
		// Reported once, as CircuitReset or by emitPolicyEvents.
	case t.Reason == breaker.ReasonTripped:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitTripped, "Trip",
			"Circuit opened by the %s annotation until %s", circuitv1alpha1.TripUntilAnnotation, decision.FormatTime(cb.Status.NextRetryTime))
	case t.Reason == breaker.ReasonFailureRateReached:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitOpened, "Open",
			"Circuit opened: the failure rate of the last probes reached failureRate.percent (last: %s); next trial at %s",
			last, decision.FormatTime(cb.Status.NextRetryTime))
	case t.To == breaker.Open:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitOpened, "Open",
			"Circuit opened after %d consecutive failed probes (last: %s); next trial at %s",
			cb.Status.ConsecutiveFailures, last, decision.FormatTime(cb.Status.NextRetryTime))
	case t.To == breaker.HalfOpen:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitHalfOpened, "HalfOpen",
			"Circuit half-open after its timeout; sending trial probes")
	case t.To == breaker.Closed:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitClosed, "Close",
			"Circuit closed after successful trial probes")
	}
}

// observeProbes counts recorded probe results in the metrics.
func observeProbes(cb *circuitv1alpha1.CircuitBreaker, probed []probe.Result) {
	for _, p := range probed {
		metrics.ObserveProbe(cb.Namespace, cb.Name, p.Success, string(p.Reason), p.Latency)
	}
	if n := len(probed); n > 0 {
		metrics.ObserveProbeStart(cb.Namespace, cb.Name, probed[n-1].Start)
	}
}

// emitEnforcementEvents reports what the written plan changed.
func (r *CircuitBreakerReconciler) emitEnforcementEvents(cb *circuitv1alpha1.CircuitBreaker, plan *decision.EnforcementPlan) {
	if plan == nil {
		return
	}
	for _, ev := range plan.Events {
		r.Recorder.Eventf(cb, nil, ev.EventType, ev.Reason, ev.Action, "%s", ev.Message)
	}
}

// thresholdOf is spec.threshold with its default, for the alert that compares
// failures with it.
func thresholdOf(spec circuitv1alpha1.CircuitBreakerSpec) int32 {
	if spec.Threshold <= 0 {
		return circuitv1alpha1.DefaultThreshold
	}
	return spec.Threshold
}
