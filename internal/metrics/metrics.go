// Package metrics holds the Prometheus collectors of the breakers. They are
// registered once on controller-runtime's registry, so they are served next to
// its own metrics. Labels carry only a breaker's namespace and name and values
// from small fixed sets; never a URL, a header or a body.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label names shared by every series of a breaker.
const (
	labelNamespace = "namespace"
	labelName      = "name"
)

// States are the values of the state label.
var States = []string{"Closed", "Open", "HalfOpen"}

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
	ctrlmetrics.Registry.MustRegister(State, Transitions, Probes, ProbeFailures, ProbeDuration, ConsecutiveFailures)
}

// SetState records the current state and failure count of a breaker.
func SetState(namespace, name, state string, failures int32) {
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
	Transitions.WithLabelValues(namespace, name, from, to).Inc()
}

// ObserveProbe records one probe's outcome and duration.
func ObserveProbe(namespace, name string, success bool, reason string, d time.Duration) {
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
	State.DeletePartialMatch(labels)
	Transitions.DeletePartialMatch(labels)
	Probes.DeletePartialMatch(labels)
	ProbeFailures.DeletePartialMatch(labels)
	ProbeDuration.DeletePartialMatch(labels)
	ConsecutiveFailures.DeletePartialMatch(labels)
	forgetEnforcement(labels)
}
