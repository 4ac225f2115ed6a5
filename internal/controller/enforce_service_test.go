package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// enforceSpec guards Service name through name-guarded, ejecting an endpoint
// after 3 failed rounds, with fallback (if not "") while the circuit is not Closed.
func enforceSpec(name, fallback string) circuitv1alpha1.CircuitBreakerSpec {
	spec := serviceSpec(name, intstr.FromString("http"), 100)
	spec.Enforce = &circuitv1alpha1.Enforce{ServiceName: name + "-guarded",
		Ejection: &circuitv1alpha1.Ejection{ConsecutiveFailures: 3, MaxEjectionPercent: 50}}
	if fallback != "" {
		spec.Enforce.Fallback = &circuitv1alpha1.Fallback{ServiceName: fallback}
	}
	return spec
}

// guardedAddresses reads the guarded Service's slices straight from the API
// server: the addresses they hold, sorted as the operator writes them.
func guardedAddresses(g Gomega, ns, service string) []string {
	list := &discoveryv1.EndpointSliceList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns),
		client.MatchingLabels{discoveryv1.LabelServiceName: service})).To(Succeed())
	out := []string{}
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			out = append(out, ep.Addresses...)
		}
	}
	return out
}

func TestEnforceCreatesTheGuardedServiceAndSlicesAndWritesNothingWhileNothingChanges(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "user-api", "10.0.11.1", "10.0.11.2", "10.0.11.3")
	target := &corev1.Service{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "user-api"), target)).To(Succeed())
	target.Spec.Ports = append(target.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP})
	g.Expect(k8sClient.Update(context.Background(), target)).To(Succeed())
	startOperatorWithDial(t, ns, f.net.dial)
	cb := createBreaker(t, ns, "guard", enforceSpec("user-api", ""))

	g.Eventually(func(g Gomega) {
		got := getBreaker(g, ns, "guard")
		g.Expect(got.Status.Enforcement).To(Equal(&circuitv1alpha1.EnforcementStatus{ServiceName: "user-api-guarded",
			Routing: circuitv1alpha1.RoutingTarget, EndpointsServed: 3}))
		g.Expect(guardedAddresses(g, ns, "user-api-guarded")).To(Equal([]string{"10.0.11.1", "10.0.11.2", "10.0.11.3"}))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	svc := &corev1.Service{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "user-api-guarded"), svc)).To(Succeed())
	g.Expect(svc.Spec.Selector).To(BeEmpty(), "selectorless: no EndpointSlice controller fills it")
	g.Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())
	g.Expect(svc.Spec.Ports).To(HaveLen(2))
	for i, want := range []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "metrics", Port: 9090}} {
		g.Expect(svc.Spec.Ports[i].Name).To(Equal(want.Name))
		g.Expect(svc.Spec.Ports[i].Port).To(Equal(want.Port))
		g.Expect(svc.Spec.Ports[i].Protocol).To(Equal(corev1.ProtocolTCP))
	}
	expectControlledBy(g, svc, cb)

	slice := &discoveryv1.EndpointSlice{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "user-api-guarded-ipv4"), slice)).To(Succeed())
	g.Expect(slice.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, "user-api-guarded"))
	g.Expect(slice.Labels).To(HaveKeyWithValue(discoveryv1.LabelManagedBy, circuitv1alpha1.EndpointSliceManager))
	g.Expect(slice.Ports).To(Equal([]discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}}))
	g.Expect(slice.Endpoints[0].TargetRef).To(Equal(&corev1.ObjectReference{Kind: "Pod", Name: "pod-10.0.11.1"}))
	expectControlledBy(g, slice, cb)

	// Healthy rounds change nothing: no write to the breaker, the Service or the slice.
	rvs := func() []string {
		got := getBreaker(g, ns, "guard")
		g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "user-api-guarded"), svc)).To(Succeed())
		g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "user-api-guarded-ipv4"), slice)).To(Succeed())
		return []string{got.ResourceVersion, svc.ResourceVersion, slice.ResourceVersion}
	}
	before := rvs()
	time.Sleep(2 * time.Second)
	g.Expect(rvs()).To(Equal(before))

	// A hand edit of the slice is undone.
	slice.Endpoints = slice.Endpoints[:1]
	g.Expect(k8sClient.Update(context.Background(), slice)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "user-api-guarded")).To(HaveLen(3))
	}).WithTimeout(5 * time.Second).Should(Succeed())
}

