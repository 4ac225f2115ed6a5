package decision

import (
	"cmp"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// MaxStatusEndpoints bounds status.endpoints; endpointsTotal keeps the full count.
const MaxStatusEndpoints = 64

// maxOmittedFailing bounds status.omittedFailingEndpoints.
const maxOmittedFailing = 2000

// Problem is why a breaker cannot be probed as specified, or why a Service
// target cannot be resolved to endpoints: a condition reason and a message.
type Problem struct{ Reason, Message string }

// ServiceEndpoints is a Service target turned into endpoints to probe.
type ServiceEndpoints struct {
	Endpoints []probe.Endpoint
	Refs      map[probe.Endpoint]*corev1.ObjectReference
	Problem   *Problem
}

// ServicePortName finds the Service port a target names, by name or number,
// and returns its name, which is how EndpointSlices name their ports.
func ServicePortName(svc *corev1.Service, port intstr.IntOrString) (string, bool) {
	for _, p := range svc.Spec.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.Port == port.IntVal) {
			return p.Name, true
		}
	}
	return "", false
}

// ReadyEndpoints lists, sorted and without duplicates, the addresses of every
// endpoint whose ready condition is not false, on the slice port named portName.
func ReadyEndpoints(slices_ []discoveryv1.EndpointSlice, portName string) ServiceEndpoints {
	out := ServiceEndpoints{Refs: map[probe.Endpoint]*corev1.ObjectReference{}}
	for _, slice := range slices_ {
		if slice.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		port, ok := slicePort(slice.Ports, portName)
		if !ok {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				e := probe.Endpoint{Address: addr, Port: port}
				if _, dup := out.Refs[e]; dup {
					continue
				}
				out.Refs[e] = ep.TargetRef
				out.Endpoints = append(out.Endpoints, e)
			}
		}
	}
	slices.SortFunc(out.Endpoints, compareEndpoints)
	return out
}

func slicePort(ports []discoveryv1.EndpointPort, name string) (int32, bool) {
	for _, p := range ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

func compareEndpoints(a, b probe.Endpoint) int {
	if c := strings.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	return int(a.Port - b.Port)
}

// endpointStatuses turns a round's results into the status of every probed
// endpoint, sorted, carrying each endpoint's failure count forward from the
// previous statuses (allEndpoints). Endpoints that left the Service while the
// round was under way are not reported.
func endpointStatuses(prev []circuitv1alpha1.EndpointStatus, results []probe.EndpointResult,
	refs map[probe.Endpoint]*corev1.ObjectReference) (eps []circuitv1alpha1.EndpointStatus, failing int32) {
	before := map[probe.Endpoint]int32{}
	for _, e := range prev {
		before[probe.Endpoint{Address: e.Address, Port: e.Port}] = e.ConsecutiveFailures
	}
	sorted := slices.Clone(results)
	slices.SortFunc(sorted, func(a, b probe.EndpointResult) int { return compareEndpoints(a.Endpoint, b.Endpoint) })
	for _, res := range sorted {
		if _, current := refs[res.Endpoint]; !current {
			continue
		}
		st := circuitv1alpha1.EndpointStatus{
			Address: res.Address, Port: res.Port, LastResult: circuitv1alpha1.ProbeSuccess, Reason: res.Reason,
		}
		if !res.Success {
			failing++
			st.LastResult = circuitv1alpha1.ProbeFailure
			st.ConsecutiveFailures = before[res.Endpoint] + 1
		}
		if ref := refs[res.Endpoint]; ref != nil {
			st.TargetRef = &circuitv1alpha1.EndpointRef{Kind: ref.Kind, Name: ref.Name}
		}
		eps = append(eps, st)
	}
	return eps, failing
}

// allEndpoints is what status records of every endpoint: the listed ones and
// the failing ones the list leaves out, sorted. An endpoint in neither
// succeeded in the last round.
func allEndpoints(st *circuitv1alpha1.CircuitBreakerStatus) []circuitv1alpha1.EndpointStatus {
	return append(slices.Clone(st.Endpoints), st.OmittedFailingEndpoints...)
}

// setEndpoints records the sorted statuses eps (as allEndpoints returns them,
// or every probed endpoint) in st: the first 64 in endpoints, the failing
// rest in omittedFailingEndpoints, those that failed longest if there are too many.
func setEndpoints(st *circuitv1alpha1.CircuitBreakerStatus, eps []circuitv1alpha1.EndpointStatus) {
	st.Endpoints, st.OmittedFailingEndpoints = nil, nil
	if len(eps) == 0 {
		return
	}
	n := min(len(eps), MaxStatusEndpoints)
	st.Endpoints = slices.Clone(eps[:n])
	var failing []circuitv1alpha1.EndpointStatus
	for _, e := range eps[n:] {
		if e.LastResult == circuitv1alpha1.ProbeFailure {
			failing = append(failing, e)
		}
	}
	if len(failing) > maxOmittedFailing {
		slices.SortStableFunc(failing, func(a, b circuitv1alpha1.EndpointStatus) int {
			return cmp.Or(compareBool(b.Ejected, a.Ejected), cmp.Compare(b.ConsecutiveFailures, a.ConsecutiveFailures))
		})
		failing = failing[:maxOmittedFailing]
		slices.SortFunc(failing, func(a, b circuitv1alpha1.EndpointStatus) int {
			return compareEndpoints(probe.Endpoint{Address: a.Address, Port: a.Port}, probe.Endpoint{Address: b.Address, Port: b.Port})
		})
	}
	st.OmittedFailingEndpoints = failing
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// targetSummary is what the TARGET column shows: the URL without credentials,
// or service/<name>:<port>.
func targetSummary(t circuitv1alpha1.Target) string {
	if t.Service != nil {
		return "service/" + t.Service.Name + ":" + t.Service.Port.String()
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return ""
	}
	return u.Redacted()
}
