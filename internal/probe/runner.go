package probe

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Key names the breaker a probe belongs to.
type Key struct{ Namespace, Name string }

// Doer sends one probe; *Prober is the production Doer.
type Doer interface {
	Probe(ctx context.Context, t Target) Result
}

// Sharer is a Doer that shares resources (HTTP clients and their connections)
// between the targets that need the same ones. The Runner retains each target
// while a breaker probes it and releases it when the breaker changes or goes.
type Sharer interface {
	Retain(t Target)
	Release(t Target)
}

// Limits bound the probes in flight.
type Limits struct {
	// InFlight is how many probes may run at once, over all namespaces.
	InFlight int
	// PerNamespace is how many of them one namespace may hold; zero means no
	// bound of its own. Probes of a namespace at its bound wait without taking
	// a slot from anyone else.
	PerNamespace int
}

// DefaultWedgeGrace is how long past its deadline a probe may still be running
// before the Runner reports itself unhealthy.
const DefaultWedgeGrace = time.Minute

// MaxPending bounds the results that wait to be recorded for one breaker. A
// breaker whose results are this far behind sends no probe until they are
// recorded: the API server is that far behind, and more would only wait too.
const MaxPending = 64

// Runner sends probes at the times it is asked to, never earlier, each in its
// own goroutine (at most a bounded number at once, and a bounded number per
// namespace), so that a hanging target never holds up a reconcile worker or
// another breaker's probe. It keeps each breaker's cadence on its own: when a
// probe starts, the next is due a cadence later, whether or not the results
// before it have been recorded. Results wait in order (at most MaxPending);
// the runner calls notify for each, and the reconciler reads them with
// Pending, records them (all at once), acknowledges them with Ack and moves
// the next probe with Schedule when a decision changes it (a circuit that
// opens sends its trial at nextRetryTime). A probe whose breaker is forgotten
// or given a new spec is cancelled, and its slot freed, at once.
//
// A gRPC target with GRPCSettings.Watch is not polled: the Runner holds its
// health streams (see watch.go), which deliver each change of status at once,
// and each due probe reads the status they last saw.
type Runner struct {
	doer     Doer
	sharer   Sharer
	streamer Streamer
	global   chan struct{}
	perNS    int
	// WedgeGrace overrides DefaultWedgeGrace (tests).
	WedgeGrace time.Duration
	// Hold, when set, is asked before a breaker with results waiting is probed
	// again; true holds the probe back until Schedule or Ack moves it (the
	// waiting results will open the circuit, whose decision is not yet taken).
	Hold func(Key) bool

	mu         sync.Mutex
	ctx        context.Context
	notify     func(Key)
	items      map[Key]*item
	namespaces map[string]*nsSlots
	// running holds the deadline of every probe whose Doer has not returned,
	// cancelled or not, by probe number.
	running map[uint64]time.Time
	// epochs numbers items, so that a timer or probe of a dropped item is ignored.
	epochs uint64
	// probes numbers probes, so that a discarded probe's result is ignored.
	probes uint64
}

type item struct {
	// specID identifies what is probed; a new one drops older results.
	specID   string
	epoch    uint64
	target   Target
	retained bool
	timer    *time.Timer
	at       time.Time
	// every is the cadence: when a probe starts, the next is due every later.
	// Zero: only the probes Schedule asks for.
	every    time.Duration
	inFlight bool
	// overdue: a probe came due while one was in flight or the results queue
	// was full; it starts as soon as neither holds.
	overdue bool
	// probe numbers the probe in flight, probeStart is when it started (zero
	// while it waits for a slot or its time), and cancel ends it.
	probe      uint64
	probeStart time.Time
	cancel     context.CancelFunc
	// lastStart is when the last probe for this spec started, in flight or done.
	lastStart time.Time
	pending   []Result
	// watch holds the streams of a watched gRPC target; nil otherwise.
	watch *watch
}

// nsSlots are one namespace's share of the slots.
type nsSlots struct {
	ch    chan struct{}
	users int
}

// NewRunner returns a Runner within limits.
func NewRunner(doer Doer, limits Limits) *Runner {
	r := &Runner{
		doer:       doer,
		global:     make(chan struct{}, max(limits.InFlight, 1)),
		perNS:      limits.PerNamespace,
		ctx:        context.Background(),
		items:      map[Key]*item{},
		namespaces: map[string]*nsSlots{},
		running:    map[uint64]time.Time{},
	}
	r.sharer, _ = doer.(Sharer)
	r.streamer, _ = doer.(Streamer)
	return r
}

// Start sets the context probes run under and the function told of each result.
// Probes scheduled before Start run but notify no one.
func (r *Runner) Start(ctx context.Context, notify func(Key)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx, r.notify = ctx, notify
	go func() {
		<-ctx.Done()
		r.stopAll()
	}()
}

