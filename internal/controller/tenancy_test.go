package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

func annotateNamespace(g Gomega, ns, value string, set bool) {
	obj := &corev1.Namespace{}
	g.Expect(k8sClient.Get(context.Background(), keyOf("", ns), obj)).To(Succeed())
	if obj.Annotations == nil {
		obj.Annotations = map[string]string{}
	}
	if set {
		obj.Annotations[circuitv1alpha1.ProbeAllowedCIDRsAnnotation] = value
	} else {
		delete(obj.Annotations, circuitv1alpha1.ProbeAllowedCIDRsAnnotation)
	}
	g.Expect(k8sClient.Update(context.Background(), obj)).To(Succeed())
}

func readyOf(g Gomega, ns, name string) *metav1.Condition {
	ready := findCondition(getBreaker(g, ns, name), circuitv1alpha1.ConditionReady)
	g.Expect(ready).NotTo(BeNil())
	return ready
}

func TestNamespaceAllowedRangesBoundWhereItsBreakersConnect(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	annotateNamespace(g, ns, "10.20.0.0/16, 192.168.5.0/24", true)
	startOperator(t, ns)
	tg := newTarget(t)
	spec := breakerSpec(tg.url("/inside"))
	spec.Threshold = 1
	spec.Timeout = "1h"
	createBreaker(t, ns, "outside", spec)

	cb := waitState(t, ns, "outside", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonDenied))
	g.Expect(readyOf(g, ns, "outside").Reason).To(Equal(circuitv1alpha1.ReasonProbeDenied))
	g.Expect(tg.count("/inside")).To(BeZero(), "refused before connecting")

	// The admin widens the namespace's ranges: the next probe (a reset brings it
	// at once) reaches the target.
	annotateNamespace(g, ns, "127.0.0.0/8", true)
	cb = getBreaker(g, ns, "outside")
	cb.Annotations = map[string]string{circuitv1alpha1.ResetAnnotation: "1"}
	g.Expect(k8sClient.Update(context.Background(), cb)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(tg.count("/inside")).To(BeNumerically(">", 0))
		g.Expect(readyOf(g, ns, "outside").Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// A value that does not parse fails closed.
	annotateNamespace(g, ns, "10.0.0.0/8,not-a-cidr", true)
	g.Eventually(func(g Gomega) {
		ready := readyOf(g, ns, "outside")
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonProbeDenied))
		g.Expect(ready.Message).To(ContainSubstring(circuitv1alpha1.ProbeAllowedCIDRsAnnotation))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	before := tg.count("/inside")
	time.Sleep(time.Second)
	g.Expect(tg.count("/inside")).To(BeNumerically("<=", before+1), "probes stopped")

	// Without the annotation the operator's own guard alone applies.
	annotateNamespace(g, ns, "", false)
	g.Eventually(func(g Gomega) {
		g.Expect(readyOf(g, ns, "outside").Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// roleWithout is the manager's ClusterRole without access to resource.
func roleWithout(t *testing.T, resource string) *rbacv1.ClusterRole {
	role := clusterRoleFromFile(t, "role.yaml")
	for i := range role.Rules {
		role.Rules[i].Resources = slices.DeleteFunc(role.Rules[i].Resources, func(r string) bool { return r == resource })
	}
	return role
}

func TestWithoutRBACForSecretsReadySaysSoAtOnce(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	managerCfg := rest.AnonymousClientConfig(cfg)
	managerCfg.BearerToken = serviceAccountTokenFor(t, ns, "no-secrets", roleWithout(t, "secrets"))
	startOperatorWith(t, ns, operatorOptions{config: managerCfg})
	ht := newHeaderTarget(t)
	createSecret(g, ns, "probe-token", map[string]string{"header": "Bearer s3cret"})
	start := time.Now()
	createBreaker(t, ns, "needs-secret", headerSpec(ht.URL+"/healthz"))
	g.Eventually(func(g Gomega) {
		ready := readyOf(g, ns, "needs-secret")
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonReferenceForbidden))
		g.Expect(ready.Message).To(ContainSubstring("Secret probe-token"))
	}).WithTimeout(8 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	t.Logf("Ready said ReferenceForbidden %v after the create", time.Since(start).Round(time.Millisecond))
	g.Expect(time.Since(start)).To(BeNumerically("<", 8*time.Second), "not after a stalled 10s watch sync")
	g.Expect(ht.count()).To(BeZero())
}
