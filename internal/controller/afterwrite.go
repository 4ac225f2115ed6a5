package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// schedule tells the runner what a decision means for probing, at once and
// before the status is written: a circuit that opens stops probing (its trial
// waits for nextRetryTime) however long the API server takes the write.
func (r *CircuitBreakerReconciler) schedule(key probe.Key, d decision) {
	if !d.probes || d.nextProbe.IsZero() {
		r.Runner.Pause(key)
		return
	}
	r.Runner.Schedule(key, d.settings.specID, d.settings.target, d.nextProbe, d.settings.interval)
}

// afterWrite acts on a decision once its status is stored (cb holds it): it
// acknowledges the recorded probe results and reports transitions as Events,
// log lines and metrics. Running it only after a successful write means a
// retried conflict never reports a transition twice, and a result is dropped
// only once it is stored.
func (r *CircuitBreakerReconciler) afterWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key probe.Key, d decision) {
	log := logf.FromContext(ctx)
	var last *probe.Result
	if n := len(d.probed); n > 0 {
		last = &d.probed[n-1]
		r.Runner.Ack(key, last.Start)
	}
	for _, p := range d.probed {
		metrics.ObserveProbe(cb.Namespace, cb.Name, p.Success, string(p.Reason), p.Latency)
	}
	if d.reset {
		// A probe that was under way when the reset was handled must not count
		// against the fresh circuit, whenever it comes back.
		r.Runner.DiscardBefore(key, d.resetAt)
	}
	r.emitPolicyEvents(cb, d)
	if d.reset {
		log.Info("Circuit reset by annotation", "value", cb.Status.LastHandledReset)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitReset, "Reset",
			"Circuit reset to Closed by the %s annotation", circuitv1alpha1.ResetAnnotation)
	}
	for _, t := range d.transitions {
		log.Info("Circuit state changed", "from", t.From, "to", t.To, "reason", t.Reason)
		metrics.ObserveTransition(cb.Namespace, cb.Name, string(t.From), string(t.To))
		r.emitTransition(cb, t, last)
	}
	metrics.SetState(cb.Namespace, cb.Name, string(cb.Status.State), cb.Status.ConsecutiveFailures)
	metrics.SetThreshold(cb.Namespace, cb.Name, orDefault(cb.Spec.Threshold, circuitv1alpha1.DefaultThreshold))
	r.emitEnforcementEvents(cb, d.enforce)
	if e := cb.Status.Enforcement; e != nil {
		metrics.SetEnforcement(cb.Namespace, cb.Name, string(e.Routing), e.EndpointsEjected)
	} else {
		metrics.SetEnforcement(cb.Namespace, cb.Name, "", 0)
	}
}

// emitPolicyEvents reports what a mode or the trip-until annotation did, and
// the openings a ForcedClosed circuit did not make.
func (r *CircuitBreakerReconciler) emitPolicyEvents(cb *circuitv1alpha1.CircuitBreaker, d decision) {
	switch d.forced {
	case breaker.ModeForcedOpen:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitForcedOpen, "ForceOpen",
			"Circuit held Open by mode ForcedOpen: nothing is probed until mode is Auto again")
	case breaker.ModeForcedClosed:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitForcedClosed, "ForceClose",
			"Circuit held Closed by mode ForcedClosed: probes go on as a dry run")
	}
	for _, reason := range d.wouldOpen {
		metrics.ObserveWouldOpen(cb.Namespace, cb.Name)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitWouldOpen, "WouldOpen",
			"The policy would have opened the circuit (%s); mode ForcedClosed keeps it Closed", reason)
	}
	if d.trip.value != "" && d.trip.ignored != "" {
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventTripIgnored, "Trip",
			"The %s annotation %s; it is ignored", circuitv1alpha1.TripUntilAnnotation, d.trip.ignored)
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
			"Circuit opened by the %s annotation until %s", circuitv1alpha1.TripUntilAnnotation, formatTime(cb.Status.NextRetryTime))
	case t.Reason == breaker.ReasonFailureRateReached:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitOpened, "Open",
			"Circuit opened: the failure rate of the last probes reached failureRate.percent (last: %s); next trial at %s",
			last, formatTime(cb.Status.NextRetryTime))
	case t.To == breaker.Open:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, circuitv1alpha1.EventCircuitOpened, "Open",
			"Circuit opened after %d consecutive failed probes (last: %s); next trial at %s",
			cb.Status.ConsecutiveFailures, last, formatTime(cb.Status.NextRetryTime))
	case t.To == breaker.HalfOpen:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitHalfOpened, "HalfOpen",
			"Circuit half-open after its timeout; sending trial probes")
	case t.To == breaker.Closed:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitClosed, "Close",
			"Circuit closed after successful trial probes")
	}
}
