package manifests

import (
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestReaderRoleGrantsApplicationsReadsOfBreakersOnly(t *testing.T) {
	g := NewWithT(t)
	var rules []string
	for _, u := range render(t, "config/rbac") {
		if u.GetKind() == "ClusterRole" && u.GetName() == "circuitbreaker-reader" {
			rules = flatten(convert[rbacv1.ClusterRole](t, u).Rules)
		}
	}
	g.Expect(rules).To(ConsistOf(
		"circuit.resilience.dev/circuitbreakers:get",
		"circuit.resilience.dev/circuitbreakers:list",
		"circuit.resilience.dev/circuitbreakers:watch"))
}
