package controller

import (
	"context"
	"hash/fnv"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// settleQuietly records probe results that change nothing in the stored
// status, without a reconcile: the steady case of every healthy breaker, a
// success on a Closed circuit whose last outcome was a success too. Their
// decision is taken by the same pure decide, on the cached breaker; when it
// would write nothing and has nothing else to act on (no transition, Event,
// wake-up or guarded Service), the results are acknowledged and counted in the
// metrics at once. Everything else, and every breaker whose cache may be
// behind this manager's last status write of it, goes through Reconcile. At
// 10,000 breakers probed every 10 s this takes the work queue, a second cache
// read and resolve off every probe.
//
// It reports whether the results were settled.
func (r *CircuitBreakerReconciler) settleQuietly(ctx context.Context, key probe.Key) bool {
	l := r.lockFor(key)
	if !l.TryLock() {
		// Its Reconcile is running: that one, or the next, records them.
		return false
	}
	defer l.Unlock()
	cb := &circuitv1alpha1.CircuitBreaker{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, cb); err != nil {
		return false
	}
	if !r.cacheHasLastWrite(key, cb.ResourceVersion) || !quietCandidate(cb) {
		return false
	}
	cfg, err := parseSpec(cb.Spec)
	if err != nil {
		return false
	}
	cfg.policy.Seed = seedOf(cb.UID)
	pending := r.Runner.Pending(key, cfg.specID)
	if len(pending) == 0 {
		return false
	}
	d := decide(cb, resolution{settings: cfg}, pending, r.Runner.LastStart(key, cfg.specID), r.now())
	if !d.quiet() || !equality.Semantic.DeepEqual(cb.Status, d.status) {
		return false
	}
	r.Runner.Ack(key, d.probed[len(d.probed)-1].Start)
	for _, p := range d.probed {
		metrics.ObserveProbe(cb.Namespace, cb.Name, p.Success, string(p.Reason), p.Latency)
	}
	return true
}

// quietCandidate: a breaker whose results may be settled without a reconcile.
// A Service target (its endpoints' statuses), a guarded Service, a spec not yet
// recorded, a new breaker, and annotations not yet handled all need Reconcile.
func quietCandidate(cb *circuitv1alpha1.CircuitBreaker) bool {
	st := cb.Status
	if !cb.DeletionTimestamp.IsZero() || cb.Spec.Target.Service != nil || cb.Spec.Enforce != nil ||
		st.Enforcement != nil || st.State == "" || st.ObservedGeneration != cb.Generation {
		return false
	}
	if v, ok := cb.Annotations[circuitv1alpha1.ResetAnnotation]; ok && v != st.LastHandledReset {
		return false
	}
	if v, ok := cb.Annotations[circuitv1alpha1.TripUntilAnnotation]; ok && v != st.LastHandledTrip {
		return false
	}
	return true
}

// quiet: the decision records results and does nothing else.
func (d decision) quiet() bool {
	return len(d.probed) > 0 && !d.again && !d.reset && !d.deferWrite && d.forced == "" &&
		len(d.wouldOpen) == 0 && d.trip.value == "" && len(d.transitions) == 0 && d.enforce == nil && d.wake == 0
}

// cacheHasLastWrite reports whether the cached breaker (at resourceVersion rv)
// is at least this manager's last status write of it. Only then can a decision
// on the cache that writes nothing be trusted: on a cache behind that write
// (a counter this manager just moved, not yet seen), "nothing changes" could
// be wrong. Resource versions are compared only for equality, as the API asks;
// a breaker whose cache never shows the recorded one (a later writer's version
// arrived through a relist) keeps going through Reconcile, which is always safe.
// currentBreaker asks the same of an enforcing breaker before it writes slices.
func (r *CircuitBreakerReconciler) cacheHasLastWrite(key probe.Key, rv string) bool {
	last, written := r.statusWritten.Load(key)
	if !written {
		return true
	}
	if last.(string) == rv {
		r.statusWritten.CompareAndDelete(key, last)
		return true
	}
	return false
}

// lockFor is the lock of a breaker's stripe.
func (r *CircuitBreakerReconciler) lockFor(key probe.Key) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.Namespace))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key.Name))
	return &r.keyLocks[h.Sum32()%uint32(len(r.keyLocks))]
}
