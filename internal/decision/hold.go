package decision

import (
	"time"

	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// HoldIf is the runner's test before it sends a probe while results wait: it
// folds the results this decision has not recorded onto the decided status and
// holds the probe if they open the circuit. The decision that records them then
// moves the next probe to the trial at nextRetryTime, so an Open circuit sends
// none even when its reconcile is slower than the cadence.
//
// Results the decision recorded (started at or before AckThrough) are skipped:
// they are in the decided status, written or about to be. If that write fails,
// the test may hold a probe that the stored status would have let go (never
// the reverse: the decided status has at least the stored failures). The retry
// plans again, which re-arms the held probe, so none is lost.
func (d Decision) HoldIf(now time.Time) func([]probe.Result) bool {
	if d.NextProbe.IsZero() {
		return nil
	}
	decided, policy, through := statusFromAPI(d.Status, now), d.Settings.Policy, d.AckThrough()
	return func(results []probe.Result) bool {
		s := decided
		for _, r := range judged(results, policy) {
			if !r.Start.After(through) {
				continue
			}
			var t *breaker.Transition
			if s, t = breaker.Observe(s, policy, breaker.Outcome{Success: r.Success, Latency: r.Latency}, now); t != nil && t.To == breaker.Open {
				return true
			}
		}
		return false
	}
}
