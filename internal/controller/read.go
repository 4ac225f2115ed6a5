package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// read returns the breaker to decide on: the cached one, or the one the API
// server holds when the cache has not caught up with this manager's last
// status write of an enforcing breaker. The status patch is guarded by
// optimistic locking, but the slice writes that precede it are not: decided on
// an outdated status (Closed, while the server already says Open), they would
// route traffic back to the target until the conflict is retried. A breaker
// that is gone or being deleted is forgotten, and read returns nil.
func (r *CircuitBreakerReconciler) read(ctx context.Context, key runner.Key) (*circuitv1alpha1.CircuitBreaker, error) {
	name := types.NamespacedName{Namespace: key.Namespace, Name: key.Name}
	cached := &circuitv1alpha1.CircuitBreaker{}
	if err := r.Get(ctx, name, cached); err != nil {
		return r.gone(key, err)
	}
	if !cached.DeletionTimestamp.IsZero() {
		return r.gone(key, nil)
	}
	enforcing := cached.Spec.Enforce != nil || cached.Status.Enforcement != nil
	if !enforcing || r.APIReader == nil || r.consistency.writes.cacheShows(breakerKind, name, cached.ResourceVersion) {
		return cached, nil
	}
	return r.readServer(ctx, key)
}

// readServer reads the breaker from the API server, around the cache.
func (r *CircuitBreakerReconciler) readServer(ctx context.Context, key runner.Key) (*circuitv1alpha1.CircuitBreaker, error) {
	name := types.NamespacedName{Namespace: key.Namespace, Name: key.Name}
	live := &circuitv1alpha1.CircuitBreaker{}
	if err := r.APIReader.Get(ctx, name, live); err != nil {
		return r.gone(key, err)
	}
	r.consistency.writes.serverShows(breakerKind, name, live.ResourceVersion)
	if !live.DeletionTimestamp.IsZero() {
		return r.gone(key, nil)
	}
	return live, nil
}

// gone forgets a breaker that is not found (or is being deleted: err nil);
// any other error is returned for a retry.
func (r *CircuitBreakerReconciler) gone(key runner.Key, err error) (*circuitv1alpha1.CircuitBreaker, error) {
	if err == nil || apierrors.IsNotFound(err) {
		r.forget(key)
		return nil, nil
	}
	return nil, err
}
