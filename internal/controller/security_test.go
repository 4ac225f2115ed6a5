package controller

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// headerTarget records the headers of each request it receives.
type headerTarget struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newHeaderTarget(t *testing.T) *headerTarget {
	ht := &headerTarget{}
	ht.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ht.mu.Lock()
		ht.headers = append(ht.headers, r.Header.Clone())
		ht.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer s3cret-v2" && r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ht.Close)
	return ht
}

func (ht *headerTarget) last() http.Header {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	if len(ht.headers) == 0 {
		return nil
	}
	return ht.headers[len(ht.headers)-1]
}

func (ht *headerTarget) count() int {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	return len(ht.headers)
}

// createSecret creates a Secret that consents to probes.
func createSecret(g Gomega, ns, name string, data map[string]string) {
	createSecretLabelled(g, ns, name, data, map[string]string{circuitv1alpha1.ProbeCredentialsLabel: "true"})
}

func createSecretLabelled(g Gomega, ns, name string, data, labels map[string]string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, StringData: data}
	g.Expect(k8sClient.Create(context.Background(), s)).To(Succeed())
}

func headerSpec(url string) circuitv1alpha1.CircuitBreakerSpec {
	spec := breakerSpec(url)
	spec.HTTP = &circuitv1alpha1.HTTPProbe{Headers: []circuitv1alpha1.HTTPHeader{
		{Name: "X-Probe", Value: ptr.To("literal")},
		{Name: "Authorization", ValueFrom: &circuitv1alpha1.HeaderValueSource{
			SecretKeyRef: circuitv1alpha1.KeySelector{Name: "probe-token", Key: "header"}}},
	}}
	return spec
}

func TestHeadersFromSecretsReachOnlyTheTarget(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createSecret(g, ns, "probe-token", map[string]string{"header": "Bearer s3cret"})
	createSecret(g, ns, "unrelated", map[string]string{"x": "y"})
	op := startOperator(t, ns)
	ht := newHeaderTarget(t)
	createBreaker(t, ns, "auth", headerSpec(ht.URL+"/healthz"))

	g.Eventually(func(g Gomega) {
		h := ht.last()
		g.Expect(h).NotTo(BeNil())
		g.Expect(h.Get("Authorization")).To(Equal("Bearer s3cret"))
		g.Expect(h.Get("X-Probe")).To(Equal("literal"))
		g.Expect(h.Get("User-Agent")).To(HavePrefix("breaker-operator/"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(op.reconciler.refs.watched()).To(Equal(1), "only the referenced Secret is watched")

	// A new value is picked up through the watch.
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "probe-token"), s)).To(Succeed())
	s.Data = map[string][]byte{"header": []byte("Bearer s3cret-v2")}
	g.Expect(k8sClient.Update(context.Background(), s)).To(Succeed())
	g.Eventually(func() string { return ht.last().Get("Authorization") }).
		WithTimeout(10 * time.Second).Should(Equal("Bearer s3cret-v2"))

	// The value appears nowhere but in the request.
	cb := getBreaker(g, ns, "auth")
	status, _ := json.Marshal(cb.Status)
	g.Expect(string(status)).NotTo(ContainSubstring("s3cret"))
	events := &corev1.EventList{}
	g.Expect(k8sClient.List(context.Background(), events)).To(Succeed())
	for _, e := range events.Items {
		g.Expect(e.Message).NotTo(ContainSubstring("s3cret"))
	}

	// Deleting the breaker stops the watch.
	g.Expect(k8sClient.Delete(context.Background(), cb)).To(Succeed())
	g.Eventually(op.reconciler.refs.watched).WithTimeout(5 * time.Second).Should(BeZero())
}

func TestSecretsWithoutConsentAreNeverSentAndLookAlikeWhenMissing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	ht := newHeaderTarget(t)
	const want = "Secret probe-token is missing, lacks key header, or is not labelled " +
		"circuit.resilience.dev/probe-credentials=true; nothing is probed until it is"
	notAllowed := func() {
		t.Helper()
		g.Eventually(func(g Gomega) {
			cb := getBreaker(g, ns, "borrow")
			g.Expect(cb.Status.State).To(Equal(circuitv1alpha1.StateClosed))
			ready := findCondition(cb, circuitv1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonSecretNotAllowed))
			g.Expect(ready.Message).To(Equal(want))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		g.Consistently(ht.count).WithTimeout(time.Second).Should(BeZero(), "nothing is probed without consent")
	}

	// Missing.
	createBreaker(t, ns, "borrow", headerSpec(ht.URL+"/healthz"))
	notAllowed()

	// Present with the key, but not labelled: the tenant's own or someone else's
	// Secret is never sent, and the answer is the same as for a missing one.
	createSecretLabelled(g, ns, "probe-token", map[string]string{"header": "Bearer s3cret"}, nil)
	notAllowed()

	// Labelled with another value.
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "probe-token"), s)).To(Succeed())
	s.Labels = map[string]string{circuitv1alpha1.ProbeCredentialsLabel: "yes"}
	g.Expect(k8sClient.Update(context.Background(), s)).To(Succeed())
	notAllowed()

	// Labelled, but without the key.
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "probe-token"), s)).To(Succeed())
	s.Labels = map[string]string{circuitv1alpha1.ProbeCredentialsLabel: "true"}
	s.Data = map[string][]byte{"other": []byte("x")}
	g.Expect(k8sClient.Update(context.Background(), s)).To(Succeed())
	notAllowed()

	// Labelled with the key: probed.
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "probe-token"), s)).To(Succeed())
	s.Data["header"] = []byte("Bearer s3cret")
	g.Expect(k8sClient.Update(context.Background(), s)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "borrow")
		g.Expect(findCondition(cb, circuitv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(cb.Status.LastProbe).NotTo(BeNil())
		g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeSuccess))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Withdrawing consent stops the probes again.
	g.Expect(k8sClient.Get(context.Background(), keyOf(ns, "probe-token"), s)).To(Succeed())
	delete(s.Labels, circuitv1alpha1.ProbeCredentialsLabel)
	g.Expect(k8sClient.Update(context.Background(), s)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		return findCondition(getBreaker(g, ns, "borrow"), circuitv1alpha1.ConditionReady).Reason
	}).WithTimeout(10 * time.Second).Should(Equal(circuitv1alpha1.ReasonSecretNotAllowed))
}

