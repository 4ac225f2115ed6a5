package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/test/grpctarget"
	"github.com/resilience-dev/breaker-operator/test/pki"
)

func grpcBreakerSpec(url string, g *circuitv1alpha1.GRPCProbe) circuitv1alpha1.CircuitBreakerSpec {
	spec := breakerSpec(url)
	spec.GRPC = g
	return spec
}

func TestGRPCCheckJudgesTheHealthStatus(t *testing.T) {
	ns := newNamespace(t)
	srv := grpctarget.Start(t, grpctarget.Options{})
	srv.Health.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	startOperator(t, ns)
	createBreaker(t, ns, "whole", grpcBreakerSpec("grpc://"+srv.Addr, nil))
	createBreaker(t, ns, "orders", grpcBreakerSpec("grpc://"+srv.Addr, &circuitv1alpha1.GRPCProbe{Service: "orders"}))
	createBreaker(t, ns, "unknown", grpcBreakerSpec("grpc://"+srv.Addr, &circuitv1alpha1.GRPCProbe{Service: "never.registered"}))

	g := NewWithT(t)
	for name, want := range map[string]circuitv1alpha1.ProbeReason{
		"whole":   circuitv1alpha1.ProbeReasonOK,
		"orders":  circuitv1alpha1.ProbeReasonGRPCNotServing,
		"unknown": circuitv1alpha1.ProbeReasonGRPCServiceUnknown,
	} {
		g.Eventually(func(g Gomega) {
			lp := getBreaker(g, ns, name).Status.LastProbe
			g.Expect(lp).NotTo(BeNil())
			g.Expect(lp.Reason).To(Equal(want))
		}).WithTimeout(10*time.Second).Should(Succeed(), name)
	}
	waitState(t, ns, "orders", circuitv1alpha1.StateOpen, 10*time.Second)
}

func TestGRPCWatchOpensTheCircuitWithinASecondOfNotServing(t *testing.T) {
	ns := newNamespace(t)
	srv := grpctarget.Start(t, grpctarget.Options{})
	srv.Health.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	startOperator(t, ns)
	spec := grpcBreakerSpec("grpc://"+srv.Addr, &circuitv1alpha1.GRPCProbe{Service: "orders", Watch: true})
	spec.Interval, spec.RetryTimeout, spec.Threshold, spec.Timeout = "1m", "5s", 1, "10m"
	createBreaker(t, ns, "watched", spec)

	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "watched")
		g.Expect(cb.Status.LastProbe).NotTo(BeNil())
		g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeSuccess))
		ready := meta.FindStatusCondition(cb.Status.Conditions, circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Message).To(ContainSubstring("Watching"))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	flipped := time.Now()
	srv.Health.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	cb := waitState(t, ns, "watched", circuitv1alpha1.StateOpen, time.Second)
	t.Logf("Open %v after NOT_SERVING (interval 1m)", time.Since(flipped))
	g.Expect(cb.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonGRPCNotServing))
}

func TestGRPCBreakerDeletedMidStreamClosesItsConnection(t *testing.T) {
	ns := newNamespace(t)
	srv := grpctarget.Start(t, grpctarget.Options{})
	startOperator(t, ns)
	spec := grpcBreakerSpec("grpc://"+srv.Addr, &circuitv1alpha1.GRPCProbe{Watch: true})
	spec.Interval, spec.RetryTimeout = "1m", "5s"
	cb := createBreaker(t, ns, "doomed", spec)

	g := NewWithT(t)
	g.Eventually(srv.Open).WithTimeout(10 * time.Second).Should(Equal(int64(1)))
	g.Expect(k8sClient.Delete(context.Background(), cb)).To(Succeed())
	g.Eventually(srv.Open).WithTimeout(5 * time.Second).Should(BeZero())
	g.Consistently(srv.Open).WithTimeout(time.Second).Should(BeZero())
}

