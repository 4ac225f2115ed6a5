package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// patchBreaker merge-patches a breaker as `kubectl patch --type=merge` does.
func patchBreaker(g Gomega, ns, name, patch string) {
	cb := &circuitv1alpha1.CircuitBreaker{}
	cb.Namespace, cb.Name = ns, name
	g.Expect(k8sClient.Patch(context.Background(), cb, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
}

// flakyTarget fails every other request of each path, and counts them.
func flakyTarget(t *testing.T) (*httptest.Server, func(path string) int) {
	var mu sync.Mutex
	counts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.Path]++
		n := counts[r.URL.Path]
		mu.Unlock()
		if n%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func(path string) int { mu.Lock(); defer mu.Unlock(); return counts[path] }
}

func hasEvent(g Gomega, ns, name, typeReason string) bool {
	for _, e := range eventReasons(g, ns, name) {
		if e == typeReason {
			return true
		}
	}
	return false
}

func TestAFlakyTargetOpensARateBreakerButNeverAThresholdOnlyOne(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	srv, count := flakyTarget(t)
	rate := breakerSpec(srv.URL + "/rate")
	rate.Threshold = 100
	rate.Timeout = "1h"
	rate.FailureRate = &circuitv1alpha1.FailureRate{Window: 10, MinimumProbes: 6, Percent: 50}
	createBreaker(t, ns, "rate", rate)
	plain := breakerSpec(srv.URL + "/plain")
	plain.Threshold = 3
	createBreaker(t, ns, "plain", plain)

	cb := waitState(t, ns, "rate", circuitv1alpha1.StateOpen, 20*time.Second)
	g.Expect(cb.Status.RecentProbes).To(BeEmpty(), "the window is cleared when the circuit opens")
	g.Eventually(func(g Gomega) bool { return hasEvent(g, ns, "rate", "Warning/CircuitOpened") }).
		WithTimeout(10 * time.Second).Should(BeTrue())
	g.Eventually(func() int { return count("/plain") }).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 12))
	g.Expect(getBreaker(g, ns, "plain").Status.State).To(Equal(circuitv1alpha1.StateClosed),
		"failing every other probe never makes 3 failures in a row")
}

func TestASlowTargetOpensASlowProbeBreaker(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { time.Sleep(120 * time.Millisecond) }))
	t.Cleanup(srv.Close)
	spec := breakerSpec(srv.URL + "/slow")
	spec.RetryTimeout, spec.Interval, spec.SlowProbe, spec.Threshold, spec.Timeout = "400ms", "400ms", "50ms", 2, "1h"
	createBreaker(t, ns, "slow", spec)
	cb := waitState(t, ns, "slow", circuitv1alpha1.StateOpen, 15*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonSlow))
	g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeFailure))
}

func TestForcedOpenSendsNoProbeAndAutoRecovers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	spec := breakerSpec(tg.url("/forced"))
	spec.Mode = circuitv1alpha1.ModeForcedOpen
	createBreaker(t, ns, "forced", spec)
	cb := waitState(t, ns, "forced", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.NextRetryTime).To(BeNil())
	g.Expect(cb.Status.ForcedMode).To(Equal(circuitv1alpha1.ModeForcedOpen))
	g.Eventually(func(g Gomega) bool { return hasEvent(g, ns, "forced", "Warning/CircuitForcedOpen") }).
		WithTimeout(10 * time.Second).Should(BeTrue())
	time.Sleep(time.Second)
	g.Expect(tg.count("/forced")).To(BeZero(), "ForcedOpen sends no probe")

	patchBreaker(g, ns, "forced", `{"spec":{"mode":"Auto"}}`)
	waitState(t, ns, "forced", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Expect(tg.count("/forced")).To(BeNumerically(">=", 1), "back to Auto: a trial, which closed it")
}

func TestForcedClosedStaysClosedAndWarnsThatItWouldOpen(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	dead := closedPort(t)
	spec := breakerSpec("http://" + dead + "/healthz")
	spec.Threshold = 2
	spec.Mode = circuitv1alpha1.ModeForcedClosed
	createBreaker(t, ns, "dry", spec)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "dry")
		g.Expect(cb.Status.ConsecutiveFailures).To(BeNumerically(">=", 4))
		g.Expect(cb.Status.WouldBeOpen).To(BeTrue())
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Expect(getBreaker(g, ns, "dry").Status.State).To(Equal(circuitv1alpha1.StateClosed))
	var warnings int
	for _, e := range eventReasons(g, ns, "dry") {
		if e == "Warning/CircuitWouldOpen" {
			warnings++
		}
	}
	g.Expect(warnings).To(Equal(1), "once per would-be opening")
}

