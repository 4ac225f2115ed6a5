package manifests

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// The CRD's enum of probe reasons is exactly the API's list, so that the
// API server accepts every reason the controller writes and nothing else.
func TestCRDAcceptsExactlyTheAPIsProbeReasons(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(root(), "config", "crd", "bases", "circuit.resilience.dev_circuitbreakers.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(data, crd)).To(Succeed())
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	status := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"]

	var want []string
	for _, r := range circuitv1alpha1.ProbeReasons {
		want = append(want, `"`+string(r)+`"`)
	}
	enum := func(s apiextensionsv1.JSONSchemaProps) []string {
		var got []string
		for _, v := range s.Enum {
			got = append(got, string(v.Raw))
		}
		return got
	}
	g.Expect(enum(status.Properties["lastProbe"].Properties["reason"])).To(Equal(want), "status.lastProbe.reason")
	g.Expect(enum(status.Properties["endpoints"].Items.Schema.Properties["reason"])).To(Equal(want), "status.endpoints[].reason")
}
