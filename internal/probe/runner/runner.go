// Package runner sends each breaker's probes on its own cadence, off the
// reconcile workers, within bounded slots. It answers three narrow questions
// of the controller (View, Plan, Settle) and never calls back into it.
package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Key names the breaker a probe belongs to.
type Key struct{ Namespace, Name string }

// Doer sends one probe; *Prober is the production Doer.
type Doer interface {
	Probe(ctx context.Context, t probe.Target) probe.Result
}

// Sharer is a Doer that shares resources (HTTP clients and their connections)
// between the targets that need the same ones. The Runner retains each target
// while a breaker probes it and releases it when the breaker changes or goes.
type Sharer interface {
	Retain(t probe.Target)
	Release(t probe.Target)
}

// Limits bound the probes in flight.
type Limits struct {
	// InFlight is how many probes may run at once, over all namespaces. They
	// are shared fairly between the namespaces that have breakers (see
	// slotPool): a namespace over its fair share never takes the last free
	// slots, one of which is kept for each namespace below its share.
	InFlight int
	// PerNamespace is how many of them one namespace may hold; zero means no
	// bound of its own. Probes of a namespace at its bound wait without taking
	// a slot from anyone else.
	PerNamespace int
	// WedgeGrace is how long past its deadline a probe may still be running
	// before Healthy reports the runner wedged; zero means DefaultWedgeGrace.
	WedgeGrace time.Duration
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
// before it have been recorded. Results wait in order (at most MaxPending) and
// the runner calls notify for each. The controller asks three things of it:
// View (what waits, and when the last probe started), Plan (what to probe and
// when, before it writes a decision) and Settle (which results the written
// status holds). A probe whose breaker is forgotten or given a new spec is
// cancelled, and its slot freed, at once.
//
// A gRPC target with GRPCSettings.Watch is not polled: the Runner holds its
// health streams (see watch.go), which deliver each change of status at once,
// and each due probe reads the status they last saw.
type Runner struct {
	doer     Doer
	sharer   Sharer
	streamer Streamer
	slots    *slotPool
	// wedgeGrace is how long past its deadline a probe may run before Healthy fails.
	wedgeGrace time.Duration

	mu     sync.Mutex
	ctx    context.Context
	notify func(Key)
	items  map[Key]*item
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
	target   probe.Target
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
	pending   []probe.Result
	// holdIf is the last plan's test of waiting results (see Plan.HoldIf).
	holdIf func([]probe.Result) bool
	// watch holds the streams of a watched gRPC target; nil otherwise.
	watch *watch
}

// NewRunner returns a Runner within limits.
func NewRunner(doer Doer, limits Limits) *Runner {
	r := &Runner{
		doer:       doer,
		slots:      newSlotPool(limits.InFlight, limits.PerNamespace),
		ctx:        context.Background(),
		items:      map[Key]*item{},
		running:    map[uint64]time.Time{},
		wedgeGrace: limits.WedgeGrace,
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

// View is what the runner knows of a breaker, for one spec.
type View struct {
	// Known: the runner has been planned for this breaker (any spec) since it
	// started. A manager that restarted knows none of its breakers.
	Known bool
	// Pending are the results waiting to be recorded, oldest first.
	Pending []probe.Result
	// LastStart is when the last probe for this spec started, in flight or
	// done; zero if none.
	LastStart time.Time
}

// View answers, under one lock, what a decision about key needs of the runner.
func (r *Runner) View(key Key, specID string) View {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	v := View{Known: ok}
	if ok && it.specID == specID {
		v.LastStart = it.lastStart
		if len(it.pending) > 0 {
			v.Pending = slices.Clone(it.pending)
		}
	}
	return v
}

// Plan is what a decision asks of the runner, before its status is written.
type Plan struct {
	// SpecID names what is probed and how: when it differs from the last
	// plan's, earlier results and timers are dropped and a probe in flight is
	// cancelled.
	SpecID string
	Target probe.Target
	// Next is when to send the next probe; zero pauses the breaker (its timer
	// and cadence stop; a probe in flight still delivers its result).
	Next time.Time
	// Every is the cadence: when a probe starts, the next is due Every later.
	// Zero: only the probes a plan asks for.
	Every time.Duration
	// HoldIf is asked, with the waiting results (oldest first), before a probe
	// is sent while results wait: true holds the probe back until the next
	// Plan or Settle (the waiting results will open the circuit, whose status
	// is not yet written). It must be pure and quick: it runs under the
	// runner's lock.
	HoldIf func([]probe.Result) bool
}

// Plan sets key's next probe and cadence. A probe due while another is in
// flight starts when that one ends.
func (r *Runner) Plan(key Key, p Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.Next.IsZero() {
		r.pause(key)
		return
	}
	it := r.itemFor(key, p.SpecID)
	r.setTarget(it, p.Target)
	it.every, it.holdIf = p.Every, p.HoldIf
	r.follow(key, it)
	if it.inFlight && !p.Next.After(time.Now()) {
		// The probe in flight is the one due now; its start sets the next.
		return
	}
	r.arm(key, it, p.Next)
}

// pause stops key's timer and cadence and closes its streams. A probe in
// flight finishes; its result is still delivered.
func (r *Runner) pause(key Key) {
	if it, ok := r.items[key]; ok {
		if it.timer != nil {
			it.timer.Stop()
			it.timer = nil
		}
		it.every, it.overdue = 0, false
		r.unfollow(it)
	}
}

// Settle is told after a decision's status is written: the results that
// started at or before ackThrough are recorded (zero: none), and those of
// probes that started before discardBefore must never count (a reset at that
// time; zero: none), so they are dropped and such a probe in flight is
// cancelled.
func (r *Runner) Settle(key Key, ackThrough, discardBefore time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	if !ok {
		return
	}
	if !ackThrough.IsZero() {
		it.pending = slices.DeleteFunc(it.pending, func(res probe.Result) bool { return !res.Start.After(ackThrough) })
	}
	if !discardBefore.IsZero() {
		it.pending = slices.DeleteFunc(it.pending, func(res probe.Result) bool { return res.Start.Before(discardBefore) })
		if it.inFlight && !it.probeStart.IsZero() && it.probeStart.Before(discardBefore) && it.cancel != nil {
			it.cancel()
			it.cancel, it.inFlight, it.probe = nil, false, 0
		}
	}
	r.catchUp(key, it)
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
func (r *Runner) setTarget(it *item, target probe.Target) {
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

// catchUp starts an overdue probe once nothing holds it back.
func (r *Runner) catchUp(key Key, it *item) {
	if it.overdue && !it.inFlight && len(it.pending) < MaxPending {
		r.arm(key, it, time.Now())
	}
}

// Forget drops everything about key: its timer, its pending result, and its
// probe in flight, which is cancelled. Used when the breaker is deleted.
func (r *Runner) Forget(key Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok {
		r.drop(it)
		delete(r.items, key)
		r.slots.removeBreaker(key.Namespace)
	}
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
	grace := r.wedgeGrace
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
	} else {
		r.slots.addBreaker(key.Namespace)
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
	if it.holdIf != nil && len(it.pending) > 0 && it.holdIf(slices.Clone(it.pending)) {
		it.overdue = true
		r.mu.Unlock()
		return
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

	release, ok := r.slots.acquire(ctx, key.Namespace)
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
func (r *Runner) finish(key Key, epoch, id uint64, res *probe.Result) {
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
