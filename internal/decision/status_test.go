package decision

import (
	"testing"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
)

// The state machine's transition reasons are the API's words: every reason it
// can record in status.lastTransition is in the CRD's enum.
func TestEveryTransitionReasonOfTheStateMachineIsAnAPIWord(t *testing.T) {
	g := NewWithT(t)
	for _, r := range []string{breaker.ReasonThresholdReached, breaker.ReasonFailureRateReached, breaker.ReasonTrialFailed,
		breaker.ReasonTimeoutElapsed, breaker.ReasonTrialsSucceeded, breaker.ReasonReset, breaker.ReasonForcedOpen,
		breaker.ReasonForcedClosed, breaker.ReasonModeAuto, breaker.ReasonTripped} {
		g.Expect(circuitv1alpha1.TransitionReasons).To(ContainElement(circuitv1alpha1.TransitionReason(r)), r)
	}
}
