package main

import (
	"bytes"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

var now = time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)

func micro(t time.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t); return &m }

func TestRetryInSaysTheTimeLeftUntilNextRetryTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		next *metav1.MicroTime
		want string
	}{
		{"not Open", nil, "-"},
		{"in the future, to the second", micro(now.Add(42*time.Second + 300*time.Millisecond)), "42s"},
		{"past", micro(now.Add(-time.Second)), "due"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := &circuitv1alpha1.CircuitBreaker{Status: circuitv1alpha1.CircuitBreakerStatus{NextRetryTime: tc.next}}
			NewWithT(t).Expect(retryIn(cb, now)).To(Equal(tc.want))
		})
	}
}

func TestParseModeAcceptsTheThreeModesInAnyCase(t *testing.T) {
	g := NewWithT(t)
	g.Expect(parseMode("forcedopen")).To(Equal(circuitv1alpha1.ModeForcedOpen))
	g.Expect(parseMode("Auto")).To(Equal(circuitv1alpha1.ModeAuto))
	g.Expect(parseMode("ForcedClosed")).To(Equal(circuitv1alpha1.ModeForcedClosed))
	_, err := parseMode("Open")
	g.Expect(err).To(MatchError(ContainSubstring(`unknown mode "Open"`)))
}

func TestStatusShowsCountersTheLastTransitionTheRetryTheEndpointTableOfAServiceTargetAndTransitions(t *testing.T) {
	g := NewWithT(t)
	cb := &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Name: "user-api", Namespace: "shop"},
		Spec: circuitv1alpha1.CircuitBreakerSpec{
			Target:    circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "user-api", Port: intstr.FromString("http")}},
			Threshold: 3, SuccessThreshold: 1,
		},
		Status: circuitv1alpha1.CircuitBreakerStatus{
			State: circuitv1alpha1.StateOpen, ConsecutiveFailures: 3, Target: "service/user-api:http",
			LastTransitionTime: micro(now.Add(-2 * time.Minute)), NextRetryTime: micro(now.Add(time.Minute)),
			LastTransition: &circuitv1alpha1.LastTransition{From: circuitv1alpha1.StateClosed, To: circuitv1alpha1.StateOpen,
				Reason: circuitv1alpha1.ReasonThresholdReached, Time: *micro(now.Add(-2 * time.Minute))},
			EndpointsTotal: 2, EndpointsFailing: 1, ProbedBy: "breaker-operator-7d9f-x2k4p",
			Endpoints: []circuitv1alpha1.EndpointStatus{
				{Address: "10.0.0.1", Port: 8080, TargetRef: &circuitv1alpha1.EndpointRef{Kind: "Pod", Name: "user-api-a"}, LastResult: circuitv1alpha1.ProbeSuccess, Reason: "ok"},
				{Address: "10.0.0.2", Port: 8080, LastResult: circuitv1alpha1.ProbeFailure, Reason: "timeout", ConsecutiveFailures: 3},
			},
			Conditions: []metav1.Condition{{Type: circuitv1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: circuitv1alpha1.ReasonCircuitOpen, Message: "Open until 07:01"}},
		},
	}
	events := []corev1.Event{
		{Type: "Warning", Reason: "CircuitOpened", Message: "opened", EventTime: metav1.NewMicroTime(now.Add(-2 * time.Minute))},
	}
	var out bytes.Buffer
	g.Expect(writeStatus(&out, cb, events, now)).To(Succeed())
	s := out.String()
	g.Expect(s).To(MatchRegexp(`State:\s+Open \(for 2m\)`))
	g.Expect(s).To(MatchRegexp(`Last transition:\s+Closed -> Open \(ThresholdReached\) 2m ago`))
	g.Expect(s).To(MatchRegexp(`Probed by:\s+breaker-operator-7d9f-x2k4p\n`))
	g.Expect(s).To(MatchRegexp(`Next retry:\s+1m0s \(2026-12-02T07:01:00Z\)`))
	g.Expect(s).To(MatchRegexp(`Available:\s+False \(CircuitOpen\) Open until 07:01`))
	g.Expect(s).To(MatchRegexp(`Endpoints:\s+2 probed, 1 failing`))
	g.Expect(s).To(MatchRegexp(`10\.0\.0\.1\s+8080\s+Pod/user-api-a\s+Success\s+ok\s+0`))
	g.Expect(s).To(MatchRegexp(`10\.0\.0\.2\s+8080\s+-\s+Failure\s+timeout\s+3`))
	g.Expect(s).To(MatchRegexp(`2m\s+Warning\s+CircuitOpened\s+opened`))
}
