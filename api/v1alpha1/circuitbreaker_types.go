package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The defaults of the spec. The CRD applies them (the +kubebuilder:default
// markers below, which TestDefaultsAreApplied holds to these values); the
// controller uses them for objects stored without API-server defaulting.
const (
	DefaultThreshold        int32       = 5
	DefaultSuccessThreshold int32       = 1
	DefaultFailurePercent   int32       = 100
	DefaultTimeout          GoDuration  = "60s"
	DefaultRetryTimeout     GoDuration  = "10s"
	DefaultInterval         GoDuration  = "10s"
	DefaultExpectedStatus   StatusRange = "200-399"
)

// State is the state of a circuit breaker.
// +kubebuilder:validation:Enum=Closed;Open;HalfOpen
type State string

const (
	// StateClosed: the target is healthy and probed every interval.
	StateClosed State = "Closed"
	// StateOpen: the target failed threshold times in a row; no probes are sent until nextRetryTime.
	StateOpen State = "Open"
	// StateHalfOpen: trial probes decide whether the circuit closes or opens again.
	StateHalfOpen State = "HalfOpen"
)

// ProbeResult is the outcome of one probe.
// +kubebuilder:validation:Enum=Success;Failure
type ProbeResult string

const (
	// ProbeSuccess: the target answered as expected within retryTimeout.
	ProbeSuccess ProbeResult = "Success"
	// ProbeFailure: the target did not answer as expected within retryTimeout.
	ProbeFailure ProbeResult = "Failure"
)

// GoDuration is a Go duration string such as "500ms", "10s" or "1h30m": up to six
// digits, an optional fraction and a unit (ns, us, ms, s, m, h), repeated. Each
// field of this type states its own range in a rule of its own.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$')",message="must be a duration such as 500ms, 10s or 1h30m"
type GoDuration string

// StatusRange is an HTTP status code ("204") or an inclusive range of them ("200-399").
// +kubebuilder:validation:MinLength=3
// +kubebuilder:validation:MaxLength=7
// +kubebuilder:validation:Pattern=`^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$`
// +kubebuilder:validation:XValidation:rule="size(self) < 7 || self.substring(0, 3) <= self.substring(4, 7)",message="a status range must run from low to high, such as 200-399"
type StatusRange string

// Target says what the breaker probes: a URL, or the endpoints of a Service.
// +kubebuilder:validation:XValidation:rule="has(self.url) != has(self.service)",message="exactly one of target.url and target.service must be set"
type Target struct {
	// url is the address probed: http://host[:port]/path or https://host[:port]/path
	// for an HTTP GET, tcp://host:port for a TCP connect, or grpc://host:port
	// (plaintext) or grpcs://host:port (TLS) for a call of the standard gRPC health
	// service, grpc.health.v1.Health (tuned by spec.grpc; its defaults without it).
	// Credentials in the URL are never logged nor written to status. Exactly one of
	// url and service is set.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="url must be an absolute URL such as http://host:8080/healthz or tcp://host:5432"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() in ['http', 'https', 'tcp', 'grpc', 'grpcs']",message="url scheme must be http, https, tcp, grpc or grpcs"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="url must name a host"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() != 'tcp' || url(self).getPort() != ''",message="a tcp url must name a port, such as tcp://host:5432"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || !(url(self).getScheme() in ['grpc', 'grpcs']) || (url(self).getPort() != '' && url(self).getEscapedPath() in ['', '/'] && url(self).getQuery().size() == 0)",message="a grpc or grpcs url must name a port and nothing after it, such as grpc://host:9090"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[A-Za-z][-A-Za-z0-9+.]*://[^/?#]*:0*(0|[7-9][0-9]{4}|6[6-9][0-9]{3}|65[6-9][0-9]{2}|655[4-9][0-9]|6553[6-9]|[0-9]{6,})([/?#].*)?$')",message="url port must be from 1 to 65535"
	URL string `json:"url,omitempty"`

	// service probes every ready endpoint of a Service in the breaker's namespace,
	// one probe round per interval; failurePercent decides whether a round failed.
	// Exactly one of url and service is set.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Service *ServiceTarget `json:"service,omitzero"`
}

// ServiceScheme is how the endpoints of a Service are probed.
// +kubebuilder:validation:Enum=HTTP;HTTPS;TCP
type ServiceScheme string

// The schemes a Service target may use.
const (
	ServiceSchemeHTTP  ServiceScheme = "HTTP"
	ServiceSchemeHTTPS ServiceScheme = "HTTPS"
	ServiceSchemeTCP   ServiceScheme = "TCP"
)

// ServiceTarget names a Service whose endpoints are probed one by one.
type ServiceTarget struct {
	// name is the name of a Service in the breaker's own namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// port is the Service port, by name ("http") or by number (8080). Each endpoint is
	// probed on the port its EndpointSlice gives for that Service port.
	// +required
	// +kubebuilder:validation:XIntOrString
	//nolint:kubeapilinter // required, and its zero value (port 0) is refused by the rule below: no pointer needed.
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 63",message="port must be a port number from 1 to 65535 or a port name"
	Port intstr.IntOrString `json:"port"`

	// path is the HTTP path requested from each endpoint, for HTTP and HTTPS. Defaults to "/".
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	Path string `json:"path,omitempty"`

	// scheme is HTTP or HTTPS (a GET of path) or TCP (a connect). Defaults to HTTP.
	// With spec.grpc, each endpoint is called with the gRPC health service instead:
	// in plaintext for HTTP, over TLS for HTTPS; TCP is refused.
	// +optional
	// +kubebuilder:default=HTTP
	Scheme ServiceScheme `json:"scheme,omitempty"`
}

// HTTPProbe tunes how HTTP(S) targets are probed and judged.
type HTTPProbe struct {
	// expectedStatuses lists the HTTP status codes that count as a success, each a
	// code ("204") or an inclusive range ("200-399"). Any other status is a failure.
	// Redirects are not followed: a 3xx answer is judged like any other status.
	// Defaults to ["200-399"].
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:default={"200-399"}
	ExpectedStatuses []StatusRange `json:"expectedStatuses,omitempty"`

	// headers are set on every probe request, from literal values or from keys of
	// Secrets in the breaker's namespace. Values never appear in status, events,
	// logs or metrics. Host and User-Agent cannot be set (every probe sends
	// User-Agent: breaker-operator/<version>).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []HTTPHeader `json:"headers,omitempty"`

	// tls configures certificate verification for https targets. Without it the
	// system roots verify the server's certificate for the URL's host name.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`
}

// HTTPHeader is a request header sent with each probe.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="exactly one of value and valueFrom must be set"
type HTTPHeader struct {
	// name is the header name, such as Authorization.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host', 'user-agent'])",message="headers may not set Host or User-Agent"
	Name string `json:"name,omitempty"`

	// value is a literal value. Prefer valueFrom for credentials.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value *string `json:"value,omitempty"`

	// valueFrom reads the value from a key of a Secret in the breaker's namespace.
	// While the Secret or the key is missing the breaker probes nothing and says so
	// in its Ready condition.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	ValueFrom *HeaderValueSource `json:"valueFrom,omitzero"`
}

// HeaderValueSource says where a header value comes from.
type HeaderValueSource struct {
	// secretKeyRef selects a key of a Secret in the breaker's namespace.
	// +required
	SecretKeyRef KeySelector `json:"secretKeyRef,omitzero"`
}

// KeySelector selects a key of a Secret or ConfigMap in the breaker's namespace.
type KeySelector struct {
	// name of the Secret or ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`

	// key within its data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// GRPCProbe tunes how gRPC targets are probed: with the standard health service,
// grpc.health.v1.Health, as kubelet's gRPC probe and grpc-health-probe call it.
type GRPCProbe struct {
	// service is the service name sent in each Health/Check or Health/Watch call;
	// empty (the default) asks about the server as a whole. SERVING is a success;
	// NOT_SERVING, SERVICE_UNKNOWN and UNKNOWN are failures (probe reasons
	// grpc_not_serving, grpc_service_unknown, grpc_unknown).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[!-~]*$`
	//nolint:kubeapilinter // "" is a meaningful value (the whole server), the protocol's own default.
	Service string `json:"service,omitempty"`

	// watch holds one Health/Watch stream per target (per endpoint for a Service)
	// instead of calling Health/Check every interval: each status change reaches
	// the breaker at once (at most one a second; a faster one is delivered at the
	// end of that second), and each interval the status last seen counts as a
	// probe, without a call. A stream is re-established with backoff; while none
	// is held, each interval counts as a failed probe with the reason of the last
	// attempt. A server that answers UNIMPLEMENTED is called with Health/Check
	// instead. Each stream holds one of the namespace's probe slots for as long as
	// it lives. Defaults to false.
	// +optional
	//nolint:kubeapilinter // false and unset mean the same (poll with Check), so no pointer is needed.
	Watch bool `json:"watch,omitempty"`

	// tls configures certificate verification and the client certificate for
	// grpcs:// targets and Service targets with scheme HTTPS. Without it the
	// system roots verify the server's certificate for the URL's host name.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`
}

// LocalSecretReference names a Secret in the breaker's namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`
}

// TLSConfig configures how an https or grpcs target's certificate is verified,
// and the certificate the probe presents.
type TLSConfig struct {
	// caBundle selects a ConfigMap key in the breaker's namespace holding PEM CA
	// certificates that verify the server, instead of the system roots.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	CABundle *KeySelector `json:"caBundle,omitzero"`

	// serverName is the name the server's certificate must carry, and the SNI sent.
	// Defaults to the URL's host, or <service>.<namespace>.svc for Service targets.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	//nolint:kubeapilinter // "" and unset both mean the default name; a MinLength would refuse manifests accepted so far.
	ServerName string `json:"serverName,omitempty"`

	// insecureSkipVerify turns certificate verification off. Allowed, but the Ready
	// condition's message says so for as long as it is set.
	// +optional
	//nolint:kubeapilinter // false and unset mean the same (verify), so no pointer is needed.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`

	// clientCertificateSecretRef names a Secret of type kubernetes.io/tls in the
	// breaker's namespace whose tls.crt and tls.key the probe presents to targets
	// that require mutual TLS. Like header Secrets, it is used only if labelled
	// circuit.resilience.dev/probe-credentials=true; while it is missing, unlabelled
	// or invalid the breaker probes nothing and says so in its Ready condition. A
	// change of the Secret is used from the next probe (or stream) on. Its content is
	// never logged nor written to status.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	ClientCertificateSecretRef *LocalSecretReference `json:"clientCertificateSecretRef,omitzero"`
}

// CircuitBreakerSpec defines the desired behaviour of a CircuitBreaker.
// +kubebuilder:validation:XValidation:rule="!has(self.http) || !has(self.http.tls) || (has(self.target.url) ? self.target.url.lowerAscii().startsWith('https') : (has(self.target.service) && has(self.target.service.scheme) && self.target.service.scheme == 'HTTPS'))",message="http.tls applies only to https targets"
// +kubebuilder:validation:XValidation:rule="!has(self.retryTimeout) || !has(self.interval) || !self.retryTimeout.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || !self.interval.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || duration(self.retryTimeout) <= duration(self.interval)",message="retryTimeout must not exceed interval: a probe must end before the next one is due",fieldPath=".retryTimeout"
// +kubebuilder:validation:XValidation:rule="!has(self.slowProbe) || !has(self.retryTimeout) || !self.slowProbe.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || !self.retryTimeout.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || duration(self.slowProbe) < duration(self.retryTimeout)",message="slowProbe must be less than retryTimeout",fieldPath=".slowProbe"
// +kubebuilder:validation:XValidation:rule="!has(self.backoff) || !has(self.timeout) || !self.backoff.maxTimeout.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || !self.timeout.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || duration(self.backoff.maxTimeout) >= duration(self.timeout)",message="backoff.maxTimeout must be at least timeout",fieldPath=".backoff.maxTimeout"
// +kubebuilder:validation:XValidation:rule="!has(self.http) || (has(self.target.url) ? self.target.url.lowerAscii().startsWith('http') : (!has(self.target.service) || !has(self.target.service.scheme) || self.target.service.scheme != 'TCP'))",message="http applies only to http:// and https:// targets"
// +kubebuilder:validation:XValidation:rule="!has(self.http) || !has(self.grpc)",message="http and grpc are mutually exclusive: set at most one"
// +kubebuilder:validation:XValidation:rule="!has(self.grpc) || (has(self.target.url) ? self.target.url.lowerAscii().startsWith('grpc') : (!has(self.target.service) || !has(self.target.service.scheme) || self.target.service.scheme != 'TCP'))",message="grpc applies only to grpc:// and grpcs:// targets and to HTTP or HTTPS Service targets"
// +kubebuilder:validation:XValidation:rule="!has(self.grpc) || !has(self.grpc.tls) || (has(self.target.url) ? self.target.url.lowerAscii().startsWith('grpcs') : (has(self.target.service) && has(self.target.service.scheme) && self.target.service.scheme == 'HTTPS'))",message="grpc.tls applies only to grpcs:// targets and Service targets with scheme HTTPS"
// +kubebuilder:validation:XValidation:rule="!has(self.enforce) || has(self.target.service)",message="enforce applies only to target.service"
// +kubebuilder:validation:XValidation:rule="!has(self.enforce) || !has(self.target.service) || (self.enforce.serviceName != self.target.service.name && (!has(self.enforce.fallback) || self.enforce.fallback.serviceName != self.enforce.serviceName))",message="enforce.serviceName must differ from target.service.name and enforce.fallback.serviceName"
type CircuitBreakerSpec struct {
	// target is what the breaker probes.
	// +required
	//nolint:kubeapilinter // Target's rule requires exactly one of its optional fields, so it is never empty.
	Target Target `json:"target"`

	// threshold is the number of consecutive failed probes that opens the circuit
	// while it is Closed. Lowering it takes effect at the next failure, never
	// retroactively. Defaults to 5; from 1 to 1000.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Threshold int32 `json:"threshold,omitempty"`

	// timeout is how long the circuit stays Open before it goes HalfOpen and sends a
	// trial probe, as a Go duration string ("30s", "1m"). Defaults to "60s"; from 1s to 24h.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="timeout must be at least 1s and at most 24h"
	Timeout GoDuration `json:"timeout,omitempty"`

	// retryTimeout is the deadline of each probe attempt, as a Go duration string
	// ("500ms", "10s"); a slower answer counts as a failure. It bounds the whole
	// exchange: connect, TLS handshake, request, headers and the first 4 KiB of the
	// body. Defaults to "10s"; from 100ms to 24h, and at most interval.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('24h'))",message="retryTimeout must be at least 100ms and at most 24h"
	RetryTimeout GoDuration `json:"retryTimeout,omitempty"`

	// interval is the time between the starts of two probes while the circuit is Closed
	// or HalfOpen, as a Go duration string ("500ms", "10s"). No probes are sent while it
	// is Open. Defaults to "10s"; from 100ms to 24h.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('100ms') && duration(self) <= duration('24h'))",message="interval must be at least 100ms and at most 24h"
	Interval GoDuration `json:"interval,omitempty"`

	// successThreshold is the number of consecutive successful trial probes in HalfOpen
	// that close the circuit. Defaults to 1; from 1 to 100.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	SuccessThreshold int32 `json:"successThreshold,omitempty"`

	// failurePercent applies to Service targets: a probe round fails when at least this
	// percentage of the probed endpoints fail. A round with no ready endpoint fails.
	// Defaults to 100 (every endpoint failing); from 1 to 100.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailurePercent int32 `json:"failurePercent,omitempty"`

	// http tunes the probe of HTTP(S) targets; it is refused for TCP and gRPC targets.
	// +optional
	HTTP *HTTPProbe `json:"http,omitempty"`

	// grpc makes the breaker probe with the standard gRPC health service
	// (grpc.health.v1.Health) and tunes it: for grpc:// and grpcs:// URLs (which
	// use its defaults without it) and for Service targets, whose every ready
	// endpoint is then called. Each call's deadline is retryTimeout. Mutually
	// exclusive with http.
	// +optional
	GRPC *GRPCProbe `json:"grpc,omitempty"`

	// failureRate also opens the circuit when, among the last window probes, at
	// least percent failed. threshold still applies: whichever is reached first
	// opens it. The window survives a restart (status.recentProbes) and is cleared
	// when the circuit closes. Unset: consecutive failures (threshold) only.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	FailureRate *FailureRate `json:"failureRate,omitzero"`

	// slowProbe makes a probe that succeeds slower than this count as failed, with
	// reason slow, as a Go duration string ("2s"). Must be less than retryTimeout.
	// Unset: a success is a success however long it took.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,6}([.][0-9]{1,9})?(ns|us|ms|s|m|h))+$') || (duration(self) >= duration('1ms') && duration(self) <= duration('24h'))",message="slowProbe must be at least 1ms and at most 24h"
	SlowProbe GoDuration `json:"slowProbe,omitempty"`

	// backoff lengthens each Open period after a failed trial: the circuit stays
	// Open for min(timeout * multiplier^reopens, maxTimeout), plus or minus
	// jitterPercent of that, where reopens counts the failed trials since the
	// circuit last closed. Unset: every Open period lasts timeout.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Backoff *Backoff `json:"backoff,omitzero"`

	// mode is who decides the state. Auto (the default): the policy above.
	// ForcedOpen: the circuit is Open and stays Open, with no probes and no
	// nextRetryTime; back to Auto it goes HalfOpen at once and sends a trial.
	// ForcedClosed: the circuit is Closed and stays Closed; probes go on and are
	// recorded, and whenever the policy would have opened it a Warning Event
	// CircuitWouldOpen is emitted (a dry run). mode wins over the reset and
	// trip-until annotations.
	// +optional
	// +kubebuilder:default=Auto
	Mode Mode `json:"mode,omitempty"`

	// enforce makes a Service target's breaker route traffic through a guarded
	// Service that it owns; only with target.service. See Enforce.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Enforce *Enforce `json:"enforce,omitzero"`
}

// LastProbe records a probe. To keep API traffic low it is written together with
// other status changes and when the outcome (result, reason or HTTP status) differs
// from the one recorded, not after every identical probe.
type LastProbe struct {
	// time is when the probe started.
	// +required
	//nolint:kubeapilinter // always set by the controller; a zero time is never written.
	Time metav1.MicroTime `json:"time"`

	// result is Success or Failure.
	// +required
	Result ProbeResult `json:"result,omitempty"`

	// reason is the short machine-readable cause of the result, one of:
	// ok (the target answered as expected);
	// timeout (no answer within retryTimeout);
	// connection_refused (the target's host refused the connection);
	// dns (the target's host name did not resolve);
	// tls (the TLS handshake or the certificate's verification failed);
	// http_status (the answer's status is not in http.expectedStatuses);
	// grpc_not_serving (a gRPC target's health service answered NOT_SERVING);
	// grpc_service_unknown (it does not know grpc.service: SERVICE_UNKNOWN, or NOT_FOUND from Check);
	// grpc_unknown (it answered UNKNOWN);
	// grpc_status (a gRPC health call failed with another gRPC status code);
	// denied (the operator's probe guard refused the target's address);
	// no_endpoints (a Service target had no ready endpoint, or could not be resolved to endpoints);
	// slow (the answer was as expected but slower than slowProbe);
	// other (any other failure).
	// It never carries a response body or header.
	// +optional
	Reason ProbeReason `json:"reason,omitempty"`

	// httpStatus is the HTTP status code of the answer, for HTTP(S) targets that answered.
	// +optional
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=999
	HTTPStatus int32 `json:"httpStatus,omitempty"`

	// latency is how long the probe took, as a Go duration string.
	// +optional
	//nolint:kubeapilinter // written with every probe and omitted (omitzero) only when unset, so no pointer is needed.
	Latency metav1.Duration `json:"latency,omitzero"`
}

// LastTransition records the circuit's most recent change of state and why it happened.
type LastTransition struct {
	// from is the state the circuit left.
	// +required
	From State `json:"from,omitempty"`

	// to is the state the circuit entered; it is status.state until the next transition.
	// +required
	To State `json:"to,omitempty"`

	// reason says why, one of:
	// ThresholdReached (Closed to Open: threshold probes failed in a row);
	// FailureRateReached (Closed to Open: at least failureRate.percent of the last failureRate.window probes failed);
	// TrialFailed (HalfOpen to Open: a trial probe failed);
	// TimeoutElapsed (Open to HalfOpen: nextRetryTime passed);
	// TrialsSucceeded (HalfOpen to Closed: successThreshold trials succeeded in a row);
	// Reset (to Closed: the circuit.resilience.dev/reset annotation);
	// Tripped (to Open: the circuit.resilience.dev/trip-until annotation);
	// ForcedOpen (to Open: mode ForcedOpen);
	// ForcedClosed (to Closed: mode ForcedClosed);
	// ModeAuto (Open to HalfOpen: mode went back from ForcedOpen to Auto).
	// +required
	Reason TransitionReason `json:"reason,omitempty"`

	// time is when the transition happened; it equals status.lastTransitionTime.
	// +required
	//nolint:kubeapilinter // always set by the controller; a zero time is never written.
	Time metav1.MicroTime `json:"time"`
}

// EndpointRef names the object behind an endpoint, usually a Pod.
type EndpointRef struct {
	// kind of the object, such as Pod.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind,omitempty"`
	// name of the object.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
}

// EndpointStatus is the last probe of one endpoint of a Service target.
type EndpointStatus struct {
	// address is the endpoint's IP address, from its EndpointSlice.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Address string `json:"address,omitempty"`
	// port is the port probed.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// targetRef is the object behind the endpoint, usually a Pod.
	// +optional
	TargetRef *EndpointRef `json:"targetRef,omitempty"`
	// lastResult is the outcome of the endpoint's last probe.
	// +required
	LastResult ProbeResult `json:"lastResult,omitempty"`
	// reason is the short cause of the last result, with the values of lastProbe.reason.
	// +optional
	Reason ProbeReason `json:"reason,omitempty"`
	// consecutiveFailures counts the endpoint's failed probes in a row.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 is a count like any other and always shown, so never omitted and no pointer.
	ConsecutiveFailures int32 `json:"consecutiveFailures"`
	// ejected is true while the endpoint is ejected from the guarded Service (spec.enforce.ejection).
	// +optional
	//nolint:kubeapilinter // false and unset mean the same (served), so no pointer is needed.
	Ejected bool `json:"ejected,omitempty"`
}

// CircuitBreakerStatus is the observed state of a CircuitBreaker. It holds
// everything the controller needs to carry on after a restart.
type CircuitBreakerStatus struct {
	// conditions describe the breaker. Ready is True while the target is probed as
	// specified, and False with a reason when it cannot be.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// state is Closed, Open or HalfOpen.
	// +optional
	State State `json:"state,omitempty"`

	// target summarises what is probed, for display: the URL (without credentials) or
	// service/<name>:<port>.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Target string `json:"target,omitempty"`

	// consecutiveFailures counts the failed probes in a row while Closed; it returns
	// to 0 on a success, when the circuit closes, and on a reset.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 is a count like any other and always shown, so never omitted and no pointer.
	ConsecutiveFailures int32 `json:"consecutiveFailures"`

	// consecutiveSuccesses counts the successful trial probes in a row while HalfOpen.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 is a count like any other and always shown, so never omitted and no pointer.
	ConsecutiveSuccesses int32 `json:"consecutiveSuccesses"`

	// lastTransitionTime is when the state last changed.
	// +optional
	LastTransitionTime *metav1.MicroTime `json:"lastTransitionTime,omitempty"`

	// lastTransition is the most recent change of state: from, to, why and when.
	// Written with every transition; unset until the first one (a new breaker
	// starts Closed without a transition).
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	LastTransition *LastTransition `json:"lastTransition,omitzero"`

	// openedAt is when the circuit opened; set only while Open.
	// +optional
	OpenedAt *metav1.MicroTime `json:"openedAt,omitempty"`

	// nextRetryTime is when an Open circuit goes HalfOpen (openedAt + timeout); set only
	// while Open. The controller computes its wake-up from this field, so a restart
	// of the manager does not delay it.
	// +optional
	NextRetryTime *metav1.MicroTime `json:"nextRetryTime,omitempty"`

	// lastProbe is the most recent recorded probe.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	LastProbe *LastProbe `json:"lastProbe,omitzero"`

	// endpoints lists the probed endpoints of a Service target, sorted by address and
	// port, at most 64 of them; endpointsOmitted says how many it leaves out, and
	// omittedFailingEndpoints lists the failing ones among those.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Endpoints []EndpointStatus `json:"endpoints,omitempty"`

	// omittedFailingEndpoints lists the failing endpoints that endpoints leaves
	// out (those past the 64th), sorted by address and port: their failure counts
	// decide ejection (spec.enforce.ejection) like those of the listed endpoints,
	// and are kept here so that a restart of the manager loses none. Endpoints that
	// succeeded in the last round are not listed. At most 2000; were more failing
	// at once, those that failed longest are kept and the others count again from 0.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=2000
	OmittedFailingEndpoints []EndpointStatus `json:"omittedFailingEndpoints,omitempty"`

	// endpointsOmitted is how many of the probed endpoints (endpointsTotal) the
	// endpoints list leaves out: endpointsTotal minus 64 when there are more than 64.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 and unset mean the same (none left out), so no pointer is needed.
	EndpointsOmitted int32 `json:"endpointsOmitted,omitempty"`

	// endpointsTotal is how many ready endpoints the last probe round of a Service target probed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 and unset mean the same (no Service target, or none failing), so no pointer is needed.
	EndpointsTotal int32 `json:"endpointsTotal,omitempty"`

	// endpointsFailing is how many of them failed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 and unset mean the same (no Service target, or none failing), so no pointer is needed.
	EndpointsFailing int32 `json:"endpointsFailing,omitempty"`

	// enforcement says what the guarded Service of spec.enforce serves; unset
	// without spec.enforce, or while another owner's Service holds its name.
	// +optional
	//nolint:kubeapilinter // a pointer, so that readers test for nil; omitzero leaves it out when unset.
	Enforcement *EnforcementStatus `json:"enforcement,omitzero"`

	// lastHandledReset is the value of the circuit.resilience.dev/reset annotation
	// that was last acted on.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	LastHandledReset string `json:"lastHandledReset,omitempty"`

	// observedGeneration is the metadata.generation that this status describes.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// reopens counts the failed trials since the circuit last closed; it drives
	// backoff. Zero while Closed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	//nolint:kubeapilinter // 0 and unset mean the same (no failed trial since Closed), so no pointer is needed.
	Reopens int32 `json:"reopens,omitempty"`

	// recentProbes is the failureRate window from its first failure on, oldest
	// first, one letter per probe recorded while Closed: S for a success, F for a
	// failure (slow ones included). The successes just before its first F are
	// counted in leadingSuccesses instead, so that a healthy breaker writes
	// nothing. At most failureRate.window letters; empty without failureRate,
	// while no failure is among the last failureRate.window probes, and after
	// every change of state.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[SF]*$`
	//nolint:kubeapilinter // "" and unset mean the same (an empty window), so no pointer is needed.
	RecentProbes string `json:"recentProbes,omitempty"`

	// leadingSuccesses counts the successful probes recorded while Closed just
	// before recentProbes' first letter (all of them while recentProbes is
	// empty), as many as still fall within failureRate.window: at most
	// failureRate.window minus the length of recentProbes, and at most
	// failureRate.window - 1. failureRate is judged over leadingSuccesses plus
	// the length of recentProbes probes. Zero without failureRate, and after
	// every change of state and every reset, when the breaker starts counting
	// again; once it reaches its cap, further successes change nothing.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	//nolint:kubeapilinter // 0 and unset mean the same (no success counted), so no pointer is needed.
	LeadingSuccesses int32 `json:"leadingSuccesses,omitempty"`

	// forcedMode is the mode that holds the state (ForcedOpen or ForcedClosed);
	// empty under Auto.
	// +optional
	ForcedMode Mode `json:"forcedMode,omitempty"`

	// wouldBeOpen is set, under mode ForcedClosed, while the policy would have
	// the circuit Open; it is cleared by the success that would have closed it.
	// +optional
	//nolint:kubeapilinter // false and unset mean the same, so no pointer is needed.
	WouldBeOpen bool `json:"wouldBeOpen,omitempty"`

	// trippedUntil is, while the trip-until annotation holds the circuit Open,
	// the time it goes HalfOpen; timeout and backoff do not move it.
	// +optional
	TrippedUntil *metav1.MicroTime `json:"trippedUntil,omitempty"`

	// lastHandledTrip is the value of the trip-until annotation last acted on
	// (or ignored, for a time not in the future).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	LastHandledTrip string `json:"lastHandledTrip,omitempty"`

	// probedBy is the identity of the manager (the member of a sharded ring,
	// --sharding) that owns the breaker: it probes it and last wrote this
	// status. Written only when the owner changes, so a healthy breaker's
	// status is not written again. Unset when the manager runs without sharding.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ProbedBy string `json:"probedBy,omitempty"`
}

// CircuitBreaker probes a target and opens its circuit when the target fails
// threshold times in a row, goes HalfOpen after timeout, and closes again when
// trial probes succeed. Reset it by hand with the circuit.resilience.dev/reset annotation.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cb;breaker,categories=resilience
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Failures",type=integer,JSONPath=`.status.consecutiveFailures`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.target`
// +kubebuilder:printcolumn:name="Next Retry",type=string,JSONPath=`.status.nextRetryTime`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.lastTransition.reason`,priority=1
// +kubebuilder:printcolumn:name="Probed By",type=string,JSONPath=`.status.probedBy`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CircuitBreaker struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// spec is the desired behaviour of the breaker.
	// +required
	//nolint:kubeapilinter // the root object's spec is a value, as kubebuilder scaffolds it; target makes it non-empty.
	Spec CircuitBreakerSpec `json:"spec"`

	// status is the observed state of the breaker, written by the controller.
	// +optional
	//nolint:kubeapilinter // a value, as kubebuilder scaffolds it; omitzero leaves an empty status out.
	Status CircuitBreakerStatus `json:"status,omitzero"`
}

// CircuitBreakerList contains a list of CircuitBreaker.
// +kubebuilder:object:root=true
type CircuitBreakerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []CircuitBreaker `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CircuitBreaker{}, &CircuitBreakerList{})
}
