package decision

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// These tests need no control plane: they run in `make test-unit` (-short).

func TestParseSpecFillsInTheAPIDefaultsForUnsetFields(t *testing.T) {
	g := NewWithT(t)
	s, err := ParseSpec(circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{URL: "http://api.example:8080/healthz"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Policy.Threshold).To(Equal(circuitv1alpha1.DefaultThreshold))
	g.Expect(s.Policy.SuccessThreshold).To(Equal(circuitv1alpha1.DefaultSuccessThreshold))
	g.Expect(s.Policy.Timeout).To(Equal(mustDuration(t, circuitv1alpha1.DefaultTimeout)))
	g.Expect(s.Interval).To(Equal(mustDuration(t, circuitv1alpha1.DefaultInterval)))
	g.Expect(s.Target.Timeout).To(Equal(mustDuration(t, circuitv1alpha1.DefaultRetryTimeout)))
	g.Expect(s.Target.Scheme).To(Equal(probe.HTTP))
	g.Expect(s.Target.Expected).To(Equal(probe.DefaultStatuses))
}

func TestParseSpecReadsEveryField(t *testing.T) {
	g := NewWithT(t)
	s, err := ParseSpec(circuitv1alpha1.CircuitBreakerSpec{
		Target:           circuitv1alpha1.Target{URL: "tcp://db.example:5432"},
		Threshold:        3,
		SuccessThreshold: 2,
		Timeout:          "1m30s",
		RetryTimeout:     "250ms",
		Interval:         "2s",
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Policy.Threshold).To(Equal(int32(3)))
	g.Expect(s.Policy.SuccessThreshold).To(Equal(int32(2)))
	g.Expect(s.Policy.Timeout).To(Equal(90 * time.Second))
	g.Expect(s.Interval).To(Equal(2 * time.Second))
	g.Expect(s.Target.Timeout).To(Equal(250 * time.Millisecond))
	g.Expect(s.Target.Scheme).To(Equal(probe.TCP))
	g.Expect(s.Target.Address).To(Equal("db.example:5432"))
}

func TestParseSpecRefusesWhatAdmissionShouldHaveRefusedNamingTheField(t *testing.T) {
	url := circuitv1alpha1.Target{URL: "http://h/"}
	tests := []struct {
		name string
		spec circuitv1alpha1.CircuitBreakerSpec
		want string
	}{
		{"garbage timeout", circuitv1alpha1.CircuitBreakerSpec{Target: url, Timeout: "soon"}, `timeout "soon"`},
		{"zero interval", circuitv1alpha1.CircuitBreakerSpec{Target: url, Interval: "0s"}, `interval "0s"`},
		{"negative retryTimeout", circuitv1alpha1.CircuitBreakerSpec{Target: url, RetryTimeout: "-1s"}, `retryTimeout "-1s"`},
		{"bad status range", circuitv1alpha1.CircuitBreakerSpec{Target: url,
			HTTP: &circuitv1alpha1.HTTPProbe{ExpectedStatuses: []circuitv1alpha1.StatusRange{"399-200"}}}, "http.expectedStatuses"},
		{"unsupported scheme", circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{URL: "ftp://h/x"}}, "target.url"},
		{"tcp without port", circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{URL: "tcp://h"}}, "target."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec(tc.spec)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

func TestParseSpecOfAServiceTargetDefaultsSchemePathAndFailurePercent(t *testing.T) {
	g := NewWithT(t)
	s, err := ParseSpec(circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{
		Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromString("http")}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.Target.Scheme).To(Equal(probe.HTTP))
	g.Expect(s.Target.Round).NotTo(BeNil())
	g.Expect(s.Target.Round.Path).To(Equal("/"))
	g.Expect(s.Target.Round.FailurePercent).To(Equal(int(circuitv1alpha1.DefaultFailurePercent)))

	tcp, err := ParseSpec(circuitv1alpha1.CircuitBreakerSpec{FailurePercent: 50, Target: circuitv1alpha1.Target{
		Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromInt32(5432), Scheme: circuitv1alpha1.ServiceSchemeTCP}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tcp.Target.Scheme).To(Equal(probe.TCP))
	g.Expect(tcp.Target.Round.FailurePercent).To(Equal(50))
}

// The spec ID changes with anything that changes what is probed or how, so
// that results of an older spec are dropped, and never holds a secret value.
func TestParseSpecIDChangesWithHowTheTargetIsProbedButHoldsNoValue(t *testing.T) {
	g := NewWithT(t)
	base := circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{URL: "https://api.example/healthz"}}
	id := func(mutate func(*circuitv1alpha1.CircuitBreakerSpec)) string {
		spec := *base.DeepCopy()
		mutate(&spec)
		s, err := ParseSpec(spec)
		g.Expect(err).NotTo(HaveOccurred())
		return s.SpecID
	}
	unchanged := id(func(*circuitv1alpha1.CircuitBreakerSpec) {})
	g.Expect(id(func(s *circuitv1alpha1.CircuitBreakerSpec) { s.Threshold = 9 })).To(Equal(unchanged),
		"the threshold does not change what is probed")
	g.Expect(id(func(s *circuitv1alpha1.CircuitBreakerSpec) { s.Target.URL = "https://api.example/ready" })).NotTo(Equal(unchanged))
	g.Expect(id(func(s *circuitv1alpha1.CircuitBreakerSpec) { s.RetryTimeout = "1s" })).NotTo(Equal(unchanged))
	g.Expect(id(func(s *circuitv1alpha1.CircuitBreakerSpec) {
		s.HTTP = &circuitv1alpha1.HTTPProbe{ExpectedStatuses: []circuitv1alpha1.StatusRange{"204"}}
	})).NotTo(Equal(unchanged))
	withHeader := id(func(s *circuitv1alpha1.CircuitBreakerSpec) {
		s.HTTP = &circuitv1alpha1.HTTPProbe{Headers: []circuitv1alpha1.HTTPHeader{{Name: "Authorization", Value: ptr.To("Bearer s3cret")}}}
	})
	g.Expect(withHeader).NotTo(Equal(unchanged))
	g.Expect(withHeader).NotTo(ContainSubstring("s3cret"))
}

func TestTargetSummaryHidesCredentialsAndNamesServices(t *testing.T) {
	tests := []struct {
		name   string
		target circuitv1alpha1.Target
		want   string
	}{
		{"plain url", circuitv1alpha1.Target{URL: "http://api.example:8080/healthz"}, "http://api.example:8080/healthz"},
		{"password redacted", circuitv1alpha1.Target{URL: "https://user:pw@api.example/x"}, "https://user:xxxxx@api.example/x"},
		{"tcp", circuitv1alpha1.Target{URL: "tcp://db.example:5432"}, "tcp://db.example:5432"},
		{"unparsable url", circuitv1alpha1.Target{URL: "http://[::1"}, ""},
		{"service by port name", circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromString("http")}}, "service/api:http"},
		{"service by port number", circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromInt32(8080)}}, "service/api:8080"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(targetSummary(tc.target)).To(Equal(tc.want))
		})
	}
}

