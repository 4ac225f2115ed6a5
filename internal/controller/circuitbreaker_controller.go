// Package controller reconciles CircuitBreakers: it reads a breaker, lets the
// pure state machine in internal/breaker decide, writes what changed and asks
// the probe runner for the next probe. It holds no state of its own that a
// restart could lose; the runner only remembers when the last probe started.
package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
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
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Condition reasons of the Ready condition.
const (
	ReasonProbing     = "Probing"
	ReasonInvalidSpec = "InvalidSpec"
	ReasonProbeDenied = "ProbeDenied"
	// ReasonTargetUnresolvable: the target's host name did not resolve at the last probe.
	ReasonTargetUnresolvable = "TargetUnresolvable"
)

// Event reasons, one per kind of transition.
const (
	EventCircuitOpened     = "CircuitOpened"
	EventCircuitHalfOpened = "CircuitHalfOpened"
	EventCircuitClosed     = "CircuitClosed"
	EventCircuitReset      = "CircuitReset"
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
	// MaxConcurrentReconciles bounds the reconcile workers (default 4).
	MaxConcurrentReconciles int
	// refs watches the Secrets and ConfigMaps that breakers reference.
	refs *refWatcher
	// SkipNameValidation lets several managers in one process (tests) register
	// the same controller name.
	SkipNameValidation bool
}

// outcome is what a reconcile decided beyond the status: what to do once the
// status is safely written.
type outcome struct {
	transitions []breaker.Transition
	// probed is the probe result that this reconcile recorded, if any.
	probed *probe.Result
	// nextProbe is when to probe next: for an Open circuit, its trial at
	// nextRetryTime; zero when nothing is to be probed (invalid).
	nextProbe time.Time
	settings  settings
	valid     bool
	// reset is set when this reconcile handled a new reset annotation value,
	// at resetAt: results of probes that started earlier are discarded.
	reset   bool
	resetAt time.Time
	// wake is when the next timed move is due (Open to HalfOpen); zero if none.
	wake time.Duration
	// again asks for another reconcile at once: the trial's result waits for
	// the HalfOpen this reconcile records.
	again bool
}

// +kubebuilder:rbac:groups=circuit.resilience.dev,resources=circuitbreakers,verbs=get;list;watch
// +kubebuilder:rbac:groups=circuit.resilience.dev,resources=circuitbreakers/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch

// Reconcile records the latest probe result and timed moves of one breaker,
// writes its status if it changed, and schedules its next probe or wake-up.
func (r *CircuitBreakerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := probe.Key{Namespace: req.Namespace, Name: req.Name}
	cb := &circuitv1alpha1.CircuitBreaker{}
	if err := r.Get(ctx, req.NamespacedName, cb); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cb.DeletionTimestamp.IsZero() {
		r.forget(key)
		return ctrl.Result{}, nil
	}

	now := r.now()
	out, err := r.reconcileAndWrite(ctx, cb, key, now)
	if apierrors.IsConflict(err) && r.APIReader != nil {
		// The cache is behind our own writes (after an API server outage its watch
		// may take a while to come back): decide again from a fresh read. The probe
		// result is still pending, so nothing is lost either way.
		logf.FromContext(ctx).V(1).Info("Status write conflicted, retrying on a fresh read")
		cb = &circuitv1alpha1.CircuitBreaker{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, cb); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		out, err = r.reconcileAndWrite(ctx, cb, key, now)
	}
	if err != nil {
		// Conflicts included: retried with backoff, the result still pending.
		return ctrl.Result{}, err
	}
	r.afterWrite(ctx, cb, key, out)
	if out.again {
		return ctrl.Result{RequeueAfter: time.Nanosecond}, nil
	}
	// The wake-up is due at a fixed time; the write took some of the wait.
	return ctrl.Result{RequeueAfter: remaining(out.wake, r.Clock.Since(now))}, nil
}

