// Package controller reconciles CircuitBreakers: it reads a breaker, lets the
// pure state machine in internal/breaker decide, writes what changed and asks
// the probe runner for the next probe. It holds no state of its own that a
// restart could lose; the runner only remembers when the last probe started.
package controller

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// CircuitBreakerReconciler reconciles a CircuitBreaker object.
type CircuitBreakerReconciler struct {
	client.Client
	// APIReader reads around the cache, when a conflict shows the cache is behind.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Runner    *probe.Runner
	// Clock tells the time; tests may inject a fake one.
	Clock clock.PassiveClock
	// NewInformer builds the informers of referenced Secrets and ConfigMaps;
	// the manager passes the one its cache uses. Defaults to client-go's.
	NewInformer func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer
	// MaxConcurrentReconciles bounds the reconcile workers (at least 1; the manager's flag gives 16).
	MaxConcurrentReconciles int
	// refs watches the Secrets and ConfigMaps that breakers reference.
	refs *refWatcher
	// slicesWritten holds the resourceVersion of each guarded EndpointSlice as
	// this manager last wrote it, to tell a cache that is behind those writes.
	slicesWritten sync.Map
	// statusWritten holds the resourceVersion of each breaker as this manager
	// last wrote its status, until the cache shows it (see cacheHasLastWrite).
	statusWritten sync.Map
	// keyLocks serialize a breaker's Reconcile with settleQuietly, so that the
	// same results are never recorded by both.
	keyLocks [1024]sync.Mutex
	// SkipNameValidation lets several managers in one process (tests) register
	// the same controller name.
	SkipNameValidation bool
}

// +kubebuilder:rbac:groups=circuit.resilience.dev,resources=circuitbreakers,verbs=get;list;watch
// +kubebuilder:rbac:groups=circuit.resilience.dev,resources=circuitbreakers/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete

