package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestKilledManagerRestartedWhileOpenStillHalfOpensAtNextRetryTime proves that
// the Open timer lives in status.nextRetryTime, not in the manager's memory:
// a manager killed with SIGKILL and started again neither restarts the timer
// nor cuts it short.
func TestKilledManagerRestartedWhileOpenStillHalfOpensAtNextRetryTime(t *testing.T) {
	const timeout = 20 * time.Second
	ns := newNamespace(t, "e2e-restart")
	tg := newTarget(t, false)
	first := startManager(t, "manager-1")
	applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: 2, Timeout: "20s", Interval: "300ms", SuccessThreshold: 3, RetryTimeout: "300ms"})
	eventuallyState(t, ns, "api", "Open", 60*time.Second)
	g := NewWithT(t)
	open, err := getBreaker(ns, "api")
	g.Expect(err).NotTo(HaveOccurred())
	nextRetry := *open.Status.NextRetryTime
	g.Expect(nextRetry.Sub(*open.Status.OpenedAt)).To(Equal(timeout))

	first.kill(t)
	killed := time.Now()
	// Heal while no manager runs, so the trial probes succeed; with
	// successThreshold 3 and interval 300ms, HalfOpen lasts long enough to see.
	tg.set(true)
	w := watchBreaker(t, ns, "api")
	// Restart well into the timeout: a manager that restarted the timer would
	// go HalfOpen about this much too late.
	restartAt := open.Status.OpenedAt.Add(timeout / 2)
	if d := time.Until(restartAt); d > 0 {
		time.Sleep(d)
	}
	startManager(t, "manager-2")
	restarted := time.Now()
	t.Logf("killed %s after opening, restarted %s after opening; nextRetryTime is %s after opening",
		killed.Sub(*open.Status.OpenedAt).Round(time.Millisecond), restarted.Sub(*open.Status.OpenedAt).Round(time.Millisecond), timeout)

	cells := eventuallyState(t, ns, "api", "Closed", timeout+60*time.Second)
	g.Expect(cells).To(HaveKeyWithValue("FAILURES", "0"))
	g.Eventually(w.states).WithTimeout(10 * time.Second).Should(ContainElements("HalfOpen", "Closed"))
	g.Expect(w.states()).To(HaveExactElements("Open", "HalfOpen", "Closed"))

	half, _ := w.first("HalfOpen")
	late := half.lastTransitionTime.Sub(nextRetry)
	t.Logf("HalfOpen %s after nextRetryTime", late.Round(time.Millisecond))
	g.Expect(late).To(BeNumerically(">=", -time.Millisecond), "HalfOpen before nextRetryTime")
	g.Expect(late).To(BeNumerically("<", timeout/2-2*time.Second), "HalfOpen late, as if the timer restarted with the manager")
	// The first probe after the kill is the trial probe, at nextRetryTime.
	hits := tg.hitsSince(killed)
	g.Expect(hits).NotTo(BeEmpty())
	g.Expect(hits[0].at).To(BeTemporally(">=", nextRetry.Add(-time.Millisecond)), "a probe while Open")
}