// reconcileAndWrite decides and, if the status changed, writes it with
// optimistic locking: a write based on a stale read fails with a conflict.
func (r *CircuitBreakerReconciler) reconcileAndWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker,
	key probe.Key, now time.Time) (outcome, error) {
	orig := cb.DeepCopy()
	out, err := r.reconcile(ctx, cb, key, now)
	if err != nil || equality.Semantic.DeepEqual(orig.Status, cb.Status) {
		return out, err
	}
	return out, r.Status().Patch(ctx, cb, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}

// remaining is what is left of wait after elapsed: zero stays zero (no
// wake-up), and a wake-up already due is asked for at once.
func remaining(wait, elapsed time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	return max(wait-elapsed, time.Nanosecond)
}

// reconcile moves the breaker's status forward to now. It changes only cb.Status.
func (r *CircuitBreakerReconciler) reconcile(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key probe.Key, now time.Time) (outcome, error) {
	var out outcome
	cb.Status.ObservedGeneration = cb.Generation
	cb.Status.Target = targetSummary(cb.Spec.Target)
	cfg, err := parseSpec(cb.Spec)
	if err != nil {
		notProbing(cb, now, ReasonInvalidSpec, err.Error())
		return out, nil
	}
	var svc resolved
	if cb.Spec.Target.Service != nil {
		if svc, err = r.resolveService(ctx, cb.Namespace, cb.Spec.Target.Service); err != nil {
			return out, err
		}
		cfg.target.Round.Endpoints = svc.endpoints
		cfg.target.Round.ServerName = cb.Spec.Target.Service.Name + "." + cb.Namespace + ".svc"
		if svc.problem != nil {
			cfg.target.Round.Unresolved = svc.problem.reason
		}
	}
	allowed, restricted, nsProblem, err := r.namespaceRanges(ctx, cb.Namespace)
	if err != nil {
		return out, err
	}
	if nsProblem != nil {
		notProbing(cb, now, nsProblem.reason, nsProblem.message)
		return out, nil
	}
	cfg.target.Allowed, cfg.target.Restricted = allowed, restricted
	r.refs.use(types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}, specRefs(cb))
	refProblem, err := r.resolveHTTP(ctx, cb, &cfg.target)
	if err != nil {
		return out, err
	}
	if refProblem != nil {
		// Without its credentials or CA the probe would only mislead: send none.
		notProbing(cb, now, refProblem.reason, refProblem.message)
		return out, nil
	}
	out.settings, out.valid = cfg, true

	s := statusFromAPI(cb.Status, now)
	record := func(next breaker.Status, t *breaker.Transition) {
		s = next
		if t != nil {
			out.transitions = append(out.transitions, *t)
		}
	}
	if v, ok := cb.Annotations[circuitv1alpha1.ResetAnnotation]; ok && v != cb.Status.LastHandledReset {
		record(breaker.Reset(s, cfg.policy, now))
		cb.Status.LastHandledReset = v
		out.reset, out.resetAt = true, now
	}
	wasOpen := s.State == breaker.Open
	record(breaker.Advance(s, cfg.policy, r.halfOpenTime(s, key, cfg.specID, now)))
	if res, ok := r.Runner.Pending(key, cfg.specID); ok {
		switch {
		case wasOpen && s.State == breaker.HalfOpen:
			// The trial came back before this reconcile recorded HalfOpen: record
			// HalfOpen on its own first, so that it is seen before the trial's
			// outcome. The result stays pending for the next reconcile.
			out.again = true
		case out.reset:
			// A probe that was under way when the breaker was reset must not count
			// against the fresh circuit.
			out.probed = &res
		default:
			out.probed = &res
			record(breaker.Observe(s, cfg.policy, breaker.Outcome{Success: res.Success, Latency: res.Latency}, now))
		}
	}
	before := cb.Status.DeepCopy()
	statusToAPI(s, &cb.Status)
	if out.probed != nil && cb.Spec.Target.Service != nil {
		cb.Status.Endpoints, cb.Status.EndpointsTotal, cb.Status.EndpointsFailing =
			endpointStatuses(cb.Status.Endpoints, out.probed.Endpoints, svc.refs)
	}
	if cb.Spec.Target.Service == nil {
		cb.Status.Endpoints, cb.Status.EndpointsTotal, cb.Status.EndpointsFailing = nil, 0, 0
	}
	if out.probed != nil && (!equality.Semantic.DeepEqual(before, &cb.Status) || lastProbeChanged(cb.Status.LastProbe, *out.probed)) {
		cb.Status.LastProbe = lastProbeFromResult(*out.probed)
	}
	if svc.problem != nil {
		setReady(cb, metav1.ConditionFalse, svc.problem.reason, svc.problem.message)
	} else {
		r.setReadyFromProbe(cb, cfg)
	}

	if at, ok := breaker.NextProbe(s, r.Runner.LastStart(key, cfg.specID), cfg.interval, now); ok {
		out.nextProbe = at
	} else if s.State == breaker.Open {
		// The trial leaves on the runner's own timer the moment the timeout is
		// over, not when a reconcile worker has found time to record HalfOpen:
		// with many breakers due at once, the status writes queue up, the trials
		// need not. Nothing is sent before nextRetryTime.
		out.nextProbe = s.NextRetryTime
	}
	out.wake = breaker.WakeAfter(s, now)
	return out, nil
}

