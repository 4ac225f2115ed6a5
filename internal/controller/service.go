package controller

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// maxStatusEndpoints bounds status.endpoints; endpointsTotal keeps the full count.
const maxStatusEndpoints = 64

// maxOmittedFailing bounds status.omittedFailingEndpoints.
const maxOmittedFailing = 2000

// serviceNameField indexes breakers by the Service they target.
const serviceNameField = ".spec.target.service.name"

// problem is why a Service target cannot be resolved to endpoints.
type problem struct{ reason, message string }

// resolved is a Service target turned into endpoints to probe.
type resolved struct {
	endpoints []probe.Endpoint
	refs      map[probe.Endpoint]*corev1.ObjectReference
	problem   *problem
}

// resolveService reads the Service and its EndpointSlices from the cache and
// returns the ready endpoints on the slice port that matches the Service port.
func (r *CircuitBreakerReconciler) resolveService(ctx context.Context, ns string, st *circuitv1alpha1.ServiceTarget) (resolved, error) {
	svc := &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: st.Name}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return resolved{problem: &problem{circuitv1alpha1.ReasonServiceNotFound,
				fmt.Sprintf("Service %q does not exist in namespace %q; probe rounds fail", st.Name, ns)}}, nil
		}
		return resolved{}, err
	}
	portName, ok := servicePortName(svc, st.Port)
	if !ok {
		return resolved{problem: &problem{circuitv1alpha1.ReasonServicePortNotFound,
			fmt.Sprintf("Service %q has no port %s; probe rounds fail", st.Name, st.Port.String())}}, nil
	}
	list := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: st.Name}); err != nil {
		return resolved{}, err
	}
	if len(list.Items) == 0 && len(svc.Spec.Selector) == 0 {
		return resolved{problem: &problem{circuitv1alpha1.ReasonServiceWithoutEndpoints,
			fmt.Sprintf("Service %q has no selector and no EndpointSlices; probe rounds fail", st.Name)}}, nil
	}
	return readyEndpoints(list.Items, portName), nil
}

// servicePortName finds the Service port a target names, by name or number,
// and returns its name, which is how EndpointSlices name their ports.
func servicePortName(svc *corev1.Service, port intstr.IntOrString) (string, bool) {
	for _, p := range svc.Spec.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.Port == port.IntVal) {
			return p.Name, true
		}
	}
	return "", false
}

// readyEndpoints lists, sorted and without duplicates, the addresses of every
// endpoint whose ready condition is not false, on the slice port named portName.
func readyEndpoints(slices_ []discoveryv1.EndpointSlice, portName string) resolved {
	out := resolved{refs: map[probe.Endpoint]*corev1.ObjectReference{}}
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
				if _, dup := out.refs[e]; dup {
					continue
				}
				out.refs[e] = ep.TargetRef
				out.endpoints = append(out.endpoints, e)
			}
		}
	}
	slices.SortFunc(out.endpoints, compareEndpoints)
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
	n := min(len(eps), maxStatusEndpoints)
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

// breakersForService maps a Service or EndpointSlice to the breakers that target it.
func (r *CircuitBreakerReconciler) breakersForService(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.breakersIndexedBy(ctx, obj, serviceNameField)
}

// breakersIndexedBy maps a Service, or an EndpointSlice by its Service, to the
// breakers whose field (an index of Service names) names it.
func (r *CircuitBreakerReconciler) breakersIndexedBy(ctx context.Context, obj client.Object, field string) []reconcile.Request {
	name := obj.GetName()
	if _, isSlice := obj.(*discoveryv1.EndpointSlice); isSlice {
		name = obj.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
	}
	list := &circuitv1alpha1.CircuitBreakerList{}
	if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{field: name}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, cb := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}})
	}
	return reqs
}

func indexServiceName(obj client.Object) []string {
	cb, ok := obj.(*circuitv1alpha1.CircuitBreaker)
	if !ok || cb.Spec.Target.Service == nil {
		return nil
	}
	return []string{cb.Spec.Target.Service.Name}
}
