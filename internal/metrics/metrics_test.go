package metrics

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/resilience-dev/breaker-operator/internal/breaker"
)

// The collectors are package globals shared by every test, so each test uses
// its own namespace and reads only the series of its breakers. The helpers
// below do what prometheus/testutil's ToFloat64 and CollectAndCount do, but
// filtered by breaker and without creating series the way WithLabelValues
// would; testutil itself would add a module (kylelemons/godebug) to go.mod.

// series returns the values of c's series that belong to breaker ns/name, keyed
// by their other labels ("state=Open", "from=Closed,to=Open", or "" if none).
// A histogram's value is its sample count.
func series(t *testing.T, c prometheus.Collector, ns, name string) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	out := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatalf("writing metric: %v", err)
		}
		var gotNS, gotName string
		var rest []string
		for _, lp := range pb.GetLabel() {
			switch lp.GetName() {
			case "namespace":
				gotNS = lp.GetValue()
			case "name":
				gotName = lp.GetValue()
			default:
				rest = append(rest, lp.GetName()+"="+lp.GetValue())
			}
		}
		if gotNS != ns || gotName != name {
			continue
		}
		key := strings.Join(rest, ",")
		switch {
		case pb.Gauge != nil:
			out[key] = pb.GetGauge().GetValue()
		case pb.Counter != nil:
			out[key] = pb.GetCounter().GetValue()
		case pb.Histogram != nil:
			out[key] = float64(pb.GetHistogram().GetSampleCount())
		default:
			t.Fatalf("unexpected metric type: %v", &pb)
		}
	}
	return out
}

// histogram returns the histogram of ProbeDuration for breaker ns/name.
func histogram(t *testing.T, ns, name string) *dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		ProbeDuration.Collect(ch)
		close(ch)
	}()
	var found *dto.Histogram
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatalf("writing histogram: %v", err)
		}
		labels := map[string]string{}
		for _, lp := range pb.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["namespace"] == ns && labels["name"] == name {
			found = pb.GetHistogram()
		}
	}
	if found == nil {
		t.Fatalf("no histogram for %s/%s", ns, name)
	}
	return found
}

// nonZero drops the series that are still at 0.
func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func allCollectors() map[string]prometheus.Collector {
	return map[string]prometheus.Collector{
		"state":                State,
		"transitions":          Transitions,
		"probes":               Probes,
		"probe_failures":       ProbeFailures,
		"probe_duration":       ProbeDuration,
		"consecutive_failures": ConsecutiveFailures,
		"threshold":            Threshold,
	}
}

func TestSetStateSetsExactlyOneStateToOne(t *testing.T) {
	for _, state := range States {
		t.Run(state, func(t *testing.T) {
			g := NewWithT(t)
			want := map[string]float64{"state=Closed": 0, "state=Open": 0, "state=HalfOpen": 0}
			want["state="+state] = 1

			// Every state after every other: the gauge is one-hot whatever came before.
			for _, before := range States {
				SetState("set-state", state, before, 1)
				SetState("set-state", state, state, 4)
				g.Expect(series(t, State, "set-state", state)).To(Equal(want), "after %s", before)
			}
			g.Expect(series(t, ConsecutiveFailures, "set-state", state)).To(Equal(map[string]float64{"": 4}))
		})
	}
}

