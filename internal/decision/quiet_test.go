package decision

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// steadyBreaker is a breaker as stored after its first successful probe.
func steadyBreaker(t *testing.T) *circuitv1alpha1.CircuitBreaker {
	t.Helper()
	cb := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.CreationTimestamp = metav1.NewTime(decideNow.Add(-time.Hour))
	})
	first := decideNow.Add(-10 * time.Second)
	d := decide(cb, resolvedFor(t, cb), okProbe(first), first, first.Add(time.Millisecond))
	cb.Status = d.Status
	return cb
}

// What the quiet path takes off the work queue is exactly what Reconcile would
// not write: the same outcome again on a Closed circuit.
func TestAQuietDecisionIsOneThatWritesNothing(t *testing.T) {
	g := NewWithT(t)
	cb := steadyBreaker(t)
	g.Expect(SpecResolves(cb)).To(BeTrue())

	d := decide(cb, resolvedFor(t, cb), okProbe(decideNow), decideNow, decideNow.Add(time.Millisecond))
	g.Expect(d.Quiet(cb.Status)).To(BeTrue())
	g.Expect(equality.Semantic.DeepEqual(cb.Status, d.Status)).To(BeTrue())

	for name, pending := range map[string][]probe.Result{
		"a failure moves the counter": failedProbe(decideNow),
		"a slow success is a failure": {{Start: decideNow, Latency: time.Second, Success: true, Reason: probe.ReasonOK, HTTPStatus: 200}},
	} {
		c := cb.DeepCopy()
		if name == "a slow success is a failure" {
			c.Spec.SlowProbe = "100ms"
		}
		d := decide(c, resolvedFor(t, c), pending, decideNow, decideNow.Add(time.Millisecond))
		g.Expect(d.Quiet(c.Status)).To(BeFalse(), name)
	}

	// A success after a failure resets the counter: a write, never quiet.
	failed := cb.DeepCopy()
	failed.Status.ConsecutiveFailures = 1
	d = decide(failed, resolvedFor(t, failed), okProbe(decideNow), decideNow, decideNow.Add(time.Millisecond))
	g.Expect(equality.Semantic.DeepEqual(failed.Status, d.Status)).To(BeFalse())

	// No results: nothing to settle.
	d = decide(cb, resolvedFor(t, cb), nil, decideNow, decideNow.Add(time.Millisecond))
	g.Expect(d.Quiet(cb.Status)).To(BeFalse())
}

// quietly is what the quiet path concludes for a breaker as cached, with a
// success waiting: whether it may settle it without a reconcile.
func quietly(cb *circuitv1alpha1.CircuitBreaker) bool {
	return SpecResolves(cb) && decide(cb, FromSpec(cb), okProbe(decideNow), decideNow, decideNow.Add(time.Millisecond)).Quiet(cb.Status)
}

func TestQuietDecisionsLeaveEverythingElseToReconcile(t *testing.T) {
	g := NewWithT(t)
	for name, mutate := range map[string]func(*circuitv1alpha1.CircuitBreaker){
		"a new breaker":      func(cb *circuitv1alpha1.CircuitBreaker) { cb.Status.State = "" },
		"a spec not handled": func(cb *circuitv1alpha1.CircuitBreaker) { cb.Generation++ },
		"a Service target": func(cb *circuitv1alpha1.CircuitBreaker) {
			cb.Spec.Target = circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "api"}}
		},
		"a guarded Service": func(cb *circuitv1alpha1.CircuitBreaker) { cb.Spec.Enforce = &circuitv1alpha1.Enforce{} },
		"a reset not handled": func(cb *circuitv1alpha1.CircuitBreaker) {
			cb.Annotations = map[string]string{circuitv1alpha1.ResetAnnotation: "now"}
		},
		"a trip not handled": func(cb *circuitv1alpha1.CircuitBreaker) {
			cb.Annotations = map[string]string{circuitv1alpha1.TripUntilAnnotation: "2030-01-01T00:00:00Z"}
		},
		"a breaker being deleted": func(cb *circuitv1alpha1.CircuitBreaker) {
			now := metav1.NewTime(decideNow)
			cb.DeletionTimestamp = &now
		},
	} {
		cb := steadyBreaker(t)
		mutate(cb)
		g.Expect(quietly(cb)).To(BeFalse(), name)
	}
	handled := steadyBreaker(t)
	handled.Annotations = map[string]string{circuitv1alpha1.ResetAnnotation: "done"}
	handled.Status.LastHandledReset = "done"
	g.Expect(quietly(handled)).To(BeTrue(), "a reset already handled")
}

func TestOpenAndHalfOpenGoBeforeClosedAndClosedBeforeCounters(t *testing.T) {
	g := NewWithT(t)
	tr := func(from, to breaker.State) breaker.Transition { return breaker.Transition{From: from, To: to} }
	g.Expect(transitionsPriority(nil)).To(Equal(0), "a counter")
	g.Expect(transitionsPriority([]breaker.Transition{tr(breaker.HalfOpen, breaker.Closed)})).To(Equal(TransitionPriority))
	g.Expect(transitionsPriority([]breaker.Transition{tr(breaker.Closed, breaker.Open)})).To(Equal(StopPriority))
	g.Expect(transitionsPriority([]breaker.Transition{tr(breaker.Open, breaker.HalfOpen), tr(breaker.HalfOpen, breaker.Closed)})).
		To(Equal(StopPriority), "HalfOpen first, then the trial's outcome")
	g.Expect(StopPriority).To(BeNumerically(">", TransitionPriority))
	g.Expect(TransitionPriority).To(BeNumerically(">", 0))
}