// slice is an EndpointSlice of Service api with one port and the given endpoints.
func slice(portName string, port int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port)}},
		Endpoints:   eps,
	}
}

func endpoint(ready *bool, pod string, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ready},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
}

func TestReadyEndpointsListsReadyAddressesOnTheNamedPortSortedWithoutDuplicates(t *testing.T) {
	g := NewWithT(t)
	fqdn := slice("http", 80, endpoint(nil, "f", "api.example"))
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	got := ReadyEndpoints([]discoveryv1.EndpointSlice{
		slice("http", 8080,
			endpoint(ptr.To(true), "b", "10.0.0.2"),
			endpoint(nil, "a", "10.0.0.1"), // readiness unknown counts as ready
			endpoint(ptr.To(false), "c", "10.0.0.3"),
		),
		// The same endpoint in a second slice (as during a slice's replacement).
		slice("http", 8080, endpoint(ptr.To(true), "b", "10.0.0.2")),
		slice("metrics", 9090, endpoint(ptr.To(true), "d", "10.0.0.4")),
		fqdn,
	}, "http")
	g.Expect(got.Endpoints).To(Equal([]probe.Endpoint{{Address: "10.0.0.1", Port: 8080}, {Address: "10.0.0.2", Port: 8080}}))
	g.Expect(got.Refs).To(HaveLen(2))
	g.Expect(got.Refs[probe.Endpoint{Address: "10.0.0.2", Port: 8080}].Name).To(Equal("b"))
	g.Expect(got.Problem).To(BeNil())
}

