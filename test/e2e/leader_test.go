package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// leaseDuration is controller-runtime's default, which the manager does not change.
const leaseDuration = 15 * time.Second

// leaderArgs are the flags that turn leader election on. Out of a cluster the
// manager needs a namespace for its Lease; pass one if the binary offers the flag.
func leaderArgs(t *testing.T) []string {
	out, _ := exec.Command(env.manager, "--help").CombinedOutput()
	args := []string{"--leader-elect"}
	if strings.Contains(string(out), "-leader-election-namespace") {
		args = append(args, "--leader-election-namespace", "default")
	} else {
		t.Log("the manager has no --leader-election-namespace flag; out of a cluster it may not find a namespace for its Lease")
	}
	return args
}

// isLeader reports whether the manager has logged that it acquired the lease.
func isLeader(m *manager) bool {
	return strings.Contains(strings.ToLower(m.logText()), "successfully acquired lease")
}

// TestOnlyTheLeaderProbesAndAStandbyTakesOverWhenItDies runs two managers with
// --leader-elect: the standby sends no probes, and when the leader is killed
// the standby takes over within the lease duration (plus a margin for a
// loaded machine) with the breakers' states intact.
func TestOnlyTheLeaderProbesAndAStandbyTakesOverWhenItDies(t *testing.T) {
	ns := newNamespace(t, "e2e-leader")
	steady := newTarget(t, true)
	tripped := newTarget(t, false)
	g := NewWithT(t)

	args := leaderArgs(t)
	a := startManager(t, "manager-a", args...)
	g.Eventually(func() bool { return isLeader(a) }).WithTimeout(60*time.Second).Should(BeTrue(), "manager-a never became leader")
	b := startManager(t, "manager-b", args...)

	applyBreaker(t, ns, "steady", breakerSpec{URL: steady.URL(), Threshold: 3, Timeout: "5s", Interval: "500ms"})
	applyBreaker(t, ns, "tripped", breakerSpec{URL: tripped.URL(), Threshold: 2, Timeout: "1h", Interval: "300ms"})
	eventuallyState(t, ns, "steady", "Closed", 60*time.Second)
	eventuallyState(t, ns, "tripped", "Open", 60*time.Second)
	before, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())

	// One prober at 500ms sends about 10 probes in 5s; two would send about 20.
	window := time.Now()
	time.Sleep(5 * time.Second)
	n := len(steady.hitsBetween(window, time.Now()))
	t.Logf("%d probes in 5s with two managers", n)
	g.Expect(n).To(BeNumerically("<=", 13), "more probes than one manager sends")
	g.Expect(isLeader(b)).To(BeFalse(), "manager-b acquired the lease while manager-a held it")

	a.kill(t)
	killed := time.Now()
	g.Eventually(func() bool { return isLeader(b) }).WithTimeout(leaseDuration+40*time.Second).WithPolling(100*time.Millisecond).
		Should(BeTrue(), "manager-b never took over")
	tookOver := time.Now()
	t.Logf("manager-b took over %s after manager-a was killed", tookOver.Sub(killed).Round(time.Millisecond))

	// Until the lease expired nobody probed: the standby had not been probing.
	quiet := steady.hitsBetween(killed.Add(time.Second), killed.Add(leaseDuration*2/3))
	g.Expect(quiet).To(BeEmpty(), "probes while only the standby ran")
	g.Eventually(func() int { return len(steady.hitsSince(tookOver)) }).WithTimeout(30*time.Second).Should(BeNumerically(">=", 3),
		"the new leader probes")

	after, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after.Status.State).To(Equal("Open"))
	g.Expect(after.Status.OpenedAt).To(Equal(before.Status.OpenedAt))
	g.Expect(after.Status.NextRetryTime).To(Equal(before.Status.NextRetryTime))
	eventuallyState(t, ns, "steady", "Closed", 10*time.Second)

	// The new leader acts: breaking the steady target opens its breaker.
	steady.set(false)
	eventuallyState(t, ns, "steady", "Open", 60*time.Second)
}
