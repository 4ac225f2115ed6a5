package runner

import (
	"context"
	"slices"
	"sync"
)

// slotPool hands out the slots probes run in, fairly between namespaces and
// without leaving any idle that a probe could use.
//
// A namespace's share is its max-min fair share of all the slots among the
// namespaces that have breakers, each asking for as many as it has breakers
// (one probe in flight each) up to the per-namespace bound, rounded down but
// at least one. A namespace holding less than its share takes any free slot.
// A namespace at or over its share takes one only if it leaves a free slot for
// each namespace below its share, so that such a namespace's next probe starts
// at once: a slot it waits for is one that a namespace over its share holds,
// and that slot is free again within one retryTimeout of that namespace's.
// No namespace ever holds more than the per-namespace bound.
type slotPool struct {
	mu    sync.Mutex
	total int
	// bound is the most one namespace may hold: the per-namespace bound, or
	// total when there is none.
	bound int
	inUse int
	// held and breakers are per namespace; a namespace with none has no entry.
	held     map[string]int
	breakers map[string]int
	// shares is each namespace's share and under how many namespaces hold less
	// than theirs; both are recomputed when breakers change (stale).
	shares map[string]int
	under  int
	stale  bool
	// waiters are the probes waiting for a slot, oldest first.
	waiters []*slotWaiter
}

type slotWaiter struct {
	ns      string
	granted chan struct{}
}

func newSlotPool(total, perNamespace int) *slotPool {
	total = max(total, 1)
	bound := total
	if perNamespace > 0 {
		bound = min(perNamespace, total)
	}
	return &slotPool{total: total, bound: bound, held: map[string]int{}, breakers: map[string]int{}, shares: map[string]int{}}
}

// addBreaker and removeBreaker count the breakers of a namespace: only
// namespaces with breakers have a share.
func (p *slotPool) addBreaker(ns string) { p.countBreaker(ns, 1) }

func (p *slotPool) removeBreaker(ns string) { p.countBreaker(ns, -1) }

func (p *slotPool) countBreaker(ns string, delta int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.breakers[ns] + delta; n > 0 {
		p.breakers[ns] = n
	} else {
		delete(p.breakers, ns)
	}
	p.stale = true
	p.dispatch()
}

// acquire takes a slot for a probe of namespace ns, waiting as long as ctx
// lasts. release gives it back (once).
func (p *slotPool) acquire(ctx context.Context, ns string) (release func(), ok bool) {
	release = sync.OnceFunc(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.give(ns)
		p.dispatch()
	})
	p.mu.Lock()
	// Every waiter was refused at the last change; one that may take a slot
	// now is not overtaking anyone who may.
	if p.mayTake(ns) {
		p.take(ns)
		p.mu.Unlock()
		return release, true
	}
	w := &slotWaiter{ns: ns, granted: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w.granted:
		return release, true
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		return nil, false
	}
	// Granted as the context ended: give it back.
	p.give(ns)
	p.dispatch()
	return nil, false
}

// dispatch grants a slot to every waiter that may take one, oldest first.
func (p *slotPool) dispatch() {
	p.waiters = slices.DeleteFunc(p.waiters, func(w *slotWaiter) bool {
		if !p.mayTake(w.ns) {
			return false
		}
		p.take(w.ns)
		close(w.granted)
		return true
	})
}

// mayTake reports whether a probe of ns may take a slot now.
func (p *slotPool) mayTake(ns string) bool {
	p.refresh()
	h, free := p.held[ns], p.total-p.inUse
	switch {
	case h >= p.bound || free <= 0:
		return false
	case h < p.shares[ns]:
		return true
	}
	// Over its share: leave a slot for each namespace below its share.
	return free-1 >= p.under
}

func (p *slotPool) take(ns string) {
	p.refresh()
	h := p.held[ns]
	if h < p.shares[ns] && h+1 >= p.shares[ns] {
		p.under--
	}
	p.held[ns] = h + 1
	p.inUse++
}

func (p *slotPool) give(ns string) {
	p.refresh()
	h := p.held[ns]
	if h <= 0 {
		return
	}
	if h-1 < p.shares[ns] && h >= p.shares[ns] {
		p.under++
	}
	if h == 1 {
		delete(p.held, ns)
	} else {
		p.held[ns] = h - 1
	}
	p.inUse--
}

// refresh recomputes the shares, and how many namespaces are below theirs,
// after the breakers changed.
func (p *slotPool) refresh() {
	if !p.stale {
		return
	}
	p.stale = false
	p.shares = fairShares(p.total, p.bound, p.breakers)
	p.under = 0
	for ns, share := range p.shares {
		if p.held[ns] < share {
			p.under++
		}
	}
}

// fairShares is each namespace's max-min fair share of total slots, when each
// asks for one per breaker up to bound: by water-filling, the namespaces that
// ask for less than an equal split get what they ask for, and the rest split
// what is left equally, rounded down. Every namespace with breakers gets at
// least one slot, even when there are more such namespaces than slots.
func fairShares(total, bound int, breakers map[string]int) map[string]int {
	type demand struct {
		ns   string
		want int
	}
	demands := make([]demand, 0, len(breakers))
	for ns, n := range breakers {
		demands = append(demands, demand{ns, min(n, bound)})
	}
	slices.SortFunc(demands, func(a, b demand) int { return a.want - b.want })
	shares := make(map[string]int, len(demands))
	left, split := total, 0
	for i, d := range demands {
		rest := len(demands) - i
		if split == 0 && d.want*rest > left {
			// Everyone from here on asks for more than an equal split of what
			// is left, and gets that split: the same for all, whatever their
			// names, so the remainder of the division stays idle for the
			// work-conserving rule to hand out.
			split = max(left/rest, 1)
		}
		share := d.want
		if split > 0 {
			share = split
		}
		shares[d.ns] = max(share, 1)
		left -= share
	}
	return shares
}
