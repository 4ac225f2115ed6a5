package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

func TestFullCycleOpensHalfOpensReopensAndCloses(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	createBreaker(t, ns, "cycle", breakerSpec(tg.url("/healthz")))

	cb := waitState(t, ns, "cycle", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "cycle")
		g.Expect(cb.Status.ObservedGeneration).To(Equal(cb.Generation))
		ready := findCondition(cb, circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonProbing))
		g.Expect(cb.Status.LastProbe).NotTo(BeNil())
		g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeSuccess))
	}).WithTimeout(5 * time.Second).Should(Succeed())
	g.Expect(cb.Status.ConsecutiveFailures).To(BeZero())

	// Break the target: threshold (3) failures open the circuit.
	tg.healthy.Store(false)
	cb = waitState(t, ns, "cycle", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.ConsecutiveFailures).To(Equal(int32(3)))
	g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeFailure))
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonHTTPStatus))
	g.Expect(cb.Status.LastProbe.HTTPStatus).To(Equal(int32(503)))
	g.Expect(cb.Status.OpenedAt).NotTo(BeNil())
	g.Expect(cb.Status.NextRetryTime.Time).To(Equal(cb.Status.OpenedAt.Add(2 * time.Second)))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "cycle") }).
		WithTimeout(5 * time.Second).Should(ContainElement("Warning/" + circuitv1alpha1.EventCircuitOpened))

	// Open sends no probes.
	probesWhenOpened := tg.count("/healthz")
	time.Sleep(time.Second)
	g.Expect(tg.count("/healthz")).To(Equal(probesWhenOpened), "an Open circuit must not probe")

	// After the timeout it goes HalfOpen, the trial fails, and it opens again.
	firstOpenedAt := cb.Status.OpenedAt.Time
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "cycle")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateOpen))
		g.Expect(cb.Status.OpenedAt.Time).To(BeTemporally(">", firstOpenedAt.Add(2*time.Second)))
	}).WithTimeout(10 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "cycle") }).
		WithTimeout(5 * time.Second).Should(ContainElement("Normal/" + circuitv1alpha1.EventCircuitHalfOpened))

	// Heal: the next trial closes it and the counters return to zero.
	tg.healthy.Store(true)
	cb = waitState(t, ns, "cycle", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Expect(cb.Status.ConsecutiveFailures).To(BeZero())
	g.Expect(cb.Status.ConsecutiveSuccesses).To(BeZero())
	g.Expect(cb.Status.OpenedAt).To(BeNil())
	g.Expect(cb.Status.NextRetryTime).To(BeNil())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "cycle") }).
		WithTimeout(5 * time.Second).Should(ContainElement("Normal/" + circuitv1alpha1.EventCircuitClosed))
}

func TestHalfOpenNeedsSuccessThresholdTrials(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/x"))
	spec.Threshold = 1
	spec.Timeout = "1s"
	spec.SuccessThreshold = 3
	spec.Interval = "300ms"
	createBreaker(t, ns, "trials", spec)
	waitState(t, ns, "trials", circuitv1alpha1.StateOpen, 10*time.Second)
	tg.healthy.Store(true)
	cb := waitState(t, ns, "trials", circuitv1alpha1.StateHalfOpen, 10*time.Second)
	halfOpenAt := cb.Status.LastTransitionTime.Time
	cb = waitState(t, ns, "trials", circuitv1alpha1.StateClosed, 10*time.Second)
	// Three trials, interval apart, the first at once: at least 2 intervals.
	g.Expect(cb.Status.LastTransitionTime.Sub(halfOpenAt)).To(BeNumerically(">=", 550*time.Millisecond))
}

func TestHangingTargetFailsAfterRetryTimeout(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	spec := breakerSpec("http://" + hangingListener(t) + "/healthz")
	spec.Threshold = 2
	spec.RetryTimeout = "700ms"
	spec.Interval = "700ms"
	createBreaker(t, ns, "hang", spec)

	cb := waitState(t, ns, "hang", circuitv1alpha1.StateOpen, 15*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonTimeout))
	g.Expect(cb.Status.LastProbe.Latency.Duration).To(BeNumerically(">=", 700*time.Millisecond))
	g.Expect(cb.Status.LastProbe.Latency.Duration).To(BeNumerically("<", 5*time.Second))
}

