// Package metrics holds the Prometheus collectors of the breakers. They are
// registered once on controller-runtime's registry, so they are served next to
// its own metrics. Labels carry only a breaker's namespace and name and values
// from small fixed sets; never a URL, a header or a body.
//
// A breaker's values live in one small struct (see series), and each metric
// family is a collector that turns them into samples when scraped, the way
// kube-state-metrics and node_exporter expose state they hold elsewhere. A
// CounterVec or HistogramVec instead keeps a full client_golang metric, with
// its label pairs, per series: the 22 series of a breaker cost 15 KiB of heap
// that way, about 0.5 KiB this way, which is most of the manager's memory per
// breaker at 10,000 breakers.
package metrics

import (
	"sort"
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

// durationBuckets are the upper bounds of ProbeDuration's buckets, in seconds.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

var (
	// State is 1 for a breaker's current state and 0 for the others.
	State = newFamily("circuitbreaker_state",
		"Current state of the circuit breaker: 1 for the current state, 0 for the others.",
		prometheus.GaugeValue, []string{"state"}, func(s *breakerSeries, emit emitFunc) {
			if !s.hasState {
				return
			}
			for i, v := range States {
				emit(oneHot(i == int(s.state)), v)
			}
		})

	// Transitions counts state changes.
	Transitions = newFamily("circuitbreaker_transitions_total", "State transitions of the circuit breaker.",
		prometheus.CounterValue, []string{"from", "to"}, func(s *breakerSeries, emit emitFunc) {
			for i, p := range TransitionPairs {
				emit(float64(s.transitions[i]), p[0], p[1])
			}
			for p, v := range s.otherTransitions {
				emit(float64(v), p[0], p[1])
			}
		})

	// WouldOpen counts the openings the policy would have made while mode
	// ForcedClosed held the circuit Closed (a dry run).
	WouldOpen = newFamily("circuitbreaker_would_open_total",
		"Openings the policy would have made while mode ForcedClosed held the circuit Closed.",
		prometheus.CounterValue, nil, func(s *breakerSeries, emit emitFunc) { emit(float64(s.wouldOpen)) })

	// Probes counts probes by result (success or failure).
	Probes = newFamily("circuitbreaker_probes_total", "Probes sent by the circuit breaker, by result.",
		prometheus.CounterValue, []string{"result"}, func(s *breakerSeries, emit emitFunc) {
			for i, r := range Results {
				emit(float64(s.probes[i]), r)
			}
		})

	// ProbeFailures counts failed probes by reason.
	ProbeFailures = newFamily("circuitbreaker_probe_failures_total",
		"Failed probes of the circuit breaker, by reason (timeout, connection_refused, dns, tls, http_status, grpc_not_serving, "+
			"grpc_service_unknown, grpc_unknown, grpc_status, denied, no_endpoints, slow, other).",
		prometheus.CounterValue, []string{"reason"}, func(s *breakerSeries, emit emitFunc) {
			for i, r := range FailureReasons {
				emit(float64(s.failures[i]), r)
			}
			for r, v := range s.otherFailures {
				emit(float64(v), r)
			}
		})

	// ProbeDuration observes how long probes take.
	ProbeDuration = newHistogramFamily("circuitbreaker_probe_duration_seconds", "Duration of the circuit breaker's probes.")

	// Threshold mirrors spec.threshold (its default when unset), so that
	// alerts judge consecutive failures against each breaker's own bound.
	Threshold = newFamily("circuitbreaker_threshold",
		"Consecutive failed probes that open the circuit breaker (spec.threshold).",
		prometheus.GaugeValue, nil, func(s *breakerSeries, emit emitFunc) {
			if s.threshold > 0 {
				emit(float64(s.threshold))
			}
		})

	// LastProbe is when the breaker's last recorded probe started.
	LastProbe = newFamily("circuitbreaker_last_probe_timestamp_seconds",
		"Start of the circuit breaker's last recorded probe, in Unix seconds; exported by the member that owns the breaker.",
		prometheus.GaugeValue, nil, func(s *breakerSeries, emit emitFunc) {
			if s.lastProbe > 0 {
				emit(s.lastProbe)
			}
		})

	// ProbeInterval mirrors spec.interval.
	ProbeInterval = newFamily("circuitbreaker_probe_interval_seconds",
		"The circuit breaker's spec.interval, in seconds: the time between two probes while it is Closed.",
		prometheus.GaugeValue, nil, func(s *breakerSeries, emit emitFunc) {
			if s.interval > 0 {
				emit(s.interval)
			}
		})

	// ConsecutiveFailures mirrors status.consecutiveFailures.
	ConsecutiveFailures = newFamily("circuitbreaker_consecutive_failures", "Consecutive failed probes of the circuit breaker.",
		prometheus.GaugeValue, nil, func(s *breakerSeries, emit emitFunc) {
			if s.hasState {
				emit(float64(s.consecutiveFailures))
			}
		})
)

func init() {
	var s breakerSeries
	if len(s.transitions) != len(TransitionPairs) || len(s.durations) != len(durationBuckets)+1 {
		panic("metrics: series arrays do not match TransitionPairs and durationBuckets")
	}
	ctrlmetrics.Registry.MustRegister(State, Transitions, WouldOpen, Probes, ProbeFailures, ProbeDuration, ConsecutiveFailures,
		Threshold, LastProbe, ProbeInterval)
}

func oneHot(on bool) float64 {
	if on {
		return 1
	}
	return 0
}

// breakerKey identifies a breaker in the store.
type breakerKey struct{ namespace, name string }

// breakerSeries are the values of one breaker's series. A breaker enters the store on
// its first observation with every series of a fixed label combination at 0:
// transitions by from/to, probes by result, failures by reason. A counter that
// is born at 1 hides its first increment from rate() and increase(), so a
// breaker's first opening would never show on a graph or in an alert.
type breakerSeries struct {
	mu sync.Mutex
	// hasState: SetState was called (until then no state or failure-count
	// series); state indexes States, -1 for a value outside them (all 0).
	hasState            bool
	state               int8
	consecutiveFailures int32
	// threshold is spec.threshold; 0 until SetThreshold (no series).
	threshold   int32
	transitions [5]uint64
	wouldOpen   uint64
	probes      [2]uint64
	failures    []uint64
	// Values outside the fixed sets, which the state machine and prober do
	// not produce; kept so that nothing observed is lost.
	otherTransitions map[[2]string]uint64
	otherFailures    map[string]uint64
	// durations counts probes per bucket of durationBuckets (the last is +Inf, not cumulative).
	observed    bool
	durations   [15]uint64
	durationSum float64
	// lastProbe is the start of the last recorded probe, in Unix seconds (0: none yet).
	lastProbe float64
	// interval is spec.interval in seconds (0: not set yet).
	interval float64
	// routing indexes Routings; -1 without spec.enforce (no enforcement series).
	routing int8
	ejected int32
}

// store holds every breaker's series values.
var store = struct {
	sync.RWMutex
	m map[breakerKey]*breakerSeries
}{m: map[breakerKey]*breakerSeries{}}

// get returns a breaker's series, creating them at 0.
func get(namespace, name string) *breakerSeries {
	k := breakerKey{namespace, name}
	store.RLock()
	s := store.m[k]
	store.RUnlock()
	if s != nil {
		return s
	}
	store.Lock()
	defer store.Unlock()
	if s = store.m[k]; s == nil {
		s = &breakerSeries{state: -1, routing: -1, failures: make([]uint64, len(FailureReasons))}
		store.m[k] = s
	}
	return s
}

// update runs f on a breaker's series under its lock.
func update(namespace, name string, f func(*breakerSeries)) {
	s := get(namespace, name)
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

// SetState records the current state and failure count of a breaker.
func SetState(namespace, name, state string, failures int32) {
	update(namespace, name, func(s *breakerSeries) {
		s.hasState, s.state = true, int8(indexOf(States, state))
		s.consecutiveFailures = failures
	})
}

// SetThreshold records a breaker's spec.threshold.
func SetThreshold(namespace, name string, threshold int32) {
	update(namespace, name, func(s *breakerSeries) { s.threshold = threshold })
}

// ObserveTransition counts a state change.
func ObserveTransition(namespace, name, from, to string) {
	update(namespace, name, func(s *breakerSeries) {
		for i, p := range TransitionPairs {
			if p[0] == from && p[1] == to {
				s.transitions[i]++
				return
			}
		}
		if s.otherTransitions == nil {
			s.otherTransitions = map[[2]string]uint64{}
		}
		s.otherTransitions[[2]string{from, to}]++
	})
}

// ObserveWouldOpen counts an opening that mode ForcedClosed prevented.
func ObserveWouldOpen(namespace, name string) {
	update(namespace, name, func(s *breakerSeries) { s.wouldOpen++ })
}

// SetInterval records a breaker's probe interval.
func SetInterval(namespace, name string, interval time.Duration) {
	update(namespace, name, func(s *breakerSeries) { s.interval = interval.Seconds() })
}

// ObserveProbeStart records when a breaker's recorded probe started.
func ObserveProbeStart(namespace, name string, start time.Time) {
	update(namespace, name, func(s *breakerSeries) { s.lastProbe = max(s.lastProbe, float64(start.UnixNano())/1e9) })
}

// ObserveProbe records one probe's outcome and duration.
func ObserveProbe(namespace, name string, success bool, reason string, d time.Duration) {
	update(namespace, name, func(s *breakerSeries) {
		if success {
			s.probes[0]++
		} else {
			s.probes[1]++
			if i := indexOf(FailureReasons, reason); i >= 0 {
				s.failures[i]++
			} else {
				if s.otherFailures == nil {
					s.otherFailures = map[string]uint64{}
				}
				s.otherFailures[reason]++
			}
		}
		secs := d.Seconds()
		s.observed = true
		s.durations[sort.SearchFloat64s(durationBuckets, secs)]++
		s.durationSum += secs
	})
}

// Forget deletes every series of a breaker, so a deleted breaker leaves none behind.
func Forget(namespace, name string) {
	store.Lock()
	delete(store.m, breakerKey{namespace, name})
	store.Unlock()
}

func indexOf(values []string, v string) int {
	for i, x := range values {
		if x == v {
			return i
		}
	}
	return -1
}

// emitFunc emits one sample of a breaker with the family's own label values.
type emitFunc func(value float64, labelValues ...string)

// family is one metric family, collected from the store.
type family struct {
	desc      *prometheus.Desc
	valueType prometheus.ValueType
	samples   func(*breakerSeries, emitFunc)
}

func newFamily(name, help string, t prometheus.ValueType, labels []string, samples func(*breakerSeries, emitFunc)) *family {
	return &family{
		desc:      prometheus.NewDesc(name, help, append([]string{labelNamespace, labelName}, labels...), nil),
		valueType: t,
		samples:   samples,
	}
}

// Describe implements prometheus.Collector.
func (f *family) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

// Collect implements prometheus.Collector: the samples of every breaker.
func (f *family) Collect(ch chan<- prometheus.Metric) {
	each(func(k breakerKey, s *breakerSeries) {
		f.samples(s, func(v float64, labelValues ...string) {
			ch <- prometheus.MustNewConstMetric(f.desc, f.valueType, v, append([]string{k.namespace, k.name}, labelValues...)...)
		})
	})
}

// each calls f with a copy of every breaker's series, taken under its lock, so
// that no lock is held while a sample is sent.
func each(f func(breakerKey, *breakerSeries)) {
	store.RLock()
	keys := make([]breakerKey, 0, len(store.m))
	all := make([]*breakerSeries, 0, len(store.m))
	for k, s := range store.m {
		keys = append(keys, k)
		all = append(all, s)
	}
	store.RUnlock()
	var c breakerSeries
	for i, s := range all {
		s.mu.Lock()
		c = breakerSeries{
			hasState: s.hasState, state: s.state, consecutiveFailures: s.consecutiveFailures, threshold: s.threshold, transitions: s.transitions,
			wouldOpen: s.wouldOpen, probes: s.probes, failures: append(c.failures[:0], s.failures...),
			otherTransitions: clone(s.otherTransitions), otherFailures: clone(s.otherFailures),
			observed: s.observed, durations: s.durations, durationSum: s.durationSum,
			routing: s.routing, ejected: s.ejected, lastProbe: s.lastProbe, interval: s.interval,
		}
		s.mu.Unlock()
		f(keys[i], &c)
	}
}

func clone[K comparable](m map[K]uint64) map[K]uint64 {
	if m == nil {
		return nil
	}
	out := make(map[K]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// histogramFamily is ProbeDuration: a histogram per breaker that has been probed.
type histogramFamily struct{ desc *prometheus.Desc }

func newHistogramFamily(name, help string) *histogramFamily {
	return &histogramFamily{desc: prometheus.NewDesc(name, help, []string{labelNamespace, labelName}, nil)}
}

// Describe implements prometheus.Collector.
func (h *histogramFamily) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *histogramFamily) Collect(ch chan<- prometheus.Metric) {
	each(func(k breakerKey, s *breakerSeries) {
		if !s.observed {
			return
		}
		buckets := make(map[float64]uint64, len(durationBuckets))
		var cumulative uint64
		for i, upper := range durationBuckets {
			cumulative += s.durations[i]
			buckets[upper] = cumulative
		}
		count := cumulative + s.durations[len(durationBuckets)]
		ch <- prometheus.MustNewConstHistogram(h.desc, count, s.durationSum, buckets, k.namespace, k.name)
	})
}
