package decision

import (
	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// Resolution is what a breaker's spec means right now, as read from the cache
// and the reference watches: the settings to probe with, or why it cannot be
// probed. The controller reads it; Decide takes it as it is.
type Resolution struct {
	Settings Settings
	// Blocked says why nothing is probed (an invalid spec, a namespace policy
	// that does not parse, credentials or a CA that cannot be used); nil when
	// the breaker probes.
	Blocked *Problem
	// Service holds a Service target's endpoints, and the problem resolving
	// them if any: such a breaker still probes (its rounds fail) and says why.
	Service ServiceEndpoints
	// Enforce is what spec.enforce needs read; empty without it.
	Enforce EnforceInput
	// Member is the identity of this manager in a sharded ring, recorded as
	// status.probedBy; empty without sharding (probedBy is left as it is).
	Member string
}

// FromSpec resolves a breaker from its spec alone, with no reads: enough for
// the decision that settles probe results without a reconcile, for every
// breaker that SpecResolves. A spec that does not parse blocks the breaker.
func FromSpec(cb *circuitv1alpha1.CircuitBreaker) Resolution {
	cfg, err := ParseSpec(cb.Spec)
	if err != nil {
		return Resolution{Blocked: &Problem{circuitv1alpha1.ReasonInvalidSpec, err.Error()}}
	}
	cfg.Policy.Seed = SeedOf(cb.UID)
	return Resolution{Settings: cfg}
}

// SpecResolves reports whether FromSpec gives the decision everything it
// depends on: not for a Service target (its endpoints) nor a guarded Service
// (the slices it reads and writes), nor a breaker being deleted.
func SpecResolves(cb *circuitv1alpha1.CircuitBreaker) bool {
	return cb.DeletionTimestamp.IsZero() && cb.Spec.Target.Service == nil && cb.Spec.Enforce == nil &&
		cb.Status.Enforcement == nil
}
