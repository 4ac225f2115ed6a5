package probe

import (
	"context"
	"sync"
	"time"
)

// Key names the breaker a probe belongs to.
type Key struct{ Namespace, Name string }

// Doer sends one probe; *Prober is the production Doer.
type Doer interface {
	Probe(ctx context.Context, t Target) Result
}

// Runner sends probes at the times it is asked to, never earlier, each in its
// own goroutine (at most a bounded number at once), so that a hanging target
// never holds up a reconcile worker or another breaker's probe. When a probe
// finishes, the Runner keeps its result and calls notify; the reconciler then
// reads the result with Pending, records it, acknowledges it with Ack and asks
// for the next probe.
type Runner struct {
	doer   Doer
	sem    chan struct{}
	mu     sync.Mutex
	ctx    context.Context
	notify func(Key)
	items  map[Key]*item
	// epochs numbers items, so that a timer or probe of a dropped item is ignored.
	epochs uint64
}

type item struct {
	// specID identifies what is probed; a new one drops older results.
	specID   string
	epoch    uint64
	target   Target
	timer    *time.Timer
	at       time.Time
	inFlight bool
	// lastStart is when the last probe for this spec started, in flight or done.
	lastStart time.Time
	pending   *Result
}

// NewRunner returns a Runner that lets at most maxInFlight probes run at once.
func NewRunner(doer Doer, maxInFlight int) *Runner {
	return &Runner{
		doer:  doer,
		sem:   make(chan struct{}, max(maxInFlight, 1)),
		ctx:   context.Background(),
		items: map[Key]*item{},
	}
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

// Schedule asks for a probe of target at time at. specID names what is probed:
// when it differs from the last call's, earlier results and timers are dropped.
// While a probe is in flight, or a result waits to be read, Schedule does nothing:
// the result's reconcile asks again.
func (r *Runner) Schedule(key Key, specID string, target Target, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it := r.itemFor(key, specID)
	it.target = target
	if it.inFlight || it.pending != nil {
		return
	}
	if it.timer != nil {
		if it.at.Equal(at) {
			return
		}
		it.timer.Stop()
	}
	it.at = at
	epoch := it.epoch
	it.timer = time.AfterFunc(time.Until(at), func() { r.fire(key, epoch, at) })
}

// Pause cancels a scheduled probe of key (a breaker that cannot be probed as
// specified sends none). A probe in flight finishes; its result is still delivered.
func (r *Runner) Pause(key Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok && it.timer != nil {
		it.timer.Stop()
		it.timer = nil
	}
}

// Pending returns the result that waits to be recorded for key and specID.
func (r *Runner) Pending(key Key, specID string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.items[key]
	if !ok || it.specID != specID || it.pending == nil {
		return Result{}, false
	}
	return *it.pending, true
}

// Ack marks the result that started at start as recorded.
func (r *Runner) Ack(key Key, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok && it.pending != nil && it.pending.Start.Equal(start) {
		it.pending = nil
	}
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

// Forget drops everything about key: its timer, its in-flight probe's result and
// its pending result. Used when the breaker is deleted.
func (r *Runner) Forget(key Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if it, ok := r.items[key]; ok {
		if it.timer != nil {
			it.timer.Stop()
		}
		delete(r.items, key)
	}
}

// Len returns how many breakers the Runner knows.
func (r *Runner) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

func (r *Runner) itemFor(key Key, specID string) *item {
	it, ok := r.items[key]
	if ok && it.specID == specID {
		return it
	}
	if ok && it.timer != nil {
		it.timer.Stop()
	}
	r.epochs++
	it = &item{specID: specID, epoch: r.epochs}
	r.items[key] = it
	return it
}

func (r *Runner) fire(key Key, epoch uint64, at time.Time) {
	r.mu.Lock()
	it, ok := r.items[key]
	if !ok || it.epoch != epoch || it.inFlight || it.timer == nil {
		r.mu.Unlock()
		return
	}
	it.timer = nil
	it.inFlight = true
	target, ctx := it.target, r.ctx
	r.mu.Unlock()

	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	// Timers run on the monotonic clock, and at may be a wall-clock time read
	// from status: a probe that must not start before a deadline (an Open
	// circuit's trial, at nextRetryTime) waits out any difference.
	if early := time.Until(at); early > 0 {
		time.Sleep(early)
	}
	// The start is taken and recorded under the lock: a reconciler that reads
	// LastStart without seeing this probe knows that it started later than that.
	r.mu.Lock()
	start := time.Now()
	if it, ok := r.items[key]; ok && it.epoch == epoch {
		it.lastStart = start
	}
	r.mu.Unlock()
	res := r.doer.Probe(ctx, target)
	<-r.sem
	res.Start = start

	r.mu.Lock()
	it, ok = r.items[key]
	current := ok && it.epoch == epoch
	if current {
		it.inFlight = false
		it.pending = &res
	}
	notify := r.notify
	r.mu.Unlock()
	if current && notify != nil && ctx.Err() == nil {
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