func TestTCPTargetClosedWhileListeningOpensWhenRefused(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	createBreaker(t, ns, "tcp-up", breakerSpec("tcp://"+tg.addr))
	createBreaker(t, ns, "tcp-down", breakerSpec("tcp://"+closedPort(t)))

	cb := waitState(t, ns, "tcp-down", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonConnectionRefused))
	g.Consistently(func(g Gomega) {
		cb := getBreaker(g, ns, "tcp-up")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
		g.Expect(cb.Status.ConsecutiveFailures).To(BeZero())
	}).WithTimeout(time.Second).Should(Succeed())
}

func TestRestartedManagerGoesHalfOpenAtNextRetryTime(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	op := startOperator(t, ns)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/healthz"))
	spec.Threshold = 1
	spec.Timeout = "6s"
	createBreaker(t, ns, "restart", spec)
	cb := waitState(t, ns, "restart", circuitv1alpha1.StateOpen, 10*time.Second)
	nextRetry := cb.Status.NextRetryTime.Time

	// The manager dies while Open; a new one starts two seconds later.
	op.stop()
	time.Sleep(2 * time.Second)
	startOperator(t, ns)

	tg.healthy.Store(true)
	var halfOpenSeen time.Time
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "restart")
		g.Expect(cb.Status.State).NotTo(Equal(circuitv1alpha1.StateOpen))
		halfOpenSeen = time.Now()
	}).WithTimeout(15 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	g.Expect(halfOpenSeen).To(BeTemporally(">=", nextRetry))
	// Not a full timeout after the restart: within a generous margin of nextRetryTime.
	g.Expect(halfOpenSeen.Sub(nextRetry)).To(BeNumerically("<", 1500*time.Millisecond))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "restart") }).
		WithTimeout(5 * time.Second).Should(ContainElement("Normal/" + circuitv1alpha1.EventCircuitHalfOpened))
}

func TestHangingTargetsDoNotDelayHealthyBreakers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	hang := hangingListener(t)
	const interval = 250 * time.Millisecond
	for i := range 20 {
		spec := breakerSpec("http://" + hang + fmt.Sprintf("/hang-%d", i))
		spec.RetryTimeout = "3s"
		spec.Threshold = 1000
		spec.Interval = "3s"
		createBreaker(t, ns, fmt.Sprintf("hang-%d", i), spec)
	}
	for i := range 20 {
		spec := breakerSpec(tg.url(fmt.Sprintf("/ok-%d", i)))
		spec.Interval = "250ms"
		createBreaker(t, ns, fmt.Sprintf("ok-%d", i), spec)
	}
	// Let every hanging probe be in flight, then watch the healthy cadence.
	time.Sleep(4 * time.Second)
	from := time.Now()
	time.Sleep(4 * time.Second)
	var gaps []time.Duration
	for i := range 20 {
		var prev time.Time
		for _, at := range tg.arrivals(fmt.Sprintf("/ok-%d", i)) {
			if !prev.IsZero() && at.After(from) {
				gaps = append(gaps, at.Sub(prev))
			}
			prev = at
		}
	}
	g.Expect(len(gaps)).To(BeNumerically(">=", 20*12), "every healthy breaker keeps probing")
	slices.Sort(gaps)
	// A hanging probe takes 3s; had it blocked anything, gaps would be seconds long.
	g.Expect(gaps[len(gaps)-1]).To(BeNumerically("<", interval+750*time.Millisecond), "max gap")
	g.Expect(gaps[len(gaps)*99/100]).To(BeNumerically("<", interval+250*time.Millisecond), "p99 gap")
}

