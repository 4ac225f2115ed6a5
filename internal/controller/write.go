package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// writeStatus writes the decided status if it changed and is due, with
// optimistic locking: a write based on a stale read fails with a conflict. On
// success cb holds the stored status.
func (r *CircuitBreakerReconciler) writeStatus(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key runner.Key, d decision.Decision) error {
	if !d.Writes(cb.Status) {
		return nil
	}
	orig := cb.DeepCopy()
	cb.Status = d.Status
	if err := r.Status().Patch(ctx, cb, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	r.consistency.writes.wrote(breakerKind, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, cb.ResourceVersion)
	return nil
}
