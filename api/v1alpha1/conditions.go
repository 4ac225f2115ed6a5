package v1alpha1

// The API's vocabulary: condition types and reasons, Event reasons, probe
// reasons, and the annotations and labels the operator reads. Programs that
// read breakers (clients, kubectl plugins, alerts) use these constants rather
// than repeating the strings.

// ResetAnnotation is the annotation that resets a breaker by hand: setting it to
// a value that differs from status.lastHandledReset returns the breaker to
// Closed with zero failures, once per value.
const ResetAnnotation = "circuit.resilience.dev/reset"

// ProbeCredentialsLabel marks a Secret as one that probes may read header
// values and client certificates from; only Secrets labelled "true" are used.
const ProbeCredentialsLabel = "circuit.resilience.dev/probe-credentials"

// ProbeAllowedCIDRsAnnotation, on a namespace, lists the comma-separated CIDRs
// that the probes of breakers in that namespace may connect to.
const ProbeAllowedCIDRsAnnotation = "circuit.resilience.dev/probe-allowed-cidrs"

// TripUntilAnnotation opens the circuit until the RFC 3339 time it holds; the
// circuit then goes HalfOpen as usual. Handled once per value
// (status.lastHandledTrip). mode wins over it; a later reset closes it.
const TripUntilAnnotation = "circuit.resilience.dev/trip-until"

// ConditionReady is the condition type that says whether the breaker is probing
// its target as specified, and if not, why not.
const ConditionReady = "Ready"

// ConditionAvailable is the condition type that says whether callers may use
// the target: True while the circuit is Closed, False while it is Open or
// HalfOpen. `kubectl wait --for=condition=Available cb/NAME` is a deploy gate.
const ConditionAvailable = "Available"

// Reasons of the Available condition.
const (
	// ReasonCircuitClosed: the circuit is Closed; calls go through (Available=True).
	ReasonCircuitClosed = "CircuitClosed"
	// ReasonCircuitOpen: the circuit is Open; callers should fail fast until the
	// trial at nextRetryTime (Available=False).
	ReasonCircuitOpen = "CircuitOpen"
	// ReasonCircuitHalfOpen: trial probes decide whether the circuit closes
	// (Available=False).
	ReasonCircuitHalfOpen = "CircuitHalfOpen"
)

// Reasons of the Ready condition. Probing is the only reason of Ready=True.
const (
	// ReasonProbing: the target is probed as specified (Ready=True).
	ReasonProbing = "Probing"
	// ReasonInvalidSpec: the spec passed admission but cannot be used (an object
	// written before a validation rule existed); nothing is probed.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonProbeDenied: the operator's probe guard refused the target's address;
	// probes count as failures.
	ReasonProbeDenied = "ProbeDenied"
	// ReasonTargetUnresolvable: the target's host name did not resolve at the
	// last probe; probes count as failures until it does.
	ReasonTargetUnresolvable = "TargetUnresolvable"

	// ReasonServiceNotFound: the Service target does not exist; probe rounds fail.
	ReasonServiceNotFound = "ServiceNotFound"
	// ReasonServicePortNotFound: the Service has no port of the target's name or
	// number; probe rounds fail.
	ReasonServicePortNotFound = "ServicePortNotFound"
	// ReasonServiceWithoutEndpoints: the Service has no selector and no
	// EndpointSlices; probe rounds fail.
	ReasonServiceWithoutEndpoints = "ServiceWithoutEndpoints"

	// ReasonCABundleNotFound: the ConfigMap of http.tls.caBundle, or its key, is
	// missing or empty; nothing is probed until it is there.
	ReasonCABundleNotFound = "CABundleNotFound"
	// ReasonInvalidCABundle: the CA bundle holds no PEM certificate; nothing is
	// probed until it does.
	ReasonInvalidCABundle = "InvalidCABundle"
	// ReasonSecretNotAllowed: a referenced Secret is missing, lacks the key, or
	// is not labelled circuit.resilience.dev/probe-credentials=true (see
	// ProbeCredentialsLabel); nothing is probed until it is.
	ReasonSecretNotAllowed = "SecretNotAllowed"
	// ReasonInvalidClientCertificate: the Secret of tls.clientCertificateSecretRef
	// does not hold a certificate and key that belong together (tls.crt and
	// tls.key, PEM); nothing is probed until it does.
	ReasonInvalidClientCertificate = "InvalidClientCertificate"
	// ReasonInvalidHeaderValue: a header value holds bytes that cannot go into
	// an HTTP header (such as a line break); nothing is probed until it is fixed.
	ReasonInvalidHeaderValue = "InvalidHeaderValue"
	// ReasonReferenceForbidden: the manager lacks the RBAC permission to read a
	// referenced Secret or ConfigMap; nothing is probed until it has it.
	ReasonReferenceForbidden = "ReferenceForbidden"
)

