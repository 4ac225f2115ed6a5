package v1alpha1

// The words of spec.enforce: the label on the EndpointSlices the operator
// writes, the Ready reason when it may not write them, and the Events about
// what the guarded Service serves.

// EndpointSliceManager is the value of the endpointslice.kubernetes.io/managed-by
// label on the guarded Service's EndpointSlices: neither the EndpointSlice
// controller nor the mirroring controller touches a slice with another manager.
const EndpointSliceManager = "circuit.resilience.dev"

// ReasonEnforcementConflict: a Service named by enforce.serviceName, or one of
// its EndpointSlices, exists and is not owned by this breaker; nothing is
// touched and traffic is not enforced (Ready=False). Probing goes on.
const ReasonEnforcementConflict = "EnforcementConflict"

// Reasons of the Events about the guarded Service.
const (
	// EventEndpointEjected: an endpoint failed enforce.ejection.consecutiveFailures
	// rounds in a row and no longer serves (Normal).
	EventEndpointEjected = "EndpointEjected"
	// EventEndpointRestored: an ejected endpoint passed a round and serves again (Normal).
	EventEndpointRestored = "EndpointRestored"
	// EventTrafficRerouted: the guarded Service's routing changed. Warning when
	// traffic leaves the target (to the fallback, or nowhere), Normal when it
	// returns to the target.
	EventTrafficRerouted = "TrafficRerouted"
)