func expectControlledBy(g Gomega, obj metav1.Object, cb *circuitv1alpha1.CircuitBreaker) {
	ref := metav1.GetControllerOf(obj)
	g.Expect(ref).NotTo(BeNil(), "an owner reference, so that the garbage collector deletes it with the breaker")
	g.Expect(ref.Kind).To(Equal("CircuitBreaker"))
	g.Expect(ref.Name).To(Equal(cb.Name))
	g.Expect(ref.UID).To(Equal(cb.UID))
	g.Expect(ptr.Deref(ref.BlockOwnerDeletion, false)).To(BeFalse(),
		"blocking needs update on circuitbreakers/finalizers, which the manager is not granted")
}

// startEnforcing runs the operator on a fresh namespace with a Service name
// of addrs and a breaker name guarding it, and waits until the guarded
// Service serves every endpoint.
func startEnforcing(t *testing.T, name string, addrs ...string) (string, *serviceFixture) {
	t.Helper()
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, name, addrs...)
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, name, enforceSpec(name, ""))
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, name+"-guarded")).To(HaveLen(len(addrs)))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return ns, f
}

func TestEnforceEjectsAFailingEndpointAndRestoresItAfterOneGoodRound(t *testing.T) {
	g := NewWithT(t)
	ns, f := startEnforcing(t, "eject", "10.0.12.1", "10.0.12.2", "10.0.12.3")

	f.targets["10.0.12.2"].healthy.Store(false)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "eject")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
		g.Expect(cb.Status.Endpoints).To(HaveLen(3))
		g.Expect(cb.Status.Endpoints[1].Address).To(Equal("10.0.12.2"))
		g.Expect(cb.Status.Endpoints[1].Ejected).To(BeTrue())
		g.Expect(cb.Status.Endpoints[1].ConsecutiveFailures).To(BeNumerically(">=", 3))
		g.Expect(cb.Status.Enforcement.EndpointsEjected).To(Equal(int32(1)))
		g.Expect(cb.Status.Enforcement.EndpointsServed).To(Equal(int32(2)))
		g.Expect(guardedAddresses(g, ns, "eject-guarded")).To(Equal([]string{"10.0.12.1", "10.0.12.3"}))
		g.Expect(eventReasons(g, ns, "eject")).To(ContainElement("Normal/" + circuitv1alpha1.EventEndpointEjected))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	f.targets["10.0.12.2"].healthy.Store(true)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "eject")
		g.Expect(cb.Status.Endpoints).To(HaveLen(3))
		g.Expect(cb.Status.Endpoints[1].Ejected).To(BeFalse())
		g.Expect(cb.Status.Enforcement.EndpointsEjected).To(BeZero())
		g.Expect(guardedAddresses(g, ns, "eject-guarded")).To(Equal([]string{"10.0.12.1", "10.0.12.2", "10.0.12.3"}))
		g.Expect(eventReasons(g, ns, "eject")).To(ContainElement("Normal/" + circuitv1alpha1.EventEndpointRestored))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestEnforceMaxEjectionPercentHoldsWhenTwoOfThreeFail(t *testing.T) {
	g := NewWithT(t)
	ns, f := startEnforcing(t, "cap", "10.0.13.1", "10.0.13.2", "10.0.13.3")

	// .3 fails first, so it has failed longest: it is the one ejected.
	f.targets["10.0.13.3"].healthy.Store(false)
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "cap").Status.Enforcement).To(HaveField("EndpointsEjected", int32(1)))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	f.targets["10.0.13.1"].healthy.Store(false)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "cap")
		g.Expect(cb.Status.Endpoints).To(HaveLen(3))
		g.Expect(cb.Status.Endpoints[0].ConsecutiveFailures).To(BeNumerically(">=", 4))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Consistently(func(g Gomega) {
		cb := getBreaker(g, ns, "cap")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
		g.Expect(cb.Status.Enforcement.EndpointsEjected).To(Equal(int32(1)), "50% of 3 endpoints is 1")
		g.Expect(guardedAddresses(g, ns, "cap-guarded")).To(Equal([]string{"10.0.13.1", "10.0.13.2"}))
	}).WithTimeout(1500 * time.Millisecond).Should(Succeed())
}

