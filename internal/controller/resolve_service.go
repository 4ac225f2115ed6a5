package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// resolveService reads the Service and its EndpointSlices from the cache and
// returns the ready endpoints on the slice port that matches the Service port.
func (r *CircuitBreakerReconciler) resolveService(ctx context.Context, ns string, st *circuitv1alpha1.ServiceTarget) (decision.ServiceEndpoints, error) {
	svc := &corev1.Service{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: st.Name}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return decision.ServiceEndpoints{Problem: &decision.Problem{Reason: circuitv1alpha1.ReasonServiceNotFound,
				Message: fmt.Sprintf("Service %q does not exist in namespace %q; probe rounds fail", st.Name, ns)}}, nil
		}
		return decision.ServiceEndpoints{}, err
	}
	portName, ok := decision.ServicePortName(svc, st.Port)
	if !ok {
		return decision.ServiceEndpoints{Problem: &decision.Problem{Reason: circuitv1alpha1.ReasonServicePortNotFound,
			Message: fmt.Sprintf("Service %q has no port %s; probe rounds fail", st.Name, st.Port.String())}}, nil
	}
	list := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: st.Name}); err != nil {
		return decision.ServiceEndpoints{}, err
	}
	if len(list.Items) == 0 && len(svc.Spec.Selector) == 0 {
		return decision.ServiceEndpoints{Problem: &decision.Problem{Reason: circuitv1alpha1.ReasonServiceWithoutEndpoints,
			Message: fmt.Sprintf("Service %q has no selector and no EndpointSlices; probe rounds fail", st.Name)}}, nil
	}
	return decision.ReadyEndpoints(list.Items, portName), nil
}
