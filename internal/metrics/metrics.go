// Package metrics holds the Prometheus collectors of the breakers. They are
// registered once on controller-runtime's registry, so they are served next to
// its own metrics. Labels carry only a breaker's namespace and name and values
// from small fixed sets; never a URL, a header or a body.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
)

// Label names shared by every series of a breaker.
const (
	labelNamespace = "namespace"
	labelName      = "name"
)

// The values of the state, from and to labels.
const (
	closed   = string(breaker.Closed)
	open     = string(breaker.Open)
	halfOpen = string(breaker.HalfOpen)
)

// States are the values of the state label.
var States = []string{closed, open, halfOpen}

// TransitionPairs are the transitions between States that the state machine makes, as from/to
// label pairs: opening, the timed half-open, a trial closing or reopening,
// and a reset of an Open circuit.
var TransitionPairs = [][2]string{
	{closed, open}, {open, halfOpen}, {halfOpen, closed}, {halfOpen, open}, {open, closed},
}

// Results are the values of the result label.
var Results = []string{"success", "failure"}

// FailureReasons are the values of the reason label: every probe reason but ok.
var FailureReasons = func() []string {
	var out []string
	for _, r := range circuitv1alpha1.ProbeReasons {
		if r != circuitv1alpha1.ProbeReasonOK {
			out = append(out, string(r))
		}
	}
	return out
}()

var (
	// State is 1 for a breaker's current state and 0 for the others.
	State = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_state",
		Help: "Current state of the circuit breaker: 1 for the current state, 0 for the others.",
	}, []string{labelNamespace, labelName, "state"})

	// Transitions counts state changes.
	Transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "circuitbreaker_transitions_total",
		Help: "State transitions of the circuit breaker.",
	}, []string{labelNamespace, labelName, "from", "to"})
	// WouldOpen counts the openings the policy would have made while mode
	// ForcedClosed held the circuit Closed (a dry run).
	WouldOpen = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "circuitbreaker_would_open_total",
		Help: "Openings the policy would have made while mode ForcedClosed held the circuit Closed.",
	}, []string{labelNamespace, labelName})

	// Probes counts probes by result (success or failure).
	Probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "circuitbreaker_probes_total",
		Help: "Probes sent by the circuit breaker, by result.",
	}, []string{labelNamespace, labelName, "result"})

	// ProbeFailures counts failed probes by reason.
	ProbeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "circuitbreaker_probe_failures_total",
		Help: "Failed probes of the circuit breaker, by reason (timeout, connection_refused, dns, tls, http_status, denied, no_endpoints, other).",
	}, []string{labelNamespace, labelName, "reason"})

	// ProbeDuration observes how long probes take.
	ProbeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "circuitbreaker_probe_duration_seconds",
		Help:    "Duration of the circuit breaker's probes.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{labelNamespace, labelName})

	// ConsecutiveFailures mirrors status.consecutiveFailures.
	ConsecutiveFailures = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_consecutive_failures",
		Help: "Consecutive failed probes of the circuit breaker.",
	}, []string{labelNamespace, labelName})
)

func init() {
	ctrlmetrics.Registry.MustRegister(State, Transitions, WouldOpen, Probes, ProbeFailures, ProbeDuration, ConsecutiveFailures)
}

// breakerKey identifies a breaker in known.
type breakerKey struct{ namespace, name string }

// known holds the breakers whose fixed series exist.
var known sync.Map

// ensure creates, once per breaker, every series of a fixed label combination
// at 0: transitions by from/to, probes by result, failures by reason. A counter
// that is born at 1 hides its first increment from rate() and increase(), so a
// breaker's first opening would never show on a graph or in an alert.
func ensure(namespace, name string) {
	if _, loaded := known.LoadOrStore(breakerKey{namespace, name}, struct{}{}); loaded {
		return
	}
	for _, p := range TransitionPairs {
		Transitions.WithLabelValues(namespace, name, p[0], p[1])
	}
	for _, r := range Results {
		Probes.WithLabelValues(namespace, name, r)
	}
	WouldOpen.WithLabelValues(namespace, name)
	for _, r := range FailureReasons {
		ProbeFailures.WithLabelValues(namespace, name, r)
	}
}

// SetState records the current state and failure count of a breaker.
func SetState(namespace, name, state string, failures int32) {
	ensure(namespace, name)
	setOneHot(State, namespace, name, States, state)
	ConsecutiveFailures.WithLabelValues(namespace, name).Set(float64(failures))
}

// setOneHot sets vec's series of the breaker to 1 for current and 0 for the other values.
func setOneHot(vec *prometheus.GaugeVec, namespace, name string, values []string, current string) {
	for _, v := range values {
		x := 0.0
		if v == current {
			x = 1
		}
		vec.WithLabelValues(namespace, name, v).Set(x)
	}
}

// ObserveTransition counts a state change.
func ObserveTransition(namespace, name, from, to string) {
	ensure(namespace, name)
	Transitions.WithLabelValues(namespace, name, from, to).Inc()
}

// ObserveWouldOpen counts an opening that mode ForcedClosed prevented.
func ObserveWouldOpen(namespace, name string) {
	ensure(namespace, name)
	WouldOpen.WithLabelValues(namespace, name).Inc()
}

// ObserveProbe records one probe's outcome and duration.
func ObserveProbe(namespace, name string, success bool, reason string, d time.Duration) {
	ensure(namespace, name)
	result := "success"
	if !success {
		result = "failure"
		ProbeFailures.WithLabelValues(namespace, name, reason).Inc()
	}
	Probes.WithLabelValues(namespace, name, result).Inc()
	ProbeDuration.WithLabelValues(namespace, name).Observe(d.Seconds())
}

// Forget deletes every series of a breaker, so a deleted breaker leaves none behind.
func Forget(namespace, name string) {
	labels := prometheus.Labels{labelNamespace: namespace, labelName: name}
	known.Delete(breakerKey{namespace, name})
	State.DeletePartialMatch(labels)
	Transitions.DeletePartialMatch(labels)
	WouldOpen.DeletePartialMatch(labels)
	Probes.DeletePartialMatch(labels)
	ProbeFailures.DeletePartialMatch(labels)
	ProbeDuration.DeletePartialMatch(labels)
	ConsecutiveFailures.DeletePartialMatch(labels)
	forgetEnforcement(labels)
}