func TestTripUntilOpensTheCircuitAndItRecoversAtThatTime(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	tg := newTarget(t)
	createBreaker(t, ns, "tripped", breakerSpec(tg.url("/t")))
	waitState(t, ns, "tripped", circuitv1alpha1.StateClosed, 10*time.Second)

	until := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	patchBreaker(g, ns, "tripped", fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`,
		circuitv1alpha1.TripUntilAnnotation, until.Format(time.RFC3339)))
	cb := waitState(t, ns, "tripped", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.NextRetryTime.Time).To(BeTemporally("==", until))
	g.Expect(cb.Status.LastHandledTrip).To(Equal(until.Format(time.RFC3339)))
	closed := waitState(t, ns, "tripped", circuitv1alpha1.StateClosed, 15*time.Second)
	g.Expect(closed.Status.LastTransitionTime.Time).To(BeTemporally(">=", until))

	// A time in the past is ignored with a Warning.
	patchBreaker(g, ns, "tripped", fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`,
		circuitv1alpha1.TripUntilAnnotation, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)))
	g.Eventually(func(g Gomega) bool { return hasEvent(g, ns, "tripped", "Warning/TripIgnored") }).
		WithTimeout(10 * time.Second).Should(BeTrue())
	g.Expect(getBreaker(g, ns, "tripped").Status.State).To(Equal(circuitv1alpha1.StateClosed))
}

func TestBackoffGrowsOpenPeriodsAndARestartKeepsTheDeadline(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	op := startOperator(t, ns)
	dead := closedPort(t)
	spec := breakerSpec("http://" + dead + "/healthz")
	spec.Threshold, spec.Timeout = 1, "1s"
	spec.Backoff = &circuitv1alpha1.Backoff{Multiplier: 2, MaxTimeout: "1m", JitterPercent: 10}
	createBreaker(t, ns, "backoff", spec)
	var cb *circuitv1alpha1.CircuitBreaker
	g.Eventually(func(g Gomega) {
		cb = getBreaker(g, ns, "backoff")
		g.Expect(cb.Status.Reopens).To(BeNumerically(">=", 2))
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	period := cb.Status.NextRetryTime.Sub(cb.Status.OpenedAt.Time)
	base := time.Second << cb.Status.Reopens
	g.Expect(period).To(BeNumerically(">=", base*9/10), "timeout * 2^reopens minus jitter")
	g.Expect(period).To(BeNumerically("<=", base*11/10), "timeout * 2^reopens plus jitter")

	op.stop()
	before := getBreaker(g, ns, "backoff").Status
	// Seen within 20 ms of opening, the period (at least 3.6 s) still has
	// seconds to run, so the restarted manager must find it Open and keep it.
	g.Expect(before.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(time.Until(before.NextRetryTime.Time)).To(BeNumerically(">", 1500*time.Millisecond))
	startOperator(t, ns)
	time.Sleep(500 * time.Millisecond)
	after := getBreaker(g, ns, "backoff").Status
	g.Expect(after.State).To(Equal(circuitv1alpha1.StateOpen), "the restart does not end the open period")
	g.Expect(after.OpenedAt.Time).To(Equal(before.OpenedAt.Time))
	g.Expect(after.NextRetryTime.Time).To(Equal(before.NextRetryTime.Time), "a restart computes the same deadline")
	g.Expect(after.Reopens).To(Equal(before.Reopens))
}

// The failureRate window lives in status, so a restarted manager goes on
// counting where the stopped one left off: 3 failures before the restart and
// 3 after open a {window: 10, minimumProbes: 6} breaker, where a window lost
// on restart would need 6 more.
func TestARestartKeepsTheFailureRateWindow(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	op := startOperator(t, ns)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/rate"))
	spec.Threshold, spec.Timeout, spec.Interval = 100, "1h", "500ms"
	spec.FailureRate = &circuitv1alpha1.FailureRate{Window: 10, MinimumProbes: 6, Percent: 50}
	createBreaker(t, ns, "rate", spec)
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "rate").Status.ConsecutiveFailures).To(BeNumerically(">=", 3))
	}).WithTimeout(20 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	op.stop()
	before := getBreaker(g, ns, "rate").Status
	g.Expect(before.State).To(Equal(circuitv1alpha1.StateClosed))
	g.Expect(before.ConsecutiveFailures).To(BeNumerically("<", 6), "stopped before minimumProbes")

	probesBefore := tg.count("/rate")
	startOperator(t, ns)
	waitState(t, ns, "rate", circuitv1alpha1.StateOpen, 20*time.Second)
	after := tg.count("/rate") - probesBefore
	g.Expect(after).To(BeNumerically("<=", 6-int(before.ConsecutiveFailures)+1),
		"probes after the restart until it opened (one may have been in flight at the stop)")
}
