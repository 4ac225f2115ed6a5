package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/ring"
)

// The API server (v1.37.2, feature gate ShardedListAndWatch on in this suite)
// and the member's own filtering, sharding.Selector.Matches, pick the same
// breakers for every range: what the server sends a member is what it owns.
func TestServerAndClientShardSelectorsAgreeOnEveryUID(t *testing.T) {
	ns := newNamespace(t)
	const n = 200
	for i := range n {
		createBreaker(t, ns, fmt.Sprintf("b-%03d", i), breakerSpec("http://127.0.0.1:1/"))
	}
	ctx := context.Background()
	all := &circuitv1alpha1.CircuitBreakerList{}
	if err := k8sClient.List(ctx, all, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != n {
		t.Fatalf("listed %d breakers, want %d", len(all.Items), n)
	}
	members := []string{"m-0", "m-1", "m-2"}
	seen := map[string]string{}
	for _, m := range members {
		sel, _ := ring.Selector(members, m)
		served := &circuitv1alpha1.CircuitBreakerList{}
		if err := k8sClient.List(ctx, served, &client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ShardSelector: sel.String()}}); err != nil {
			t.Fatalf("listing with %s: %v", sel, err)
		}
		var server, own []string
		for _, cb := range served.Items {
			server = append(server, string(cb.UID))
		}
		for i := range all.Items {
			if ok, err := sel.Matches(&all.Items[i]); err != nil {
				t.Fatal(err)
			} else if ok {
				own = append(own, string(all.Items[i].UID))
			}
		}
		slices.Sort(server)
		slices.Sort(own)
		if !slices.Equal(server, own) {
			t.Errorf("%s: the server sent %d breakers, the client matches %d; they differ", sel, len(server), len(own))
		}
		if len(server) == 0 || len(server) == n {
			t.Errorf("%s: the server sent %d of %d breakers: it did not filter by range", sel, len(server), n)
		}
		for _, uid := range server {
			if prev, dup := seen[uid]; dup {
				t.Errorf("UID %s is in the ranges of both %s and %s", uid, prev, m)
			}
			seen[uid] = m
		}
	}
	if len(seen) != n {
		t.Errorf("the ranges cover %d of %d breakers", len(seen), n)
	}
}

// ringMember is a member for the tests: short renewals and Lease, its Leases
// in the test's namespace.
func ringMember(ns, id string, release bool) *ring.Member {
	return &ring.Member{Identity: id, Namespace: ns, RenewInterval: 200 * time.Millisecond,
		LeaseDuration: time.Second, ReleaseOnCancel: release}
}

// probedBy maps each breaker of ns to its status.probedBy.
func probedBy(g Gomega, ns string) map[string]string {
	list := &circuitv1alpha1.CircuitBreakerList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	out := map[string]string{}
	for _, cb := range list.Items {
		out[cb.Name] = cb.Status.ProbedBy
	}
	return out
}

// owners maps each breaker of ns to the member whose range holds it among members.
func owners(g Gomega, ns string, members []string) map[string]string {
	list := &circuitv1alpha1.CircuitBreakerList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	out := map[string]string{}
	for i := range list.Items {
		for _, m := range members {
			sel, _ := ring.Selector(members, m)
			if ok, _ := sel.Matches(&list.Items[i]); ok {
				out[list.Items[i].Name] = m
			}
		}
	}
	return out
}

// Three members share 60 breakers: each target is probed once per interval
// (by its owner alone), status.probedBy spreads over the three; a killed
// member's breakers are probed again within its Lease's duration plus one
// interval; a fourth member takes its share within a few renewals. With the
// API server's filtering (the suite's server has the feature gate on) each
// member's cache holds its own breakers only; without it (the informer
// unsharded, as against a server without the gate) every member holds all and
// filters on its side.
func TestRingSharesBreakersAndHandsOverAKilledMembersShare(t *testing.T) {
	t.Run("ServerSideSelector", func(t *testing.T) { testRing(t, false) })
	t.Run("ClientSideOnly", func(t *testing.T) { testRing(t, true) })
}

