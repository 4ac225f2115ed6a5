package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Routings are the values of the routing label: where a guarded Service sends traffic.
var Routings = []string{"Target", "Fallback", "None"}

var (
	// EndpointsEjected mirrors status.enforcement.endpointsEjected.
	EndpointsEjected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_endpoints_ejected",
		Help: "Endpoints of the target ejected from the breaker's guarded Service (spec.enforce.ejection).",
	}, []string{labelNamespace, labelName})

	// Routing is 1 for where the guarded Service sends traffic and 0 for the others.
	Routing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "circuitbreaker_routing",
		Help: "Where the breaker's guarded Service routes: 1 for the current routing (Target, Fallback or None), 0 for the others.",
	}, []string{labelNamespace, labelName, "routing"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(EndpointsEjected, Routing)
}

// SetEnforcement records a guarded Service's routing and ejected endpoints; an
// empty routing (no spec.enforce) removes the breaker's series.
func SetEnforcement(namespace, name, routing string, ejected int32) {
	if routing == "" {
		// By label values, not a partial match: this runs for every breaker
		// without enforcement, and must not scan the others' series.
		for _, r := range Routings {
			Routing.DeleteLabelValues(namespace, name, r)
		}
		EndpointsEjected.DeleteLabelValues(namespace, name)
		return
	}
	setOneHot(Routing, namespace, name, Routings, routing)
	EndpointsEjected.WithLabelValues(namespace, name).Set(float64(ejected))
}

func forgetEnforcement(labels prometheus.Labels) {
	EndpointsEjected.DeletePartialMatch(labels)
	Routing.DeletePartialMatch(labels)
}
