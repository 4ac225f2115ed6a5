package decision

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// These tests need no control plane: they run in `make test-unit` (-short).

func failing(addr string, n int32) circuitv1alpha1.EndpointStatus {
	return circuitv1alpha1.EndpointStatus{Address: addr, Port: 8080, LastResult: circuitv1alpha1.ProbeFailure, ConsecutiveFailures: n}
}

func passing(addr string) circuitv1alpha1.EndpointStatus {
	return circuitv1alpha1.EndpointStatus{Address: addr, Port: 8080, LastResult: circuitv1alpha1.ProbeSuccess}
}

func TestEjectedAddressesHoldTheThresholdTheCapAndTheLastEndpoint(t *testing.T) {
	three := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	on := ejectionPolicy{on: true, failures: 3, maxPercent: 50}
	tests := []struct {
		name   string
		policy ejectionPolicy
		eps    []circuitv1alpha1.EndpointStatus
		ready  []string
		want   []string
	}{
		{"off: nothing is ejected", ejectionPolicy{}, []circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 9), passing("10.0.0.2"), passing("10.0.0.3")}, three, nil},
		{"below the threshold", on, []circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 2), passing("10.0.0.2"), passing("10.0.0.3")}, three, nil},
		{"one of three at the threshold", on, []circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 3), passing("10.0.0.2"), passing("10.0.0.3")}, three, []string{"10.0.0.1"}},
		{"a success brings it back", on, []circuitv1alpha1.EndpointStatus{passing("10.0.0.1"), passing("10.0.0.2"), passing("10.0.0.3")}, three, nil},
		{"two of three failing: 50% of 3 is 1, the longest-failing", on,
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 3), failing("10.0.0.2", 5), passing("10.0.0.3")}, three, []string{"10.0.0.2"}},
		{"equals: the one already ejected stays ejected", on,
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 4), func() circuitv1alpha1.EndpointStatus {
				e := failing("10.0.0.2", 4)
				e.Ejected = true
				return e
			}(), passing("10.0.0.3")}, three, []string{"10.0.0.2"}},
		{"100%: one stays while another passes", ejectionPolicy{on: true, failures: 1, maxPercent: 100},
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 1), failing("10.0.0.2", 2), passing("10.0.0.3")}, three, []string{"10.0.0.1", "10.0.0.2"}},
		{"100%: all may go when all failed the round", ejectionPolicy{on: true, failures: 1, maxPercent: 100},
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 1), failing("10.0.0.2", 2), failing("10.0.0.3", 1)}, three, three},
		{"a single endpoint is never ejected while it passes... nor by 50% when failing", on,
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 7)}, []string{"10.0.0.1"}, nil},
		{"endpoints that left the Service do not count", on,
			[]circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 3), failing("10.0.0.9", 9), passing("10.0.0.2"), passing("10.0.0.3")}, three, []string{"10.0.0.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ejectedAddresses(tc.policy, tc.eps, tc.ready)
			var addrs []string
			for _, a := range tc.ready {
				if got[a] {
					addrs = append(addrs, a)
				}
			}
			NewWithT(t).Expect(addrs).To(Equal(tc.want))
			NewWithT(t).Expect(got).To(HaveLen(len(tc.want)))
		})
	}
}

func ipSlice(name string, family discoveryv1.AddressType, port int32, addrs ...string) discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{AddressType: family,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}}}
	s.Name = name
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "pod-" + a}})
	}
	return s
}

func sliceAddrs(ss []discoveryv1.EndpointSlice) map[string][]string {
	out := map[string][]string{}
	for _, s := range ss {
		out[s.Name] = []string{}
		for _, ep := range s.Endpoints {
			out[s.Name] = append(out[s.Name], ep.Addresses[0])
		}
	}
	return out
}

