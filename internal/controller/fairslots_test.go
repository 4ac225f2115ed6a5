package controller

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// hangingTarget accepts connections, never answers, and counts the
// connections open at once (a probe closes its own at its retryTimeout).
type hangingTarget struct {
	addr      string
	open, top atomic.Int32
}

func newHangingTarget(t *testing.T) *hangingTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ht := &hangingTarget{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := ht.open.Add(1)
			for top := ht.top.Load(); n > top && !ht.top.CompareAndSwap(top, n); top = ht.top.Load() {
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Read until the prober gives up and closes the connection.
				_, _ = c.Read(make([]byte, 64<<10))
				for {
					if _, err := c.Read(make([]byte, 4096)); err != nil {
						break
					}
				}
				ht.open.Add(-1)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ht
}

// hangingSpec never opens the circuit (threshold 1000), so it keeps probing a
// hanging target: each probe holds a slot for its whole retryTimeout.
func hangingSpec(addr string, retryTimeout circuitv1alpha1.GoDuration) circuitv1alpha1.CircuitBreakerSpec {
	spec := breakerSpec("http://" + addr + "/hang")
	spec.Threshold = 1000
	spec.RetryTimeout, spec.Interval = retryTimeout, retryTimeout
	return spec
}

// With 8 slots and 2 per namespace, four namespaces of breakers on hanging
// targets (retryTimeout 5s) hold every slot until a fifth namespace has a
// breaker: its first probe waits for one of theirs to end (at most one
// retryTimeout of theirs), and from then on a slot is kept for it, so that its
// healthy breaker keeps its 500ms cadence.
func TestFourNamespacesOfHangingTargetsDoNotHoldAFifthOffItsCadence(t *testing.T) {
	g := NewWithT(t)
	healthyNS := newNamespace(t)
	var busy []string
	for range 4 {
		busy = append(busy, newNamespace(t))
	}
	startOperatorWith(t, healthyNS, operatorOptions{inFlight: 8, perNamespace: 2, alsoWatch: busy})
	ht := newHangingTarget(t)
	for _, ns := range busy {
		for i := range 3 {
			createBreaker(t, ns, fmt.Sprintf("hang-%d", i), hangingSpec(ht.addr, "5s"))
		}
	}
	g.Eventually(ht.open.Load).WithTimeout(10*time.Second).Should(BeNumerically(">=", 7), "the busy namespaces hold their slots")

	tg := newTarget(t)
	spec := breakerSpec(tg.url("/cadence"))
	spec.Interval, spec.RetryTimeout = "500ms", "200ms"
	created := time.Now()
	createBreaker(t, healthyNS, "healthy", spec)
	time.Sleep(15 * time.Second) // three retryTimeouts of the hanging breakers

	arrivals := tg.arrivals("/cadence")
	g.Expect(len(arrivals)).To(BeNumerically(">=", 2))
	var gaps []time.Duration
	for i := 1; i < len(arrivals); i++ {
		gaps = append(gaps, arrivals[i].Sub(arrivals[i-1]).Round(time.Millisecond))
	}
	longest := slices.Max(gaps)
	first := arrivals[0].Sub(created)
	t.Logf("%d probes of the healthy breaker in 15s, the first %v after its creation, gaps %v; up to %d connections were open at the hanging target at once",
		len(arrivals), first.Round(time.Millisecond), gaps, ht.top.Load())
	g.Expect(first).To(BeNumerically("<", 8*time.Second), "the first probe waited at most one retryTimeout (5s) of the hanging breakers")
	g.Expect(len(arrivals)).To(BeNumerically(">=", 2*int((15*time.Second-first)/time.Second)-2),
		"one probe every 500ms from the first on")
	g.Expect(longest).To(BeNumerically("<", 1500*time.Millisecond), "the healthy breaker kept its 500ms cadence")
}

// Fairness wastes no slot: one namespace alone uses every slot its bound
// allows, and all of them without a bound of its own. (That it never holds
// more is TestRunnerNamespaceAtItsBoundDoesNotStarveAnother's: here a
// connection the prober has closed may not yet be seen closed when the next
// probe's arrives.)
func TestOneBusyNamespaceAloneUsesEverySlotItsBoundAllows(t *testing.T) {
	for _, tc := range []struct {
		name         string
		perNamespace int
		want         int32
	}{
		{"bound 2", 2, 2},
		{"no bound of its own", 0, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			startOperatorWith(t, ns, operatorOptions{inFlight: 8, perNamespace: tc.perNamespace})
			ht := newHangingTarget(t)
			for i := range 10 {
				createBreaker(t, ns, fmt.Sprintf("hang-%d", i), hangingSpec(ht.addr, "3s"))
			}
			g.Eventually(ht.open.Load).WithTimeout(15 * time.Second).Should(Equal(tc.want))
		})
	}
}