func TestReadyEndpointsMatchesTheUnnamedPortOfASinglePortService(t *testing.T) {
	g := NewWithT(t)
	got := ReadyEndpoints([]discoveryv1.EndpointSlice{slice("", 80, endpoint(nil, "a", "10.0.0.1"))}, "")
	g.Expect(got.Endpoints).To(Equal([]probe.Endpoint{{Address: "10.0.0.1", Port: 80}}))
}

func TestServicePortNameFindsThePortByNameOrNumber(t *testing.T) {
	g := NewWithT(t)
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "admin", Port: 9000}}}}
	name, ok := ServicePortName(svc, intstr.FromInt32(9000))
	g.Expect(ok).To(BeTrue())
	g.Expect(name).To(Equal("admin"))
	name, ok = ServicePortName(svc, intstr.FromString("http"))
	g.Expect(ok).To(BeTrue())
	g.Expect(name).To(Equal("http"))
	_, ok = ServicePortName(svc, intstr.FromString("grpc"))
	g.Expect(ok).To(BeFalse())
	_, ok = ServicePortName(svc, intstr.FromInt32(8080))
	g.Expect(ok).To(BeFalse())
}

func TestEndpointStatusesCountsFailuresForwardAndDropsEndpointsThatLeft(t *testing.T) {
	g := NewWithT(t)
	a := probe.Endpoint{Address: "10.0.0.1", Port: 80}
	b := probe.Endpoint{Address: "10.0.0.2", Port: 80}
	gone := probe.Endpoint{Address: "10.0.0.9", Port: 80}
	prev := []circuitv1alpha1.EndpointStatus{
		{Address: a.Address, Port: a.Port, LastResult: circuitv1alpha1.ProbeFailure, ConsecutiveFailures: 2},
		{Address: b.Address, Port: b.Port, LastResult: circuitv1alpha1.ProbeFailure, ConsecutiveFailures: 4},
	}
	results := []probe.EndpointResult{ // out of order, as a round may finish
		{Endpoint: gone, Reason: probe.ReasonTimeout},
		{Endpoint: b, Success: true, Reason: probe.ReasonOK},
		{Endpoint: a, Reason: probe.ReasonHTTPStatus},
	}
	refs := map[probe.Endpoint]*corev1.ObjectReference{a: {Kind: "Pod", Name: "pod-a"}, b: nil}
	eps, failing := endpointStatuses(prev, results, refs)
	g.Expect(failing).To(Equal(int32(1)))
	g.Expect(eps).To(Equal([]circuitv1alpha1.EndpointStatus{
		{Address: a.Address, Port: a.Port, LastResult: circuitv1alpha1.ProbeFailure, Reason: circuitv1alpha1.ProbeReasonHTTPStatus,
			ConsecutiveFailures: 3, TargetRef: &circuitv1alpha1.EndpointRef{Kind: "Pod", Name: "pod-a"}},
		{Address: b.Address, Port: b.Port, LastResult: circuitv1alpha1.ProbeSuccess, Reason: circuitv1alpha1.ProbeReasonOK},
	}))
}

