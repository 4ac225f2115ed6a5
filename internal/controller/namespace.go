package controller

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// maxAllowedCIDRs bounds the list an annotation may hold.
const maxAllowedCIDRs = 64

// namespaceRanges reads the allowed ranges of namespace ns from the cache.
// restricted is false when the Namespace sets none.
func (r *CircuitBreakerReconciler) namespaceRanges(ctx context.Context, ns string) (allowed []netip.Prefix, restricted bool, bad *problem, err error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Get(ctx, client.ObjectKey{Name: ns}, meta); err != nil {
		return nil, false, nil, client.IgnoreNotFound(err)
	}
	value, ok := meta.Annotations[circuitv1alpha1.ProbeAllowedCIDRsAnnotation]
	if !ok {
		return nil, false, nil, nil
	}
	allowed, perr := parseAllowedCIDRs(value)
	if perr != nil {
		return nil, true, &problem{circuitv1alpha1.ReasonProbeDenied, fmt.Sprintf(
			"The namespace's %s annotation is not a list of at most %d comma-separated CIDRs (%v); nothing is probed until it is",
			circuitv1alpha1.ProbeAllowedCIDRsAnnotation, maxAllowedCIDRs, perr)}, nil
	}
	return allowed, true, nil, nil
}

// parseAllowedCIDRs parses an annotation value such as "10.20.0.0/16, 192.168.5.0/24".
func parseAllowedCIDRs(value string) ([]netip.Prefix, error) {
	var cidrs []string
	for _, c := range strings.Split(value, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cidrs = append(cidrs, c)
		}
	}
	if len(cidrs) == 0 {
		return nil, fmt.Errorf("no CIDR given")
	}
	if len(cidrs) > maxAllowedCIDRs {
		return nil, fmt.Errorf("%d CIDRs given", len(cidrs))
	}
	prefixes, err := probe.ParsePrefixes(cidrs)
	if err != nil {
		return nil, fmt.Errorf("a CIDR does not parse")
	}
	return prefixes, nil
}

// breakersInNamespace maps a Namespace to the breakers in it, so that a change
// of its allowed ranges takes effect at once.
func (r *CircuitBreakerReconciler) breakersInNamespace(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &circuitv1alpha1.CircuitBreakerList{}
	if err := r.List(ctx, list, client.InNamespace(obj.GetName())); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, cb := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cb)})
	}
	return reqs
}
