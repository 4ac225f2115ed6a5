package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
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