func TestGuardedSlicesArePerAddressTypeLabelledAndSkipTheEjected(t *testing.T) {
	g := NewWithT(t)
	notReady := ipSlice("t-3", discoveryv1.AddressTypeIPv4, 8080, "10.0.0.9")
	notReady.Endpoints[0].Conditions.Ready = ptr.To(false)
	src := []discoveryv1.EndpointSlice{
		ipSlice("t-1", discoveryv1.AddressTypeIPv4, 8080, "10.0.0.2", "10.0.0.1"),
		ipSlice("t-2", discoveryv1.AddressTypeIPv4, 8080, "10.0.0.3", "10.0.0.1"),
		ipSlice("t-6", discoveryv1.AddressTypeIPv6, 8080, "fd00::1"),
		ipSlice("t-f", discoveryv1.AddressTypeFQDN, 8080, "db.example"),
		ipSlice("t-9", discoveryv1.AddressTypeIPv4, 9090, "10.0.0.7"),
		notReady,
	}
	got := guardedSlices("api-guarded", src, map[string]bool{"10.0.0.2": true})
	g.Expect(sliceAddrs(got)).To(Equal(map[string][]string{
		"api-guarded-ipv4":   {"10.0.0.1", "10.0.0.3"},
		"api-guarded-ipv4-1": {"10.0.0.7"},
		"api-guarded-ipv6":   {"fd00::1"},
	}))
	for _, s := range got {
		g.Expect(s.Labels).To(Equal(map[string]string{
			discoveryv1.LabelServiceName: "api-guarded",
			discoveryv1.LabelManagedBy:   circuitv1alpha1.EndpointSliceManager,
		}))
		g.Expect(s.Endpoints[0].TargetRef).NotTo(BeNil())
	}
	g.Expect(servedCount(got)).To(Equal(int32(4)))
	g.Expect(guardedSlices("x", nil, nil)).To(BeEmpty(), "no endpoint, no slice")
	g.Expect(guardedSlices("api-guarded", src, map[string]bool{"10.0.0.2": true})).To(Equal(got), "the same input gives the same slices")
}

func enforcingBreaker(state circuitv1alpha1.State, fallback bool, eps ...circuitv1alpha1.EndpointStatus) *circuitv1alpha1.CircuitBreaker {
	cb := &circuitv1alpha1.CircuitBreaker{}
	cb.Spec.Target.Service = &circuitv1alpha1.ServiceTarget{Name: "api"}
	cb.Spec.Enforce = &circuitv1alpha1.Enforce{ServiceName: "api-guarded", Ejection: &circuitv1alpha1.Ejection{}}
	if fallback {
		cb.Spec.Enforce.Fallback = &circuitv1alpha1.Fallback{ServiceName: "api-degraded"}
	}
	cb.Status.State = state
	cb.Status.Endpoints = eps
	return cb
}