// A counter born at 1 hides its first increment from rate() and increase():
// every fixed label combination exists at 0 as soon as a breaker has a series.
func TestABreakersCountersStartAtZeroForEveryFixedLabelCombination(t *testing.T) {
	for first, observe := range map[string]func(ns string){
		"SetState":          func(ns string) { SetState(ns, "cb", "Closed", 0) },
		"ObserveProbe":      func(ns string) { ObserveProbe(ns, "cb", true, "ok", time.Millisecond) },
		"ObserveTransition": func(ns string) { ObserveTransition(ns, "cb", "Closed", "Open") },
	} {
		t.Run(first, func(t *testing.T) {
			g := NewWithT(t)
			ns := "zero-" + strings.ToLower(first)
			g.Expect(series(t, Transitions, ns, "cb")).To(BeEmpty())
			observe(ns)
			defer Forget(ns, "cb")

			transitions := series(t, Transitions, ns, "cb")
			g.Expect(transitions).To(HaveLen(len(TransitionPairs)))
			for _, p := range TransitionPairs {
				g.Expect(transitions).To(HaveKey("from=" + p[0] + ",to=" + p[1]))
			}
			g.Expect(series(t, Probes, ns, "cb")).To(HaveKey("result=success"))
			g.Expect(series(t, Probes, ns, "cb")).To(HaveKeyWithValue("result=failure", 0.0))
			failures := series(t, ProbeFailures, ns, "cb")
			g.Expect(failures).To(HaveLen(len(FailureReasons)))
			g.Expect(nonZero(failures)).To(BeEmpty())
			for _, r := range []string{"timeout", "connection_refused", "dns", "tls", "http_status", "denied", "no_endpoints", "other"} {
				g.Expect(failures).To(HaveKeyWithValue("reason="+r, 0.0))
			}
		})
	}
}

// After Forget, a breaker of the same name gets its zeroed series again.
func TestForgottenBreakerGetsItsZeroSeriesBack(t *testing.T) {
	g := NewWithT(t)
	ObserveTransition("recreated", "cb", "Closed", "Open")
	Forget("recreated", "cb")
	g.Expect(series(t, Transitions, "recreated", "cb")).To(BeEmpty())
	SetState("recreated", "cb", "Closed", 0)
	defer Forget("recreated", "cb")
	g.Expect(series(t, Transitions, "recreated", "cb")).To(HaveLen(len(TransitionPairs)))
	g.Expect(nonZero(series(t, Transitions, "recreated", "cb"))).To(BeEmpty())
}

func TestSetStateFollowsTheFailureCount(t *testing.T) {
	g := NewWithT(t)
	for _, n := range []int32{0, 1, 7, 0} {
		SetState("failures", "cb", "Closed", n)
		g.Expect(series(t, ConsecutiveFailures, "failures", "cb")).To(Equal(map[string]float64{"": float64(n)}))
	}
}

// The threshold series exists from SetThreshold on and follows spec edits.
func TestSetThresholdFollowsTheSpec(t *testing.T) {
	g := NewWithT(t)
	SetState("threshold", "cb", "Closed", 0)
	defer Forget("threshold", "cb")
	g.Expect(series(t, Threshold, "threshold", "cb")).To(BeEmpty())
	for _, n := range []int32{5, 1, 1000} {
		SetThreshold("threshold", "cb", n)
		g.Expect(series(t, Threshold, "threshold", "cb")).To(Equal(map[string]float64{"": float64(n)}))
	}
}

func TestObserveTransitionCountsEachPair(t *testing.T) {
	g := NewWithT(t)
	ObserveTransition("transitions", "cb", "Closed", "Open")
	ObserveTransition("transitions", "cb", "Open", "HalfOpen")
	ObserveTransition("transitions", "cb", "HalfOpen", "Open")
	ObserveTransition("transitions", "cb", "Open", "HalfOpen")
	ObserveTransition("transitions", "cb", "HalfOpen", "Closed")
	g.Expect(series(t, Transitions, "transitions", "cb")).To(Equal(map[string]float64{
		"from=Closed,to=Open":     1,
		"from=Open,to=HalfOpen":   2,
		"from=HalfOpen,to=Open":   1,
		"from=HalfOpen,to=Closed": 1,
		"from=Open,to=Closed":     0,
	}))
}

