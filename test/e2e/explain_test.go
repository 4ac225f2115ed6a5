package e2e

import (
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// TestKubectlExplainPrintsTheFieldDocumentation checks that the CRD carries
// the API's field documentation to `kubectl explain`.
func TestKubectlExplainPrintsTheFieldDocumentation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	out := explain(g, "circuitbreaker.spec.timeout")
	g.Expect(out).To(ContainSubstring("GROUP:      circuit.resilience.dev"))
	g.Expect(out).To(MatchRegexp(`FIELD:\s+timeout <string>`))
	g.Expect(out).To(ContainSubstring("how long the circuit stays Open"))
	g.Expect(out).To(ContainSubstring("Defaults to"))
}

// TestKubectlExplainDocumentsEveryProbeReason checks that every value of
// lastProbe.reason is explained to `kubectl explain`, no_endpoints included.
func TestKubectlExplainDocumentsEveryProbeReason(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	out := explain(g, "circuitbreaker.status.lastProbe.reason")
	for _, r := range circuitv1alpha1.ProbeReasons {
		g.Expect(out).To(MatchRegexp(`\b`+regexp.QuoteMeta(string(r))+`\s+\(`), "reason %s is not explained", r)
	}
}

// explain runs `kubectl explain field`, waiting for the API server to publish
// the CRD's OpenAPI schema, which follows a little after the CRD is Established.
func explain(g Gomega, field string) string {
	var out string
	g.Eventually(func() error {
		var err error
		out, err = kubectl("explain", field)
		return err
	}).WithTimeout(60*time.Second).WithPolling(time.Second).Should(Succeed(), func() string { return "kubectl explain: " + out })
	return out
}