func TestEnforceOpenRoutesToTheFallbackOrNowhereAndClosedRestores(t *testing.T) {
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "main", "10.0.14.1", "10.0.14.2")
	newServiceFixture(t, ns, "degraded", "10.0.14.9")
	startOperatorWithDial(t, ns, f.net.dial)
	withFallback := enforceSpec("main", "degraded")
	withFallback.Enforce.ServiceName = "main-fb"
	createBreaker(t, ns, "fb", withFallback)
	createBreaker(t, ns, "none", enforceSpec("main", ""))
	for _, svc := range []string{"main-fb", "main-guarded"} {
		NewWithT(t).Eventually(func(g Gomega) {
			g.Expect(guardedAddresses(g, ns, svc)).To(HaveLen(2))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}

	for _, tg := range f.targets {
		tg.healthy.Store(false)
	}
	cases := []struct {
		breaker, service string
		routing          circuitv1alpha1.Routing
		want             []string
	}{
		{"fb", "main-fb", circuitv1alpha1.RoutingFallback, []string{"10.0.14.9"}},
		{"none", "main-guarded", circuitv1alpha1.RoutingNone, []string{}},
	}
	for _, tc := range cases {
		t.Run("Open: "+tc.breaker, func(t *testing.T) {
			g := NewWithT(t)
			cb := waitState(t, ns, tc.breaker, circuitv1alpha1.StateOpen, 10*time.Second)
			// The slices are written before the status that records Open: the
			// first read that sees Open sees them, with no waiting.
			g.Expect(guardedAddresses(g, ns, tc.service)).To(Equal(tc.want))
			g.Expect(cb.Status.Enforcement.Routing).To(Equal(tc.routing))
			g.Eventually(func(g Gomega) {
				g.Expect(eventReasons(g, ns, tc.breaker)).To(ContainElement("Warning/" + circuitv1alpha1.EventTrafficRerouted))
			}).WithTimeout(5 * time.Second).Should(Succeed())
		})
	}

	for _, tg := range f.targets {
		tg.healthy.Store(true)
	}
	for _, tc := range cases {
		t.Run("Closed: "+tc.breaker, func(t *testing.T) {
			g := NewWithT(t)
			g.Eventually(func(g Gomega) {
				cb := getBreaker(g, ns, tc.breaker)
				g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
				g.Expect(cb.Status.Enforcement.Routing).To(Equal(circuitv1alpha1.RoutingTarget))
				g.Expect(guardedAddresses(g, ns, tc.service)).To(Equal([]string{"10.0.14.1", "10.0.14.2"}))
			}).WithTimeout(10 * time.Second).Should(Succeed())
		})
	}
}

func TestEnforceLeavesAServiceItDoesNotOwnAlone(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "taken", "10.0.15.1")
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-guarded"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "web", Port: 8000}}}}
	g.Expect(k8sClient.Create(context.Background(), other)).To(Succeed())
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "taken", enforceSpec("taken", ""))

	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "taken")
		ready := findCondition(cb, circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonEnforcementConflict))
		g.Expect(cb.Status.Enforcement).To(BeNil())
		g.Expect(cb.Status.EndpointsTotal).To(Equal(int32(1)), "probing goes on")
	}).WithTimeout(10 * time.Second).Should(Succeed())
	got := &corev1.Service{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "taken-guarded"), got)).To(Succeed())
	g.Expect(got.ResourceVersion).To(Equal(other.ResourceVersion), "not touched")
	g.Expect(guardedAddresses(g, ns, "taken-guarded")).To(BeEmpty())

	// Once the other Service is gone, the breaker takes the name.
	g.Expect(k8sClient.Delete(context.Background(), other)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "taken")
		g.Expect(findCondition(cb, circuitv1alpha1.ConditionReady).Reason).To(Equal(circuitv1alpha1.ReasonProbing))
		g.Expect(guardedAddresses(g, ns, "taken-guarded")).To(Equal([]string{"10.0.15.1"}))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestEnforceRemovedDeletesTheGuardedServiceAndTheBreakerOwnsWhatItWrites(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "gone", "10.0.16.1", "10.0.16.2")
	startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "gone", enforceSpec("gone", ""))
	g.Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "gone-guarded")).To(HaveLen(2))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Renaming the guarded Service moves it; removing enforce deletes it.
	editSpec(g, ns, "gone", func(s *circuitv1alpha1.CircuitBreakerSpec) { s.Enforce.ServiceName = "gone-renamed" })
	g.Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "gone-renamed")).To(HaveLen(2))
		g.Expect(guardedAddresses(g, ns, "gone-guarded")).To(BeEmpty())
		err := k8sClient.Get(context.Background(), keyOf(ns, "gone-guarded"), &corev1.Service{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	editSpec(g, ns, "gone", func(s *circuitv1alpha1.CircuitBreakerSpec) { s.Enforce = nil })
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "gone").Status.Enforcement).To(BeNil())
		g.Expect(guardedAddresses(g, ns, "gone-renamed")).To(BeEmpty())
		err := k8sClient.Get(context.Background(), keyOf(ns, "gone-renamed"), &corev1.Service{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Deleting the breaker: envtest runs no garbage collector, so check that
	// everything written is controlled by the breaker, which is what the
	// collector acts on.
	editSpec(g, ns, "gone", func(s *circuitv1alpha1.CircuitBreakerSpec) { s.Enforce = enforceSpec("gone", "").Enforce })
	cb := getBreaker(g, ns, "gone")
	g.Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "gone-guarded")).To(HaveLen(2))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	svc := &corev1.Service{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "gone-guarded"), svc)).To(Succeed())
	expectControlledBy(g, svc, cb)
	slices := &discoveryv1.EndpointSliceList{}
	g.Expect(k8sClient.List(context.Background(), slices, client.InNamespace(ns),
		client.MatchingLabels{discoveryv1.LabelManagedBy: circuitv1alpha1.EndpointSliceManager})).To(Succeed())
	g.Expect(slices.Items).NotTo(BeEmpty())
	for i := range slices.Items {
		expectControlledBy(g, &slices.Items[i], cb)
	}
	g.Expect(k8sClient.Delete(context.Background(), cb)).To(Succeed())
}

