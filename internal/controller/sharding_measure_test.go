package controller

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// TestMeasureMemoryOfAMemberWithAndWithoutTheServersFiltering is a
// measurement for docs/scale.md, not a check: it runs only with
// BREAKER_MEASURE_RING=N (the number of breakers). One member of a ring of
// three (the other two hold Leases only) runs with the API server's filtering
// and then without; it logs the growth of the process heap with each.
func TestMeasureMemoryOfAMemberWithAndWithoutTheServersFiltering(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BREAKER_MEASURE_RING"))
	if n <= 0 {
		t.Skip("a measurement: set BREAKER_MEASURE_RING to the number of breakers")
	}
	ns := newNamespace(t)
	tg := newTarget(t)
	for i := range n {
		s := breakerSpec(tg.url(fmt.Sprintf("/b-%d", i)))
		s.Interval = "10s"
		createBreaker(t, ns, fmt.Sprintf("b-%05d", i), s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"m-1", "m-2"} {
		m := ringMember(ns, id, true)
		var err error
		if m.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
		go func() { _ = m.Start(ctx) }()
	}
	time.Sleep(time.Second)
	g := NewWithT(t)
	for _, clientSideOnly := range []bool{true, false, true, false} {
		before := heap()
		op := startOperatorWith(t, ns, operatorOptions{member: ringMember(ns, "m-0", true), clientSideOnly: clientSideOnly})
		g.Eventually(func(g Gomega) {
			list := &circuitv1alpha1.CircuitBreakerList{}
			g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
			for _, cb := range list.Items {
				if op.reconciler.Member.Owns(&cb) {
					g.Expect(cb.Status.ProbedBy).To(Equal("m-0"))
				}
			}
		}).WithTimeout(120 * time.Second).WithPolling(time.Second).Should(Succeed())
		time.Sleep(15 * time.Second) // every owned breaker probed at least once
		cached := &circuitv1alpha1.CircuitBreakerList{}
		g.Expect(op.reconciler.List(context.Background(), cached)).To(Succeed())
		grown := heap() - before
		t.Logf("server filtering %v: %d breakers, %d cached, %d owned, heap +%.1f MiB, %.2f KiB per breaker in the cluster",
			!clientSideOnly, n, len(cached.Items), op.runner.Len(), float64(grown)/(1<<20), float64(grown)/1024/float64(n))
		cached = nil
		op.stop()
		time.Sleep(2 * time.Second)
	}
}

// heap is the live heap after a collection.
func heap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