// Schedule asks for the next probe of target at time at, and for one every
// `every` after each probe starts from then on (zero: none of its own). specID
// names what is probed: when it differs from the last call's, earlier results
// and timers are dropped and a probe in flight is cancelled. A probe due while
// another is in flight starts when that one ends.
func (r *Runner) Schedule(key Key, specID string, target Target, at time.Time, every time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it := r.itemFor(key, specID)
	r.setTarget(it, target)
	it.every = every
	r.follow(key, it)
	if it.inFlight && !at.After(time.Now()) {
		// The probe in flight is the one due now; its start sets the next.
		return
	}
	r.arm(key, it, at)
}

// arm sets the item's timer to at, unless it is already set to at.
func (r *Runner) arm(key Key, it *item, at time.Time) {
	if it.timer != nil {
		if it.at.Equal(at) {
			return
		}
		it.timer.Stop()
	}
	it.at, it.overdue = at, false
	epoch := it.epoch
	it.timer = time.AfterFunc(time.Until(at), func() { r.fire(key, epoch, at) })
}

// setTarget retains the new target before releasing the old one, so that a
// client both use is not dropped in between.
func (r *Runner) setTarget(it *item, target Target) {
	old, had := it.target, it.retained
	it.target, it.retained = target, r.sharer != nil
	if r.sharer != nil {
		r.sharer.Retain(target)
		if had {
			r.sharer.Release(old)
		}
	}
}

func (r *Runner) drop(it *item) {
	r.unfollow(it)
	if it.timer != nil {
		it.timer.Stop()
		it.timer = nil
	}
	if it.cancel != nil {
		it.cancel()
		it.cancel = nil
	}
	if it.retained && r.sharer != nil {
		r.sharer.Release(it.target)
		it.retained = false
	}
}

// Pause cancels the scheduled probes of key and its cadence (a breaker that
// cannot be probed as specified sends none) and closes its streams. A probe
// in flight finishes; its
// result is still delivered.
func (r *Runner) Pause(key Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok {
		if it.timer != nil {
			it.timer.Stop()
			it.timer = nil
		}
		it.every, it.overdue = 0, false
		r.unfollow(it)
	}
}

// Pending returns the results that wait to be recorded for key and specID,
// oldest first.
func (r *Runner) Pending(key Key, specID string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	if !ok || it.specID != specID || len(it.pending) == 0 {
		return nil
	}
	return append([]Result(nil), it.pending...)
}

// Ack marks the results that started at or before through as recorded.
func (r *Runner) Ack(key Key, through time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	if !ok {
		return
	}
	it.pending = slices.DeleteFunc(it.pending, func(res Result) bool { return !res.Start.After(through) })
	r.catchUp(key, it)
}

// catchUp starts an overdue probe once nothing holds it back.
func (r *Runner) catchUp(key Key, it *item) {
	if it.overdue && !it.inFlight && len(it.pending) < MaxPending {
		r.arm(key, it, time.Now())
	}
}

// DiscardBefore drops the pending result of key and cancels its probe in
// flight if they started before t: a reset at t must not be undone by a probe
// that was under way when it was handled.
func (r *Runner) DiscardBefore(key Key, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	if !ok {
		return
	}
	it.pending = slices.DeleteFunc(it.pending, func(res Result) bool { return res.Start.Before(t) })
	if it.inFlight && !it.probeStart.IsZero() && it.probeStart.Before(t) && it.cancel != nil {
		it.cancel()
		it.cancel, it.inFlight, it.probe = nil, false, 0
	}
	r.catchUp(key, it)
}

// LastStart returns when the last probe of key for specID started, whether it
// is still in flight or not, or the zero time.
func (r *Runner) LastStart(key Key, specID string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok && it.specID == specID {
		return it.lastStart
	}
	return time.Time{}
}

// Forget drops everything about key: its timer, its pending result, and its
// probe in flight, which is cancelled. Used when the breaker is deleted.
func (r *Runner) Forget(key Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok {
		r.drop(it)
		delete(r.items, key)
	}
}

// Knows reports whether the Runner has been asked to probe key (for any spec)
// since it started: a manager that restarted knows none of its breakers.
func (r *Runner) Knows(key Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.items[key]
	return ok
}

// Len returns how many breakers the Runner knows.
func (r *Runner) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