func TestObserveProbeCountsResultsAndFailureReasons(t *testing.T) {
	g := NewWithT(t)
	ObserveProbe("probes", "cb", true, "ok", 3*time.Millisecond)
	ObserveProbe("probes", "cb", true, "ok", 40*time.Millisecond)
	ObserveProbe("probes", "cb", false, "http_status", 20*time.Millisecond)
	ObserveProbe("probes", "cb", false, "http_status", 700*time.Millisecond)
	ObserveProbe("probes", "cb", false, "timeout", 2*time.Second)

	g.Expect(series(t, Probes, "probes", "cb")).To(Equal(map[string]float64{"result=success": 2, "result=failure": 3}))
	// A success has no reason: "ok" never shows up as a failure reason.
	failures := series(t, ProbeFailures, "probes", "cb")
	g.Expect(failures).NotTo(HaveKey("reason=ok"))
	g.Expect(nonZero(failures)).To(Equal(map[string]float64{"reason=http_status": 2, "reason=timeout": 1}))
}

func TestObserveProbeObservesDurationsInSeconds(t *testing.T) {
	g := NewWithT(t)
	ObserveProbe("durations", "cb", true, "ok", 3*time.Millisecond)
	ObserveProbe("durations", "cb", false, "timeout", 2*time.Second)
	ObserveProbe("durations", "cb", false, "other", 45*time.Second)

	h := histogram(t, "durations", "cb")
	g.Expect(h.GetSampleCount()).To(Equal(uint64(3)))
	g.Expect(h.GetSampleSum()).To(BeNumerically("~", 47.003, 1e-9))
	cumulative := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		cumulative[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	g.Expect(cumulative).To(HaveKeyWithValue(0.0025, uint64(0)))
	g.Expect(cumulative).To(HaveKeyWithValue(0.005, uint64(1)))
	g.Expect(cumulative).To(HaveKeyWithValue(1.0, uint64(1)))
	g.Expect(cumulative).To(HaveKeyWithValue(2.5, uint64(2)))
	// 45s is beyond the last bucket: only +Inf (the sample count) holds it.
	g.Expect(cumulative).To(HaveKeyWithValue(30.0, uint64(2)))
}

func TestForgetRemovesEverySeriesOfOneBreakerOnly(t *testing.T) {
	g := NewWithT(t)
	for _, name := range []string{"gone", "kept"} {
		SetState("forget", name, "Open", 3)
		SetThreshold("forget", name, 5)
		ObserveTransition("forget", name, "Closed", "Open")
		ObserveProbe("forget", name, true, "ok", time.Millisecond)
		ObserveProbe("forget", name, false, "connection_refused", time.Millisecond)
	}
	// Same name in another namespace: Forget must match on both labels.
	SetState("forget-other", "gone", "Closed", 0)
	SetThreshold("forget-other", "gone", 5)
	ObserveProbe("forget-other", "gone", false, "dns", time.Millisecond)

	for label, c := range allCollectors() {
		g.Expect(series(t, c, "forget", "gone")).NotTo(BeEmpty(), "%s before Forget", label)
	}
	before := map[string]map[string]float64{}
	for label, c := range allCollectors() {
		before[label] = series(t, c, "forget", "kept")
		before[label+"/other"] = series(t, c, "forget-other", "gone")
	}

	Forget("forget", "gone")

	for label, c := range allCollectors() {
		g.Expect(series(t, c, "forget", "gone")).To(BeEmpty(), "%s after Forget", label)
		g.Expect(series(t, c, "forget", "kept")).To(Equal(before[label]), "%s of the other breaker", label)
		g.Expect(series(t, c, "forget-other", "gone")).To(Equal(before[label+"/other"]), "%s of the namesake", label)
	}
	// Forgetting a breaker that has no series is harmless.
	Forget("forget", "never-seen")
}

func TestCollectorsAreRegisteredOnControllerRuntimesRegistry(t *testing.T) {
	g := NewWithT(t)
	SetState("registry", "cb", "Closed", 0)
	SetThreshold("registry", "cb", 5)
	ObserveTransition("registry", "cb", "Closed", "Open")
	ObserveProbe("registry", "cb", false, "tls", time.Millisecond)
	defer Forget("registry", "cb")

	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	got := map[string]dto.MetricType{}
	for _, mf := range families {
		if strings.HasPrefix(mf.GetName(), "circuitbreaker_") {
			got[mf.GetName()] = mf.GetType()
		}
	}
	g.Expect(got).To(Equal(map[string]dto.MetricType{
		"circuitbreaker_state":                  dto.MetricType_GAUGE,
		"circuitbreaker_threshold":              dto.MetricType_GAUGE,
		"circuitbreaker_transitions_total":      dto.MetricType_COUNTER,
		"circuitbreaker_would_open_total":       dto.MetricType_COUNTER,
		"circuitbreaker_probes_total":           dto.MetricType_COUNTER,
		"circuitbreaker_probe_failures_total":   dto.MetricType_COUNTER,
		"circuitbreaker_probe_duration_seconds": dto.MetricType_HISTOGRAM,
		"circuitbreaker_consecutive_failures":   dto.MetricType_GAUGE,
	}), "exported families: %v", slices.Sorted(maps.Keys(got)))
}

func TestLabelsAreOnlyNamespaceNameAndFixedSets(t *testing.T) {
	g := NewWithT(t)
	allowed := map[string]bool{"namespace": true, "name": true, "state": true, "from": true, "to": true, "result": true, "reason": true}
	SetState("labels", "cb", "HalfOpen", 1)
	ObserveTransition("labels", "cb", "Open", "HalfOpen")
	ObserveProbe("labels", "cb", false, "denied", time.Millisecond)
	defer Forget("labels", "cb")

	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "circuitbreaker_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				g.Expect(allowed).To(HaveKey(lp.GetName()), "label %q on %s", lp.GetName(), mf.GetName())
			}
		}
	}
}

