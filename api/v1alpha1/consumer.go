package v1alpha1

// The words of the API that programs acting on breakers use: the annotation that
// trips a breaker by hand, the Available condition a deploy can wait on, and the
// modes an operator of the breaker may force.

// TripUntilAnnotation trips a breaker by hand: its value is an RFC 3339 time
// ("2026-12-02T07:00:00Z") until which the circuit is held Open. A time in the
// past, or removing the annotation, ends the trip.
const TripUntilAnnotation = "circuit.resilience.dev/trip-until"

// ConditionAvailable is the condition type that says whether callers may use the
// breaker's dependency: True while the circuit is Closed, False while it is Open
// or HalfOpen. `kubectl wait --for=condition=Available` is a deploy gate on it.
const ConditionAvailable = "Available"

// Reasons of the Available condition.
const (
	// ReasonCircuitClosed: Available is True, the circuit is Closed.
	ReasonCircuitClosed = "CircuitClosed"
	// ReasonCircuitOpen: Available is False, the circuit is Open; the message says until when.
	ReasonCircuitOpen = "CircuitOpen"
	// ReasonCircuitHalfOpen: Available is False while trial probes decide.
	ReasonCircuitHalfOpen = "CircuitHalfOpen"
)

// Mode says whether the breaker's state follows its probes or is forced by hand.
// +kubebuilder:validation:Enum=Auto;ForcedOpen;ForcedClosed
type Mode string

const (
	// ModeAuto: the probes drive the state machine.
	ModeAuto Mode = "Auto"
	// ModeForcedOpen: the circuit is held Open whatever the probes say.
	ModeForcedOpen Mode = "ForcedOpen"
	// ModeForcedClosed: the circuit is held Closed whatever the probes say.
	ModeForcedClosed Mode = "ForcedClosed"
)
