package decision

import (
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// TransitionPriority is the work-queue priority of a reconcile that will record
// a transition. When status writes queue up (a dependency outage fails
// thousands of breakers at once, or a GitOps sync creates them), such a
// reconcile is served before the ones that would only move a counter, so that
// Open and HalfOpen show as fast as the API server takes writes. Ordinary
// reconciles have priority 0; controller-runtime gives its initial list a
// lower one.
const TransitionPriority = 10

// StopPriority is the priority of a reconcile that will record Open or
// HalfOpen, above the one that records Closed: when a thousand breakers open
// together and later go HalfOpen together, their HalfOpen writes would
// otherwise share the API server with the Closed writes of the trials that
// already came back, and each circuit's HalfOpen would show about twice as
// late. The Closed writes lose nothing in total (a breaker's Closed follows its
// own HalfOpen in any case), and Open and HalfOpen are what callers act on:
// stop sending, and a trial is under way.
const StopPriority = 20

// Priority is the work-queue priority of the reconcile that records this
// decision: by the transitions it makes, 0 if none. For a decision that asks
// to be taken Again (it recorded HalfOpen, the trial's outcome waits), it is
// the priority of that next decision: at least TransitionPriority, and
// StopPriority if the trial reopens the circuit.
func (d Decision) Priority() int {
	if d.Effects.Again {
		return d.againPriority
	}
	return transitionsPriority(d.Effects.Transitions)
}

// trialPriority is the priority of recording waiting trial results on the
// HalfOpen status s: StopPriority if one of them failed (a failed trial
// reopens the circuit), else TransitionPriority (they close it, or count
// towards closing it).
func trialPriority(s breaker.Status, p breaker.Policy, pending []probe.Result) int {
	for _, r := range judged(pending, p) {
		if !r.Success && !r.Start.Before(s.LastTransitionTime) {
			return StopPriority
		}
	}
	return TransitionPriority
}

// transitionsPriority is the priority of a reconcile that records these transitions.
func transitionsPriority(ts []breaker.Transition) int {
	priority := 0
	for _, t := range ts {
		if t.To == breaker.Open || t.To == breaker.HalfOpen {
			return StopPriority
		}
		priority = TransitionPriority
	}
	return priority
}