// Healthy returns an error when a probe is still running well past its
// deadline: the Runner is wedged (a Doer that ignores its context), and only a
// restart frees what it holds. It serves the manager's /healthz.
func (r *Runner) Healthy(now time.Time) error {
	grace := r.WedgeGrace
	if grace <= 0 {
		grace = DefaultWedgeGrace
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	wedged := 0
	for _, deadline := range r.running {
		if now.After(deadline.Add(grace)) {
			wedged++
		}
	}
	if wedged > 0 {
		return fmt.Errorf("%d probes are still running more than %s past their deadline", wedged, grace)
	}
	return nil
}

func (r *Runner) itemFor(key Key, specID string) *item {
	it, ok := r.items[key]
	if ok && it.specID == specID {
		return it
	}
	r.epochs++
	fresh := &item{specID: specID, epoch: r.epochs}
	if ok {
		// The new target is retained (by the caller) before the old is released.
		fresh.target, fresh.retained = it.target, it.retained
		it.retained = false
		r.drop(it)
	}
	r.items[key] = fresh
	return fresh
}

func (r *Runner) fire(key Key, epoch uint64, at time.Time) {
	r.mu.Lock()
	it, ok := r.items[key]
	if !ok || it.epoch != epoch || it.timer == nil || !it.at.Equal(at) {
		r.mu.Unlock()
		return
	}
	it.timer = nil
	if it.inFlight || len(it.pending) >= MaxPending {
		it.overdue = true
		r.mu.Unlock()
		return
	}
	if hold := r.Hold; hold != nil && len(it.pending) > 0 {
		r.mu.Unlock()
		held := hold(key)
		r.mu.Lock()
		if it, ok = r.items[key]; !ok || it.epoch != epoch || it.timer != nil || it.inFlight {
			r.mu.Unlock() // moved or dropped meanwhile
			return
		}
		if held {
			it.overdue = true
			r.mu.Unlock()
			return
		}
	}
	if w := it.watch; w != nil && !w.fallback {
		notify := r.tick(key, it, at)
		r.mu.Unlock()
		notify()
		return
	}
	it.inFlight = true
	r.probes++
	id := r.probes
	ctx, cancel := context.WithCancel(r.ctx)
	it.probe, it.probeStart, it.cancel = id, time.Time{}, cancel
	target := it.target
	r.mu.Unlock()
	defer cancel()

	release, ok := r.acquire(ctx, key.Namespace)
	if !ok {
		r.finish(key, epoch, id, nil)
		return
	}
	// A cancelled probe gives its slots back at once, even before its Doer returns.
	stop := context.AfterFunc(ctx, release)
	defer func() { stop(); release() }()

	// Timers run on the monotonic clock, and at may be a wall-clock time read
	// from status: a probe that must not start before a deadline (an Open
	// circuit's trial, at nextRetryTime) waits out any difference.
	if early := time.Until(at); early > 0 {
		select {
		case <-time.After(early):
		case <-ctx.Done():
			r.finish(key, epoch, id, nil)
			return
		}
	}
	// The start is taken and recorded under the lock: a reconciler that reads
	// LastStart without seeing this probe knows that it started later than that.
	r.mu.Lock()
	start := time.Now()
	if it, ok := r.items[key]; ok && it.epoch == epoch && it.probe == id {
		it.lastStart, it.probeStart = start, start
		if it.every > 0 && it.timer == nil {
			// The cadence holds whatever happens to this probe's result.
			r.arm(key, it, start.Add(it.every))
		}
	}
	r.running[id] = start.Add(target.Timeout)
	r.mu.Unlock()

	res := r.doer.Probe(ctx, target)
	res.Start = start
	r.mu.Lock()
	delete(r.running, id)
	r.mu.Unlock()
	r.finish(key, epoch, id, &res)
}

// finish stores res (nil: the probe never ran) for the item that sent probe
// id, if that item and probe are still current, and tells the reconciler.
func (r *Runner) finish(key Key, epoch, id uint64, res *Result) {
	r.mu.Lock()
	it, ok := r.items[key]
	current := ok && it.epoch == epoch && it.probe == id
	if current {
		it.inFlight, it.probe, it.cancel = false, 0, nil
		if res != nil {
			it.pending = append(it.pending, *res)
		}
		r.catchUp(key, it)
	}
	notify, ctx := r.notify, r.ctx
	r.mu.Unlock()
	if current && res != nil && notify != nil && ctx.Err() == nil {
		notify(key)
	}
}

// acquire takes a slot of namespace ns, then one of the global pool, waiting
// for either as long as ctx lasts. release gives both back (once).
func (r *Runner) acquire(ctx context.Context, ns string) (release func(), ok bool) {
	var slots *nsSlots
	if r.perNS > 0 {
		r.mu.Lock()
		slots = r.namespaces[ns]
		if slots == nil {
			slots = &nsSlots{ch: make(chan struct{}, r.perNS)}
			r.namespaces[ns] = slots
		}
		slots.users++
		r.mu.Unlock()
		select {
		case slots.ch <- struct{}{}:
		case <-ctx.Done():
			r.leave(ns, slots, false)
			return nil, false
		}
	}
	select {
	case r.global <- struct{}{}:
	case <-ctx.Done():
		r.leave(ns, slots, true)
		return nil, false
	}
	return sync.OnceFunc(func() {
		<-r.global
		r.leave(ns, slots, true)
	}), true
}

// leave gives back a namespace slot (if held) and drops the namespace's
// entry when no probe of it holds or waits for one.
func (r *Runner) leave(ns string, slots *nsSlots, held bool) {
	if slots == nil {
		return
	}
	if held {
		<-slots.ch
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slots.users--; slots.users == 0 && r.namespaces[ns] == slots {
		delete(r.namespaces, ns)
	}
}

func (r *Runner) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range r.items {
		if it.timer != nil {
			it.timer.Stop()
			it.timer = nil
		}
	}
}
