// Package manifests checks the rendered deployment manifests: least-privilege
// RBAC, a manager that meets the restricted Pod Security Standard, and an image
// that runs as a non-root user without a shell.
package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func root() string { return filepath.Join("..", "..") }

// render runs kustomize (built into kubectl) on a config directory.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to render kustomize trees: %v", err)
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(root(), dir)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return decodeAll(t, out)
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// rule flattens a policy rule into "group/resource:verb" strings.
func flatten(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+":"+v)
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out = append(out, u+":"+v)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestManagerRoleGrantsExactlyWhatTheControllerUses(t *testing.T) {
	g := NewWithT(t)
	got := map[string][]string{}
	for _, u := range render(t, "config/rbac") {
		switch u.GetKind() {
		case "ClusterRole":
			got["ClusterRole/"+u.GetName()] = flatten(convert[rbacv1.ClusterRole](t, u).Rules)
		case "Role":
			got["Role/"+u.GetName()] = flatten(convert[rbacv1.Role](t, u).Rules)
		}
	}
	read := func(gr string) []string { return []string{gr + ":get", gr + ":list", gr + ":watch"} }
	write := func(gr string) []string {
		return []string{gr + ":create", gr + ":update", gr + ":patch", gr + ":delete"}
	}
	want := slices.Concat(
		// namespaces: the probe-allowed-cidrs annotation an admin sets on a Namespace.
		read("/configmaps"), read("/namespaces"), read("/secrets"), read("/services"),
		read("circuit.resilience.dev/circuitbreakers"),
		[]string{"circuit.resilience.dev/circuitbreakers/status:patch"},
		read("discovery.k8s.io/endpointslices"),
		// spec.enforce: the guarded Service and its EndpointSlices are created,
		// kept in step with the breaker and deleted when enforce is removed. The
		// controller only writes objects it controls (owner reference) and leaves
		// a Service of the same name that it does not own alone. It changes them
		// with merge patches; update is granted as the enforcement API specifies
		// (create/update/patch/delete), for writers that replace whole objects.
		write("/services"), write("discovery.k8s.io/endpointslices"),
		[]string{"events.k8s.io/events:create", "events.k8s.io/events:patch"},
	)
	slices.Sort(want)
	g.Expect(got["ClusterRole/manager-role"]).To(Equal(want))

	g.Expect(got["Role/leader-election-role"]).To(ConsistOf(
		"coordination.k8s.io/leases:get", "coordination.k8s.io/leases:list", "coordination.k8s.io/leases:watch",
		"coordination.k8s.io/leases:create", "coordination.k8s.io/leases:update", "coordination.k8s.io/leases:patch",
		"coordination.k8s.io/leases:delete",
		"/events:create", "/events:patch", "events.k8s.io/events:create", "events.k8s.io/events:patch"))
	g.Expect(got["ClusterRole/metrics-auth-role"]).To(ConsistOf(
		"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create"))
	g.Expect(got["ClusterRole/metrics-reader"]).To(ConsistOf("/metrics:get"))

	// The manager's service account is bound to those three roles and no other;
	// the circuitbreaker admin/editor/viewer roles are helpers for people.
	bound := map[string]bool{}
	for _, u := range render(t, "config/rbac") {
		if u.GetKind() != "ClusterRoleBinding" && u.GetKind() != "RoleBinding" {
			continue
		}
		b := convert[rbacv1.RoleBinding](t, u)
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == "controller-manager" {
				bound[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
			}
		}
	}
	g.Expect(bound).To(Equal(map[string]bool{
		"ClusterRole/manager-role": true, "Role/leader-election-role": true, "ClusterRole/metrics-auth-role": true,
	}))
}

func TestManagerRunsUnderTheRestrictedPodSecurityStandard(t *testing.T) {
	g := NewWithT(t)
	var dep *appsv1.Deployment
	for _, u := range render(t, "config/default") {
		if u.GetKind() == "Deployment" {
			dep = convert[appsv1.Deployment](t, u)
		}
	}
	g.Expect(dep).NotTo(BeNil())
	pod := dep.Spec.Template.Spec
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(pod.Containers).To(HaveLen(1))
	c := pod.Containers[0]
	g.Expect(c.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(c.SecurityContext.Capabilities.Add).To(BeEmpty())
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
	g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceCPU))
	g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
	g.Expect(c.Args).To(ContainElement("--leader-elect"))
	g.Expect(c.Args).To(ContainElement("--metrics-bind-address=:8443"))
	g.Expect(strings.Join(c.Args, " ")).NotTo(ContainSubstring("allow-loopback"))
}

func TestImageRunsAsNonRootWithoutAShell(t *testing.T) {
	g := NewWithT(t)
	df, err := os.ReadFile(filepath.Join(root(), "Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())
	text := string(df)
	stages := strings.Split(text, "\nFROM ")
	final := stages[len(stages)-1]
	g.Expect(final).To(HavePrefix("gcr.io/distroless/static:nonroot"), "a base image with no shell")
	g.Expect(final).To(ContainSubstring("USER 65532:65532"))
	g.Expect(text).To(ContainSubstring("CGO_ENABLED=0"), "a static binary")
}
