package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestManagerRidesOutAnAPIServerOutage stops kube-apiserver for 20s while
// breakers run and starts it again on the same port: the same manager
// process carries on, the breakers keep their states, and it still acts on
// new failures without flooding the API server.
func TestManagerRidesOutAnAPIServerOutage(t *testing.T) {
	ns := newNamespace(t, "e2e-outage")
	steady := newTarget(t, true)
	tripped := newTarget(t, false)
	m := startManager(t, "manager")
	applyBreaker(t, ns, "steady", breakerSpec{URL: steady.URL(), Threshold: 3, Timeout: "5s", Interval: "300ms"})
	applyBreaker(t, ns, "tripped", breakerSpec{URL: tripped.URL(), Threshold: 2, Timeout: "1h", Interval: "300ms"})
	eventuallyState(t, ns, "steady", "Closed", 60*time.Second)
	eventuallyState(t, ns, "tripped", "Open", 60*time.Second)
	g := NewWithT(t)
	before, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(env.cp.StopAPIServer()).To(Succeed())
	stopped := time.Now()
	time.Sleep(20 * time.Second)
	g.Expect(m.Running()).To(BeTrue(), "the manager exited during the outage")
	t.Logf("steady target probed %d times during the outage", len(steady.hitsBetween(stopped, time.Now())))
	g.Expect(env.cp.StartAPIServer(t.Context())).To(Succeed())
	back := time.Now()
	t.Logf("API server back %s after it stopped", back.Sub(stopped).Round(time.Millisecond))

	after, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after.Status.State).To(Equal("Open"))
	g.Expect(after.Status.OpenedAt).To(Equal(before.Status.OpenedAt))
	g.Expect(after.Status.NextRetryTime).To(Equal(before.Status.NextRetryTime))
	eventuallyState(t, ns, "steady", "Closed", 10*time.Second)

	// The manager records a new failure. Its informer watches again only after
	// client-go's reflector backoff (up to a minute after a 20s outage); until
	// then its cache misses its own writes, so later writes conflict.
	broke := time.Now()
	steady.set(false)
	eventuallyState(t, ns, "steady", "Open", 90*time.Second)
	t.Logf("steady breaker Open %s after its target broke, %s after the API server came back",
		time.Since(broke).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	// Its watches work too: it sees a new reset annotation. client-go's
	// reflector retries a failed watch with a backoff capped at [30s,60s)
	// (tools/cache/reflector.go, not configurable through controller-runtime),
	// so after a 20s outage the watch may return up to a minute after the API
	// server did; the margin covers that bound twice.
	tripped.set(true)
	annotated := time.Now()
	mustKubectl(t, "annotate", "cb", "tripped", "-n", ns, "circuit.resilience.dev/reset=after-outage", "--overwrite")
	eventuallyState(t, ns, "tripped", "Closed", 120*time.Second)
	t.Logf("tripped breaker reset %s after the annotation", time.Since(annotated).Round(time.Millisecond))
	g.Expect(m.Running()).To(BeTrue(), "the manager restarted")

	// Recovering must not flood the API server that just came back: a few
	// conflicting writes while the cache catches up are fine, a retry loop is not.
	conflicts := breakerRequests(t, "PATCH", "status", "409")
	t.Logf("%d status PATCHes answered 409 Conflict since the API server came back", conflicts)
	g.Expect(conflicts).To(BeNumerically("<=", 100), "the manager hammers the API server with writes based on a stale cache")
}
