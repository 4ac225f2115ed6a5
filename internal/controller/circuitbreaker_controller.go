// Package controller reconciles CircuitBreakers. It does the I/O around the
// pure decision in internal/decision: it reads a breaker and what its spec
// names, asks the decision, tells the probe runner, writes the guarded
// Service's slices and the status, and reports what changed. It holds no state
// of its own that a restart could lose; the runner only remembers when the
// last probe started.
package controller

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/metrics"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
	"github.com/resilience-dev/breaker-operator/internal/ring"
)

// CircuitBreakerReconciler reconciles a CircuitBreaker object.
type CircuitBreakerReconciler struct {
	client.Client
	// APIReader reads around the cache, when a conflict shows the cache is behind.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Runner    *runner.Runner
	// Clock tells the time; tests may inject a fake one.
	Clock clock.PassiveClock
	// NewInformer builds the informers of referenced Secrets and ConfigMaps;
	// the manager passes the one its cache uses. Defaults to client-go's.
	NewInformer func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer
	// MaxConcurrentReconciles bounds the reconcile workers (at least 1; the manager's flag gives 16).
	MaxConcurrentReconciles int
	// refs watches the Secrets and ConfigMaps that breakers reference.
	refs *refWatcher
	// consistency serializes the decisions on one breaker and remembers this
	// manager's last writes, to tell a cache that is behind them.
	consistency consistency
	// Member is this manager's place in a sharded ring (--sharding): it
	// reconciles, probes and writes only the breakers the member owns. Nil
	// without sharding: it owns every breaker.
	Member *ring.Member
	// owned counts the breakers this member reconciled as its own.
	owned ownedSet
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

// Reconcile records the latest probe results and timed moves of one breaker.
// Its phases, in this deliberate order: read the breaker, resolve what its spec
// names, decide, plan the runner's next probe, enforce the decision on the
// guarded Service, write the status, report. The runner and the slices follow
// the decision before the status is written, so a status that says Open never
// has probes or traffic that say otherwise; a failed write leaves the results
// pending, to be decided again, never counted twice.
func (r *CircuitBreakerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := runner.Key{Namespace: req.Namespace, Name: req.Name}
	defer r.consistency.lock(key)()
	cb, err := r.read(ctx, key)
	if err != nil || cb == nil {
		return ctrl.Result{}, err
	}
	if !r.owns(cb) {
		// Another member's (or, before the ring is read, nobody's yet).
		r.forget(key)
		return ctrl.Result{}, nil
	}
	r.owned.set(r.memberID(), key, true)
	now := r.now()
	d, err := r.decideAndWrite(ctx, cb, key, now)
	if apierrors.IsConflict(err) && r.APIReader != nil {
		// The cache is behind our own writes (after an API server outage its watch
		// may take a while to come back): decide again from a fresh read. The probe
		// results are still pending, so nothing is lost either way.
		logf.FromContext(ctx).V(1).Info("Status write conflicted, retrying on a fresh read")
		if cb, err = r.readServer(ctx, key); err != nil || cb == nil {
			return ctrl.Result{}, err
		}
		d, err = r.decideAndWrite(ctx, cb, key, now)
	}
	if err != nil {
		// Conflicts included: retried with backoff, the results still pending.
		return ctrl.Result{}, err
	}
	r.report(ctx, cb, key, d)
	return r.nextReconcile(d, now), nil
}

// decideAndWrite is one pass of the phases from resolve to write, on cb as
// read. On success cb holds the stored status.
func (r *CircuitBreakerReconciler) decideAndWrite(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker,
	key runner.Key, now time.Time) (decision.Decision, error) {
	res, err := r.resolve(ctx, cb)
	if err != nil {
		return decision.Decision{}, err
	}
	run := r.runnerView(key, res)
	d := decision.Decide(cb, res, run, now)
	r.plan(key, d, now)
	if err := r.enforce(ctx, cb, d.Effects.Enforce); err != nil {
		return d, err
	}
	return d, r.writeStatus(ctx, cb, key, d)
}

// nextReconcile is when this breaker's next reconcile is due, and at what
// priority: at once when the trial's result waits for the HalfOpen just
// recorded (at the priority of what it will record), else at the decision's
// wake-up (an Open circuit's records HalfOpen).
func (r *CircuitBreakerReconciler) nextReconcile(d decision.Decision, now time.Time) ctrl.Result {
	if d.Effects.Again {
		return ctrl.Result{RequeueAfter: time.Nanosecond, Priority: ptr.To(d.Priority())}
	}
	priority := decision.TransitionPriority
	if d.Status.State == circuitv1alpha1.StateOpen {
		priority = decision.StopPriority
	}
	// The wake-up is due at a fixed time; the write took some of the wait.
	return ctrl.Result{RequeueAfter: remaining(d.Effects.Wake, r.Clock.Since(now)), Priority: ptr.To(priority)}
}

// remaining is what is left of wait after elapsed: zero stays zero (no
// wake-up), and a wake-up already due is asked for at once.
func remaining(wait, elapsed time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	return max(wait-elapsed, time.Nanosecond)
}

// forget drops everything this manager holds for a breaker that is gone.
// It also serves a breaker that another member of the ring now owns: the
// runner forgets it first, so that its probes stop before anything else.
func (r *CircuitBreakerReconciler) forget(key runner.Key) {
	r.Runner.Forget(key)
	r.owned.set(r.memberID(), key, false)
	name := types.NamespacedName{Namespace: key.Namespace, Name: key.Name}
	r.consistency.writes.forget(breakerKind, name)
	r.refs.use(name, nil)
	metrics.Forget(key.Namespace, key.Name)
}

// now is the current time at the precision status stores (microseconds), so
// that a decision taken from memory and one taken from a re-read status agree.
func (r *CircuitBreakerReconciler) now() time.Time {
	return r.Clock.Now().UTC().Truncate(time.Microsecond)
}
