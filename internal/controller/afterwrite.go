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

// afterWrite acts on a decision once its status is stored (cb holds it): it
// acknowledges the recorded probe result, schedules the next probe, and reports
// transitions as Events, log lines and metrics. Running it only after a
// successful write means a retried conflict never reports a transition twice.
func (r *CircuitBreakerReconciler) afterWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key probe.Key, d decision) {
	log := logf.FromContext(ctx)
	if d.probed != nil {
		r.Runner.Ack(key, d.probed.Start)
		metrics.ObserveProbe(cb.Namespace, cb.Name, d.probed.Success, string(d.probed.Reason), d.probed.Latency)
	}
	if d.reset {
		// A probe that was under way when the reset was handled must not count
		// against the fresh circuit, whenever it comes back.
		r.Runner.DiscardBefore(key, d.resetAt)
	}
	if !d.probes || d.nextProbe.IsZero() {
		r.Runner.Pause(key)
	} else {
		r.Runner.Schedule(key, d.settings.specID, d.settings.target, d.nextProbe)
	}
	if d.reset {
		log.Info("Circuit reset by annotation", "value", cb.Status.LastHandledReset)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, circuitv1alpha1.EventCircuitReset, "Reset",
			"Circuit reset to Closed by the %s annotation", circuitv1alpha1.ResetAnnotation)
	}
	for _, t := range d.transitions {
		log.Info("Circuit state changed", "from", t.From, "to", t.To, "reason", t.Reason)
		metrics.ObserveTransition(cb.Namespace, cb.Name, string(t.From), string(t.To))
		r.emitTransition(cb, t, d.probed)
	}
	metrics.SetState(cb.Namespace, cb.Name, string(cb.Status.State), cb.Status.ConsecutiveFailures)
	r.emitEnforcementEvents(cb, d.enforce)
	if e := cb.Status.Enforcement; e != nil {
		metrics.SetEnforcement(cb.Namespace, cb.Name, string(e.Routing), e.EndpointsEjected)
	} else {
		metrics.SetEnforcement(cb.Namespace, cb.Name, "", 0)
	}
}

func (r *CircuitBreakerReconciler) emitTransition(cb *circuitv1alpha1.CircuitBreaker, t breaker.Transition, probed *probe.Result) {
	last := "none"
	if probed != nil {
		last = string(probed.Reason)
	}
	switch {
	case t.Reason == breaker.ReasonReset:
		// Reported once, as CircuitReset, above.
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
