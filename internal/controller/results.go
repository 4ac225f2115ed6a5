package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// onResult is told by the runner that a breaker's probe finished. It takes the
// decision on the cached breaker, from its spec alone: when that decision is
// quiet (it records results that change nothing in the stored status: the
// steady case of every healthy breaker), the results are settled at once,
// without a reconcile. At 10,000 breakers probed every 10 s this takes the work
// queue, a second cache read and resolve off every probe. Everything else is
// queued for Reconcile, ahead of the others if the decision moves the state.
func (r *CircuitBreakerReconciler) onResult(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], key runner.Key) {
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: key.Namespace, Name: key.Name}}
	d, settled := r.settleQuietly(ctx, key)
	if settled {
		return
	}
	pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request])
	if !ok {
		q.Add(req)
		return
	}
	pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(d.Priority())}, req)
}

// settleQuietly decides on the cached breaker and settles its results if the
// decision is quiet. Only a breaker whose spec alone resolves it, and whose
// cache shows this manager's last status write, may be settled so; its
// Reconcile must not run meanwhile (it would record the same results). It
// returns the decision it took (zero if none) for the work-queue priority.
func (r *CircuitBreakerReconciler) settleQuietly(ctx context.Context, key runner.Key) (decision.Decision, bool) {
	unlock, ok := r.consistency.tryLock(key)
	if !ok {
		// Its Reconcile is running: that one, or the next, records them. The
		// priority is still that of their decision, on the cache as it is.
		return r.decideOnCache(ctx, key), false
	}
	defer unlock()
	cb := &circuitv1alpha1.CircuitBreaker{}
	name := types.NamespacedName{Namespace: key.Namespace, Name: key.Name}
	if err := r.Get(ctx, name, cb); err != nil {
		return decision.Decision{}, false
	}
	if !r.owns(cb) {
		r.forget(key) // another member's now: nothing to record here
		return decision.Decision{}, true
	}
	d := r.decideOnSpec(cb, key)
	if !decision.SpecResolves(cb) || !r.consistency.writes.cacheShows(breakerKind, name, cb.ResourceVersion) || !d.Quiet(cb.Status) {
		return d, false
	}
	r.Runner.Settle(key, d.AckThrough(), d.Effects.ResetAt)
	observeProbes(cb, d.Probed)
	return d, true
}

// decideOnCache is the decision on the cached breaker from its spec alone.
func (r *CircuitBreakerReconciler) decideOnCache(ctx context.Context, key runner.Key) decision.Decision {
	cb := &circuitv1alpha1.CircuitBreaker{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, cb); err != nil {
		return decision.Decision{}
	}
	return r.decideOnSpec(cb, key)
}

// decideOnSpec is the decision on cb resolved from its spec alone, with what
// the runner holds for it.
func (r *CircuitBreakerReconciler) decideOnSpec(cb *circuitv1alpha1.CircuitBreaker, key runner.Key) decision.Decision {
	res := decision.FromSpec(cb)
	res.Member = r.memberID()
	return decision.Decide(cb, res, r.runnerView(key, res), r.now())
}
