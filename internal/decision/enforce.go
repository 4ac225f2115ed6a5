package decision

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// EnforceInput is what resolve read for spec.enforce: the target's and the
// fallback's EndpointSlices, the target's ports, and whether another owner
// holds the guarded Service's name.
type EnforceInput struct {
	// conflict is set when the guarded Service or one of its slices exists and is
	// not controlled by the breaker: nothing is written then.
	Conflict *Problem
	// Ports are the target Service's ports; nil while it cannot be read.
	Ports    []corev1.ServicePort
	Target   []discoveryv1.EndpointSlice
	Fallback []discoveryv1.EndpointSlice
}

// EnforcementPlan is what the guarded Service and its slices should hold.
type EnforcementPlan struct {
	ServiceName string
	// Ports are the guarded Service's ports; nil leaves an existing Service as
	// it is (the target's ports are unknown) and creates none.
	Ports  []corev1.ServicePort
	Slices []discoveryv1.EndpointSlice
	Events []EnforcementEvent
}

// EnforcementEvent is an Event about the guarded Service, emitted after the write.
type EnforcementEvent struct {
	EventType, Reason, Action, Message string
}

// ejectionPolicy is spec.enforce.ejection with its defaults; off when unset.
type ejectionPolicy struct {
	on         bool
	failures   int32
	maxPercent int32
}

func ejectionPolicyOf(e *circuitv1alpha1.Ejection) ejectionPolicy {
	if e == nil {
		return ejectionPolicy{}
	}
	return ejectionPolicy{on: true,
		failures:   orDefault(e.ConsecutiveFailures, circuitv1alpha1.DefaultEjectionConsecutiveFailures),
		maxPercent: orDefault(e.MaxEjectionPercent, circuitv1alpha1.DefaultMaxEjectionPercent)}
}