func TestPlanEnforcementRoutesByStateAndReportsChanges(t *testing.T) {
	in := EnforceInput{
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		Target:   []discoveryv1.EndpointSlice{ipSlice("t", discoveryv1.AddressTypeIPv4, 8080, "10.0.0.1", "10.0.0.2", "10.0.0.3")},
		Fallback: []discoveryv1.EndpointSlice{ipSlice("f", discoveryv1.AddressTypeIPv4, 8080, "10.0.9.1")},
	}
	healthy := []circuitv1alpha1.EndpointStatus{passing("10.0.0.1"), passing("10.0.0.2"), passing("10.0.0.3")}
	oneDown := []circuitv1alpha1.EndpointStatus{failing("10.0.0.1", 3), passing("10.0.0.2"), passing("10.0.0.3")}
	recorded := func(cb *circuitv1alpha1.CircuitBreaker) *circuitv1alpha1.CircuitBreakerStatus {
		next := cb.DeepCopy()
		planEnforcement(next, &cb.Status, in)
		return &next.Status
	}
	tests := []struct {
		name        string
		prev, next  *circuitv1alpha1.CircuitBreaker
		in          EnforceInput
		routing     circuitv1alpha1.Routing
		served      map[string][]string
		events      []string
		noPlan      bool
		ejectedAddr string
	}{
		{name: "Closed and healthy: every ready endpoint, no event on the first plan",
			next: enforcingBreaker(circuitv1alpha1.StateClosed, true, healthy...), in: in, routing: circuitv1alpha1.RoutingTarget,
			served: map[string][]string{"api-guarded-ipv4": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}}},
		{name: "Closed with one endpoint at the threshold: ejected, with its Event",
			prev: enforcingBreaker(circuitv1alpha1.StateClosed, true, healthy...),
			next: enforcingBreaker(circuitv1alpha1.StateClosed, true, oneDown...), in: in, routing: circuitv1alpha1.RoutingTarget,
			served: map[string][]string{"api-guarded-ipv4": {"10.0.0.2", "10.0.0.3"}}, ejectedAddr: "10.0.0.1",
			events: []string{"Normal/EndpointEjected"}},
		{name: "its first success restores it",
			prev: enforcingBreaker(circuitv1alpha1.StateClosed, true, oneDown...),
			next: enforcingBreaker(circuitv1alpha1.StateClosed, true, healthy...), in: in, routing: circuitv1alpha1.RoutingTarget,
			served: map[string][]string{"api-guarded-ipv4": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
			events: []string{"Normal/EndpointRestored"}},
		{name: "Open with a fallback: the fallback's endpoints, rerouted (Warning), no restore Events",
			prev: enforcingBreaker(circuitv1alpha1.StateClosed, true, oneDown...),
			next: enforcingBreaker(circuitv1alpha1.StateOpen, true, oneDown...), in: in, routing: circuitv1alpha1.RoutingFallback,
			served: map[string][]string{"api-guarded-ipv4": {"10.0.9.1"}}, events: []string{"Warning/TrafficRerouted"}},
		{name: "HalfOpen without a fallback: nothing",
			prev: enforcingBreaker(circuitv1alpha1.StateClosed, false, healthy...),
			next: enforcingBreaker(circuitv1alpha1.StateHalfOpen, false, healthy...), in: in, routing: circuitv1alpha1.RoutingNone,
			served: map[string][]string{}, events: []string{"Warning/TrafficRerouted"}},
		{name: "Open with a fallback that has no ready endpoint: None",
			next: enforcingBreaker(circuitv1alpha1.StateOpen, true, healthy...),
			in:   EnforceInput{Ports: in.Ports, Target: in.Target}, routing: circuitv1alpha1.RoutingNone, served: map[string][]string{}},
		{name: "Closed again: back to the target (Normal)",
			prev: enforcingBreaker(circuitv1alpha1.StateHalfOpen, true, healthy...),
			next: enforcingBreaker(circuitv1alpha1.StateClosed, true, healthy...), in: in, routing: circuitv1alpha1.RoutingTarget,
			served: map[string][]string{"api-guarded-ipv4": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}}, events: []string{"Normal/TrafficRerouted"}},
		{name: "a conflict: no plan, no enforcement status",
			next: enforcingBreaker(circuitv1alpha1.StateClosed, true, healthy...),
			in:   EnforceInput{Conflict: &Problem{circuitv1alpha1.ReasonEnforcementConflict, "taken"}}, noPlan: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			prev := &circuitv1alpha1.CircuitBreakerStatus{}
			if tc.prev != nil {
				prev = recorded(tc.prev)
			}
			plan := planEnforcement(tc.next, prev, tc.in)
			if tc.noPlan {
				g.Expect(plan).To(BeNil())
				g.Expect(tc.next.Status.Enforcement).To(BeNil())
				return
			}
			g.Expect(plan.Ports).To(Equal([]corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}))
			g.Expect(sliceAddrs(plan.Slices)).To(Equal(tc.served))
			g.Expect(tc.next.Status.Enforcement.Routing).To(Equal(tc.routing))
			var events []string
			for _, e := range plan.Events {
				events = append(events, e.EventType+"/"+e.Reason)
			}
			g.Expect(events).To(Equal(tc.events))
			for _, ep := range tc.next.Status.Endpoints {
				g.Expect(ep.Ejected).To(Equal(ep.Address == tc.ejectedAddr), ep.Address)
			}
			wantEjected := int32(0)
			if tc.ejectedAddr != "" {
				wantEjected = 1
			}
			g.Expect(tc.next.Status.Enforcement.EndpointsEjected).To(Equal(wantEjected))
		})
	}
}

func enforcingDecideBreaker(mutate ...func(*circuitv1alpha1.CircuitBreaker)) *circuitv1alpha1.CircuitBreaker {
	return decideBreaker(append([]func(*circuitv1alpha1.CircuitBreaker){func(cb *circuitv1alpha1.CircuitBreaker) {
		cb.Spec.Target = circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromString("http")}}
		cb.Spec.Enforce = &circuitv1alpha1.Enforce{ServiceName: "api-guarded",
			Fallback: &circuitv1alpha1.Fallback{ServiceName: "api-degraded"}}
		cb.Status.Enforcement = &circuitv1alpha1.EnforcementStatus{ServiceName: "api-guarded",
			Routing: circuitv1alpha1.RoutingTarget, EndpointsServed: 2}
	}}, mutate...)...)
}

