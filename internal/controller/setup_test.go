package controller

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// breakersForService maps a Service, or an EndpointSlice through its
// kubernetes.io/service-name label, to the breakers of its namespace that target it.
func TestBreakersForServiceMapsServicesAndSlicesToTheBreakersTargetingThem(t *testing.T) {
	g := NewWithT(t)
	s := runtime.NewScheme()
	g.Expect(clientgoscheme.AddToScheme(s)).To(Succeed())
	g.Expect(circuitv1alpha1.AddToScheme(s)).To(Succeed())
	breaker := func(ns, name, service string) *circuitv1alpha1.CircuitBreaker {
		cb := &circuitv1alpha1.CircuitBreaker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if service != "" {
			cb.Spec.Target.Service = &circuitv1alpha1.ServiceTarget{Name: service, Port: intstr.FromInt32(80)}
		} else {
			cb.Spec.Target.URL = "http://api.example/"
		}
		return cb
	}
	c := fake.NewClientBuilder().WithScheme(s).
		WithIndex(&circuitv1alpha1.CircuitBreaker{}, serviceNameField, indexServiceName).
		WithObjects(
			breaker("shop", "api-1", "api"),
			breaker("shop", "api-2", "api"),
			breaker("shop", "db", "db"),
			breaker("shop", "by-url", ""),
			breaker("other", "api", "api"),
		).Build()
	r := &CircuitBreakerReconciler{Client: c}
	ctx := context.Background()
	names := func(reqs []reconcile.Request) []types.NamespacedName {
		out := []types.NamespacedName{}
		for _, req := range reqs {
			out = append(out, req.NamespacedName)
		}
		return out
	}
	want := []types.NamespacedName{{Namespace: "shop", Name: "api-1"}, {Namespace: "shop", Name: "api-2"}}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"}}
	g.Expect(names(r.breakersForService(ctx, svc))).To(ConsistOf(want))

	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-x7k2p",
		Labels: map[string]string{discoveryv1.LabelServiceName: "api"}}}
	g.Expect(names(r.breakersForService(ctx, sl))).To(ConsistOf(want))

	unlabelled := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"}}
	g.Expect(r.breakersForService(ctx, unlabelled)).To(BeEmpty(), "a slice without the service-name label belongs to no Service")

	nobody := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	g.Expect(r.breakersForService(ctx, nobody)).To(BeEmpty())
}
