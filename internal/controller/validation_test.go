package controller

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// Every invalid spec is refused at admission with a message that names the
// field, so bad input never reaches the controller.
func TestInvalidSpecsAreRefusedNamingTheField(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name string
		spec string
		// want are substrings the API server's message must contain.
		want []string
	}{
		{"no target", `{}`, []string{"spec.target", "Required"}},
		{"empty target", `{target: {}}`, []string{"spec.target", "exactly one of target.url and target.service must be set"}},
		{"both url and service", `{target: {url: "http://h", service: {name: s, port: 80}}}`,
			[]string{"spec.target", "exactly one of target.url and target.service must be set"}},
		{"service without name", `{target: {service: {port: 80}}}`, []string{"spec.target.service.name", "Required"}},
		{"service without port", `{target: {service: {name: s}}}`, []string{"spec.target.service.port", "Required"}},
		{"service bad name", `{target: {service: {name: "User_API", port: 80}}}`, []string{"spec.target.service.name"}},
		{"service port zero", `{target: {service: {name: s, port: 0}}}`, []string{"spec.target.service.port", "1 to 65535"}},
		{"service port too big", `{target: {service: {name: s, port: 70000}}}`, []string{"spec.target.service.port", "1 to 65535"}},
		{"service port bad name", `{target: {service: {name: s, port: "HTTP!"}}}`, []string{"spec.target.service.port", "port name"}},
		{"service bad scheme", `{target: {service: {name: s, port: 80, scheme: UDP}}}`, []string{"spec.target.service.scheme", "Unsupported value"}},
		{"service relative path", `{target: {service: {name: s, port: 80, path: healthz}}}`, []string{"spec.target.service.path"}},
		{"http on a tcp service", `{target: {service: {name: s, port: 80, scheme: TCP}}, http: {expectedStatuses: ["200"]}}`,
			[]string{"spec", "http applies only"}},
		{"header with value and valueFrom", `{target: {url: "http://h"}, http: {headers: [{name: X, value: a, valueFrom: {secretKeyRef: {name: s, key: k}}}]}}`,
			[]string{"spec.http.headers[0]", "exactly one of value and valueFrom"}},
		{"header without value", `{target: {url: "http://h"}, http: {headers: [{name: X}]}}`,
			[]string{"spec.http.headers[0]", "exactly one of value and valueFrom"}},
		{"host header", `{target: {url: "http://h"}, http: {headers: [{name: Host, value: evil}]}}`,
			[]string{"spec.http.headers[0].name", "Host or User-Agent"}},
		{"bad header name", `{target: {url: "http://h"}, http: {headers: [{name: "X Bad", value: v}]}}`,
			[]string{"spec.http.headers[0].name"}},
		{"secret in another namespace syntax", `{target: {url: "http://h"}, http: {headers: [{name: X, valueFrom: {secretKeyRef: {name: "other/s", key: k}}}]}}`,
			[]string{"spec.http.headers[0].valueFrom.secretKeyRef.name"}},
		{"tls on an http target", `{target: {url: "http://h"}, http: {tls: {insecureSkipVerify: true}}}`,
			[]string{"spec", "http.tls applies only to https targets"}},
		{"http and grpc", `{target: {service: {name: s, port: 80}}, http: {expectedStatuses: ["200"]}, grpc: {service: x}}`,
			[]string{"spec", "http and grpc are mutually exclusive"}},
		{"grpc on a tcp url", `{target: {url: "tcp://h:5432"}, grpc: {}}`, []string{"spec", "grpc applies only to grpc:// and grpcs://"}},
		{"grpc on an http url", `{target: {url: "http://h/"}, grpc: {}}`, []string{"spec", "grpc applies only to grpc:// and grpcs://"}},
		{"grpc on a tcp service", `{target: {service: {name: s, port: 80, scheme: TCP}}, grpc: {}}`, []string{"spec", "grpc applies only"}},
		{"http on a grpc url", `{target: {url: "grpc://h:9090"}, http: {expectedStatuses: ["200"]}}`, []string{"spec", "http applies only"}},
		{"grpc.tls on a plaintext grpc url", `{target: {url: "grpc://h:9090"}, grpc: {tls: {insecureSkipVerify: true}}}`,
			[]string{"spec", "grpc.tls applies only to grpcs:// targets"}},
		{"grpc url without port", `{target: {url: "grpc://h"}}`, []string{"spec.target.url", "a grpc or grpcs url must name a port"}},
		{"grpc url with a path", `{target: {url: "grpcs://h:443/healthz"}}`, []string{"spec.target.url", "a grpc or grpcs url must name a port"}},
		{"grpc service with spaces", `{target: {url: "grpc://h:9090"}, grpc: {service: "a b"}}`, []string{"spec.grpc.service"}},
		{"client certificate secret bad name", `{target: {url: "grpcs://h:443"}, grpc: {tls: {clientCertificateSecretRef: {name: "Bad_Name"}}}}`,
			[]string{"spec.grpc.tls.clientCertificateSecretRef.name"}},
		{"failurePercent zero", `{target: {service: {name: s, port: 80}}, failurePercent: 0}`, []string{"spec.failurePercent"}},
		{"failurePercent above 100", `{target: {service: {name: s, port: 80}}, failurePercent: 101}`, []string{"spec.failurePercent"}},
		{"empty url", `{target: {url: ""}}`, []string{"spec.target.url"}},
		{"file scheme", `{target: {url: "file:///etc/passwd"}}`, []string{"spec.target.url", "http, https, tcp, grpc or grpcs"}},
		{"ftp scheme", `{target: {url: "ftp://example.com/x"}}`, []string{"spec.target.url", "http, https, tcp, grpc or grpcs"}},
		{"not a url", `{target: {url: "just words"}}`, []string{"spec.target.url", "absolute URL"}},
		{"url without host", `{target: {url: "http:///healthz"}}`, []string{"spec.target.url"}},
		{"relative url", `{target: {url: "/healthz"}}`, []string{"spec.target.url", "must name a host"}},
		{"port zero", `{target: {url: "tcp://db.example.com:0"}}`, []string{"spec.target.url", "port must be from 1 to 65535"}},
		{"port too big", `{target: {url: "http://h:70000/x"}}`, []string{"spec.target.url"}},
		{"tcp without port", `{target: {url: "tcp://db.example.com"}}`, []string{"spec.target.url", "port"}},
		{"url too long", `{target: {url: "http://h/` + strings.Repeat("a", 2100) + `"}}`, []string{"spec.target.url", "2048"}},
		{"threshold zero", `{target: {url: "http://h"}, threshold: 0}`, []string{"spec.threshold", "greater than or equal to 1"}},
		{"threshold negative", `{target: {url: "http://h"}, threshold: -3}`, []string{"spec.threshold"}},
		{"threshold huge", `{target: {url: "http://h"}, threshold: 100000}`, []string{"spec.threshold", "less than or equal to 1000"}},
		{"threshold not a number", `{target: {url: "http://h"}, threshold: "five"}`, []string{"spec.threshold", "integer"}},
		{"successThreshold zero", `{target: {url: "http://h"}, successThreshold: 0}`, []string{"spec.successThreshold"}},
		{"successThreshold huge", `{target: {url: "http://h"}, successThreshold: 1000}`, []string{"spec.successThreshold"}},
		{"garbage timeout", `{target: {url: "http://h"}, timeout: "soon"}`, []string{"spec.timeout", "must be a duration"}},
		{"negative timeout", `{target: {url: "http://h"}, timeout: "-5s"}`, []string{"spec.timeout", "must be a duration"}},
		{"zero timeout", `{target: {url: "http://h"}, timeout: "0s"}`, []string{"spec.timeout", "at least 1s"}},
		{"timeout below 1s", `{target: {url: "http://h"}, timeout: "500ms"}`, []string{"spec.timeout", "at least 1s"}},
		{"timeout above 24h", `{target: {url: "http://h"}, timeout: "25h"}`, []string{"spec.timeout", "at most 24h"}},
		{"timeout as a number", `{target: {url: "http://h"}, timeout: 60}`, []string{"spec.timeout", "string"}},
		{"zero interval", `{target: {url: "http://h"}, interval: "0s"}`, []string{"spec.interval", "at least 100ms"}},
		{"interval below 100ms", `{target: {url: "http://h"}, interval: "50ms"}`, []string{"spec.interval", "at least 100ms"}},
		{"interval without unit", `{target: {url: "http://h"}, interval: "10"}`, []string{"spec.interval", "must be a duration"}},
		{"huge interval", `{target: {url: "http://h"}, interval: "999999h"}`, []string{"spec.interval", "at most 24h"}},
		{"garbage retryTimeout", `{target: {url: "http://h"}, retryTimeout: "10 seconds"}`, []string{"spec.retryTimeout", "must be a duration"}},
		{"retryTimeout below 100ms", `{target: {url: "http://h"}, retryTimeout: "1ms"}`, []string{"spec.retryTimeout", "at least 100ms"}},
		{"failureRate window too small", `{target: {url: "http://h"}, failureRate: {window: 1, percent: 50}}`, []string{"spec.failureRate.window"}},
		{"failureRate window too large", `{target: {url: "http://h"}, failureRate: {window: 101, percent: 50}}`, []string{"spec.failureRate.window"}},
		{"failureRate without percent", `{target: {url: "http://h"}, failureRate: {window: 10}}`, []string{"spec.failureRate.percent"}},
		{"failureRate percent above 100", `{target: {url: "http://h"}, failureRate: {window: 10, percent: 101}}`, []string{"spec.failureRate.percent"}},
		{"failureRate minimumProbes above window", `{target: {url: "http://h"}, failureRate: {window: 10, minimumProbes: 11, percent: 50}}`,
			[]string{"spec.failureRate.minimumProbes", "must not exceed failureRate.window"}},
		{"slowProbe garbage", `{target: {url: "http://h"}, slowProbe: "slow"}`, []string{"spec.slowProbe", "must be a duration"}},
		{"slowProbe not below retryTimeout", `{target: {url: "http://h"}, retryTimeout: "2s", interval: "5s", slowProbe: "2s"}`,
			[]string{"spec.slowProbe", "slowProbe must be less than retryTimeout"}},
		{"backoff without maxTimeout", `{target: {url: "http://h"}, backoff: {multiplier: 2}}`, []string{"spec.backoff.maxTimeout"}},
		{"backoff multiplier above 10", `{target: {url: "http://h"}, backoff: {multiplier: 11, maxTimeout: "10m"}}`, []string{"spec.backoff.multiplier"}},
		{"backoff maxTimeout below timeout", `{target: {url: "http://h"}, timeout: "5m", backoff: {maxTimeout: "1m"}}`,
			[]string{"spec.backoff.maxTimeout", "backoff.maxTimeout must be at least timeout"}},
		{"backoff maxTimeout above 24h", `{target: {url: "http://h"}, backoff: {maxTimeout: "25h"}}`, []string{"spec.backoff.maxTimeout", "at most 24h"}},
		{"backoff jitter above 50", `{target: {url: "http://h"}, backoff: {maxTimeout: "10m", jitterPercent: 51}}`, []string{"spec.backoff.jitterPercent"}},
		{"unknown mode", `{target: {url: "http://h"}, mode: Sideways}`, []string{"spec.mode", "Unsupported value"}},
		{"retryTimeout above interval", `{target: {url: "http://h"}, retryTimeout: "2s", interval: "1s"}`,
			[]string{"spec.retryTimeout", "retryTimeout must not exceed interval"}},
		{"retryTimeout above the default interval", `{target: {url: "http://h"}, retryTimeout: "11s"}`,
			[]string{"spec.retryTimeout", "retryTimeout must not exceed interval"}},
		{"status range reversed", `{target: {url: "http://h"}, http: {expectedStatuses: ["399-200"]}}`, []string{"spec.http.expectedStatuses[0]", "low to high"}},
		{"status garbage", `{target: {url: "http://h"}, http: {expectedStatuses: ["abc"]}}`, []string{"spec.http.expectedStatuses[0]"}},
		{"status out of range", `{target: {url: "http://h"}, http: {expectedStatuses: ["600"]}}`, []string{"spec.http.expectedStatuses[0]"}},
		{"status list empty", `{target: {url: "http://h"}, http: {expectedStatuses: []}}`, []string{"spec.http.expectedStatuses"}},
		{"status list duplicates", `{target: {url: "http://h"}, http: {expectedStatuses: ["200", "200"]}}`, []string{"spec.http.expectedStatuses[1]", "Duplicate"}},
		{"http on a tcp target", `{target: {url: "tcp://h:5432"}, http: {expectedStatuses: ["200"]}}`, []string{"spec", "http applies only to http:// and https:// targets"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { expectRefused(t, ns, tc.spec, tc.want) })
	}
	list := &circuitv1alpha1.CircuitBreakerList{}
	NewWithT(t).Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	NewWithT(t).Expect(list.Items).To(BeEmpty())
}