func TestGRPCMutualTLSPresentsTheClientCertificateSecretAndFollowsItsRotation(t *testing.T) {
	ns := newNamespace(t)
	certs := pki.New(t)
	srv := grpctarget.Start(t, grpctarget.Options{TLS: certs.ServerTLS(true)})
	op := startOperator(t, ns)
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
		Data: map[string]string{"ca.crt": string(certs.CAPEM)}})).To(Succeed())
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client",
			Labels: map[string]string{circuitv1alpha1.ProbeCredentialsLabel: "true"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certs.Client.Cert, corev1.TLSPrivateKeyKey: certs.Client.Key},
	}
	g.Expect(k8sClient.Create(ctx, secret)).To(Succeed())
	spec := grpcBreakerSpec("grpcs://"+srv.Addr, &circuitv1alpha1.GRPCProbe{TLS: &circuitv1alpha1.TLSConfig{
		CABundle:                   &circuitv1alpha1.KeySelector{Name: "ca", Key: "ca.crt"},
		ClientCertificateSecretRef: &circuitv1alpha1.LocalSecretReference{Name: "client"},
	}})
	createBreaker(t, ns, "mtls", spec)
	lastReason := func(g Gomega) circuitv1alpha1.ProbeReason {
		lp := getBreaker(g, ns, "mtls").Status.LastProbe
		g.Expect(lp).NotTo(BeNil())
		return lp.Reason
	}
	g.Eventually(lastReason).WithTimeout(10 * time.Second).Should(Equal(circuitv1alpha1.ProbeReasonOK))
	g.Expect(op.reconciler.refs.watched()).To(Equal(2), "the CA ConfigMap and the client Secret are watched")

	// Rotated to a certificate the server does not trust: the next probes fail the handshake.
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.Data = map[string][]byte{corev1.TLSCertKey: certs.Stranger.Cert, corev1.TLSPrivateKeyKey: certs.Stranger.Key}
	g.Expect(k8sClient.Update(ctx, secret)).To(Succeed())
	g.Eventually(lastReason).WithTimeout(10 * time.Second).Should(Equal(circuitv1alpha1.ProbeReasonTLS))

	// Without the consent label the Secret is not used, and nothing is probed.
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.Labels = nil
	g.Expect(k8sClient.Update(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		ready := meta.FindStatusCondition(getBreaker(g, ns, "mtls").Status.Conditions, circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonSecretNotAllowed))
		g.Expect(ready.Message).NotTo(ContainSubstring("BEGIN"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestClientCertificateSecretThatIsNotAKeyPairBlocksProbing(t *testing.T) {
	ns := newNamespace(t)
	certs := pki.New(t)
	startOperator(t, ns)
	g := NewWithT(t)
	g.Expect(k8sClient.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client",
			Labels: map[string]string{circuitv1alpha1.ProbeCredentialsLabel: "true"}},
		Type: corev1.SecretTypeTLS,
		// A certificate with another certificate's key.
		Data: map[string][]byte{corev1.TLSCertKey: certs.Client.Cert, corev1.TLSPrivateKeyKey: certs.Stranger.Key},
	})).To(Succeed())
	spec := breakerSpec("https://127.0.0.1:1/")
	spec.HTTP = &circuitv1alpha1.HTTPProbe{TLS: &circuitv1alpha1.TLSConfig{
		ClientCertificateSecretRef: &circuitv1alpha1.LocalSecretReference{Name: "client"}}}
	createBreaker(t, ns, "mismatched", spec)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "mismatched")
		ready := meta.FindStatusCondition(cb.Status.Conditions, circuitv1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(circuitv1alpha1.ReasonInvalidClientCertificate))
		g.Expect(cb.Status.LastProbe).To(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestGRPCServiceWatchFollowsEachEndpointAndItsSlices(t *testing.T) {
	ns := newNamespace(t)
	f := newServiceFixture(t, ns, "orders", "10.0.9.1", "10.0.9.2")
	servers := map[string]*grpctarget.Server{}
	for _, a := range []string{"10.0.9.1", "10.0.9.2"} {
		servers[a] = grpctarget.Start(t, grpctarget.Options{})
		f.net.set(a+":8080", servers[a].Addr)
	}
	startOperatorWithDial(t, ns, f.net.dial)
	spec := serviceSpec("orders", intstr.FromString("http"), 50)
	spec.GRPC = &circuitv1alpha1.GRPCProbe{Watch: true}
	spec.Interval, spec.RetryTimeout, spec.Threshold, spec.Timeout = "1m", "5s", 1, "10m"
	createBreaker(t, ns, "orders", spec)

	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		cb := getBreaker(g, ns, "orders")
		g.Expect(cb.Status.EndpointsTotal).To(Equal(int32(2)))
		g.Expect(cb.Status.LastProbe).NotTo(BeNil())
		g.Expect(cb.Status.LastProbe.Result).To(Equal(circuitv1alpha1.ProbeSuccess))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(servers["10.0.9.1"].Open()).To(Equal(int64(1)), "one stream per endpoint")
	g.Expect(servers["10.0.9.2"].Open()).To(Equal(int64(1)), "one stream per endpoint")

	// One endpoint leaves the slice: its stream closes, the other is kept.
	f.setEndpoints(g, endpointsFor("10.0.9.2"))
	g.Eventually(servers["10.0.9.1"].Open).WithTimeout(5 * time.Second).Should(BeZero())
	g.Eventually(func(g Gomega) {
		g.Expect(getBreaker(g, ns, "orders").Status.EndpointsTotal).To(Equal(int32(1)))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	servers["10.0.9.2"].Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	cb := waitState(t, ns, "orders", circuitv1alpha1.StateOpen, 2*time.Second)
	g.Expect(cb.Status.Endpoints).To(HaveLen(1))
	g.Expect(cb.Status.Endpoints[0].Reason).To(Equal(circuitv1alpha1.ProbeReasonGRPCNotServing))
}
