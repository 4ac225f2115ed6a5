package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Routings are the values of the routing label: where a guarded Service sends traffic.
var Routings = []string{"Target", "Fallback", "None"}

var (
	// EndpointsEjected mirrors status.enforcement.endpointsEjected.
	EndpointsEjected = newFamily("circuitbreaker_endpoints_ejected",
		"Endpoints of the target ejected from the breaker's guarded Service (spec.enforce.ejection).",
		prometheus.GaugeValue, nil, func(s *breakerSeries, emit emitFunc) {
			if s.routing >= 0 {
				emit(float64(s.ejected))
			}
		})

	// Routing is 1 for where the guarded Service sends traffic and 0 for the others.
	Routing = newFamily("circuitbreaker_routing",
		"Where the breaker's guarded Service routes: 1 for the current routing (Target, Fallback or None), 0 for the others.",
		prometheus.GaugeValue, []string{"routing"}, func(s *breakerSeries, emit emitFunc) {
			if s.routing < 0 {
				return
			}
			for i, v := range Routings {
				emit(oneHot(i == int(s.routing)), v)
			}
		})
)

func init() {
	ctrlmetrics.Registry.MustRegister(EndpointsEjected, Routing)
}

// SetEnforcement records a guarded Service's routing and ejected endpoints; an
// empty routing (no spec.enforce) removes the breaker's enforcement series.
func SetEnforcement(namespace, name, routing string, ejected int32) {
	update(namespace, name, func(s *breakerSeries) {
		s.routing = int8(indexOf(Routings, routing))
		s.ejected = ejected
	})
}