// ejectedAddresses picks the endpoints to eject from the recorded per-endpoint
// failure counts: those that failed at least p.failures rounds in a row, the
// longest-failing first (and, among equals, those already ejected, so that the
// choice does not flap), at most maxPercent of the ready endpoints, and never
// the last one unless every ready endpoint failed the last round.
func ejectedAddresses(p ejectionPolicy, eps []circuitv1alpha1.EndpointStatus, ready []string) map[string]bool {
	out := map[string]bool{}
	if !p.on || len(ready) == 0 {
		return out
	}
	isReady := map[string]bool{}
	for _, a := range ready {
		isReady[a] = true
	}
	var candidates []circuitv1alpha1.EndpointStatus
	failedRound := 0
	for _, e := range eps {
		if !isReady[e.Address] {
			continue
		}
		if e.LastResult == circuitv1alpha1.ProbeFailure {
			failedRound++
		}
		if e.ConsecutiveFailures >= p.failures {
			candidates = append(candidates, e)
		}
	}
	limit := len(ready) * int(p.maxPercent) / 100
	if failedRound < len(ready) {
		limit = min(limit, len(ready)-1)
	}
	slices.SortFunc(candidates, func(a, b circuitv1alpha1.EndpointStatus) int {
		if c := cmp.Compare(b.ConsecutiveFailures, a.ConsecutiveFailures); c != 0 {
			return c
		}
		if a.Ejected != b.Ejected {
			if a.Ejected {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Address, b.Address)
	})
	for _, e := range candidates {
		if len(out) >= limit {
			break
		}
		out[e.Address] = true
	}
	return out
}

// planEnforcement decides what the guarded Service serves from the decided
// status (cb.Status after the state machine moved), marks the ejected
// endpoints in it, records status.enforcement, and lists the Events that
// compare the new enforcement with the recorded one (prev). It is pure.
func planEnforcement(cb *circuitv1alpha1.CircuitBreaker, prev *circuitv1alpha1.CircuitBreakerStatus, in EnforceInput) *EnforcementPlan {
	e := cb.Spec.Enforce
	st := &cb.Status
	// Every endpoint, listed in status.endpoints or not, may be ejected.
	eps := allEndpoints(st)
	defer setEndpoints(st, eps)
	for i := range eps {
		eps[i].Ejected = false
	}
	if e == nil || in.Conflict != nil {
		st.Enforcement = nil
		return nil
	}
	plan := &EnforcementPlan{ServiceName: e.ServiceName, Ports: guardedPorts(in.Ports)}
	routing := circuitv1alpha1.RoutingTarget
	ejected := map[string]bool{}
	if st.State == circuitv1alpha1.StateClosed {
		ejected = ejectedAddresses(ejectionPolicyOf(e.Ejection), eps, readyAddresses(in.Target))
		for i := range eps {
			eps[i].Ejected = ejected[eps[i].Address]
		}
		plan.Slices = guardedSlices(e.ServiceName, in.Target, ejected)
	} else {
		routing = circuitv1alpha1.RoutingNone
		if e.Fallback != nil {
			plan.Slices = guardedSlices(e.ServiceName, in.Fallback, nil)
			if len(plan.Slices) > 0 {
				routing = circuitv1alpha1.RoutingFallback
			}
		}
	}
	st.Enforcement = &circuitv1alpha1.EnforcementStatus{ServiceName: e.ServiceName, Routing: routing,
		EndpointsServed: servedCount(plan.Slices), EndpointsEjected: int32(len(ejected))}
	plan.Events = enforcementEvents(prev, st, eps, e)
	return plan
}

// enforcementEvents compares the recorded enforcement with the new one (next,
// whose endpoints are eps). Ejections and restorations are reported only while
// the target serves before and after; a change of routing is reported once,
// as TrafficRerouted.
func enforcementEvents(prev, next *circuitv1alpha1.CircuitBreakerStatus, eps []circuitv1alpha1.EndpointStatus,
	e *circuitv1alpha1.Enforce) []EnforcementEvent {
	var out []EnforcementEvent
	before := prev.Enforcement
	after := next.Enforcement
	if before != nil && before.Routing != after.Routing {
		ev := EnforcementEvent{EventType: corev1.EventTypeWarning, Reason: circuitv1alpha1.EventTrafficRerouted, Action: "Reroute"}
		switch after.Routing {
		case circuitv1alpha1.RoutingTarget:
			ev.EventType = corev1.EventTypeNormal
			ev.Message = fmt.Sprintf("Service %s routes to the target's %d ready endpoints again", e.ServiceName, after.EndpointsServed)
		case circuitv1alpha1.RoutingFallback:
			ev.Message = fmt.Sprintf("Service %s routes to fallback Service %s (%d endpoints) while the circuit is %s",
				e.ServiceName, e.Fallback.ServiceName, after.EndpointsServed, next.State)
		default:
			ev.Message = fmt.Sprintf("Service %s has no endpoints while the circuit is %s: connections are refused",
				e.ServiceName, next.State)
		}
		out = append(out, ev)
	}
	if after.Routing != circuitv1alpha1.RoutingTarget {
		return out
	}
	wasEjected := map[string]bool{}
	if before != nil && before.Routing == circuitv1alpha1.RoutingTarget {
		for _, ep := range allEndpoints(prev) {
			wasEjected[ep.Address] = ep.Ejected
		}
	}
	for _, ep := range eps {
		switch {
		case ep.Ejected && !wasEjected[ep.Address]:
			out = append(out, EnforcementEvent{corev1.EventTypeNormal, circuitv1alpha1.EventEndpointEjected, "Eject",
				fmt.Sprintf("Endpoint %s (%s) ejected from Service %s after %d failed probe rounds in a row",
					ep.Address, refName(ep.TargetRef), e.ServiceName, ep.ConsecutiveFailures)})
		case !ep.Ejected && wasEjected[ep.Address]:
			out = append(out, EnforcementEvent{corev1.EventTypeNormal, circuitv1alpha1.EventEndpointRestored, "Restore",
				fmt.Sprintf("Endpoint %s (%s) restored to Service %s after a successful probe round",
					ep.Address, refName(ep.TargetRef), e.ServiceName)})
		}
	}
	return out
}

func refName(ref *circuitv1alpha1.EndpointRef) string {
	if ref == nil {
		return "no target"
	}
	return ref.Kind + " " + ref.Name
}

// guardedPorts are the target Service's ports as a selectorless Service has
// them: names, protocols and ports (the slices give the endpoints' ports).
func guardedPorts(ports []corev1.ServicePort) []corev1.ServicePort {
	if len(ports) == 0 {
		return nil
	}
	out := make([]corev1.ServicePort, 0, len(ports))
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, corev1.ServicePort{Name: p.Name, Protocol: proto, Port: p.Port, AppProtocol: p.AppProtocol})
	}
	return out
}

