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
	var out string
	// The API server publishes a new CRD's OpenAPI schema a little after the CRD is Established.
	g.Eventually(func() error {
		var err error
		out, err = kubectl("explain", "circuitbreaker.spec.timeout")
		return err
	}).WithTimeout(60*time.Second).WithPolling(time.Second).Should(Succeed(), func() string { return "kubectl explain: " + out })
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
	var out string
	g.Eventually(func() error {
		var err error
		out, err = kubectl("explain", "circuitbreaker.status.lastProbe.reason")
		return err
	}).WithTimeout(60*time.Second).WithPolling(time.Second).Should(Succeed(), func() string { return "kubectl explain: " + out })
	for _, r := range circuitv1alpha1.ProbeReasons {
		g.Expect(out).To(MatchRegexp(`\b`+regexp.QuoteMeta(string(r))+`\s+\(`), "reason %s is not explained", r)
	}
}
