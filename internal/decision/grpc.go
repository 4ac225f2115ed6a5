package decision

import (
	"fmt"
	"strings"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// tlsSpecID describes TLS settings without any value read from a reference.
func tlsSpecID(t *circuitv1alpha1.TLSConfig) string {
	if t == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tls:%s;%t;", t.ServerName, t.InsecureSkipVerify)
	if t.CABundle != nil {
		b.WriteString(t.CABundle.Name + "/" + t.CABundle.Key)
	}
	if t.ClientCertificateSecretRef != nil {
		b.WriteString(";client:" + t.ClientCertificateSecretRef.Name)
	}
	return b.String()
}

// grpcSettings makes a breaker's target a gRPC one when its spec says so: a
// grpc:// or grpcs:// URL (which ParseURL gave default settings), or spec.grpc.
// A Service's endpoints are then called in plaintext for scheme HTTP and over
// TLS for HTTPS.
func grpcSettings(spec circuitv1alpha1.CircuitBreakerSpec, target *probe.Target) {
	g := spec.GRPC
	if g == nil {
		return
	}
	target.GRPC = &probe.GRPCSettings{Service: g.Service, Watch: g.Watch}
	switch target.Scheme {
	case probe.HTTP:
		target.Scheme = probe.GRPC
	case probe.HTTPS:
		target.Scheme = probe.GRPCS
	}
}

// grpcSpecID describes spec.grpc, so that a change of it probes at once.
func grpcSpecID(g *circuitv1alpha1.GRPCProbe) string {
	if g == nil {
		return ""
	}
	return fmt.Sprintf("grpc:%q;%t;%s", g.Service, g.Watch, tlsSpecID(g.TLS))
}