// Reconcile records the latest probe result and timed moves of one breaker,
// writes its status if it changed, and schedules its next probe or wake-up.
func (r *CircuitBreakerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := probe.Key{Namespace: req.Namespace, Name: req.Name}
	l := r.lockFor(key)
	l.Lock()
	defer l.Unlock()
	cb := &circuitv1alpha1.CircuitBreaker{}
	err := r.Get(ctx, req.NamespacedName, cb)
	if apierrors.IsNotFound(err) || (err == nil && !cb.DeletionTimestamp.IsZero()) {
		r.forget(key)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if cb, err = r.currentBreaker(ctx, key, cb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	now := r.now()
	d, err := r.decideAndWrite(ctx, cb, key, now)
	if apierrors.IsConflict(err) && r.APIReader != nil {
		// The cache is behind our own writes (after an API server outage its watch
		// may take a while to come back): decide again from a fresh read. The probe
		// result is still pending, so nothing is lost either way.
		logf.FromContext(ctx).V(1).Info("Status write conflicted, retrying on a fresh read")
		cb = &circuitv1alpha1.CircuitBreaker{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, cb); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		d, err = r.decideAndWrite(ctx, cb, key, now)
	}
	if err != nil {
		// Conflicts included: retried with backoff, the result still pending.
		return ctrl.Result{}, err
	}
	r.afterWrite(ctx, cb, key, d)
	if d.again {
		// HalfOpen is recorded; the trial's outcome waits, at the priority of what it will record.
		return ctrl.Result{RequeueAfter: time.Nanosecond, Priority: ptr.To(max(r.resultsPriority(ctx, req), transitionPriority))}, nil
	}
	// The wake-up is due at a fixed time; the write took some of the wait.
	// An Open circuit's wake-up records HalfOpen.
	priority := transitionPriority
	if d.status.State == circuitv1alpha1.StateOpen {
		priority = stopPriority
	}
	return ctrl.Result{RequeueAfter: remaining(d.wake, r.Clock.Since(now)), Priority: ptr.To(priority)}, nil
}

// decideAndWrite resolves the spec, decides, and writes the status if it
// changed, with optimistic locking: a write based on a stale read fails with a
// conflict. On success cb holds the stored status.
func (r *CircuitBreakerReconciler) decideAndWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker,
	key probe.Key, now time.Time) (decision, error) {
	res, err := r.resolve(ctx, cb)
	if err != nil {
		return decision{}, err
	}
	res.unknownToRunner = !r.Runner.Knows(key)
	var pending []probe.Result
	if res.blocked == nil {
		pending = r.Runner.Pending(key, res.settings.specID)
	}
	d := decide(cb, res, pending, r.Runner.LastStart(key, res.settings.specID), now)
	r.schedule(key, d)
	// Traffic follows the decision before the decision is recorded: a status
	// that says Open always has slices that say so, and a failed slice write
	// leaves the probe result pending, to be decided again, never counted twice.
	if err := r.applyEnforcement(ctx, cb, d.enforce); err != nil {
		return d, err
	}
	if d.deferWrite || equality.Semantic.DeepEqual(cb.Status, d.status) {
		return d, nil
	}
	orig := cb.DeepCopy()
	cb.Status = d.status
	if err := r.Status().Patch(ctx, cb, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return d, err
	}
	r.statusWritten.Store(key, cb.ResourceVersion)
	return d, nil
}

// currentBreaker returns the cached breaker, or the one the API server holds
// when the cache has not caught up with this manager's last status write of
// an enforcing breaker. The status patch is guarded by optimistic locking, but
// the slice writes that precede it are not: decided on an outdated status
// (Closed, while the server already says Open), they would route traffic back
// to the target until the conflict is retried.
func (r *CircuitBreakerReconciler) currentBreaker(ctx context.Context, key probe.Key,
	cached *circuitv1alpha1.CircuitBreaker) (*circuitv1alpha1.CircuitBreaker, error) {
	enforcing := cached.Spec.Enforce != nil || cached.Status.Enforcement != nil
	if !enforcing || r.APIReader == nil || r.cacheHasLastWrite(key, cached.ResourceVersion) {
		return cached, nil
	}
	last, written := r.statusWritten.Load(key)
	if !written {
		return cached, nil
	}
	live := &circuitv1alpha1.CircuitBreaker{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, live); err != nil {
		return nil, err
	}
	if live.ResourceVersion != last.(string) {
		// Another writer came after ours: the cache follows it in order.
		r.statusWritten.CompareAndDelete(key, last)
	}
	return live, nil
}

// remaining is what is left of wait after elapsed: zero stays zero (no
// wake-up), and a wake-up already due is asked for at once.
func remaining(wait, elapsed time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	return max(wait-elapsed, time.Nanosecond)
}

func (r *CircuitBreakerReconciler) forget(key probe.Key) {
	r.Runner.Forget(key)
	r.statusWritten.Delete(key)
	r.refs.use(types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, nil)
	metrics.Forget(key.Namespace, key.Name)
}

// now is the current time at the precision status stores (microseconds), so
// that a decision taken from memory and one taken from a re-read status agree.
func (r *CircuitBreakerReconciler) now() time.Time {
	return r.Clock.Now().UTC().Truncate(time.Microsecond)
}

// SetupWithManager sets up the controller with the Manager. Probe results come
// back through a source that enqueues the breaker whose probe finished.
func (r *CircuitBreakerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	clientset, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	r.refs = newRefWatcher(clientset, r.NewInformer)
	r.Runner.Hold = r.holdProbe
	results := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		r.Runner.Start(ctx, func(k probe.Key) {
			r.enqueueResult(ctx, q, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}})
		})
		r.refs.start(ctx, func(n types.NamespacedName) { q.Add(reconcile.Request{NamespacedName: n}) })
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

func formatTime(t *metav1.MicroTime) string {
	if t == nil {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}
