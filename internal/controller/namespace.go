package controller

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// namespaceRanges reads the allowed ranges of namespace ns from the cache.
// restricted is false when the Namespace sets none.
func (r *CircuitBreakerReconciler) namespaceRanges(ctx context.Context, ns string) (allowed []netip.Prefix, restricted bool, bad *decision.Problem, err error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Get(ctx, client.ObjectKey{Name: ns}, meta); err != nil {
		return nil, false, nil, client.IgnoreNotFound(err)
	}
	value, ok := meta.Annotations[circuitv1alpha1.ProbeAllowedCIDRsAnnotation]
	if !ok {
		return nil, false, nil, nil
	}
	allowed, perr := decision.ParseAllowedCIDRs(value)
	if perr != nil {
		return nil, true, &decision.Problem{Reason: circuitv1alpha1.ReasonProbeDenied, Message: fmt.Sprintf(
			"The namespace's %s annotation is not a list of at most %d comma-separated CIDRs (%v); nothing is probed until it is",
			circuitv1alpha1.ProbeAllowedCIDRsAnnotation, decision.MaxAllowedCIDRs, perr)}, nil
	}
	return allowed, true, nil, nil
}
