package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// SetupWithManager sets up the controller with the Manager. Probe results come
// back through a source that the runner notifies of each finished probe.
func (r *CircuitBreakerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	clientset, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	r.refs = newRefWatcher(clientset, r.NewInformer)
	results := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		r.Runner.Start(ctx, func(k runner.Key) { r.onResult(ctx, q, k) })
		r.refs.start(ctx, func(n types.NamespacedName) { q.Add(reconcile.Request{NamespacedName: n}) })
		if r.Member != nil {
			// Asynchronously: the member may change while the breakers' informer
			// lists, before the cache that onRingChange reads has synced.
			r.Member.OnChange(func() { go r.onRingChange(ctx, q) })
			go r.onRingChange(ctx, q) // a change before this source started
		}
		return nil
	})
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &circuitv1alpha1.CircuitBreaker{},
		serviceNameField, indexServiceName); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &circuitv1alpha1.CircuitBreaker{},
		enforcedServiceField, indexEnforcedServices); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Our own status writes change neither generation nor annotations, so they
		// do not wake the controller up again.
		For(&circuitv1alpha1.CircuitBreaker{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Service targets follow their Service and its EndpointSlices through the cache.
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.breakersForService)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.breakersForService)).
		// spec.enforce: the guarded Service and slices it owns (restored if edited),
		// the fallback's slices, and a conflicting Service of the guarded name.
		Owns(&corev1.Service{}).
		Owns(&discoveryv1.EndpointSlice{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.breakersForEnforcedService)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.breakersForEnforcedService)).
		// A Namespace's allowed probe ranges (an annotation) apply to its breakers.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.breakersInNamespace),
			builder.OnlyMetadata, builder.WithPredicates(predicate.AnnotationChangedPredicate{})).
		WatchesRawSource(results).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1),
			SkipNameValidation:      &r.SkipNameValidation,
		}).
		Named("circuitbreaker").
		Complete(r)
}

// serviceNameField indexes breakers by the Service they target.
const serviceNameField = ".spec.target.service.name"

// breakersForService maps a Service or EndpointSlice to the breakers that target it.
func (r *CircuitBreakerReconciler) breakersForService(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.breakersIndexedBy(ctx, obj, serviceNameField)
}

// breakersIndexedBy maps a Service, or an EndpointSlice by its Service, to the
// breakers whose field (an index of Service names) names it.
func (r *CircuitBreakerReconciler) breakersIndexedBy(ctx context.Context, obj client.Object, field string) []reconcile.Request {
	name := obj.GetName()
	if _, isSlice := obj.(*discoveryv1.EndpointSlice); isSlice {
		name = obj.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
	}
	list := &circuitv1alpha1.CircuitBreakerList{}
	if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{field: name}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, cb := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}})
	}
	return reqs
}

func indexServiceName(obj client.Object) []string {
	cb, ok := obj.(*circuitv1alpha1.CircuitBreaker)
	if !ok || cb.Spec.Target.Service == nil {
		return nil
	}
	return []string{cb.Spec.Target.Service.Name}
}

// enforcedServiceField indexes breakers by the Services their enforcement
// reads or writes: the guarded Service and the fallback.
const enforcedServiceField = ".spec.enforce.services"

// breakersForEnforcedService maps a Service or EndpointSlice to the breakers
// whose guarded Service or fallback it is (or belongs to).
func (r *CircuitBreakerReconciler) breakersForEnforcedService(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.breakersIndexedBy(ctx, obj, enforcedServiceField)
}

func indexEnforcedServices(obj client.Object) []string {
	cb, ok := obj.(*circuitv1alpha1.CircuitBreaker)
	if !ok || cb.Spec.Enforce == nil {
		return nil
	}
	out := []string{cb.Spec.Enforce.ServiceName}
	if f := cb.Spec.Enforce.Fallback; f != nil {
		out = append(out, f.ServiceName)
	}
	return out
}

// breakersInNamespace maps a Namespace to the breakers in it, so that a change
// of its allowed ranges takes effect at once.
func (r *CircuitBreakerReconciler) breakersInNamespace(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &circuitv1alpha1.CircuitBreakerList{}
	if err := r.List(ctx, list, client.InNamespace(obj.GetName())); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, cb := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cb)})
	}
	return reqs
}
