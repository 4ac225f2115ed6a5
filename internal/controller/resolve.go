package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// resolution is what a breaker's spec means right now, read from the cache and
// the reference watches: the settings to probe with, or why it cannot be probed.
type resolution struct {
	settings settings
	// blocked says why nothing is probed (an invalid spec, a namespace policy
	// that does not parse, credentials or a CA that cannot be used); nil when
	// the breaker probes.
	blocked *problem
	// unknownToRunner: this manager has not probed the breaker yet (it
	// restarted, or the breaker is new).
	unknownToRunner bool
	// service holds a Service target's endpoints, and the problem resolving
	// them if any: such a breaker still probes (its rounds fail) and says why.
	service resolved
	// enforce is what spec.enforce needs read; empty without it.
	enforce enforceInput
}

// resolve does all the reading a decision needs: it parses the spec, looks up
// the Service, its EndpointSlices, the Namespace's allowed ranges and the
// referenced Secrets and ConfigMaps, and keeps the reference watches in step
// with the spec. An error is a failed read, retried by the caller.
func (r *CircuitBreakerReconciler) resolve(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker) (resolution, error) {
	var res resolution
	cfg, err := parseSpec(cb.Spec)
	if err != nil {
		res.blocked = &problem{circuitv1alpha1.ReasonInvalidSpec, err.Error()}
		return res, nil
	}
	cfg.policy.Seed = seedOf(cb.UID)
	if st := cb.Spec.Target.Service; st != nil {
		if res.service, err = r.resolveService(ctx, cb.Namespace, st); err != nil {
			return res, err
		}
		cfg.target.Round.Endpoints = res.service.endpoints
		cfg.target.Round.ServerName = st.Name + "." + cb.Namespace + ".svc"
		if res.service.problem != nil {
			cfg.target.Round.Unresolved = res.service.problem.reason
		}
		if res.enforce, err = r.resolveEnforcement(ctx, cb); err != nil {
			return res, err
		}
	}
	allowed, restricted, nsProblem, err := r.namespaceRanges(ctx, cb.Namespace)
	if err != nil {
		return res, err
	}
	if nsProblem != nil {
		res.blocked = nsProblem
		return res, nil
	}
	cfg.target.Allowed, cfg.target.Restricted = allowed, restricted
	r.refs.use(types.NamespacedName{Namespace: cb.Namespace, Name: cb.Name}, specRefs(cb))
	refProblem, err := r.resolveHTTP(ctx, cb, &cfg.target)
	if err == nil && refProblem == nil {
		refProblem, err = r.resolveGRPC(ctx, cb, &cfg.target)
	}
	if err != nil {
		return res, err
	}
	// Without its credentials or CA the probe would only mislead: send none.
	res.settings, res.blocked = cfg, refProblem
	return res, nil
}