// readyAddresses lists the addresses of the ready endpoints of IP slices.
func readyAddresses(src []discoveryv1.EndpointSlice) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range src {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, ep := range s.Endpoints {
			if isReady(ep) && !seen[ep.Addresses[0]] {
				seen[ep.Addresses[0]] = true
				out = append(out, ep.Addresses[0])
			}
		}
	}
	slices.Sort(out)
	return out
}

func isReady(ep discoveryv1.Endpoint) bool {
	return len(ep.Addresses) > 0 && (ep.Conditions.Ready == nil || *ep.Conditions.Ready)
}

// maxSliceEndpoints is the API server's limit on the endpoints of one slice.
const maxSliceEndpoints = 1000

// guardedSlices are the guarded Service's EndpointSlices: the ready endpoints
// of src minus the skipped addresses, one slice per address type and port set,
// named <service>-<ipv4|ipv6>[-<n>] so that the same content always lands in
// the same slice. No endpoint means no slice.
func guardedSlices(service string, src []discoveryv1.EndpointSlice, skip map[string]bool) []discoveryv1.EndpointSlice {
	type group struct {
		slice discoveryv1.EndpointSlice
		seen  map[string]bool
	}
	groups := map[string]*group{}
	for _, s := range src {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := slices.Clone(s.Ports)
		slices.SortFunc(ports, func(a, b discoveryv1.EndpointPort) int { return strings.Compare(portKey(a), portKey(b)) })
		key := string(s.AddressType) + "|"
		for _, p := range ports {
			key += portKey(p) + ";"
		}
		g := groups[key]
		if g == nil {
			g = &group{slice: discoveryv1.EndpointSlice{AddressType: s.AddressType, Ports: ports}, seen: map[string]bool{}}
			groups[key] = g
		}
		for _, ep := range s.Endpoints {
			if !isReady(ep) || skip[ep.Addresses[0]] || g.seen[ep.Addresses[0]] || len(g.slice.Endpoints) >= maxSliceEndpoints {
				continue
			}
			g.seen[ep.Addresses[0]] = true
			ready := true
			g.slice.Endpoints = append(g.slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{ep.Addresses[0]},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: ep.Conditions.Terminating},
				TargetRef:  ep.TargetRef, NodeName: ep.NodeName, Zone: ep.Zone,
			})
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k, g := range groups {
			if len(g.slice.Endpoints) > 0 && !yield(k) {
				return
			}
		}
	})
	out := make([]discoveryv1.EndpointSlice, 0, len(keys))
	perFamily := map[discoveryv1.AddressType]int{}
	for _, k := range keys {
		s := groups[k].slice
		slices.SortFunc(s.Endpoints, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
		name := service + "-" + strings.ToLower(string(s.AddressType))
		if n := perFamily[s.AddressType]; n > 0 {
			name += fmt.Sprintf("-%d", n)
		}
		perFamily[s.AddressType]++
		s.Name = name
		s.Labels = map[string]string{
			discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy:   circuitv1alpha1.EndpointSliceManager,
		}
		out = append(out, s)
	}
	return out
}

func portKey(p discoveryv1.EndpointPort) string {
	var name, proto string
	var port int32
	if p.Name != nil {
		name = *p.Name
	}
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	if p.Port != nil {
		port = *p.Port
	}
	return fmt.Sprintf("%s/%s/%d", name, proto, port)
}

func servedCount(ss []discoveryv1.EndpointSlice) int32 {
	seen := map[string]bool{}
	for _, s := range ss {
		for _, ep := range s.Endpoints {
			seen[ep.Addresses[0]] = true
		}
	}
	return int32(len(seen))
}
