package decision

import (
	"reflect"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// The runner's hold comes from the decision: the results it did not record,
// folded onto the status it decided.
func TestHoldIfHoldsOnlyWhileTheUnrecordedResultsOpenTheCircuit(t *testing.T) {
	g := NewWithT(t)
	cb := decideBreaker(closedWith(1, nil)) // threshold 3
	first := decideNow.Add(-time.Second)
	d := decide(cb, resolvedFor(t, cb), failedProbe(first), first, decideNow)
	g.Expect(d.Status.ConsecutiveFailures).To(Equal(int32(2)))
	hold := d.HoldIf(decideNow)
	g.Expect(hold).NotTo(BeNil())

	later := decideNow.Add(200 * time.Millisecond)
	g.Expect(hold(failedProbe(first))).To(BeFalse(), "a result the decision recorded is not folded twice")
	g.Expect(hold(slices.Concat(failedProbe(first), okProbe(later)))).To(BeFalse(), "a success opens nothing")
	g.Expect(hold(slices.Concat(failedProbe(first), failedProbe(later)))).To(BeTrue(), "the threshold-th failure opens")

	// A slow success is a failure, as Decide judges it.
	cb.Spec.SlowProbe = "100ms"
	d = decide(cb, resolvedFor(t, cb), failedProbe(first), first, decideNow)
	slow := []probe.Result{{Start: later, Latency: time.Second, Success: true, Reason: probe.ReasonOK, HTTPStatus: 200}}
	g.Expect(d.HoldIf(decideNow)(slow)).To(BeTrue())

	// A failed trial reopens a HalfOpen circuit: held.
	half := decideBreaker(func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Status.State = circuitv1alpha1.StateHalfOpen
		cb.Status.LastTransitionTime = mt(decideNow.Add(-time.Second))
	})
	d = decide(half, resolvedFor(t, half), nil, decideNow.Add(-time.Second), decideNow)
	g.Expect(d.HoldIf(decideNow)(failedProbe(decideNow))).To(BeTrue())

	// Nothing is planned for a blocked breaker: nothing to hold.
	d = decide(cb, Resolution{Blocked: &Problem{circuitv1alpha1.ReasonInvalidSpec, "bad"}}, nil, time.Time{}, decideNow)
	g.Expect(d.HoldIf(decideNow)).To(BeNil())
}

// After a failed write the stored status is behind the decided one. The hold
// is taken against the decided status, so it may hold a probe the stored
// status would have let go, never the reverse; the retry plans again.
func TestHoldIfAfterAFailedWriteHoldsNoLessThanTheStoredStatusWould(t *testing.T) {
	g := NewWithT(t)
	stored := decideBreaker(closedWith(1, nil))
	first := decideNow.Add(-time.Second)
	unwritten := decide(stored, resolvedFor(t, stored), failedProbe(first), first, decideNow)
	next := decideNow.Add(200 * time.Millisecond)
	waiting := slices.Concat(failedProbe(first), failedProbe(next))

	// The retry decides on the stored status with every waiting result: it
	// opens the circuit, so the decided status's hold was right to hold.
	retry := decide(stored, resolvedFor(t, stored), waiting, next, next)
	g.Expect(retry.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(unwritten.HoldIf(decideNow)(waiting)).To(BeTrue())
	g.Expect(retry.NextProbe).To(Equal(retry.Status.NextRetryTime.Time), "the retry moves the held probe to the trial")
}

// Quiet is "no effects": every field of Effects counts, so one added later
// makes a decision loud without anyone listing it.
func TestEveryEffectMakesADecisionLoud(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Effects{}.None()).To(BeTrue())
	typ := reflect.TypeOf(Effects{})
	for i := range typ.NumField() {
		var e Effects
		f := reflect.ValueOf(&e).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int64:
			f.SetInt(1)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(decideNow))
			} else {
				f.Field(0).SetString("x")
			}
		}
		g.Expect(e.None()).To(BeFalse(), typ.Field(i).Name)
		d := Decision{Probed: okProbe(decideNow), Effects: e}
		g.Expect(d.Quiet(d.Status)).To(BeFalse(), typ.Field(i).Name)
	}
}