// editSpec changes a breaker's spec, retrying when the status write of the
// operator got in between.
func editSpec(g Gomega, ns, name string, edit func(*circuitv1alpha1.CircuitBreakerSpec)) {
	g.Eventually(func() error {
		cb := &circuitv1alpha1.CircuitBreaker{}
		if err := k8sClient.Get(context.Background(), keyOf(ns, name), cb); err != nil {
			return err
		}
		edit(&cb.Spec)
		return k8sClient.Update(context.Background(), cb)
	}).WithTimeout(5 * time.Second).Should(Succeed())
}

func TestEnforceSpecsAreRefusedNamingTheField(t *testing.T) {
	ns := newNamespace(t)
	svc := `target: {service: {name: api, port: http}}`
	cases := []struct {
		name, spec string
		want       []string
	}{
		{"enforce on a url target", `{target: {url: "http://h"}, enforce: {serviceName: g}}`,
			[]string{"spec", "enforce applies only to target.service"}},
		{"no serviceName", `{` + svc + `, enforce: {}}`, []string{"spec.enforce.serviceName", "Required"}},
		{"bad serviceName", `{` + svc + `, enforce: {serviceName: "Api_G"}}`, []string{"spec.enforce.serviceName"}},
		{"the target itself", `{` + svc + `, enforce: {serviceName: api}}`,
			[]string{"spec", "enforce.serviceName must differ from target.service.name"}},
		{"the fallback itself", `{` + svc + `, enforce: {serviceName: g, fallback: {serviceName: g}}}`,
			[]string{"spec", "enforce.fallback.serviceName"}},
		{"fallback without serviceName", `{` + svc + `, enforce: {serviceName: g, fallback: {}}}`,
			[]string{"spec.enforce.fallback.serviceName", "Required"}},
		{"consecutiveFailures zero", `{` + svc + `, enforce: {serviceName: g, ejection: {consecutiveFailures: 0}}}`,
			[]string{"spec.enforce.ejection.consecutiveFailures"}},
		{"maxEjectionPercent above 100", `{` + svc + `, enforce: {serviceName: g, ejection: {maxEjectionPercent: 101}}}`,
			[]string{"spec.enforce.ejection.maxEjectionPercent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { expectRefused(t, ns, tc.spec, tc.want) })
	}

	g := NewWithT(t)
	spec := serviceSpec("api", intstr.FromString("http"), 100)
	spec.Enforce = &circuitv1alpha1.Enforce{ServiceName: "api-guarded", Ejection: &circuitv1alpha1.Ejection{}}
	createBreaker(t, ns, "defaults", spec)
	got := getBreaker(g, ns, "defaults").Spec.Enforce.Ejection
	g.Expect(got.ConsecutiveFailures).To(Equal(circuitv1alpha1.DefaultEjectionConsecutiveFailures))
	g.Expect(got.MaxEjectionPercent).To(Equal(circuitv1alpha1.DefaultMaxEjectionPercent))
}

// A Service of 70 endpoints: the one failing is the 69th, past the 64 that
// status.endpoints lists. It is ejected all the same, status says how many
// endpoints the list leaves out and records the outlier's failures, and a
// restarted manager goes on from that record: the endpoint stays ejected.
func TestEnforceEjectsAnEndpointPastThe64ListedAndKeepsItOutAcrossARestart(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	var addrs []string
	for i := range decision.MaxStatusEndpoints + 6 {
		addrs = append(addrs, fmt.Sprintf("10.0.16.%d", 100+i))
	}
	outlier := addrs[68]
	f := newServiceFixture(t, ns, "many", addrs...)
	op := startOperatorWithDial(t, ns, f.net.dial)
	createBreaker(t, ns, "many", enforceSpec("many", ""))
	g.Eventually(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "many-guarded")).To(HaveLen(len(addrs)))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	f.targets[outlier].healthy.Store(false)
	var failures int32
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "many")
		g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
		g.Expect(cb.Status.Endpoints).To(HaveLen(decision.MaxStatusEndpoints))
		g.Expect(cb.Status.EndpointsTotal).To(BeEquivalentTo(len(addrs)))
		g.Expect(cb.Status.EndpointsOmitted).To(BeEquivalentTo(len(addrs) - decision.MaxStatusEndpoints))
		g.Expect(cb.Status.OmittedFailingEndpoints).To(HaveLen(1))
		ep := cb.Status.OmittedFailingEndpoints[0]
		g.Expect(ep.Address).To(Equal(outlier))
		g.Expect(ep.Ejected).To(BeTrue())
		g.Expect(ep.ConsecutiveFailures).To(BeNumerically(">=", 3))
		failures = ep.ConsecutiveFailures
		g.Expect(cb.Status.Enforcement.EndpointsEjected).To(BeEquivalentTo(1))
		g.Expect(cb.Status.Enforcement.EndpointsServed).To(BeEquivalentTo(len(addrs) - 1))
		served := guardedAddresses(g, ns, "many-guarded")
		g.Expect(served).To(HaveLen(len(addrs) - 1))
		g.Expect(served).NotTo(ContainElement(outlier))
		g.Expect(eventReasons(g, ns, "many")).To(ContainElement("Normal/" + circuitv1alpha1.EventEndpointEjected))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	// The manager stops; a new one counts on from the recorded failures, so
	// the outlier is never restored (a count started again from 0 would let
	// it back in for a round).
	op.stop()
	startOperatorWithDial(t, ns, f.net.dial)
	g.Consistently(func(g Gomega) {
		g.Expect(guardedAddresses(g, ns, "many-guarded")).NotTo(ContainElement(outlier))
		g.Expect(eventReasons(g, ns, "many")).NotTo(ContainElement("Normal/" + circuitv1alpha1.EventEndpointRestored))
	}).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(getBreaker(g, ns, "many").Status.OmittedFailingEndpoints[0].ConsecutiveFailures).To(BeNumerically(">", failures),
		"the new manager counts on from the recorded failures")

	// Its first success restores it.
	f.targets[outlier].healthy.Store(true)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "many")
		g.Expect(cb.Status.OmittedFailingEndpoints).To(BeEmpty())
		g.Expect(guardedAddresses(g, ns, "many-guarded")).To(ContainElement(outlier))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
