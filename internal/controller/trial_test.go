package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// holdingRecorder keeps the reconcile worker that emits an Event with the
// given reason for a while, as a worker is kept when many status writes queue
// up in front of the API server.
type holdingRecorder struct {
	events.EventRecorder
	reason string
	hold   time.Duration
}

func (r holdingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
	if reason == r.reason {
		time.Sleep(r.hold)
	}
}

// startOperatorWithOneHeldWorker runs the controller with a single reconcile
// worker that is held for hold after each CircuitOpened Event.
func startOperatorWithOneHeldWorker(t *testing.T, ns string, hold time.Duration) {
	t.Helper()
	startOperatorWith(t, ns, operatorOptions{workers: 1, wrapRecorder: func(r events.EventRecorder) events.EventRecorder {
		return holdingRecorder{EventRecorder: r, reason: circuitv1alpha1.EventCircuitOpened, hold: hold}
	}})
}

// With many breakers due at once, the status writes that record HalfOpen queue
// up behind each other; the trial probes must not queue with them.
func TestTrialLeavesAtNextRetryTimeWhileTheWorkerIsBusy(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	// The only worker is held well past the timeout by the reconcile that opens the circuit.
	const hold = 3 * time.Second
	startOperatorWithOneHeldWorker(t, ns, hold)
	tg := newTarget(t)
	tg.healthy.Store(false)
	spec := breakerSpec(tg.url("/trial"))
	spec.Threshold = 1
	spec.Timeout = "1s"
	createBreaker(t, ns, "trial", spec)

	open := waitState(t, ns, "trial", circuitv1alpha1.StateOpen, 10*time.Second)
	openedAt, nextRetry := open.Status.OpenedAt.Time, open.Status.NextRetryTime.Time
	tg.healthy.Store(true)
	closed := waitState(t, ns, "trial", circuitv1alpha1.StateClosed, 15*time.Second)

	var trial time.Time
	for _, at := range tg.arrivals("/trial") {
		if at.After(openedAt) {
			trial = at
			break
		}
	}
	g.Expect(trial).To(BeTemporally(">=", nextRetry), "no probe while Open")
	g.Expect(trial).To(BeTemporally("<", openedAt.Add(hold)), "the trial waited for the busy worker")
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "trial") }).WithTimeout(5 * time.Second).
		Should(ContainElements("Normal/"+circuitv1alpha1.EventCircuitHalfOpened, "Normal/"+circuitv1alpha1.EventCircuitClosed))
	// The circuit went HalfOpen when its trial left, not when the worker got to record it.
	g.Expect(closed.Status.LastTransitionTime.Time).To(BeTemporally(">=", openedAt.Add(hold)))
}
