package controller

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// addressMap stands in for the cluster network: EndpointSlices must carry
// non-loopback addresses, so the prober's dialer maps them to loopback listeners.
type addressMap struct {
	mu sync.Mutex
	to map[string]string
}

func (m *addressMap) set(from, to string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.to[from] = to
}

func (m *addressMap) dial(ctx context.Context, network, address string) (net.Conn, error) {
	m.mu.Lock()
	to, ok := m.to[address]
	m.mu.Unlock()
	if !ok {
		// An unmapped cluster address is unreachable, as a dead pod would be.
		return nil, &net.OpError{Op: "dial", Net: network, Err: errRefused}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

var errRefused = &net.AddrError{Err: "connection refused (test network)", Addr: ""}

// serviceFixture is a Service whose endpoints are real HTTP servers.
type serviceFixture struct {
	ns, name string
	net      *addressMap
	targets  map[string]*target // by endpoint address
}

func newServiceFixture(t *testing.T, ns, name string, addrs ...string) *serviceFixture {
	t.Helper()
	f := &serviceFixture{ns: ns, name: name, net: &addressMap{to: map[string]string{}}, targets: map[string]*target{}}
	for _, a := range addrs {
		f.addTarget(t, a)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	NewWithT(t).Expect(k8sClient.Create(context.Background(), svc)).To(Succeed())
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   endpointsFor(addrs...),
	}
	NewWithT(t).Expect(k8sClient.Create(context.Background(), slice)).To(Succeed())
	return f
}

func (f *serviceFixture) addTarget(t *testing.T, addr string) *target {
	tg := newTarget(t)
	f.targets[addr] = tg
	f.net.set(net.JoinHostPort(addr, "8080"), tg.addr)
	return tg
}

// setEndpoints replaces the slice's endpoints.
func (f *serviceFixture) setEndpoints(g Gomega, eps []discoveryv1.Endpoint) {
	slice := &discoveryv1.EndpointSlice{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(f.ns, f.name+"-abc"), slice)).To(Succeed())
	slice.Endpoints = eps
	g.Expect(k8sClient.Update(context.Background(), slice)).To(Succeed())
}

func endpointsFor(addrs ...string) []discoveryv1.Endpoint {
	eps := []discoveryv1.Endpoint{}
	for _, a := range addrs {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "pod-" + a},
		})
	}
	return eps
}

func serviceSpec(name string, port intstr.IntOrString, failurePercent int32) circuitv1alpha1.CircuitBreakerSpec {
	spec := breakerSpec("")
	spec.Target = circuitv1alpha1.Target{Service: &circuitv1alpha1.ServiceTarget{
		Name: name, Port: port, Path: "/healthz", Scheme: circuitv1alpha1.ServiceSchemeHTTP}}
	spec.FailurePercent = failurePercent
	spec.Threshold = 2
	return spec
}

func TestServiceTargetProbesEveryEndpoint(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "user-api", "10.0.1.9", "10.0.1.7", "10.0.1.8")
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "by-name", serviceSpec("user-api", intstr.FromString("http"), 100))
	createBreaker(t, ns, "by-number", serviceSpec("user-api", intstr.FromInt32(80), 100))

	for _, name := range []string{"by-name", "by-number"} {
		g.Eventually(func(g Gomega) {
			cb := getBreaker(g, ns, name)
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
			g.Expect(cb.Status.EndpointsTotal).To(Equal(int32(3)))
			g.Expect(cb.Status.EndpointsFailing).To(BeZero())
			g.Expect(cb.Status.Target).To(HavePrefix("service/user-api:"))
			g.Expect(cb.Status.Endpoints).To(HaveLen(3))
			g.Expect(cb.Status.Endpoints[0].Address).To(Equal("10.0.1.7"), "sorted by address")
			g.Expect(cb.Status.Endpoints[0].Port).To(Equal(int32(8080)), "the slice's port, not the Service's")
			g.Expect(cb.Status.Endpoints[0].TargetRef).To(Equal(&circuitv1alpha1.EndpointRef{Kind: "Pod", Name: "pod-10.0.1.7"}))
			g.Expect(cb.Status.Endpoints[0].LastResult).To(Equal(circuitv1alpha1.ProbeSuccess))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}
	for addr, tg := range f.targets {
		g.Expect(tg.count("/healthz")).To(BeNumerically(">", 0), "endpoint %s is probed", addr)
	}
}

func TestServiceFailurePercentDecidesTheRound(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "svc", "10.0.2.1", "10.0.2.2", "10.0.2.3")
	f.targets["10.0.2.2"].healthy.Store(false)
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "p50", serviceSpec("svc", intstr.FromString("http"), 50))
	createBreaker(t, ns, "p100", serviceSpec("svc", intstr.FromString("http"), 100))
	createBreaker(t, ns, "p30", serviceSpec("svc", intstr.FromString("http"), 30))

	cb := waitState(t, ns, "p30", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.EndpointsFailing).To(Equal(int32(1)))
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonHTTPStatus))
	g.Consistently(func(g Gomega) {
		for _, name := range []string{"p50", "p100"} {
			cb := getBreaker(g, ns, name)
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed), name)
			g.Expect(cb.Status.ConsecutiveFailures).To(BeZero(), name)
		}
	}).WithTimeout(1500 * time.Millisecond).Should(Succeed())
	cb = getBreaker(g, ns, "p50")
	g.Expect(cb.Status.EndpointsTotal).To(Equal(int32(3)))
	g.Expect(cb.Status.EndpointsFailing).To(Equal(int32(1)))
	g.Expect(cb.Status.Endpoints[1].Address).To(Equal("10.0.2.2"))
	g.Expect(cb.Status.Endpoints[1].LastResult).To(Equal(circuitv1alpha1.ProbeFailure))
	g.Expect(cb.Status.Endpoints[1].ConsecutiveFailures).To(BeNumerically(">=", 2))
}

