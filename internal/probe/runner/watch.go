package runner

import (
	"context"
	"time"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Streamer holds health streams; *Prober is the production Streamer. The
// Runner uses it for gRPC targets with GRPCSettings.Watch.
type Streamer interface {
	// Watch holds one stream to t (a single address) and calls seen with each
	// status it sends, until the stream ends or ctx is done. It returns why the
	// stream ended; unimplemented is true when t cannot be watched, only polled.
	Watch(ctx context.Context, t probe.Target, seen func(probe.Result)) (ended circuitv1alpha1.ProbeReason, unimplemented bool)
}

// Backoff between two attempts to hold a stream: it starts at
// minStreamBackoff and doubles up to the breaker's interval, at least one
// second and at most maxStreamBackoff. A stream that was held that long
// starts the sequence over.
const (
	minStreamBackoff = 250 * time.Millisecond
	maxStreamBackoff = 30 * time.Second
)

// minPushGap is the least time between two changes a stream delivers at once:
// a change within it of the last is delivered at its end, with the status
// seen last, so that a target that flaps its status as fast as it can costs
// at most one result (and status write) a second.
const minPushGap = time.Second

// watch is the streams an item holds: one for a single address, one per
// endpoint for a Service round. Each interval (a tick) the status they last
// sent counts as a probe, without a call; a change of status is delivered at
// once. A stream that is not held makes the tick a failure with the reason
// its last attempt ended with.
type watch struct {
	// key is what the streams follow (watchKey); a target with another key
	// gets new streams.
	key    string
	cancel context.CancelFunc
	// streams are in the order of the round's endpoints.
	streams []streamState
	// fallback: the target does not implement Watch; ticks call Check instead.
	fallback bool
	// waiting is when a tick came due before every stream had answered (its
	// first status, or its first failure); it is delivered when they have.
	waiting time.Time
	// delivered is the outcome last delivered, so that a stream that resends a
	// status (after reconnecting) delivers nothing new.
	delivered   outcome
	anyDelivery bool
	// lastPush is when a change was last delivered; held is set while a
	// change waits for minPushGap to pass.
	lastPush time.Time
	held     *time.Timer
}

type streamState struct {
	answered bool
	held     bool
	// status is the last status received while held; failure is why the last
	// attempt ended, while not held.
	status  probe.Result
	failure circuitv1alpha1.ProbeReason
}

type outcome struct {
	success bool
	reason  circuitv1alpha1.ProbeReason
}

// watching reports whether t is followed with streams rather than polled.
func watching(t probe.Target) bool {
	return t.Scheme.IsGRPC() && t.GRPC != nil && t.GRPC.Watch &&
		(t.Round == nil || (t.Round.Unresolved == "" && len(t.Round.Endpoints) > 0))
}

// follow starts, keeps or stops the item's streams to match its target. The
// caller holds r.mu.
func (r *Runner) follow(key Key, it *item) {
	if r.streamer == nil || !watching(it.target) || it.every <= 0 {
		r.unfollow(it)
		return
	}
	k := probe.StreamKey(it.target)
	if it.watch != nil && it.watch.key == k {
		return
	}
	r.unfollow(it)
	ctx, cancel := context.WithCancel(r.ctx)
	targets := probe.StreamTargets(it.target)
	w := &watch{key: k, cancel: cancel, streams: make([]streamState, len(targets))}
	it.watch = w
	ceiling := min(max(it.every, time.Second), maxStreamBackoff)
	for i, t := range targets {
		go r.hold(ctx, key, w, i, t, ceiling)
	}
}

// unfollow closes the item's streams, at once. The caller holds r.mu.
func (r *Runner) unfollow(it *item) {
	if w := it.watch; w != nil {
		w.cancel()
		if w.held != nil {
			w.held.Stop()
		}
		it.watch = nil
	}
}

// hold keeps stream i of w open until ctx ends, re-establishing it with
// backoff. Each attempt holds a probe slot of the namespace (and of the
// global pool) for as long as it lasts.
func (r *Runner) hold(ctx context.Context, key Key, w *watch, i int, t probe.Target, ceiling time.Duration) {
	delay := minStreamBackoff
	for {
		release, ok := r.slots.acquire(ctx, key.Namespace)
		if !ok {
			return
		}
		began := time.Now()
		ended, unimplemented := r.streamer.Watch(ctx, t, func(res probe.Result) { r.streamSaw(key, w, i, res) })
		release()
		if ctx.Err() != nil {
			return
		}
		if unimplemented {
			r.fallBack(key, w)
			return
		}
		r.streamLost(key, w, i, ended)
		if time.Since(began) >= ceiling {
			delay = minStreamBackoff
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
		delay = min(delay*2, ceiling)
	}
}

// current returns key's item if w is still its watch. The caller holds r.mu.
func (r *Runner) current(key Key, w *watch) (*item, bool) {
	it, ok := r.items[key]
	return it, ok && it.watch == w
}

// streamSaw records a status sent on stream i and delivers the target's
// result if it changed.
func (r *Runner) streamSaw(key Key, w *watch, i int, res probe.Result) {
	r.mu.Lock()
	it, ok := r.current(key, w)
	if !ok {
		r.mu.Unlock()
		return
	}
	w.streams[i] = streamState{answered: true, held: true, status: res}
	notify := r.settle(key, it, w, true)
	r.mu.Unlock()
	notify()
}

// streamLost records that stream i ended (or could not be opened). It
// delivers nothing of its own: the next tick fails unless the stream is held
// again by then.
func (r *Runner) streamLost(key Key, w *watch, i int, reason circuitv1alpha1.ProbeReason) {
	r.mu.Lock()
	it, ok := r.current(key, w)
	if !ok {
		r.mu.Unlock()
		return
	}
	w.streams[i] = streamState{answered: true, failure: reason}
	notify := r.settle(key, it, w, false)
	r.mu.Unlock()
	notify()
}

// fallBack makes the item poll with Check: its target does not implement
// Watch. A tick that waited for the streams probes at once.
func (r *Runner) fallBack(key Key, w *watch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.current(key, w)
	if !ok || w.fallback {
		return
	}
	w.fallback = true
	w.cancel()
	if !w.waiting.IsZero() {
		w.waiting = time.Time{}
		r.arm(key, it, time.Now())
	}
}

// tick is a due probe of a watched item: the status its streams last saw,
// delivered at once, or when every stream has answered. The caller holds r.mu
// and calls the returned function after unlocking it.
func (r *Runner) tick(key Key, it *item, at time.Time) (notify func()) {
	if time.Until(at) > 0 {
		// Not before at (see fire): come back then.
		r.arm(key, it, at)
		return func() {}
	}
	start := time.Now()
	it.lastStart = start
	if it.every > 0 {
		r.arm(key, it, start.Add(it.every))
	}
	w := it.watch
	w.waiting = start
	return r.settle(key, it, w, false)
}

// settle delivers the watched target's result, if one is due: a waiting tick
// once every stream has answered, or (push) a change of outcome. The caller
// holds r.mu and calls the returned function after unlocking it.
func (r *Runner) settle(key Key, it *item, w *watch, push bool) (notify func()) {
	for _, s := range w.streams {
		if !s.answered {
			return func() {}
		}
	}
	res := w.result(it.target)
	start := w.waiting
	switch {
	case !start.IsZero():
		w.waiting = time.Time{}
	case !push || len(it.pending) >= MaxPending || (w.anyDelivery && w.delivered == outcome{res.Success, res.Reason}):
		return func() {}
	case time.Since(w.lastPush) < minPushGap:
		if w.held == nil {
			w.held = time.AfterFunc(time.Until(w.lastPush.Add(minPushGap)), func() { r.pushHeld(key, w) })
		}
		return func() {}
	default:
		start = time.Now()
		w.lastPush = start
	}
	res.Start = start
	w.delivered, w.anyDelivery = outcome{res.Success, res.Reason}, true
	it.pending = append(it.pending, res)
	notifyFn, ctx := r.notify, r.ctx
	return func() {
		if notifyFn != nil && ctx.Err() == nil {
			notifyFn(key)
		}
	}
}

// pushHeld delivers a change that waited for minPushGap, if the streams still
// say something new.
func (r *Runner) pushHeld(key Key, w *watch) {
	r.mu.Lock()
	it, ok := r.current(key, w)
	if !ok {
		r.mu.Unlock()
		return
	}
	w.held = nil
	notify := r.settle(key, it, w, true)
	r.mu.Unlock()
	notify()
}

// result is what the streams say of t now.
func (w *watch) result(t probe.Target) probe.Result {
	judge := func(s streamState) (bool, circuitv1alpha1.ProbeReason) {
		if !s.held {
			return false, s.failure
		}
		return s.status.Success, s.status.Reason
	}
	if t.Round == nil {
		ok, reason := judge(w.streams[0])
		return probe.Result{Success: ok, Reason: reason}
	}
	results := make([]probe.EndpointResult, len(w.streams))
	for i, s := range w.streams {
		results[i].Endpoint = t.Round.Endpoints[i]
		results[i].Success, results[i].Reason = judge(s)
	}
	return probe.JudgeRound(results, t.Round.FailurePercent)
}