// Reasons of the Events about a breaker, one per kind of transition. Only
// EventCircuitOpened is of type Warning.
const (
	// EventCircuitOpened: the circuit opened after threshold failed probes in a row.
	EventCircuitOpened = "CircuitOpened"
	// EventCircuitHalfOpened: the circuit's timeout is over; trial probes follow.
	EventCircuitHalfOpened = "CircuitHalfOpened"
	// EventCircuitClosed: trial probes succeeded and the circuit closed.
	EventCircuitClosed = "CircuitClosed"
	// EventCircuitForcedOpen: mode ForcedOpen holds the circuit Open (Warning).
	EventCircuitForcedOpen = "CircuitForcedOpen"
	// EventCircuitForcedClosed: mode ForcedClosed holds the circuit Closed.
	EventCircuitForcedClosed = "CircuitForcedClosed"
	// EventCircuitWouldOpen: under mode ForcedClosed, the policy would have
	// opened the circuit (Warning; once per would-be opening).
	EventCircuitWouldOpen = "CircuitWouldOpen"
	// EventCircuitTripped: the trip-until annotation opened the circuit (Warning).
	EventCircuitTripped = "CircuitTripped"
	// EventTripIgnored: the trip-until annotation holds a time that is not in the
	// future, or a mode is set (Warning).
	EventTripIgnored = "TripIgnored"
	// EventCircuitReset: the reset annotation returned the circuit to Closed.
	EventCircuitReset = "CircuitReset"
)

// ProbeReason is the short, machine-readable cause of a probe's result. It is
// a small fixed set, so that it can serve as a metric label, and never carries
// anything the target sent. lastProbe.reason documents each value.
// +kubebuilder:validation:Enum=ok;timeout;connection_refused;dns;tls;http_status;grpc_not_serving;grpc_service_unknown;grpc_unknown;grpc_status;denied;no_endpoints;slow;other
type ProbeReason string

// The reasons a probe reports.
const (
	// ProbeReasonOK: the target answered as expected.
	ProbeReasonOK ProbeReason = "ok"
	// ProbeReasonTimeout: no answer within retryTimeout.
	ProbeReasonTimeout ProbeReason = "timeout"
	// ProbeReasonConnectionRefused: the target's host refused the connection.
	ProbeReasonConnectionRefused ProbeReason = "connection_refused"
	// ProbeReasonDNS: the target's host name did not resolve.
	ProbeReasonDNS ProbeReason = "dns"
	// ProbeReasonTLS: the TLS handshake or the certificate's verification failed.
	ProbeReasonTLS ProbeReason = "tls"
	// ProbeReasonHTTPStatus: the answer's status is not in http.expectedStatuses.
	ProbeReasonHTTPStatus ProbeReason = "http_status"
	// ProbeReasonGRPCNotServing: a gRPC target's health service answered NOT_SERVING.
	ProbeReasonGRPCNotServing ProbeReason = "grpc_not_serving"
	// ProbeReasonGRPCServiceUnknown: a gRPC target's health service does not know grpc.service.
	ProbeReasonGRPCServiceUnknown ProbeReason = "grpc_service_unknown"
	// ProbeReasonGRPCUnknown: a gRPC target's health service answered UNKNOWN.
	ProbeReasonGRPCUnknown ProbeReason = "grpc_unknown"
	// ProbeReasonGRPCStatus: the health call of a gRPC target failed with a gRPC
	// status code that none of the other reasons covers (such as UNIMPLEMENTED,
	// PERMISSION_DENIED or RESOURCE_EXHAUSTED for an oversized answer).
	ProbeReasonGRPCStatus ProbeReason = "grpc_status"
	// ProbeReasonDenied: the operator's probe guard refused the target's address.
	ProbeReasonDenied ProbeReason = "denied"
	// ProbeReasonNoEndpoints: a Service target had no ready endpoint to probe, or
	// could not be resolved to endpoints at all.
	ProbeReasonNoEndpoints ProbeReason = "no_endpoints"
	// ProbeReasonSlow: the target answered as expected, but slower than slowProbe,
	// so the probe counts as failed.
	ProbeReasonSlow ProbeReason = "slow"
	// ProbeReasonOther: any other failure.
	ProbeReasonOther ProbeReason = "other"
)

