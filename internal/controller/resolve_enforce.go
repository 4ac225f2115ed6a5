package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// resolveEnforcement reads, from the cache, what spec.enforce needs: the
// target Service's ports and slices, the fallback's slices, and whether the
// guarded Service's name is free for this breaker.
func (r *CircuitBreakerReconciler) resolveEnforcement(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker) (decision.EnforceInput, error) {
	var in decision.EnforceInput
	e := cb.Spec.Enforce
	if e == nil || cb.Spec.Target.Service == nil {
		return in, nil
	}
	guarded := &corev1.Service{}
	err := r.Get(ctx, types.NamespacedName{Namespace: cb.Namespace, Name: e.ServiceName}, guarded)
	switch {
	case err == nil && !metav1.IsControlledBy(guarded, cb):
		in.Conflict = &decision.Problem{Reason: circuitv1alpha1.ReasonEnforcementConflict,
			Message: fmt.Sprintf("Service %q exists and is not owned by this breaker; traffic is not enforced", e.ServiceName)}
		return in, nil
	case err != nil && !apierrors.IsNotFound(err):
		return in, err
	}
	own, err := r.slicesOf(ctx, cb.Namespace, e.ServiceName)
	if err != nil {
		return in, err
	}
	for i := range own {
		if !metav1.IsControlledBy(&own[i], cb) {
			in.Conflict = &decision.Problem{Reason: circuitv1alpha1.ReasonEnforcementConflict,
				Message: fmt.Sprintf("EndpointSlice %q of Service %q is not owned by this breaker; traffic is not enforced", own[i].Name, e.ServiceName)}
			return in, nil
		}
	}
	target := &corev1.Service{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: cb.Namespace, Name: cb.Spec.Target.Service.Name}, target); {
	case err == nil:
		in.Ports = target.Spec.Ports
	case !apierrors.IsNotFound(err):
		return in, err
	}
	if in.Target, err = r.slicesOf(ctx, cb.Namespace, cb.Spec.Target.Service.Name); err != nil {
		return in, err
	}
	if e.Fallback != nil {
		if in.Fallback, err = r.slicesOf(ctx, cb.Namespace, e.Fallback.ServiceName); err != nil {
			return in, err
		}
	}
	return in, nil
}

func (r *CircuitBreakerReconciler) slicesOf(ctx context.Context, ns, service string) ([]discoveryv1.EndpointSlice, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, err
	}
	return list.Items, nil
}