func TestTheDecisionThatOpensTheCircuitReroutesTheGuardedService(t *testing.T) {
	g := NewWithT(t)
	cb := enforcingDecideBreaker(closedWith(2, nil))
	res := resolvedFor(t, cb)
	res.Enforce = EnforceInput{
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		Target:   []discoveryv1.EndpointSlice{ipSlice("t", discoveryv1.AddressTypeIPv4, 8080, "10.0.0.1", "10.0.0.2")},
		Fallback: []discoveryv1.EndpointSlice{ipSlice("f", discoveryv1.AddressTypeIPv4, 8080, "10.0.9.1")},
	}
	failed := []probe.Result{{Success: false, Reason: circuitv1alpha1.ProbeReasonHTTPStatus, Start: decideNow.Add(-time.Second)}}

	d := decide(cb, res, failed, decideNow.Add(-time.Second), decideNow)
	g.Expect(d.Status.State).To(Equal(circuitv1alpha1.StateOpen))
	g.Expect(d.Status.Enforcement.Routing).To(Equal(circuitv1alpha1.RoutingFallback))
	g.Expect(sliceAddrs(d.Effects.Enforce.Slices)).To(Equal(map[string][]string{"api-guarded-ipv4": {"10.0.9.1"}}))
	g.Expect(d.Effects.Enforce.Events).To(HaveLen(1))
	g.Expect(d.Effects.Enforce.Events[0].Reason).To(Equal(circuitv1alpha1.EventTrafficRerouted))
	g.Expect(d.Effects.Enforce.Events[0].Message).To(ContainSubstring("api-degraded"))

	// Deciding again from the stored status plans the same slices and no Event.
	stored := cb.DeepCopy()
	stored.Status = d.Status
	again := decide(stored, res, nil, decideNow.Add(-time.Second), decideNow)
	g.Expect(again.Effects.Enforce.Slices).To(Equal(d.Effects.Enforce.Slices))
	g.Expect(again.Effects.Enforce.Events).To(BeEmpty())
}

func TestAConflictingServiceSetsReadyFalseAndPlansNothing(t *testing.T) {
	g := NewWithT(t)
	cb := enforcingDecideBreaker(closedWith(0, nil))
	res := resolvedFor(t, cb)
	res.Enforce = EnforceInput{Conflict: &Problem{circuitv1alpha1.ReasonEnforcementConflict, "taken"}}
	d := decide(cb, res, nil, time.Time{}, decideNow)
	g.Expect(d.Effects.Enforce).To(BeNil())
	g.Expect(d.Status.Enforcement).To(BeNil())
	ready := apimeta.FindStatusCondition(d.Status.Conditions, circuitv1alpha1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonEnforcementConflict))
}

// Endpoint 69 of 70 is past status.endpoints (64): its failure count, kept in
// omittedFailingEndpoints, ejects it like any other, and a decision taken
// again from the stored status (as after a restart) keeps it ejected without
// a second Event.
func TestPlanEnforcementEjectsAnEndpointPastTheStatusList(t *testing.T) {
	g := NewWithT(t)
	var addrs []string
	var listed []circuitv1alpha1.EndpointStatus
	for i := range MaxStatusEndpoints + 6 {
		addrs = append(addrs, fmt.Sprintf("10.0.1.%d", 100+i))
		if i < MaxStatusEndpoints {
			listed = append(listed, passing(addrs[i]))
		}
	}
	in := EnforceInput{Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
		Target: []discoveryv1.EndpointSlice{ipSlice("t", discoveryv1.AddressTypeIPv4, 8080, addrs...)}}
	outlier := addrs[68]
	cb := enforcingBreaker(circuitv1alpha1.StateClosed, false, listed...)
	cb.Status.OmittedFailingEndpoints = []circuitv1alpha1.EndpointStatus{failing(outlier, 3)}
	prev := cb.Status.DeepCopy()
	prev.Enforcement = &circuitv1alpha1.EnforcementStatus{ServiceName: "api-guarded", Routing: circuitv1alpha1.RoutingTarget}

	plan := planEnforcement(cb, prev, in)
	g.Expect(sliceAddrs(plan.Slices)["api-guarded-ipv4"]).To(HaveLen(len(addrs) - 1))
	g.Expect(sliceAddrs(plan.Slices)["api-guarded-ipv4"]).NotTo(ContainElement(outlier))
	g.Expect(cb.Status.Endpoints).To(HaveLen(MaxStatusEndpoints))
	g.Expect(cb.Status.OmittedFailingEndpoints).To(HaveLen(1))
	g.Expect(cb.Status.OmittedFailingEndpoints[0].Ejected).To(BeTrue())
	g.Expect(cb.Status.Enforcement.EndpointsEjected).To(BeEquivalentTo(1))
	g.Expect(plan.Events).To(HaveLen(1))
	g.Expect(plan.Events[0].Reason).To(Equal(circuitv1alpha1.EventEndpointEjected))
	g.Expect(plan.Events[0].Message).To(ContainSubstring(outlier))

	stored := cb.DeepCopy()
	again := planEnforcement(stored, &cb.Status, in)
	g.Expect(again.Slices).To(Equal(plan.Slices))
	g.Expect(again.Events).To(BeEmpty())
	g.Expect(stored.Status).To(Equal(cb.Status))
}