// ProbeReasons lists every reason a probe may report, in the order documented.
var ProbeReasons = []ProbeReason{ProbeReasonOK, ProbeReasonTimeout, ProbeReasonConnectionRefused,
	ProbeReasonDNS, ProbeReasonTLS, ProbeReasonHTTPStatus, ProbeReasonGRPCNotServing, ProbeReasonGRPCServiceUnknown,
	ProbeReasonGRPCUnknown, ProbeReasonGRPCStatus, ProbeReasonDenied, ProbeReasonNoEndpoints, ProbeReasonSlow, ProbeReasonOther}

// TransitionReason says why a circuit changed state: status.lastTransition.reason.
// The state machine moves for these reasons and no others.
// +kubebuilder:validation:Enum=ThresholdReached;FailureRateReached;TrialFailed;TimeoutElapsed;TrialsSucceeded;Reset;Tripped;ForcedOpen;ForcedClosed;ModeAuto
type TransitionReason string

// The reasons of a transition.
const (
	// ReasonThresholdReached: Closed to Open, threshold probes failed in a row.
	ReasonThresholdReached TransitionReason = "ThresholdReached"
	// ReasonFailureRateReached: Closed to Open, at least failureRate.percent of
	// the last failureRate.window probes failed.
	ReasonFailureRateReached TransitionReason = "FailureRateReached"
	// ReasonTrialFailed: HalfOpen to Open, a trial probe failed.
	ReasonTrialFailed TransitionReason = "TrialFailed"
	// ReasonTimeoutElapsed: Open to HalfOpen, nextRetryTime (timeout, backoff, or
	// the trip-until time) has passed.
	ReasonTimeoutElapsed TransitionReason = "TimeoutElapsed"
	// ReasonTrialsSucceeded: HalfOpen to Closed, successThreshold trial probes
	// succeeded in a row.
	ReasonTrialsSucceeded TransitionReason = "TrialsSucceeded"
	// ReasonReset: to Closed, by the circuit.resilience.dev/reset annotation.
	ReasonReset TransitionReason = "Reset"
	// ReasonTripped: to Open, by the circuit.resilience.dev/trip-until annotation.
	ReasonTripped TransitionReason = "Tripped"
	// ReasonForcedOpen: to Open, by mode ForcedOpen.
	ReasonForcedOpen TransitionReason = "ForcedOpen"
	// ReasonForcedClosed: to Closed, by mode ForcedClosed.
	ReasonForcedClosed TransitionReason = "ForcedClosed"
	// ReasonModeAuto: Open to HalfOpen, mode went from ForcedOpen back to Auto,
	// so a trial is sent at once.
	ReasonModeAuto TransitionReason = "ModeAuto"
)

// TransitionReasons lists every reason of a transition, in the order documented.
var TransitionReasons = []TransitionReason{ReasonThresholdReached, ReasonFailureRateReached, ReasonTrialFailed,
	ReasonTimeoutElapsed, ReasonTrialsSucceeded, ReasonReset, ReasonTripped, ReasonForcedOpen, ReasonForcedClosed, ReasonModeAuto}