func TestResetAnnotationClosesOncePerValue(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/r"))
	spec.Timeout = "1h"
	createBreaker(t, ns, "reset", spec)
	waitState(t, ns, "reset", circuitv1alpha1.StateOpen, 10*time.Second)

	annotate(g, ns, "reset", "first")
	cb := waitState(t, ns, "reset", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Expect(cb.Status.LastHandledReset).To(Equal("first"))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "reset") }).
		WithTimeout(5 * time.Second).Should(ContainElement("Normal/" + circuitv1alpha1.EventCircuitReset))

	// Still failing, it opens again; the same value does not reset it twice.
	waitState(t, ns, "reset", circuitv1alpha1.StateOpen, 10*time.Second)
	annotate(g, ns, "reset", "first")
	g.Consistently(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "reset").Status.State).To(Equal(circuitv1alpha1.StateOpen))
	}).WithTimeout(time.Second).Should(Succeed())

	annotate(g, ns, "reset", "second")
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "reset").Status.LastHandledReset).To(Equal("second"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestSpecChangeTakesEffectAtOnce(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	bad, good := newTarget(t), newTarget(t)
	bad.healthy.Store(false)
	spec := breakerSpec(bad.url("/s"))
	spec.Threshold = 50
	spec.Interval = "1s"
	createBreaker(t, ns, "spec", spec)
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "spec").Status.ConsecutiveFailures).To(BeNumerically(">=", 2))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Lowering the threshold below the count is not retroactive: the next failure opens.
	cb := getBreaker(g, ns, "spec")
	cb.Spec.Threshold = 1
	g.Expect(k8sClient.Update(context.Background(), cb)).To(Succeed())
	cb = waitState(t, ns, "spec", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.ObservedGeneration).To(Equal(cb.Generation))

	// A new target (and a reset) is probed at once, not after the old interval.
	cb.Spec.Target.URL = good.url("/s")
	cb.Spec.Interval = "1h"
	g.Expect(k8sClient.Update(context.Background(), cb)).To(Succeed())
	annotate(g, ns, "spec", "go")
	g.Eventually(func() int { return good.count("/s") }).WithTimeout(5 * time.Second).Should(BeNumerically(">=", 1))
	waitState(t, ns, "spec", circuitv1alpha1.StateClosed, 10*time.Second)
}

func TestDeletedBreakerStopsProbing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	op := startOperator(t, ns)
	tg := newTarget(t)
	cb := createBreaker(t, ns, "gone", breakerSpec(tg.url("/gone")))
	g.Eventually(func() int { return tg.count("/gone") }).WithTimeout(10 * time.Second).Should(BeNumerically(">=", 3))
	g.Expect(k8sClient.Delete(context.Background(), cb)).To(Succeed())
	g.Eventually(op.runner.Len).WithTimeout(5 * time.Second).Should(BeZero())
	time.Sleep(500 * time.Millisecond)
	n := tg.count("/gone")
	time.Sleep(time.Second)
	g.Expect(tg.count("/gone")).To(Equal(n), "no probes after deletion")
}

func TestSteadyHealthyBreakerWritesNoStatus(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	createBreaker(t, ns, "quiet", breakerSpec(tg.url("/q")))
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "quiet").Status.LastProbe).NotTo(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	rv := getBreaker(g, ns, "quiet").ResourceVersion
	before := tg.count("/q")
	time.Sleep(2 * time.Second) // ten intervals
	g.Expect(tg.count("/q")-before).To(BeNumerically(">=", 6), "it keeps probing")
	g.Expect(getBreaker(g, ns, "quiet").ResourceVersion).To(Equal(rv), "no writes while nothing changes")
}

func annotate(g Gomega, ns, name, value string) {
	cb := &circuitv1alpha1.CircuitBreaker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, circuitv1alpha1.ResetAnnotation, value))
	g.Expect(k8sClient.Patch(context.Background(), cb, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
}

func findCondition(cb *circuitv1alpha1.CircuitBreaker, t string) *metav1.Condition {
	for i := range cb.Status.Conditions {
		if cb.Status.Conditions[i].Type == t {
			return &cb.Status.Conditions[i]
		}
	}
	return nil
}

// Concurrent writes to the breaker's metadata make status writes conflict; every
// probe result must still be counted exactly once.
func TestConflictingWritesLoseNoProbeResult(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/conflict"))
	spec.Threshold = 5
	spec.Timeout = "1h"
	createBreaker(t, ns, "conflict", spec)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			cb := &circuitv1alpha1.CircuitBreaker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conflict"}}
			patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"example.com/noise":"%d"}}}`, i)
			_ = k8sClient.Patch(ctx, cb, client.RawPatch("application/merge-patch+json", patch))
			time.Sleep(15 * time.Millisecond)
		}
	}()
	cb := waitState(t, ns, "conflict", circuitv1alpha1.StateOpen, 20*time.Second)
	cancel()
	g.Expect(cb.Status.ConsecutiveFailures).To(Equal(int32(5)))
	time.Sleep(500 * time.Millisecond)
	g.Expect(tg.count("/conflict")).To(Equal(5), "exactly threshold probes, each counted once")
}
