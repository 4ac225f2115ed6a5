package breakerclient

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The results a call is counted under.
const (
	resultSuccess  = "success"
	resultFailure  = "failure"
	resultRejected = "rejected"
)

// counters are one breaker's call counters, resolved once so that a call does
// not hash its labels.
type counters struct {
	success, failure, rejected prometheus.Counter
}

func registerCalls(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "circuitbreaker_client_calls_total",
		Help: "Calls made through breakerclient, by breaker and result (success, failure, rejected).",
	}, []string{"namespace", "name", "result"})
	if err := reg.Register(calls); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("breakerclient: registering metrics: %w", err)
	}
	return calls, nil
}

func newCounters(calls *prometheus.CounterVec, k key) *counters {
	return &counters{
		success:  calls.WithLabelValues(k.namespace, k.name, resultSuccess),
		failure:  calls.WithLabelValues(k.namespace, k.name, resultFailure),
		rejected: calls.WithLabelValues(k.namespace, k.name, resultRejected),
	}
}

// count adds a call to the breaker's counter for result, if metrics are on.
func (c *Client) count(k key, e *entry, result string) {
	if c.calls == nil {
		return
	}
	if e == nil || e.counters == nil {
		c.calls.WithLabelValues(k.namespace, k.name, result).Inc()
		return
	}
	switch result {
	case resultSuccess:
		e.counters.success.Inc()
	case resultFailure:
		e.counters.failure.Inc()
	default:
		e.counters.rejected.Inc()
	}
}