// TransitionPairs holds every transition the state machine can make, so that
// each one's series exists at 0 before it first happens.
func TestTransitionPairsCoverEveryTransitionOfTheStateMachine(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	p := breaker.Policy{Threshold: 1, SuccessThreshold: 1, Timeout: time.Minute}
	later := now.Add(2 * time.Minute)
	seen := map[[2]string]bool{}
	for _, s := range []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen} {
		st := breaker.Status{State: s, LastTransitionTime: now}
		if s == breaker.Open {
			st.OpenedAt, st.NextRetryTime = now, now.Add(p.Timeout)
		}
		for _, step := range []func() (breaker.Status, *breaker.Transition){
			func() (breaker.Status, *breaker.Transition) {
				return breaker.Observe(st, p, breaker.Outcome{Success: true}, later)
			},
			func() (breaker.Status, *breaker.Transition) { return breaker.Observe(st, p, breaker.Outcome{}, later) },
			func() (breaker.Status, *breaker.Transition) { return breaker.Advance(st, p, later) },
			func() (breaker.Status, *breaker.Transition) { return breaker.Reset(st, p, later) },
		} {
			if _, tr := step(); tr != nil {
				seen[[2]string{string(tr.From), string(tr.To)}] = true
			}
		}
	}
	g.Expect(TransitionPairs).To(ConsistOf(slices.Collect(maps.Keys(seen))))
}

func TestLastProbeKeepsTheLatestStartAndIntervalFollowsTheSpec(t *testing.T) {
	g := NewWithT(t)
	g.Expect(series(t, LastProbe, "last-probe", "cb")).To(BeEmpty(), "no series before the first probe")
	ObserveProbeStart("last-probe", "cb", time.Unix(100, 500_000_000))
	ObserveProbeStart("last-probe", "cb", time.Unix(90, 0)) // recorded late: older than the last
	g.Expect(series(t, LastProbe, "last-probe", "cb")).To(Equal(map[string]float64{"": 100.5}))
	SetInterval("last-probe", "cb", 10*time.Second)
	SetInterval("last-probe", "cb", 1500*time.Millisecond)
	g.Expect(series(t, ProbeInterval, "last-probe", "cb")).To(Equal(map[string]float64{"": 1.5}))
}