// halfOpenTime is the time to advance an Open breaker's state machine to: now,
// unless its trial has already left (at or after nextRetryTime, on the
// runner's timer), in which case the circuit went HalfOpen when the trial
// started. Recording that time keeps lastTransitionTime honest and makes the
// trial count as the HalfOpen state's first probe, so the next one follows an
// interval later rather than at once.
func (r *CircuitBreakerReconciler) halfOpenTime(s breaker.Status, key probe.Key, specID string, now time.Time) time.Time {
	if s.State != breaker.Open || s.NextRetryTime.IsZero() {
		return now
	}
	if start := r.Runner.LastStart(key, specID); !start.Before(s.NextRetryTime) && start.Before(now) {
		return start.UTC().Truncate(time.Microsecond)
	}
	return now
}

// notProbing records why the breaker cannot probe. Its state stays as it is (a
// new breaker starts Closed): nothing was observed that could change it.
func notProbing(cb *circuitv1alpha1.CircuitBreaker, now time.Time, reason, message string) {
	if cb.Status.State == "" {
		statusToAPI(breaker.Start(now), &cb.Status)
	}
	setReady(cb, metav1.ConditionFalse, reason, message)
}

// afterWrite acts on what reconcile decided, once the status is stored: it
// acknowledges the recorded probe result, schedules the next probe, and reports
// transitions as Events, log lines and metrics. Running it only after a
// successful write means a retried conflict never reports a transition twice.
func (r *CircuitBreakerReconciler) afterWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, key probe.Key, out outcome) {
	log := logf.FromContext(ctx)
	if out.probed != nil {
		r.Runner.Ack(key, out.probed.Start)
		metrics.ObserveProbe(cb.Namespace, cb.Name, out.probed.Success, out.probed.Reason, out.probed.Latency)
	}
	if out.reset {
		// A probe that was under way when the reset was handled must not count
		// against the fresh circuit, whenever it comes back.
		r.Runner.DiscardBefore(key, out.resetAt)
	}
	switch {
	case !out.valid:
		r.Runner.Pause(key)
	case out.nextProbe.IsZero():
		r.Runner.Pause(key)
	default:
		r.Runner.Schedule(key, out.settings.specID, out.settings.target, out.nextProbe)
	}
	if out.reset {
		log.Info("Circuit reset by annotation", "value", cb.Status.LastHandledReset)
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, EventCircuitReset, "Reset",
			"Circuit reset to Closed by the %s annotation", circuitv1alpha1.ResetAnnotation)
	}
	for _, t := range out.transitions {
		log.Info("Circuit state changed", "from", t.From, "to", t.To, "reason", t.Reason)
		metrics.ObserveTransition(cb.Namespace, cb.Name, string(t.From), string(t.To))
		r.emitTransition(cb, t, out.probed)
	}
	metrics.SetState(cb.Namespace, cb.Name, string(cb.Status.State), cb.Status.ConsecutiveFailures)
}

func (r *CircuitBreakerReconciler) emitTransition(cb *circuitv1alpha1.CircuitBreaker, t breaker.Transition, probed *probe.Result) {
	last := "none"
	if probed != nil {
		last = probed.Reason
	}
	switch {
	case t.Reason == breaker.ReasonReset:
		// Reported once, as CircuitReset, above.
	case t.To == breaker.Open:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeWarning, EventCircuitOpened, "Open",
			"Circuit opened after %d consecutive failed probes (last: %s); next trial at %s",
			cb.Status.ConsecutiveFailures, last, formatTime(cb.Status.NextRetryTime))
	case t.To == breaker.HalfOpen:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, EventCircuitHalfOpened, "HalfOpen",
			"Circuit half-open after its timeout; sending trial probes")
	case t.To == breaker.Closed:
		r.Recorder.Eventf(cb, nil, corev1.EventTypeNormal, EventCircuitClosed, "Close",
			"Circuit closed after successful trial probes")
	}
}

func (r *CircuitBreakerReconciler) forget(key probe.Key) {
	r.Runner.Forget(key)
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
	r.refs = newRefWatcher(clientset)
	results := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		r.Runner.Start(ctx, func(k probe.Key) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}})
		})
		r.refs.start(ctx, func(n types.NamespacedName) { q.Add(reconcile.Request{NamespacedName: n}) })
		return nil
	})
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &circuitv1alpha1.CircuitBreaker{},
		serviceNameField, indexServiceName); err != nil {
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
