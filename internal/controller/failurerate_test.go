package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// A breaker that has probed its target well for a while, judged by
// {window: 10, minimumProbes: 3, percent: 50}: three failures are 30 % of the
// last ten probes and do not open it; the fifth (50 %) does. The successes
// before the first failure are in status (leadingSuccesses), so a manager
// restarted in between judges the same, and once they reach window - 1 the
// healthy breaker writes nothing.
func TestFailureRateCountsTheSuccessesBeforeTheFirstFailureAcrossARestart(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	op := startOperator(t, ns)
	tg := newTarget(t)
	spec := breakerSpec(tg.url("/rate"))
	spec.Threshold = 100
	spec.FailureRate = &circuitv1alpha1.FailureRate{Window: 10, MinimumProbes: 3, Percent: 50}
	createBreaker(t, ns, "rate", spec)
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "rate").Status.LeadingSuccesses).To(Equal(int32(9)))
	}).WithTimeout(15 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())

	cb := getBreaker(g, ns, "rate")
	g.Expect(cb.Status.RecentProbes).To(BeEmpty())
	before := tg.count("/rate")
	time.Sleep(2 * time.Second) // ten intervals
	g.Expect(tg.count("/rate")-before).To(BeNumerically(">=", 6), "it keeps probing")
	g.Expect(getBreaker(g, ns, "rate").ResourceVersion).To(Equal(cb.ResourceVersion), "no writes once window - 1 successes are counted")

	// The manager goes; the target fails; a new manager takes over.
	op.stop()
	tg.healthy.Store(false)
	startOperator(t, ns)
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "rate").Status.ConsecutiveFailures).To(BeNumerically(">=", 3))
	}).WithTimeout(15 * time.Second).WithPolling(10 * time.Millisecond).Should(Succeed())
	cb = getBreaker(g, ns, "rate")
	if cb.Status.State == circuitv1alpha1.StateClosed {
		g.Expect(cb.Status.ConsecutiveFailures).To(BeNumerically("<", 5))
	}
	cb = waitState(t, ns, "rate", circuitv1alpha1.StateOpen, 15*time.Second)
	g.Expect(cb.Status.ConsecutiveFailures).To(Equal(int32(5)), "opened at 5 failures of the last 10 probes, not at 3 of 3")
	g.Expect(cb.Status.LastTransition.Reason).To(Equal(circuitv1alpha1.ReasonFailureRateReached))
}
