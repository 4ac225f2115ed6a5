package e2e

import (
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestBreakerLifecycleThroughKubectl runs one manager and drives breakers the
// way a user does; the cases run in parallel, each in its own namespace.
func TestBreakerLifecycleThroughKubectl(t *testing.T) {
	startManager(t, "manager")

	t.Run("an applied breaker shows STATE Closed", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-apply")
		tg := newTarget(t, true)
		applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: 3, Timeout: "5s", Interval: "500ms"})

		cells := eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		g := NewWithT(t)
		g.Expect(cells).To(HaveKeyWithValue("FAILURES", "0"))
		g.Expect(cells).To(HaveKeyWithValue("TARGET", tg.URL()))
		g.Expect(cells).To(HaveKeyWithValue("NEXT RETRY", ""))
		g.Eventually(func() int { return len(tg.hitsSince(time.Time{})) }).
			WithTimeout(30*time.Second).Should(BeNumerically(">=", 2), "the target is probed")
	})

	t.Run("a failing target opens the breaker after threshold probes with a Warning event, and a healed one closes it after timeout", func(t *testing.T) {
		t.Parallel()
		const threshold, timeout = 3, 4 * time.Second
		ns := newNamespace(t, "e2e-break-heal")
		tg := newTarget(t, true)
		applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: threshold, Timeout: "4s", Interval: "300ms"})
		w := watchBreaker(t, ns, "api")
		eventuallyState(t, ns, "api", "Closed", 60*time.Second)

		broke := time.Now()
		tg.set(false)
		eventuallyState(t, ns, "api", "Open", 60*time.Second)
		g := NewWithT(t)
		open, err := getBreaker(ns, "api")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(open.Status.ConsecutiveFailures).To(BeEquivalentTo(threshold))
		g.Expect(open.Status.OpenedAt).NotTo(BeNil())
		g.Expect(open.Status.NextRetryTime).NotTo(BeNil())
		g.Expect(open.Status.NextRetryTime.Sub(*open.Status.OpenedAt)).To(Equal(timeout))
		// Exactly threshold failed probes opened it, and an Open breaker sends none.
		g.Expect(failures(tg.hitsBetween(broke, *open.Status.OpenedAt))).To(Equal(threshold))
		g.Eventually(func(g Gomega) {
			out, err := describe(ns, "api")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(MatchRegexp(`Warning\s+CircuitOpened\s`))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		tg.set(true)
		cells := eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		g.Expect(cells).To(HaveKeyWithValue("FAILURES", "0"))
		g.Expect(tg.hitsBetween(open.Status.OpenedAt.Add(time.Millisecond), open.Status.NextRetryTime.Add(-50*time.Millisecond))).
			To(BeEmpty(), "no probes while Open")

		g.Eventually(w.states).WithTimeout(10 * time.Second).Should(ContainElements("Open", "HalfOpen", "Closed"))
		g.Expect(w.states()).To(HaveExactElements("Closed", "Open", "HalfOpen", "Closed"))
		half, _ := w.first("HalfOpen")
		g.Expect(half.lastTransitionTime).To(BeTemporally(">=", open.Status.NextRetryTime.Add(-time.Millisecond)),
			"HalfOpen not before nextRetryTime")
		g.Expect(half.lastTransitionTime).To(BeTemporally("<", open.Status.NextRetryTime.Add(15*time.Second)))
		out, err := describe(ns, "api")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(MatchRegexp(`Normal\s+CircuitHalfOpened\s`))
		g.Expect(out).To(MatchRegexp(`Normal\s+CircuitClosed\s`))
	})

	t.Run("the reset annotation closes an Open breaker", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-reset")
		tg := newTarget(t, false)
		applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: 2, Timeout: "1h", Interval: "300ms"})
		eventuallyState(t, ns, "api", "Open", 60*time.Second)

		// Healed, it stays Open for an hour: only the reset can close it now.
		tg.set(true)
		g := NewWithT(t)
		g.Consistently(func() (string, error) {
			b, err := getBreaker(ns, "api")
			return b.Status.State, err
		}).WithTimeout(2 * time.Second).WithPolling(500 * time.Millisecond).Should(Equal("Open"))

		for i, value := range []string{"first", "second"} {
			mustKubectl(t, "annotate", "cb", "api", "-n", ns, "circuit.resilience.dev/reset="+value, "--overwrite")
			cells := eventuallyState(t, ns, "api", "Closed", 30*time.Second)
			g.Expect(cells).To(HaveKeyWithValue("FAILURES", "0"))
			b, err := getBreaker(ns, "api")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(b.Status.LastHandledReset).To(Equal(value))
			g.Eventually(func(g Gomega) {
				out, err := describe(ns, "api")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(regexp.MustCompile(`Normal\s+CircuitReset\s`).FindAllString(out, -1)).To(HaveLen(i + 1))
			}).WithTimeout(30 * time.Second).Should(Succeed())
			if i == 0 {
				// Open it again for the second reset.
				tg.set(false)
				eventuallyState(t, ns, "api", "Open", 60*time.Second)
				tg.set(true)
			}
		}
	})

	t.Run("kubectl patch mode ForcedOpen holds the circuit Open without probes, Auto sends a trial", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-mode")
		tg := newTarget(t, true)
		applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: 3, Timeout: "1h", Interval: "300ms"})
		eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		mustKubectl(t, "patch", "-n", ns, "cb/api", "--type=merge", "-p", `{"spec":{"mode":"ForcedOpen"}}`)
		eventuallyState(t, ns, "api", "Open", 60*time.Second)
		g := NewWithT(t)
		wide := mustKubectl(t, "get", "-n", ns, "cb/api", "-o", "wide")
		g.Expect(wide).To(ContainSubstring("MODE"))
		g.Expect(wide).To(ContainSubstring("REASON"))
		g.Expect(wide).To(MatchRegexp(`ForcedOpen\s+ForcedOpen\s`), "the mode, and the reason of the last transition")
		time.Sleep(time.Second)
		since := time.Now()
		time.Sleep(2 * time.Second)
		g.Expect(tg.hitsSince(since)).To(BeEmpty(), "no probes while ForcedOpen")
		g.Eventually(func(g Gomega) {
			out, err := describe(ns, "api")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(MatchRegexp(`Warning\s+CircuitForcedOpen\s`))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		mustKubectl(t, "patch", "-n", ns, "cb/api", "--type=merge", "-p", `{"spec":{"mode":"Auto"}}`)
		eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		g.Expect(tg.hitsSince(since)).NotTo(BeEmpty(), "the trial reached the target")
	})

	t.Run("kubectl annotate trip-until opens the circuit until that time", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, "e2e-trip")
		tg := newTarget(t, true)
		applyBreaker(t, ns, "api", breakerSpec{URL: tg.URL(), Threshold: 3, Timeout: "1s", Interval: "300ms"})
		eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		until := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
		mustKubectl(t, "annotate", "-n", ns, "cb/api", "circuit.resilience.dev/trip-until="+until.Format(time.RFC3339), "--overwrite")
		eventuallyState(t, ns, "api", "Open", 30*time.Second)
		g := NewWithT(t)
		b, err := getBreaker(ns, "api")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(b.Status.NextRetryTime.UTC()).To(Equal(until), "Open until the annotation's time, not timeout")
		eventuallyState(t, ns, "api", "Closed", 60*time.Second)
		g.Expect(time.Now()).To(BeTemporally(">=", until))
	})
}