func testRing(t *testing.T, clientSideOnly bool) {
	ns := newNamespace(t)
	tg := newTarget(t)
	const n = 60
	interval := time.Second
	spec := func(i int) circuitv1alpha1.CircuitBreakerSpec {
		s := breakerSpec(tg.url(fmt.Sprintf("/b-%02d", i)))
		s.Interval = circuitv1alpha1.GoDuration(interval.String())
		return s
	}
	ops := map[string]*operator{}
	for _, id := range []string{"m-0", "m-1", "m-2"} {
		ops[id] = startOperatorWith(t, ns, operatorOptions{member: ringMember(ns, id, id != "m-1"), clientSideOnly: clientSideOnly})
	}
	for i := range n {
		createBreaker(t, ns, fmt.Sprintf("b-%02d", i), spec(i))
	}
	g := NewWithT(t)
	three := []string{"m-0", "m-1", "m-2"}
	g.Eventually(func(g Gomega) {
		g.Expect(probedBy(g, ns)).To(Equal(owners(g, ns, three)))
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	share := map[string]int{}
	for _, m := range probedBy(g, ns) {
		share[m]++
	}
	t.Logf("breakers per member: %v", share)
	for _, m := range three {
		g.Expect(share[m]).To(BeNumerically(">=", 5), "member %s owns too few breakers: %v", m, share)
		// What the member's cache holds: its share with the server's filtering, all without.
		cached := &circuitv1alpha1.CircuitBreakerList{}
		g.Expect(ops[m].reconciler.List(context.Background(), cached)).To(Succeed())
		want := share[m]
		if clientSideOnly {
			want = n
		}
		g.Expect(cached.Items).To(HaveLen(want), "breakers in %s's cache", m)
		g.Expect(ops[m].reconciler.Member.ServerFilters()).To(Equal(!clientSideOnly))
	}

	// One probe per interval per target, not one per member.
	window := 4 * interval
	from := time.Now()
	time.Sleep(window)
	for i := range n {
		got := countBetween(tg.arrivals(fmt.Sprintf("/b-%02d", i)), from, from.Add(window))
		g.Expect(got).To(BeNumerically("<=", 5), "b-%02d was probed %d times in %s at a %s interval", i, got, window, interval)
		g.Expect(got).To(BeNumerically(">=", 3), "b-%02d was probed %d times in %s at a %s interval", i, got, window, interval)
	}

	// Kill m-1: its Lease stays until it expires.
	before := probedBy(g, ns)
	killed := time.Now()
	ops["m-1"].stop()
	var orphans []string
	for name, m := range before {
		if m == "m-1" {
			orphans = append(orphans, name)
		}
	}
	slices.Sort(orphans)
	lease := time.Second
	deadline := lease + interval
	var worst time.Duration
	g.Eventually(func(g Gomega) {
		worst = 0
		for _, name := range orphans {
			arr := tg.arrivals("/" + name)
			idx := slices.IndexFunc(arr, func(at time.Time) bool { return at.After(killed) })
			g.Expect(idx).NotTo(Equal(-1), "%s not probed since the kill", name)
			worst = max(worst, arr[idx].Sub(killed))
		}
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	t.Logf("a killed member's %d breakers: the last was probed again %s after the kill (Lease %s + interval %s = %s)",
		len(orphans), worst, lease, interval, deadline)
	// The margin is for the loaded test machine: the kill lands anywhere in a renewal.
	g.Expect(worst).To(BeNumerically("<=", deadline+time.Second))
	two := []string{"m-0", "m-2"}
	g.Eventually(func(g Gomega) {
		g.Expect(probedBy(g, ns)).To(Equal(owners(g, ns, two)))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// A fourth member: the ranges move to it within a few renewals.
	started := time.Now()
	ops["m-3"] = startOperatorWith(t, ns, operatorOptions{member: ringMember(ns, "m-3", true), clientSideOnly: clientSideOnly})
	after := []string{"m-0", "m-2", "m-3"}
	g.Eventually(ops["m-3"].reconciler.Member.Members).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(after))
	joined := time.Now()
	g.Eventually(func(g Gomega) {
		g.Expect(probedBy(g, ns)).To(Equal(owners(g, ns, after)))
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	t.Logf("a fourth member: every breaker's probedBy named its new owner %s after it started, %s after it joined the ring",
		time.Since(started), time.Since(joined))
	if !clientSideOnly {
		// The watches moved to the new ranges in place: each cache holds its member's share only.
		g.Eventually(func(g Gomega) {
			share := map[string]int{}
			for _, m := range probedBy(g, ns) {
				share[m]++
			}
			for _, m := range after {
				cached := &circuitv1alpha1.CircuitBreakerList{}
				g.Expect(ops[m].reconciler.List(context.Background(), cached)).To(Succeed())
				g.Expect(cached.Items).To(HaveLen(share[m]), "breakers in %s's cache", m)
			}
		}).WithTimeout(5 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	}
	g.Expect(slices.Sorted(maps.Keys(ops))).To(HaveLen(4))

	// Nothing moved backwards: every breaker is still Closed, and none recorded a transition.
	list := &circuitv1alpha1.CircuitBreakerList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	for _, cb := range list.Items {
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed), cb.Name)
	}
}

func countBetween(times []time.Time, from, to time.Time) int {
	n := 0
	for _, at := range times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// A breaker that is Open when its owner is killed goes HalfOpen at its
// recorded nextRetryTime on the new owner, which continues from the stored
// status: every transition is recorded once (one Event each), none twice.
func TestOpenBreakerOfAKilledMemberHalfOpensOnTimeOnTheNewOwner(t *testing.T) {
	ns := newNamespace(t)
	tg := newTarget(t)
	tg.healthy.Store(false)
	ops := map[string]*operator{}
	for _, id := range []string{"m-0", "m-1"} {
		ops[id] = startOperatorWith(t, ns, operatorOptions{member: ringMember(ns, id, id != "m-1")})
	}
	const n = 12
	for i := range n {
		s := breakerSpec(tg.url(fmt.Sprintf("/b-%02d", i)))
		s.Threshold, s.Timeout, s.Interval = 1, "5s", "500ms"
		createBreaker(t, ns, fmt.Sprintf("b-%02d", i), s)
	}
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		list := &circuitv1alpha1.CircuitBreakerList{}
		g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
		for _, cb := range list.Items {
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateOpen), cb.Name)
		}
	}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	tg.healthy.Store(true)
	retry := map[string]time.Time{}
	list := &circuitv1alpha1.CircuitBreakerList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	for _, cb := range list.Items {
		if cb.Status.ProbedBy == "m-1" {
			retry[cb.Name] = cb.Status.NextRetryTime.Time
		}
	}
	g.Expect(retry).NotTo(BeEmpty(), "m-1 owns none of the %d breakers", n)
	ops["m-1"].stop()

	g.Eventually(func(g Gomega) {
		for name := range retry {
			cb := getBreaker(g, ns, name)
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed), name)
			g.Expect(cb.Status.ProbedBy).To(Equal("m-0"), name)
		}
	}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	for name, at := range retry {
		events := breakerEvents(g, ns, name)
		halfOpened := events[circuitv1alpha1.EventCircuitHalfOpened]
		g.Expect(halfOpened).To(HaveLen(1), "%s: HalfOpen events", name)
		g.Expect(events[circuitv1alpha1.EventCircuitOpened]).To(HaveLen(1), "%s: Open events", name)
		g.Expect(events[circuitv1alpha1.EventCircuitClosed]).To(HaveLen(1), "%s: Closed events", name)
		late := halfOpened[0].Sub(at)
		t.Logf("%s went HalfOpen %s after its nextRetryTime, on the new owner", name, late)
		g.Expect(late).To(BeNumerically("~", 0, time.Second), name)
	}
}

// breakerEvents maps the reasons of a breaker's Events to their times.
func breakerEvents(g Gomega, ns, name string) map[string][]time.Time {
	list := &corev1.EventList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	out := map[string][]time.Time{}
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out[e.Reason] = append(out[e.Reason], e.EventTime.Time)
		}
	}
	return out
}