// expectRefused creates a breaker with spec (YAML) and expects the API server
// to refuse it with a message holding every substring of want.
func expectRefused(t *testing.T, ns, spec string, want []string) {
	t.Helper()
	g := NewWithT(t)
	obj := &unstructured.Unstructured{}
	var content any
	g.Expect(yaml.Unmarshal([]byte(spec), &content)).To(Succeed())
	obj.SetUnstructuredContent(map[string]any{
		"apiVersion": circuitv1alpha1.GroupVersion.String(),
		"kind":       "CircuitBreaker",
		"metadata":   map[string]any{"name": "bad", "namespace": ns},
		"spec":       content,
	})
	err := k8sClient.Create(context.Background(), obj)
	g.Expect(err).To(HaveOccurred(), "the API server accepted %s", spec)
	g.Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "%v", err)
	for _, w := range want {
		g.Expect(err.Error()).To(ContainSubstring(w))
	}
}

// Unknown fields are refused when the client asks for strict validation, as
// kubectl does by default.
func TestUnknownFieldIsRefusedWithStrictValidation(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": circuitv1alpha1.GroupVersion.String(),
		"kind":       "CircuitBreaker",
		"metadata":   map[string]any{"name": "typo", "namespace": ns},
		"spec":       map[string]any{"target": map[string]any{"url": "http://h"}, "treshold": int64(3)},
	}}
	err := k8sClient.Create(context.Background(), obj, client.FieldValidation("Strict"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.treshold"))
}

// A minimal breaker is accepted and gets the documented defaults.
func TestDefaultsAreApplied(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	cb := createBreaker(t, ns, "defaults", circuitv1alpha1.CircuitBreakerSpec{
		Target: circuitv1alpha1.Target{URL: "https://example.com/healthz"},
		HTTP:   &circuitv1alpha1.HTTPProbe{},
	})
	got := getBreaker(g, ns, cb.Name)
	g.Expect(got.Spec.Threshold).To(Equal(circuitv1alpha1.DefaultThreshold))
	g.Expect(got.Spec.SuccessThreshold).To(Equal(circuitv1alpha1.DefaultSuccessThreshold))
	g.Expect(got.Spec.Timeout).To(Equal(circuitv1alpha1.DefaultTimeout))
	g.Expect(got.Spec.RetryTimeout).To(Equal(circuitv1alpha1.DefaultRetryTimeout))
	g.Expect(got.Spec.Interval).To(Equal(circuitv1alpha1.DefaultInterval))
	g.Expect(got.Spec.FailurePercent).To(Equal(circuitv1alpha1.DefaultFailurePercent))
	g.Expect(got.Spec.HTTP.ExpectedStatuses).To(Equal([]circuitv1alpha1.StatusRange{circuitv1alpha1.DefaultExpectedStatus}))
	g.Expect(got.Spec.Mode).To(Equal(circuitv1alpha1.ModeAuto))
}

// Valid durations in all their Go forms are accepted.
func TestValidDurationsAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	for i, d := range []circuitv1alpha1.GoDuration{"100ms", "1.5s", "1m30s", "24h", "0.5s", "1h0m0s"} {
		spec := breakerSpec("tcp://db.example.com:5432")
		spec.Interval, spec.RetryTimeout = d, d
		spec.Timeout = "1m"
		createBreaker(t, ns, "ok-"+string(rune('a'+i)), spec)
	}
}
