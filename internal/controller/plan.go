package controller

import (
	"time"

	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// runnerView is what the runner knows of the breaker for its resolved spec.
func (r *CircuitBreakerReconciler) runnerView(key runner.Key, res decision.Resolution) decision.Runner {
	v := r.Runner.View(key, res.Settings.SpecID)
	if res.Blocked != nil {
		// A blocked breaker records no results: they would count a spec that
		// cannot be probed as specified.
		v.Pending = nil
	}
	return decision.Runner{Known: v.Known, Pending: v.Pending, LastStart: v.LastStart}
}

// plan tells the runner what a decision means for probing, at once and before
// the status is written: a circuit that opens stops probing (its trial waits
// for nextRetryTime) however long the API server takes the write.
func (r *CircuitBreakerReconciler) plan(key runner.Key, d decision.Decision, now time.Time) {
	r.Runner.Plan(key, runner.Plan{
		SpecID: d.Settings.SpecID,
		Target: d.Settings.Target,
		Next:   d.NextProbe,
		Every:  d.Settings.Interval,
		HoldIf: d.HoldIf(now),
	})
}
