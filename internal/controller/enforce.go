package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// enforce makes the guarded Service and its slices hold the plan,
// writing only what differs from the cache, and deletes what the breaker owns
// and the plan does not name (all of it once spec.enforce is gone). A nil plan
// with spec.enforce set is a conflict: nothing is touched.
func (r *CircuitBreakerReconciler) enforce(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, plan *decision.EnforcementPlan) error {
	if plan == nil && (cb.Spec.Enforce != nil || cb.Status.Enforcement == nil) {
		return nil
	}
	keepService, keepSlices := "", map[string]bool{}
	if plan != nil {
		keepService = plan.ServiceName
		if err := r.ensureGuardedService(ctx, cb, plan); err != nil {
			return err
		}
		for i := range plan.Slices {
			keepSlices[plan.Slices[i].Name] = true
			if err := r.ensureSlice(ctx, cb, &plan.Slices[i]); err != nil {
				return err
			}
		}
	}
	return r.deleteOwnedExcept(ctx, cb, keepService, keepSlices)
}

func (r *CircuitBreakerReconciler) ensureGuardedService(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, plan *decision.EnforcementPlan) error {
	svc := &corev1.Service{}
	err := r.Get(ctx, types.NamespacedName{Namespace: cb.Namespace, Name: plan.ServiceName}, svc)
	if apierrors.IsNotFound(err) {
		if plan.Ports == nil {
			return nil // the target's ports are unknown: nothing to create yet
		}
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: cb.Namespace, Name: plan.ServiceName},
			Spec: corev1.ServiceSpec{Ports: plan.Ports}}
		if err := setOwner(cb, svc, r.Scheme()); err != nil {
			return err
		}
		logf.FromContext(ctx).Info("Creating guarded Service", "service", plan.ServiceName)
		return ignoreAlreadyExists(r.Create(ctx, svc))
	}
	if err != nil || plan.Ports == nil || samePorts(svc.Spec.Ports, plan.Ports) {
		return err
	}
	orig := svc.DeepCopy()
	svc.Spec.Ports = plan.Ports
	return r.Patch(ctx, svc, client.MergeFrom(orig))
}

// samePorts compares what the guarded Service takes from the target; the API
// server fills in targetPort, which a selectorless Service does not use.
func samePorts(have, want []corev1.ServicePort) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		h := have[i]
		if h.Name != want[i].Name || h.Protocol != want[i].Protocol || h.Port != want[i].Port ||
			!equality.Semantic.DeepEqual(h.AppProtocol, want[i].AppProtocol) {
			return false
		}
	}
	return true
}

func (r *CircuitBreakerReconciler) ensureSlice(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, want *discoveryv1.EndpointSlice) error {
	key := types.NamespacedName{Namespace: cb.Namespace, Name: want.Name}
	have, err := r.currentSlice(ctx, key)
	if apierrors.IsNotFound(err) {
		slice := want.DeepCopy()
		slice.Namespace = cb.Namespace
		if err := setOwner(cb, slice, r.Scheme()); err != nil {
			return err
		}
		err = r.Create(ctx, slice)
		if err == nil {
			r.consistency.writes.wrote(sliceKind, key, slice.ResourceVersion)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) || r.APIReader == nil {
			return err
		}
		// The cache is behind: it exists. Decide on what the server holds.
		have = &discoveryv1.EndpointSlice{}
		err = r.APIReader.Get(ctx, key, have)
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(have, cb) {
		return fmt.Errorf("EndpointSlice %s/%s is not owned by breaker %s", cb.Namespace, want.Name, cb.Name)
	}
	if sameSlice(have, want) {
		return nil
	}
	orig := have.DeepCopy()
	have.Labels, have.AddressType, have.Ports, have.Endpoints = want.Labels, want.AddressType, want.Ports, want.Endpoints
	// Optimistic locking: a patch based on an outdated copy fails and is retried.
	if err := r.Patch(ctx, have, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	r.consistency.writes.wrote(sliceKind, key, have.ResourceVersion)
	return nil
}

// currentSlice reads a guarded slice from the cache, or from the API server
// when the cache has not caught up with this manager's last write of it (a
// decision taken on an outdated copy would skip a write that is needed).
func (r *CircuitBreakerReconciler) currentSlice(ctx context.Context, key types.NamespacedName) (*discoveryv1.EndpointSlice, error) {
	have := &discoveryv1.EndpointSlice{}
	err := r.Get(ctx, key, have)
	if r.APIReader == nil || !r.consistency.writes.awaits(sliceKind, key) {
		return have, err
	}
	if err == nil && r.consistency.writes.cacheShows(sliceKind, key, have.ResourceVersion) {
		return have, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	live := &discoveryv1.EndpointSlice{}
	if err := r.APIReader.Get(ctx, key, live); err != nil {
		if apierrors.IsNotFound(err) {
			r.consistency.writes.forget(sliceKind, key)
		}
		return nil, err
	}
	r.consistency.writes.serverShows(sliceKind, key, live.ResourceVersion)
	return live, nil
}

func sameSlice(have, want *discoveryv1.EndpointSlice) bool {
	return have.AddressType == want.AddressType &&
		have.Labels[discoveryv1.LabelServiceName] == want.Labels[discoveryv1.LabelServiceName] &&
		have.Labels[discoveryv1.LabelManagedBy] == want.Labels[discoveryv1.LabelManagedBy] &&
		equality.Semantic.DeepEqual(have.Ports, want.Ports) &&
		equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints)
}

// deleteOwnedExcept deletes the Services and EndpointSlices in the breaker's
// namespace that it controls, other than keepService and keepSlices.
func (r *CircuitBreakerReconciler) deleteOwnedExcept(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker,
	keepService string, keepSlices map[string]bool) error {
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(cb.Namespace),
		client.MatchingLabels{discoveryv1.LabelManagedBy: circuitv1alpha1.EndpointSliceManager}); err != nil {
		return err
	}
	for i := range slices.Items {
		s := &slices.Items[i]
		if metav1.IsControlledBy(s, cb) && (!keepSlices[s.Name] || s.Labels[discoveryv1.LabelServiceName] != keepService) {
			if err := client.IgnoreNotFound(r.Delete(ctx, s)); err != nil {
				return err
			}
			r.consistency.writes.forget(sliceKind, types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
		}
	}
	svcs := &corev1.ServiceList{}
	if err := r.List(ctx, svcs, client.InNamespace(cb.Namespace)); err != nil {
		return err
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if metav1.IsControlledBy(s, cb) && s.Name != keepService {
			logf.FromContext(ctx).Info("Deleting guarded Service", "service", s.Name)
			if err := client.IgnoreNotFound(r.Delete(ctx, s)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setOwner makes the breaker the controller of obj, so that the garbage
// collector deletes obj with it. Without blockOwnerDeletion: setting that
// needs update on circuitbreakers/finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin runs, a permission
// the manager has no other use for.
func setOwner(cb *circuitv1alpha1.CircuitBreaker, obj metav1.Object, scheme *runtime.Scheme) error {
	return controllerutil.SetControllerReference(cb, obj, scheme, controllerutil.WithBlockOwnerDeletion(false))
}

func ignoreAlreadyExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
