package decision

import (
	"fmt"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// statusFromAPI reads the state machine's status from the stored one. A breaker
// never reconciled before starts Closed.
func statusFromAPI(st circuitv1alpha1.CircuitBreakerStatus, now time.Time) breaker.Status {
	if st.State == "" {
		return breaker.Start(now)
	}
	return breaker.Status{
		State:                breaker.State(st.State),
		ConsecutiveFailures:  st.ConsecutiveFailures,
		ConsecutiveSuccesses: st.ConsecutiveSuccesses,
		LastTransitionTime:   timeOf(st.LastTransitionTime),
		OpenedAt:             timeOf(st.OpenedAt),
		NextRetryTime:        timeOf(st.NextRetryTime),
		Reopens:              st.Reopens,
		Window:               st.RecentProbes,
		Forced:               breaker.Mode(st.ForcedMode),
		TrippedUntil:         timeOf(st.TrippedUntil),
		WouldBeOpen:          st.WouldBeOpen,
		Leading:              st.LeadingSuccesses,
		Last:                 transitionFromAPI(st.LastTransition),
	}
}

func statusToAPI(s breaker.Status, st *circuitv1alpha1.CircuitBreakerStatus) {
	st.State = circuitv1alpha1.State(s.State)
	st.ConsecutiveFailures = s.ConsecutiveFailures
	st.ConsecutiveSuccesses = s.ConsecutiveSuccesses
	st.LastTransitionTime = microTime(s.LastTransitionTime)
	st.OpenedAt = microTime(s.OpenedAt)
	st.NextRetryTime = microTime(s.NextRetryTime)
	st.Reopens = s.Reopens
	st.RecentProbes = s.Window
	st.ForcedMode = circuitv1alpha1.Mode(s.Forced)
	st.TrippedUntil = microTime(s.TrippedUntil)
	st.WouldBeOpen = s.WouldBeOpen
	st.LeadingSuccesses = s.Leading
	st.LastTransition = transitionToAPI(s.Last, s.LastTransitionTime)
}

func transitionFromAPI(t *circuitv1alpha1.LastTransition) breaker.Transition {
	if t == nil {
		return breaker.Transition{}
	}
	return breaker.Transition{From: breaker.State(t.From), To: breaker.State(t.To), Reason: string(t.Reason)}
}

// transitionToAPI is status.lastTransition: the state machine's last
// transition, at lastTransitionTime; nil before the first.
func transitionToAPI(t breaker.Transition, at time.Time) *circuitv1alpha1.LastTransition {
	when := microTime(at)
	if t.Reason == "" || when == nil {
		return nil
	}
	return &circuitv1alpha1.LastTransition{
		From:   circuitv1alpha1.State(t.From),
		To:     circuitv1alpha1.State(t.To),
		Reason: circuitv1alpha1.TransitionReason(t.Reason),
		Time:   *when,
	}
}

func timeOf(t *metav1.MicroTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func microTime(t time.Time) *metav1.MicroTime {
	if t.IsZero() {
		return nil
	}
	m := metav1.NewMicroTime(t.UTC().Truncate(time.Microsecond))
	return &m
}

func lastProbeFromResult(res probe.Result) *circuitv1alpha1.LastProbe {
	lp := &circuitv1alpha1.LastProbe{
		Time:       metav1.NewMicroTime(res.Start.UTC().Truncate(time.Microsecond)),
		Result:     circuitv1alpha1.ProbeFailure,
		Reason:     res.Reason,
		HTTPStatus: int32(res.HTTPStatus),
		Latency:    metav1.Duration{Duration: res.Latency.Round(time.Microsecond)},
	}
	if res.Success {
		lp.Result = circuitv1alpha1.ProbeSuccess
	}
	return lp
}

// lastProbeChanged reports whether res differs in outcome from the recorded
// probe; times and latencies alone do not count, so steady probing writes nothing.
func lastProbeChanged(recorded *circuitv1alpha1.LastProbe, res probe.Result) bool {
	if recorded == nil {
		return true
	}
	return (recorded.Result == circuitv1alpha1.ProbeSuccess) != res.Success ||
		recorded.Reason != res.Reason || int(recorded.HTTPStatus) != res.HTTPStatus
}

// setReady sets the Ready condition; a condition whose status changes is
// stamped with now (the decision's clock, not the wall clock).
func setReady(cb *circuitv1alpha1.CircuitBreaker, now time.Time, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(&cb.Status.Conditions, metav1.Condition{
		Type:               circuitv1alpha1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: cb.Generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

// setAvailable says whether callers may use the target, from the recorded state.
// Its message changes only with the state (and, while Open, nextRetryTime), so
// it is written in the same patch as the transition and never on its own.
func setAvailable(cb *circuitv1alpha1.CircuitBreaker, now time.Time) {
	c := metav1.Condition{
		Type:               circuitv1alpha1.ConditionAvailable,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: cb.Generation,
		LastTransitionTime: metav1.NewTime(now),
	}
	switch cb.Status.State {
	case circuitv1alpha1.StateOpen:
		c.Reason = circuitv1alpha1.ReasonCircuitOpen
		c.Message = "The circuit is Open: callers should fail fast"
		if t := cb.Status.NextRetryTime; t != nil {
			c.Message += " until its trial at " + FormatTime(t)
		} else if cb.Status.ForcedMode == circuitv1alpha1.ModeForcedOpen {
			c.Message += " while mode is ForcedOpen"
		}
	case circuitv1alpha1.StateHalfOpen:
		c.Reason = circuitv1alpha1.ReasonCircuitHalfOpen
		c.Message = "The circuit is HalfOpen: trial probes Decide whether it closes"
	default:
		c.Status = metav1.ConditionTrue
		c.Reason = circuitv1alpha1.ReasonCircuitClosed
		c.Message = "The circuit is Closed: calls go through"
	}
	apimeta.SetStatusCondition(&cb.Status.Conditions, c)
}

// setReadyFromProbe says whether the breaker probes as specified. A probe the
// guard refused is the one case where it cannot, short of an invalid spec.
func setReadyFromProbe(cb *circuitv1alpha1.CircuitBreaker, now time.Time, cfg Settings) {
	switch lp := cb.Status.LastProbe; {
	case lp == nil:
	case lp.Reason == circuitv1alpha1.ProbeReasonDenied:
		setReady(cb, now, metav1.ConditionFalse, circuitv1alpha1.ReasonProbeDenied,
			"The operator's probe guard refused the target's address (link-local, unspecified, cloud metadata, loopback, "+
				"in --probe-deny-cidrs, outside --probe-allow-cidrs or outside the namespace's "+
				circuitv1alpha1.ProbeAllowedCIDRsAnnotation+" annotation); probes count as failures")
		return
	case lp.Reason == circuitv1alpha1.ProbeReasonDNS:
		setReady(cb, now, metav1.ConditionFalse, circuitv1alpha1.ReasonTargetUnresolvable,
			"The target's host name does not resolve; probes count as failures until it does")
		return
	}
	msg := fmt.Sprintf("Probing the %s target every %s with a %s deadline", cfg.Target.Scheme, cfg.Interval, cfg.Target.Timeout)
	if g := cfg.Target.GRPC; g != nil && g.Watch {
		msg = fmt.Sprintf("Watching the %s target's health, judged every %s", cfg.Target.Scheme, cfg.Interval)
	}
	switch cfg.Policy.Mode {
	case breaker.ModeForcedOpen:
		msg = "Mode ForcedOpen holds the circuit Open: nothing is probed until mode is Auto"
	case breaker.ModeForcedClosed:
		msg += "; mode ForcedClosed holds the circuit Closed (a dry run)"
	}
	if cfg.Target.TLS != nil && cfg.Target.TLS.InsecureSkipVerify {
		field := "http"
		if cfg.Target.GRPC != nil {
			field = "grpc"
		}
		msg += "; TLS certificate verification is OFF (" + field + ".tls.insecureSkipVerify)"
	}
	setReady(cb, now, metav1.ConditionTrue, circuitv1alpha1.ReasonProbing, msg)
}

// FormatTime formats a status time for messages; "unknown" when unset.
func FormatTime(t *metav1.MicroTime) string {
	if t == nil {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}
