package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestFairSharesAreMaxMinFairUpToTheBound(t *testing.T) {
	for _, tc := range []struct {
		name         string
		total, bound int
		breakers     map[string]int
		want         map[string]int
	}{
		{"one namespace gets up to its bound", 8, 2, map[string]int{"a": 10}, map[string]int{"a": 2}},
		{"one namespace without a bound of its own gets every slot", 8, 8, map[string]int{"a": 10}, map[string]int{"a": 8}},
		{"a namespace asks for one slot per breaker", 8, 8, map[string]int{"a": 3}, map[string]int{"a": 3}},
		{
			"four busy namespaces and one with a breaker: 1 for it, the other 7 split equally, rounded down",
			8, 2, map[string]int{"h1": 3, "h2": 3, "h3": 3, "h4": 3, "ok": 1},
			map[string]int{"h1": 1, "h2": 1, "h3": 1, "h4": 1, "ok": 1},
		},
		{
			"what small namespaces leave goes to the big one",
			10, 10, map[string]int{"a": 1, "b": 2, "c": 20},
			map[string]int{"a": 1, "b": 2, "c": 7},
		},
		{"an equal split, rounded down", 8, 8, map[string]int{"a": 5, "b": 5, "c": 5}, map[string]int{"a": 2, "b": 2, "c": 2}},
		{
			"more namespaces than slots: at least one each",
			2, 2, map[string]int{"a": 1, "b": 4, "c": 1},
			map[string]int{"a": 1, "b": 1, "c": 1},
		},
		{"no namespaces", 8, 2, map[string]int{}, map[string]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(fairShares(tc.total, tc.bound, tc.breakers)).To(Equal(tc.want))
		})
	}
}

// poolWith is a pool whose namespaces have the given numbers of breakers.
func poolWith(total, perNamespace int, breakers map[string]int) *slotPool {
	p := newSlotPool(total, perNamespace)
	for ns, n := range breakers {
		for range n {
			p.addBreaker(ns)
		}
	}
	return p
}

// takeAll takes slots for the namespaces in turn, as long as any may take
// one, and returns how many each took.
func takeAll(p *slotPool, namespaces ...string) map[string]int {
	took := map[string]int{}
	for more := true; more; {
		more = false
		for _, ns := range namespaces {
			if p.mayTake(ns) {
				p.take(ns)
				took[ns]++
				more = true
			}
		}
	}
	return took
}

func TestSlotPoolKeepsASlotForANamespaceBelowItsShare(t *testing.T) {
	g := NewWithT(t)
	p := poolWith(8, 2, map[string]int{"h1": 3, "h2": 3, "h3": 3, "h4": 3, "ok": 1})
	took := takeAll(p, "h1", "h2", "h3", "h4")
	g.Expect(took).To(Equal(map[string]int{"h1": 2, "h2": 2, "h3": 2, "h4": 1}), "one slot is left for ok, below its share")
	g.Expect(p.mayTake("ok")).To(BeTrue(), "ok's probe starts at once")
	p.take("ok")
	g.Expect(p.mayTake("h4")).To(BeFalse(), "no slot is free")

	// ok's probe ends: its slot is kept for its next one, not taken by h4.
	p.give("ok")
	g.Expect(p.mayTake("h4")).To(BeFalse(), "h4 is at its share and ok below")
	g.Expect(p.mayTake("ok")).To(BeTrue())

	// A busy namespace's probe ends: the slot goes to one below its share
	// first, else to anyone while a slot stays kept for ok.
	p.give("h1")
	g.Expect(p.mayTake("h1")).To(BeTrue(), "h1 is below its share again")
	g.Expect(p.mayTake("h4")).To(BeTrue(), "h4 may take it too: one slot stays free for ok")
}

func TestSlotPoolIsWorkConserving(t *testing.T) {
	t.Run("one busy namespace alone uses every slot its bound allows", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(takeAll(poolWith(8, 2, map[string]int{"busy": 10}), "busy")).To(Equal(map[string]int{"busy": 2}))
		g.Expect(takeAll(poolWith(8, 0, map[string]int{"busy": 10}), "busy")).To(Equal(map[string]int{"busy": 8}))
	})
	t.Run("a busy namespace uses all but the slot kept for an idle one", func(t *testing.T) {
		g := NewWithT(t)
		p := poolWith(8, 0, map[string]int{"busy": 10, "idle": 1})
		g.Expect(takeAll(p, "busy")).To(Equal(map[string]int{"busy": 7}))
		g.Expect(p.mayTake("idle")).To(BeTrue())
	})
	t.Run("a namespace at its share keeps nothing in reserve", func(t *testing.T) {
		g := NewWithT(t)
		p := poolWith(8, 0, map[string]int{"busy": 10, "one": 1})
		p.take("one")
		g.Expect(takeAll(p, "busy")).To(Equal(map[string]int{"busy": 7}), "every slot is in use")
	})
	t.Run("a namespace without breakers keeps nothing in reserve", func(t *testing.T) {
		g := NewWithT(t)
		p := poolWith(8, 0, map[string]int{"busy": 10, "gone": 1})
		p.removeBreaker("gone")
		g.Expect(takeAll(p, "busy")).To(Equal(map[string]int{"busy": 8}))
	})
	t.Run("more namespaces than slots: each takes one while one is free", func(t *testing.T) {
		g := NewWithT(t)
		breakers := map[string]int{}
		var names []string
		for i := range 5 {
			names = append(names, fmt.Sprintf("ns-%d", i))
			breakers[names[i]] = 3
		}
		p := poolWith(3, 0, breakers)
		took := takeAll(p, names...)
		g.Expect(took).To(Equal(map[string]int{"ns-0": 1, "ns-1": 1, "ns-2": 1}))
	})
}

func TestSlotPoolWaitersGetFreedSlotsAndACancelledOneTakesNone(t *testing.T) {
	g := NewWithT(t)
	p := poolWith(2, 0, map[string]int{"a": 5, "b": 1})
	ctx := context.Background()
	releaseA, ok := p.acquire(ctx, "a")
	g.Expect(ok).To(BeTrue())

	second := make(chan func(), 1)
	go func() {
		release, _ := p.acquire(ctx, "a")
		second <- release
	}()
	g.Consistently(second).WithTimeout(100*time.Millisecond).ShouldNot(Receive(), "the last free slot is kept for b")
	releaseB, ok := p.acquire(ctx, "b")
	g.Expect(ok).To(BeTrue(), "b's probe starts at once")

	cancelled, cancel := context.WithCancel(ctx)
	gaveUp := make(chan bool, 1)
	go func() {
		_, ok := p.acquire(cancelled, "b")
		gaveUp <- !ok
	}()
	g.Consistently(gaveUp).WithTimeout(50 * time.Millisecond).ShouldNot(Receive())
	cancel()
	g.Eventually(gaveUp).WithTimeout(time.Second).Should(Receive(BeTrue()))

	releaseA()
	var release func()
	g.Eventually(second).WithTimeout(time.Second).Should(Receive(&release), "a's waiting probe gets the freed slot")
	releaseA() // once only
	release()
	releaseB()
	p.mu.Lock()
	defer p.mu.Unlock()
	g.Expect(p.inUse).To(BeZero())
	g.Expect(p.held).To(BeEmpty())
}
