package manifests

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// readerRole is the reader ClusterRole's name on every install path: kustomize
// prefixes config/rbac's circuitbreaker-reader with breaker-operator-, and the
// Helm chart with its own name, breaker-operator.
const readerRole = "breaker-operator-circuitbreaker-reader"

func TestReaderRoleGrantsApplicationsReadsOfBreakersOnly(t *testing.T) {
	g := NewWithT(t)
	role := readerRoleIn(t, render(t, "config/default"))
	g.Expect(role).NotTo(BeNil(), "config/default renders no ClusterRole %s", readerRole)
	g.Expect(flatten(convert[rbacv1.ClusterRole](t, role).Rules)).To(ConsistOf(
		"circuit.resilience.dev/circuitbreakers:get",
		"circuit.resilience.dev/circuitbreakers:list",
		"circuit.resilience.dev/circuitbreakers:watch"))
}

func readerRoleIn(t *testing.T, objs []*unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == "ClusterRole" && u.GetName() == readerRole {
			return u
		}
	}
	return nil
}

// docsReaderBinding is the RoleBinding that docs/consumers.md tells users to
// apply, as written there.
func docsReaderBinding(t *testing.T) *rbacv1.RoleBinding {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(), "docs", "consumers.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		var rb rbacv1.RoleBinding
		if yaml.Unmarshal([]byte(block[1]), &rb) == nil && rb.Kind == "RoleBinding" {
			return &rb
		}
	}
	t.Fatal("docs/consumers.md shows no RoleBinding")
	return nil
}

// The binding docs/consumers.md shows, applied verbatim next to the reader
// role each install path creates, lets the ServiceAccount get, list and watch
// circuitbreakers in its namespace and nothing else, as the API server's
// authorizer judges it.
func TestDocsReaderBindingGrantsReadsOfBreakersOnlyOnEveryInstallPath(t *testing.T) {
	controlPlane(t)
	rb := docsReaderBinding(t)
	g := NewWithT(t)
	g.Expect(rb.Subjects).To(HaveLen(1))
	g.Expect(rb.Subjects[0].Kind).To(Equal("ServiceAccount"))
	ns, sa := rb.Namespace, rb.Subjects[0].Name
	user := "system:serviceaccount:" + rb.Subjects[0].Namespace + ":" + sa
	binding, err := yaml.Marshal(rb)
	g.Expect(err).NotTo(HaveOccurred())

	crd := filepath.Join(root(), "config", "crd", "bases", "circuit.resilience.dev_circuitbreakers.yaml")
	mustKubectl(t, "", "apply", "--server-side", "-f", crd)
	mustKubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s", "-f", crd)
	mustKubectl(t, "", "create", "namespace", ns)
	mustKubectl(t, "", "create", "namespace", ns+"-other")
	mustKubectl(t, "", "create", "serviceaccount", sa, "-n", rb.Subjects[0].Namespace)
	unbound := rulesOf(t, user, ns)

	paths := map[string]func(t *testing.T) []*unstructured.Unstructured{
		"kustomize": func(t *testing.T) []*unstructured.Unstructured { return render(t, "config/default") },
		"install.yaml": func(t *testing.T) []*unstructured.Unstructured {
			data, err := os.ReadFile(installYAML(t))
			if err != nil {
				t.Fatal(err)
			}
			return decodeAll(t, data)
		},
		"helm": func(t *testing.T) []*unstructured.Unstructured {
			return decodeAll(t, []byte(helmTemplate(t, installNamespace, nil)))
		},
	}
	for _, name := range []string{"kustomize", "install.yaml", "helm"} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			role := readerRoleIn(t, paths[name](t))
			g.Expect(role).NotTo(BeNil(), "%s creates no ClusterRole %s", name, readerRole)
			roleYAML, err := yaml.Marshal(role.Object)
			g.Expect(err).NotTo(HaveOccurred())
			mustKubectl(t, string(roleYAML), "apply", "-f", "-")
			mustKubectl(t, string(binding), "apply", "-f", "-")
			defer mustKubectl(t, "", "delete", "clusterrole", readerRole)
			defer mustKubectl(t, "", "delete", "rolebinding", rb.Name, "-n", ns)

			for _, verb := range []string{"get", "list", "watch"} {
				g.Expect(canI(t, user, ns, verb, "circuitbreakers.circuit.resilience.dev")).To(BeTrue(), verb)
			}
			for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
				g.Expect(canI(t, user, ns, verb, "circuitbreakers.circuit.resilience.dev")).To(BeFalse(), verb)
			}
			g.Expect(canI(t, user, ns, "patch", "circuitbreakers.circuit.resilience.dev/status")).To(BeFalse())
			g.Expect(canI(t, user, ns+"-other", "get", "circuitbreakers.circuit.resilience.dev")).To(BeFalse())

			// Everything the binding adds to what the ServiceAccount could do
			// unbound (discovery, self reviews) is the three reads.
			var added []string
			for _, r := range rulesOf(t, user, ns) {
				if !slices.Contains(unbound, r) {
					added = append(added, r)
				}
			}
			g.Expect(added).To(ConsistOf("circuitbreakers.circuit.resilience.dev [] [] [get list watch]"))
			g.Expect(rulesOf(t, user, ns+"-other")).To(ConsistOf(unbound))
		})
	}
}

// canI asks the API server's authorizer (a SubjectAccessReview, through
// kubectl auth can-i) whether user may do verb on resource in ns.
func canI(t *testing.T, user, ns, verb, resource string) bool {
	t.Helper()
	out, err := kubectl(t, "", "auth", "can-i", verb, resource, "-n", ns, "--as", user)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	switch lines[len(lines)-1] {
	case "yes":
		return true
	case "no":
		return false
	}
	t.Fatalf("kubectl auth can-i %s %s: %v\n%s", verb, resource, err, out)
	return false
}

// rulesOf lists what user may do in ns (kubectl auth can-i --list), one
// normalised "resources non-resource-URLs names verbs" line per rule.
func rulesOf(t *testing.T, user, ns string) []string {
	t.Helper()
	out := mustKubectl(t, "", "auth", "can-i", "--list", "-n", ns, "--as", user, "--no-headers")
	var rules []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rules = append(rules, strings.Join(strings.Fields(line), " "))
	}
	return rules
}