// 70 endpoints: status lists the first 64, says 6 are left out, and keeps the
// failure counts of the failing ones among those 6 from round to round.
func TestStatusListsAtMost64EndpointsAndKeepsTheFailingRestWithTheirCounts(t *testing.T) {
	g := NewWithT(t)
	svc := ServiceEndpoints{Refs: map[probe.Endpoint]*corev1.ObjectReference{}}
	var eps []probe.Endpoint
	for i := range MaxStatusEndpoints + 6 {
		e := probe.Endpoint{Address: "10.0.1.1", Port: int32(1000 + i)}
		svc.Refs[e] = nil
		eps = append(eps, e)
	}
	// Ports 1000 (listed), 1064 and 1069 (left out) fail; the others succeed.
	failingPorts := map[int32]bool{1000: true, 1064: true, 1069: true}
	round := probe.Result{Start: time.Unix(1000, 0)}
	for _, e := range eps {
		round.Endpoints = append(round.Endpoints, probe.EndpointResult{Endpoint: e, Success: !failingPorts[e.Port]})
	}
	cb := &circuitv1alpha1.CircuitBreaker{Spec: circuitv1alpha1.CircuitBreakerSpec{Target: circuitv1alpha1.Target{
		Service: &circuitv1alpha1.ServiceTarget{Name: "api", Port: intstr.FromInt32(80)}}}}
	s := statusFromAPI(cb.Status, time.Unix(1000, 0))
	for range 3 {
		recordStatus(cb, s, []probe.Result{round}, svc)
	}
	st := cb.Status
	g.Expect(st.Endpoints).To(HaveLen(MaxStatusEndpoints))
	g.Expect(st.EndpointsTotal).To(BeEquivalentTo(MaxStatusEndpoints + 6))
	g.Expect(st.EndpointsOmitted).To(BeEquivalentTo(6))
	g.Expect(st.EndpointsFailing).To(BeEquivalentTo(3))
	g.Expect(st.Endpoints[0].ConsecutiveFailures).To(BeEquivalentTo(3))
	g.Expect(st.OmittedFailingEndpoints).To(HaveLen(2))
	for i, port := range []int32{1064, 1069} {
		g.Expect(st.OmittedFailingEndpoints[i].Port).To(Equal(port))
		g.Expect(st.OmittedFailingEndpoints[i].ConsecutiveFailures).To(BeEquivalentTo(3), "port %d", port)
	}
}

// Past maxOmittedFailing failing endpoints left out, those that failed longest
// (the ejected first) are kept, sorted by address and port.
func TestSetEndpointsKeepsTheLongestFailingWhenTooManyFail(t *testing.T) {
	g := NewWithT(t)
	var eps []circuitv1alpha1.EndpointStatus
	for i := range MaxStatusEndpoints + maxOmittedFailing + 2 {
		eps = append(eps, circuitv1alpha1.EndpointStatus{Address: "10.0.1.1", Port: int32(1000 + i),
			LastResult: circuitv1alpha1.ProbeFailure, ConsecutiveFailures: 1})
	}
	last := len(eps) - 1
	eps[last].ConsecutiveFailures = 5
	eps[last-1].Ejected, eps[last-1].ConsecutiveFailures = true, 3
	st := &circuitv1alpha1.CircuitBreakerStatus{}
	setEndpoints(st, eps)
	g.Expect(st.Endpoints).To(HaveLen(MaxStatusEndpoints))
	g.Expect(st.OmittedFailingEndpoints).To(HaveLen(maxOmittedFailing))
	kept := st.OmittedFailingEndpoints
	g.Expect(kept[len(kept)-2:]).To(Equal(eps[last-1:]))
	g.Expect(kept[0].Port).To(BeEquivalentTo(1000 + MaxStatusEndpoints))
	g.Expect(allEndpoints(st)).To(HaveLen(MaxStatusEndpoints + maxOmittedFailing))
}

func mustDuration(t *testing.T, d circuitv1alpha1.GoDuration) time.Duration {
	t.Helper()
	v, err := time.ParseDuration(string(d))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