func TestAHeaderValueWithLineBreaksIsRefusedWithoutProbing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	ht := newHeaderTarget(t)
	createSecret(g, ns, "probe-token", map[string]string{"header": "Bearer s3cret\r\nX-Injected: 1"})
	createBreaker(t, ns, "crlf", headerSpec(ht.URL+"/healthz"))
	g.Eventually(func(g Gomega) {
		ready := findCondition(getBreaker(g, ns, "crlf"), circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonInvalidHeaderValue))
		g.Expect(ready.Message).To(ContainSubstring("header Authorization"))
		g.Expect(ready.Message).NotTo(ContainSubstring("s3cret"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Consistently(ht.count).WithTimeout(time.Second).Should(BeZero())
	cb := getBreaker(g, ns, "crlf")
	g.Expect(cb.Status.LastProbe).To(BeNil(), "no probe failed as other: none was sent")
}

func TestHTTPSVerifiesWithTheCABundle(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"}, Data: map[string]string{"ca.crt": string(caPEM)}}
	g.Expect(k8sClient.Create(context.Background(), cm)).To(Succeed())

	// httptest's certificate is for example.com and 127.0.0.1.
	url := strings.Replace(srv.URL, "https://127.0.0.1", "https://127.0.0.1", 1) + "/healthz"
	untrusted := breakerSpec(url)
	untrusted.Threshold = 1
	untrusted.Timeout = "1h"
	createBreaker(t, ns, "untrusted", untrusted)

	trusted := breakerSpec(url)
	trusted.HTTP = &circuitv1alpha1.HTTPProbe{TLS: &circuitv1alpha1.TLSConfig{
		CABundle: &circuitv1alpha1.KeySelector{Name: "ca", Key: "ca.crt"}, ServerName: "example.com"}}
	createBreaker(t, ns, "trusted", trusted)

	insecure := breakerSpec(url)
	insecure.HTTP = &circuitv1alpha1.HTTPProbe{TLS: &circuitv1alpha1.TLSConfig{InsecureSkipVerify: true}}
	createBreaker(t, ns, "insecure", insecure)

	wrongName := breakerSpec(url)
	wrongName.Threshold = 1
	wrongName.Timeout = "1h"
	wrongName.HTTP = &circuitv1alpha1.HTTPProbe{TLS: &circuitv1alpha1.TLSConfig{
		CABundle: &circuitv1alpha1.KeySelector{Name: "ca", Key: "ca.crt"}, ServerName: "not-the-name.test"}}
	createBreaker(t, ns, "wrong-name", wrongName)

	cb := waitState(t, ns, "untrusted", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonTLS))
	cb = waitState(t, ns, "wrong-name", circuitv1alpha1.StateOpen, 10*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonTLS))
	for _, name := range []string{"trusted", "insecure"} {
		g.Eventually(func(g Gomega) {
			cb := getBreaker(g, ns, name)
			g.Expect(cb.Status.LastProbe).NotTo(BeNil())
			g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeSuccess), name)
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}
	ready := findCondition(getBreaker(g, ns, "insecure"), circuitv1alpha1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(ready.Message).To(ContainSubstring("verification is OFF"))
}

func TestGuardRefusesLoopbackWithoutTheFlag(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperatorWith(t, ns, operatorOptions{denyLoopback: true})
	tg := newTarget(t)
	spec := breakerSpec(tg.url("/secret-admin"))
	spec.Threshold = 2
	createBreaker(t, ns, "sneaky", spec)
	metadata := breakerSpec("http://169.254.169.254/latest/meta-data/")
	metadata.Threshold = 1
	createBreaker(t, ns, "metadata", metadata)

	for _, name := range []string{"sneaky", "metadata"} {
		cb := waitState(t, ns, name, circuitv1alpha1.StateOpen, 10*time.Second)
		g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonDenied), name)
		ready := findCondition(cb, circuitv1alpha1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonProbeDenied))
	}
	g.Expect(tg.count("/secret-admin")).To(BeZero(), "the guard refuses before connecting")
}

func TestUnresolvableTargetIsReportedNotFatal(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	startOperator(t, ns)
	spec := breakerSpec("http://no-such-host.invalid:8080/healthz")
	spec.Threshold = 2
	createBreaker(t, ns, "nxdomain", spec)
	cb := waitState(t, ns, "nxdomain", circuitv1alpha1.StateOpen, 20*time.Second)
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonDNS))
	ready := findCondition(cb, circuitv1alpha1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonTargetUnresolvable))
}
