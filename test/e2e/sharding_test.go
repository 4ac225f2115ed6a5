package e2e

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// memberArgs make a manager a member of the ring with a short Lease.
func memberArgs(id string) []string {
	return []string{"--sharding", "--member-id", id, "--member-namespace", "default",
		"--member-renew-interval", "500ms", "--member-lease-duration", "3s"}
}

// TestShardedManagersShareTheBreakersAndTakeOverAKilledMembersShare runs two
// managers with --sharding (the local control plane has no
// ShardedListAndWatch gate: they filter on their side): each breaker is
// probed by one of them, status.probedBy names both, and when one is killed
// with SIGKILL (its Lease left to expire) the other probes its breakers within
// the Lease's duration plus one interval (and a margin for a loaded machine).
func TestShardedManagersShareTheBreakersAndTakeOverAKilledMembersShare(t *testing.T) {
	ns := newNamespace(t, "e2e-sharding")
	g := NewWithT(t)
	out, err := exec.Command(env.manager, "--sharding", "--leader-elect").CombinedOutput()
	g.Expect(err).To(HaveOccurred(), "--sharding with --leader-elect must be refused")
	g.Expect(string(out)).To(ContainSubstring("mutually exclusive"))

	const n = 8
	interval := 500 * time.Millisecond
	targets := make([]*target, n)
	for i := range targets {
		targets[i] = newTarget(t, true)
		applyBreaker(t, ns, fmt.Sprintf("b-%d", i), breakerSpec{URL: targets[i].URL(), Threshold: 3, Timeout: "5s", Interval: "500ms"})
	}
	managers := map[string]*manager{
		"member-a": startManager(t, "member-a", memberArgs("member-a")...),
		"member-b": startManager(t, "member-b", memberArgs("member-b")...),
	}
	owner := map[int]string{}
	g.Eventually(func(g Gomega) {
		seen := map[string]int{}
		for i := range n {
			b, err := getBreaker(ns, fmt.Sprintf("b-%d", i))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(b.Status.ProbedBy).NotTo(BeEmpty())
			owner[i] = b.Status.ProbedBy
			seen[b.Status.ProbedBy]++
		}
		g.Expect(seen).To(HaveLen(2), "probedBy of the %d breakers: %v", n, owner)
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	// One probe per interval per target: 4 s at 500 ms is about 8, two probers about 16.
	window := time.Now()
	time.Sleep(4 * time.Second)
	for i, tg := range targets {
		hits := len(tg.hitsBetween(window, time.Now()))
		g.Expect(hits).To(BeNumerically("<=", 11), "b-%d had %d probes in 4 s", i, hits)
	}

	managers["member-a"].kill(t)
	killed := time.Now()
	var worst time.Duration
	for i, tg := range targets {
		if owner[i] != "member-a" {
			continue
		}
		g.Eventually(func() int { return len(tg.hitsSince(killed.Add(50 * time.Millisecond))) }).
			WithTimeout(20*time.Second).WithPolling(50*time.Millisecond).Should(BeNumerically(">=", 1), "b-%d is not probed again", i)
		worst = max(worst, tg.hitsSince(killed.Add(50 * time.Millisecond))[0].at.Sub(killed))
	}
	t.Logf("member-a's breakers were probed again at most %s after its SIGKILL (Lease 3 s + interval %s)", worst, interval)
	g.Expect(worst).To(BeNumerically("<=", 3*time.Second+interval+2*time.Second))
	g.Eventually(func(g Gomega) {
		for i := range n {
			b, err := getBreaker(ns, fmt.Sprintf("b-%d", i))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(b.Status.ProbedBy).To(Equal("member-b"))
			g.Expect(b.Status.State).To(Equal("Closed"))
		}
	}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}
