package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
)

// resolve does all the reading a decision needs: it parses the spec, looks up
// the Service, its EndpointSlices, the Namespace's allowed ranges and the
// referenced Secrets and ConfigMaps, and keeps the reference watches in step
// with the spec. An error is a failed read, retried by the caller.
func (r *CircuitBreakerReconciler) resolve(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker) (decision.Resolution, error) {
	res := decision.Resolution{Member: r.memberID()}
	cfg, err := decision.ParseSpec(cb.Spec)
	if err != nil {
		res.Blocked = &decision.Problem{Reason: circuitv1alpha1.ReasonInvalidSpec, Message: err.Error()}
		return res, nil
	}
	cfg.Policy.Seed = decision.SeedOf(cb.UID)
	if st := cb.Spec.Target.Service; st != nil {
		if res.Service, err = r.resolveService(ctx, cb.Namespace, st); err != nil {
			return res, err
		}
		cfg.Target.Round.Endpoints = res.Service.Endpoints
		cfg.Target.Round.ServerName = st.Name + "." + cb.Namespace + ".svc"
		if res.Service.Problem != nil {
			cfg.Target.Round.Unresolved = res.Service.Problem.Reason
		}
		if res.Enforce, err = r.resolveEnforcement(ctx, cb); err != nil {
			return res, err
		}
	}
	allowed, restricted, nsProblem, err := r.namespaceRanges(ctx, cb.Namespace)
	if err != nil {
		return res, err
	}
	if nsProblem != nil {
		res.Blocked = nsProblem
		return res, nil
	}
	cfg.Target.Allowed, cfg.Target.Restricted = allowed, restricted
	r.refs.use(types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}, specRefs(cb))
	refProblem, err := r.resolveHTTP(ctx, cb, &cfg.Target)
	if err == nil && refProblem == nil {
		refProblem, err = r.resolveGRPC(ctx, cb, &cfg.Target)
	}
	if err != nil {
		return res, err
	}
	// Without its credentials or CA the probe would only mislead: send none.
	res.Settings, res.Blocked = cfg, refProblem
	return res, nil
}