func TestServiceScaledToZeroOpensAndRecovers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "scale", "10.0.3.1", "10.0.3.2", "10.0.3.3")
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "scale", serviceSpec("scale", intstr.FromString("http"), 100))
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "scale").Status.EndpointsTotal).To(Equal(int32(3)))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Not-ready endpoints are not probed; none ready is a failed round.
	notReady := endpointsFor("10.0.3.1")
	notReady[0].Conditions.Ready = ptr.To(false)
	f.setEndpoints(g, notReady)
	cb := waitState(t, ns, "scale", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonNoEndpoints))
	g.Expect(cb.Status.EndpointsTotal).To(BeZero())
	g.Expect(findCondition(cb, circuitv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

	f.setEndpoints(g, endpointsFor("10.0.3.1", "10.0.3.2", "10.0.3.3"))
	cb = waitState(t, ns, "scale", circuitv1alpha1.StateClosed, 10*time.Second)
	g.Expect(cb.Status.EndpointsTotal).To(Equal(int32(3)))
}

func TestServiceProblemsSetReadyFalseAndFailRounds(t *testing.T) {
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "present", "10.0.4.1")
	manual := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manual"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	NewWithT(t).Expect(k8sClient.Create(context.Background(), manual)).To(Succeed())
	startOperatorWithDial(t, ns, f.net.dial)
	cases := map[string]struct {
		spec   circuitv1alpha1.CircuitBreakerSpec
		reason string
	}{
		"missing":   {serviceSpec("absent", intstr.FromString("http"), 100), circuitv1alpha1.ReasonServiceNotFound},
		"bad-port":  {serviceSpec("present", intstr.FromString("grpc"), 100), circuitv1alpha1.ReasonServicePortNotFound},
		"bad-num":   {serviceSpec("present", intstr.FromInt32(81), 100), circuitv1alpha1.ReasonServicePortNotFound},
		"no-slices": {serviceSpec("manual", intstr.FromString("http"), 100), circuitv1alpha1.ReasonServiceWithoutEndpoints},
	}
	for name, tc := range cases {
		createBreaker(t, ns, name, tc.spec)
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			cb := waitState(t, ns, name, circuitv1alpha1.StateOpen, 10*time.Second)
			ready := findCondition(cb, circuitv1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(tc.reason))
			g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonNoEndpoints))
		})
	}

	// Creating the missing Service (with a slice) heals it without polling.
	t.Run("created later", func(t *testing.T) {
		g := NewWithT(t)
		absent := newServiceFixture(t, ns, "absent", "10.0.4.2")
		f.net.set("10.0.4.2:8080", absent.targets["10.0.4.2"].addr)
		annotate(g, ns, "missing", "retry")
		g.Eventually(func(g Gomega) {
			cb := getBreaker(g, ns, "missing")
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
			g.Expect(findCondition(cb, circuitv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})
}

func TestServiceSliceUpdateMidRound(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "mid", "10.0.5.1")
	// 10.0.5.1 hangs: each round takes the whole retryTimeout.
	f.net.set("10.0.5.1:8080", hangingListener(t))
	startOperatorWithDial(t, ns, f.net.dial)
	spec := serviceSpec("mid", intstr.FromString("http"), 100)
	spec.RetryTimeout = "2s"
	spec.Interval = "2s"
	spec.Threshold = 100
	createBreaker(t, ns, "mid", spec)
	time.Sleep(500 * time.Millisecond) // a round is under way

	fresh := f.addTarget(t, "10.0.5.2")
	f.setEndpoints(g, endpointsFor("10.0.5.2"))
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "mid")
		g.Expect(cb.Status.Endpoints).To(HaveLen(1))
		g.Expect(cb.Status.Endpoints[0].Address).To(Equal("10.0.5.2"))
		g.Expect(cb.Status.Endpoints[0].LastResult).To(Equal(circuitv1alpha1.ProbeSuccess))
		g.Expect(cb.Status.ConsecutiveFailures).To(BeZero())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(fresh.count("/healthz")).To(BeNumerically(">", 0))
}

func TestServiceHealthyRoundsWriteNoStatus(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "calm", "10.0.6.1", "10.0.6.2")
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "calm", serviceSpec("calm", intstr.FromString("http"), 100))
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "calm").Status.EndpointsTotal).To(Equal(int32(2)))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	rv := getBreaker(g, ns, "calm").ResourceVersion
	time.Sleep(2 * time.Second)
	g.Expect(getBreaker(g, ns, "calm").ResourceVersion).To(Equal(rv))
}

func keyOf(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
