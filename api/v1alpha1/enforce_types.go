package v1alpha1

// The defaults of spec.enforce.ejection; the CRD applies them, the controller
// uses them for objects stored without API-server defaulting.
const (
	DefaultEjectionConsecutiveFailures int32 = 3
	DefaultMaxEjectionPercent          int32 = 50
)

// Enforce makes the breaker route traffic, not only report: the operator owns a
// selectorless Service (serviceName) in the breaker's namespace and fills its
// EndpointSlices with exactly the endpoints the breaker allows. Callers use that
// Service instead of the target's; kube-proxy or the CNI does the routing.
type Enforce struct {
	// serviceName is the name of the guarded Service the operator creates and owns
	// (controller owner reference to the breaker) in the breaker's namespace. It has
	// the target Service's ports. If a Service of that name exists and is not owned
	// by this breaker, nothing is touched and Ready is False (EnforcementConflict).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	ServiceName string `json:"serviceName,omitempty"`

	// ejection, if set, ejects failing endpoints one by one while the circuit is
	// Closed, as a mesh's outlier detection does. Without it every ready endpoint
	// of the target is served while Closed.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Ejection *Ejection `json:"ejection,omitzero"`

	// fallback, if set, names a Service whose ready endpoints serve the guarded
	// Service while the circuit is Open or HalfOpen. Without it (or while it has no
	// ready endpoint) the guarded Service has no endpoints then, and connections to
	// it are refused at once: callers fail fast.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Fallback *Fallback `json:"fallback,omitzero"`
}

// Ejection is per-endpoint outlier ejection while the circuit is Closed.
type Ejection struct {
	// consecutiveFailures is the number of failed probe rounds in a row after which
	// an endpoint is ejected from the guarded Service. It comes back after its first
	// successful round. Defaults to 3; from 1 to 1000.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// maxEjectionPercent is the largest share of the target's ready endpoints that
	// may be ejected at once, rounded down; the endpoints that have failed longest
	// are the ones ejected. At least one endpoint stays unless all of them failed
	// the last round. Defaults to 50; from 1 to 100.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxEjectionPercent int32 `json:"maxEjectionPercent,omitempty"`
}

// Fallback names the Service that serves while the circuit is not Closed.
type Fallback struct {
	// serviceName is a Service in the breaker's namespace. Its ready endpoints are
	// copied into the guarded Service's EndpointSlices with their ports, so its
	// ports should carry the target Service's port names.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	ServiceName string `json:"serviceName,omitempty"`
}

// Routing says where the guarded Service sends traffic.
// +kubebuilder:validation:Enum=Target;Fallback;None
type Routing string

const (
	// RoutingTarget: the circuit is Closed; the target's ready endpoints serve,
	// minus the ejected ones.
	RoutingTarget Routing = "Target"
	// RoutingFallback: the circuit is Open or HalfOpen; the fallback Service's
	// ready endpoints serve.
	RoutingFallback Routing = "Fallback"
	// RoutingNone: the circuit is Open or HalfOpen and there is no fallback
	// endpoint; the guarded Service has no endpoints and connections are refused.
	RoutingNone Routing = "None"
)

// Routings lists every routing, in the order documented.
var Routings = []Routing{RoutingTarget, RoutingFallback, RoutingNone}

// EnforcementStatus says what the guarded Service serves.
type EnforcementStatus struct {
	// serviceName is the guarded Service.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	ServiceName string `json:"serviceName,omitempty"`

	// routing is Target, Fallback or None.
	// +required
	Routing Routing `json:"routing,omitempty"`

	// endpointsServed is how many endpoint addresses the guarded Service's
	// EndpointSlices hold.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 is a count like any other and always shown, so never omitted and no pointer.
	EndpointsServed int32 `json:"endpointsServed"`

	// endpointsEjected is how many of the target's ready endpoints are ejected.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 is a count like any other and always shown, so never omitted and no pointer.
	EndpointsEjected int32 `json:"endpointsEjected"`
}
