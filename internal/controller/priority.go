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

// enqueueResult queues the reconcile for a breaker whose probe finished, ahead
// of the others if the waiting results will move its state.
func (r *CircuitBreakerReconciler) enqueueResult(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request],
	req reconcile.Request) {
	pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request])
	if !ok {
		q.Add(req)
		return
	}
	priority := 0
	if r.resultsMoveState(ctx, req) {
		priority = transitionPriority
	}
	pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(priority)}, req)
}

// resultsMoveState reads the breaker from the cache and says whether its
// waiting results will record a transition.
func (r *CircuitBreakerReconciler) resultsMoveState(ctx context.Context, req reconcile.Request) bool {
	return len(r.pendingTransitions(ctx, probe.Key{Namespace: req.Namespace, Name: req.Name})) > 0
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
