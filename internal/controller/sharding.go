package controller

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// owns reports whether this manager owns cb: always without sharding, else
// when cb's UID hashes into this member's range.
func (r *CircuitBreakerReconciler) owns(cb *circuitv1alpha1.CircuitBreaker) bool {
	return r.Member == nil || r.Member.Owns(cb)
}

// memberID is this manager's identity in the ring, recorded as
// status.probedBy; empty without sharding.
func (r *CircuitBreakerReconciler) memberID() string {
	if r.Member == nil {
		return ""
	}
	return r.Member.Identity
}

// onRingChange acts on a change of the ring's members: every cached breaker
// this member no longer owns is forgotten at once (its probes stop before
// anything else), and every breaker is queued, so that the ones it now owns
// are reconciled from their stored status and the others are forgotten again
// should a reconcile under way have planned them meanwhile.
func (r *CircuitBreakerReconciler) onRingChange(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	members := r.Member.Members()
	metrics.RingMembers.WithLabelValues(r.Member.Identity).Set(float64(len(members)))
	list := &circuitv1alpha1.CircuitBreakerList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return // the cache is not started yet: its initial list queues every breaker
	}
	for i := range list.Items {
		cb := &list.Items[i]
		if !r.owns(cb) {
			r.forget(runner.Key{Namespace: cb.Namespace, Name: cb.Name})
		}
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}})
	}
}

// ownedSet is the breakers this member has reconciled as its own, for the
// circuitbreaker_owned_breakers metric.
type ownedSet struct {
	mu   sync.Mutex
	keys map[runner.Key]struct{}
}

func (s *ownedSet) set(member string, key runner.Key, owned bool) {
	if member == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[runner.Key]struct{}{}
	}
	if owned {
		s.keys[key] = struct{}{}
	} else {
		delete(s.keys, key)
	}
	metrics.OwnedBreakers.WithLabelValues(member).Set(float64(len(s.keys)))
}
