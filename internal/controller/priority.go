package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// transitionPriority is the work-queue priority of a reconcile that will record
// a transition. When status writes queue up (a dependency outage fails
// thousands of breakers at once, or a GitOps sync creates them), such a
// reconcile is served before the ones that would only move a counter, so that
// Open and HalfOpen show as fast as the API server takes writes. Ordinary
// reconciles have priority 0; controller-runtime gives its initial list a
// lower one.
const transitionPriority = 10

// stopPriority is the priority of a reconcile that will record Open or
// HalfOpen, above the one that records Closed: when a thousand breakers open
// together and later go HalfOpen together, their HalfOpen writes would
// otherwise share the API server with the Closed writes of the trials that
// already came back, and each circuit's HalfOpen would show about twice as
// late. The Closed writes lose nothing in total (a breaker's Closed follows its
// own HalfOpen in any case), and Open and HalfOpen are what callers act on:
// stop sending, and a trial is under way.
const stopPriority = 20

// transitionsPriority is the priority of a reconcile that records these transitions.
func transitionsPriority(ts []breaker.Transition) int {
	priority := 0
	for _, t := range ts {
		if t.To == breaker.Open || t.To == breaker.HalfOpen {
			return stopPriority
		}
		priority = transitionPriority
	}
	return priority
}

// enqueueResult settles the results of a breaker whose probe finished when
// they change nothing (settleQuietly), and otherwise queues its reconcile,
// ahead of the others if the waiting results will move its state.
func (r *CircuitBreakerReconciler) enqueueResult(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request],
	req reconcile.Request) {
	if r.settleQuietly(ctx, probe.Key{Namespace: req.Namespace, Name: req.Name}) {
		return
	}
	pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request])
	if !ok {
		q.Add(req)
		return
	}
	priority := r.resultsPriority(ctx, req)
	pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(priority)}, req)
}

// resultsPriority reads the breaker from the cache and gives the priority of
// recording its waiting results: by the transitions they will make, 0 if none.
func (r *CircuitBreakerReconciler) resultsPriority(ctx context.Context, req reconcile.Request) int {
	return transitionsPriority(r.pendingTransitions(ctx, probe.Key{Namespace: req.Namespace, Name: req.Name}))
}

// holdProbe tells the runner not to send a breaker's next probe while its
// waiting results will open the circuit: the decision that records them moves
// the next probe to the trial at nextRetryTime, so an Open circuit sends none
// even when the reconcile is slower than the cadence.
func (r *CircuitBreakerReconciler) holdProbe(key probe.Key) bool {
	for _, t := range r.pendingTransitions(context.Background(), key) {
		if t.To == breaker.Open {
			return true
		}
	}
	return false
}

// pendingTransitions folds a breaker's waiting results onto its cached status.
func (r *CircuitBreakerReconciler) pendingTransitions(ctx context.Context, key probe.Key) []breaker.Transition {
	cb := &circuitv1alpha1.CircuitBreaker{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, cb); err != nil {
		return nil
	}
	cfg, err := parseSpec(cb.Spec)
	if err != nil {
		return nil
	}
	return foldedTransitions(cb.Status, cfg.policy, r.Runner.Pending(key, cfg.specID), r.now())
}

// foldsToTransition reports whether recording results on top of the stored
// status changes the circuit's state (a new breaker's first status does not
// count: nothing waits on it).
func foldsToTransition(st circuitv1alpha1.CircuitBreakerStatus, p breaker.Policy, results []probe.Result, now time.Time) bool {
	return len(foldedTransitions(st, p, results, now)) > 0
}

// foldedTransitions are the transitions that recording results on top of the
// stored status makes, as decide would make them.
func foldedTransitions(st circuitv1alpha1.CircuitBreakerStatus, p breaker.Policy, results []probe.Result, now time.Time) []breaker.Transition {
	if st.State == "" || len(results) == 0 {
		return nil
	}
	var out []breaker.Transition
	s := statusFromAPI(st, now)
	var t *breaker.Transition
	if s, t = breaker.Advance(s, p, now); t != nil {
		out = append(out, *t)
	}
	for _, res := range results {
		if s, t = breaker.Observe(s, p, breaker.Outcome{Success: res.Success, Latency: res.Latency}, now); t != nil {
			out = append(out, *t)
		}
	}
	return out
}
