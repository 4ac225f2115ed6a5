package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// These tests serve metrics as cmd/manager does by default: over HTTPS behind
// controller-runtime's authentication and authorization filter, which asks the
// API server (TokenReview, SubjectAccessReview) about each scrape. envtest
// starts kube-apiserver with --service-account-issuer and signing keys and with
// RBAC, so the suite's control plane needs no extra flags: tokens come from the
// TokenRequest API, and roles from config/rbac's own files.
// The manager itself runs as a ServiceAccount bound to config/rbac/role.yaml and
// metrics_auth_role.yaml, which proves those roles are enough.

func TestMetricsEndpointServesOnlyMetricsReaders(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	metricsURL := startSecureOperator(t, ns)
	reader := serviceAccountToken(t, ns, "prometheus", "metrics_reader_role.yaml")
	stranger := serviceAccountToken(t, ns, "stranger")

	for _, tc := range []struct {
		name, token string
		want        []int
	}{
		{"no token", "", []int{http.StatusUnauthorized}},
		// The API server answers the TokenReview with an error ("invalid bearer
		// token"), which controller-runtime's filter turns into a 500 rather than
		// a 401; either way nothing is served.
		{"a token the API server did not issue", "not-a-token", []int{http.StatusUnauthorized, http.StatusInternalServerError}},
		{"a ServiceAccount without the metrics-reader role", stranger, []int{http.StatusForbidden}},
		{"a ServiceAccount bound to the metrics-reader role", reader, []int{http.StatusOK}},
	} {
		code, body := fetchMetrics(g, metricsURL, tc.token)
		g.Expect(tc.want).To(ContainElement(code), "%s: %s", tc.name, body)
		if code == http.StatusOK {
			g.Expect(body).To(ContainSubstring("controller_runtime_"), "%s: controller-runtime's own metrics are served alongside", tc.name)
		} else {
			g.Expect(body).NotTo(ContainSubstring("# TYPE"), "%s", tc.name)
		}
	}

	// Plain HTTP to the metrics port gets no metrics either.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet,
		strings.Replace(metricsURL, "https://", "http://", 1), nil)
	g.Expect(err).NotTo(HaveOccurred())
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		g.Expect(string(body)).NotTo(ContainSubstring("circuitbreaker_"))
	}
}

func TestMetricsFollowABreakerThroughItsStatesAndDisappearWithIt(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	metricsURL := startSecureOperator(t, ns)
	token := serviceAccountToken(t, ns, "prometheus", "metrics_reader_role.yaml")
	tg := newGatedTarget(t)
	spec := circuitv1alpha1.CircuitBreakerSpec{
		Target:    circuitv1alpha1.Target{URL: tg.url()},
		Threshold: 2,
		Timeout:   "2s",
		// Long enough for a held trial probe to be scraped in HalfOpen; a probe's
		// deadline may not exceed the interval.
		Interval:         "10s",
		RetryTimeout:     "10s",
		SuccessThreshold: 1,
	}
	createBreaker(t, ns, "cycle", spec)
	series := func(g Gomega) map[string]float64 {
		return breakerSeries(scrapeMetrics(g, metricsURL, token), ns, "cycle")
	}
	const (
		state       = "circuitbreaker_state"
		transitions = "circuitbreaker_transitions_total"
		probes      = "circuitbreaker_probes_total"
		failures    = "circuitbreaker_probe_failures_total"
		durations   = "circuitbreaker_probe_duration_seconds_count"
		consecutive = "circuitbreaker_consecutive_failures"
	)
	oneHot := func(current string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range []string{"Closed", "Open", "HalfOpen"} {
			m[fmt.Sprintf(`%s{state=%q}`, state, s)] = 0
		}
		m[fmt.Sprintf(`%s{state=%q}`, state, current)] = 1
		return m
	}
	onlyKeys := func(s map[string]float64, prefix string) map[string]float64 {
		out := map[string]float64{}
		for k, v := range s {
			if strings.HasPrefix(k, prefix+"{") || k == prefix {
				out[k] = v
			}
		}
		return out
	}
	// counted drops the series still at 0: every fixed label combination of a
	// counter is created at 0, so that rate() sees its first increment.
	counted := func(s map[string]float64, prefix string) map[string]float64 {
		out := onlyKeys(s, prefix)
		for k, v := range out {
			if v == 0 {
				delete(out, k)
			}
		}
		return out
	}
	// probesAddUp: every recorded probe is in the histogram once and every failure has one reason.
	probesAddUp := func(g Gomega, s map[string]float64) {
		ok, failed := s[probes+`{result="success"}`], s[probes+`{result="failure"}`]
		g.Expect(s[durations]).To(Equal(ok+failed), "probe_duration_seconds_count")
		var reasons float64
		for _, v := range onlyKeys(s, failures) {
			reasons += v
		}
		g.Expect(reasons).To(Equal(failed), "probe_failures_total summed over reasons")
	}

	// Closed: successful probes, no transition yet (a new breaker starts Closed).
	var successes float64
	g.Eventually(func(g Gomega) {
		s := series(g)
		g.Expect(onlyKeys(s, state)).To(Equal(oneHot("Closed")))
		g.Expect(s).To(HaveKeyWithValue(consecutive, 0.0))
		g.Expect(s).To(HaveKeyWithValue("circuitbreaker_threshold", 2.0), "spec.threshold, for the ProbesFailing alert")
		g.Expect(s[probes+`{result="success"}`]).To(BeNumerically(">=", 1))
		g.Expect(s).To(HaveKeyWithValue(probes+`{result="failure"}`, 0.0))
		g.Expect(s).To(HaveKeyWithValue(failures+`{reason="http_status"}`, 0.0))
		g.Expect(s).To(HaveKeyWithValue(transitions+`{from="Closed",to="Open"}`, 0.0))
		g.Expect(counted(s, failures)).To(BeEmpty())
		g.Expect(counted(s, transitions)).To(BeEmpty())
		probesAddUp(g, s)
		successes = s[probes+`{result="success"}`]
	}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// Open: threshold (2) failures with HTTP 503 open the circuit; Open probes no more.
	tg.fail.Store(true)
	waitState(t, ns, "cycle", circuitv1alpha1.StateOpen, 30*time.Second)
	// Hold the coming trial probe, so that HalfOpen lasts until we have looked at it.
	release := tg.hold()
	tg.fail.Store(false)
	g.Eventually(func(g Gomega) {
		s := series(g)
		g.Expect(onlyKeys(s, state)).To(Equal(oneHot("Open")))
		g.Expect(s).To(HaveKeyWithValue(consecutive, 2.0))
		g.Expect(counted(s, transitions)).To(Equal(map[string]float64{transitions + `{from="Closed",to="Open"}`: 1}))
		g.Expect(s).To(HaveKeyWithValue(probes+`{result="failure"}`, 2.0))
		g.Expect(counted(s, failures)).To(Equal(map[string]float64{failures + `{reason="` + string(circuitv1alpha1.ProbeReasonHTTPStatus) + `"}`: 2}))
		g.Expect(s[probes+`{result="success"}`]).To(BeNumerically(">=", successes))
		probesAddUp(g, s)
		successes = s[probes+`{result="success"}`]
	}).WithTimeout(5 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// HalfOpen: after the 2s timeout; its trial probe is held at the target.
	held := waitState(t, ns, "cycle", circuitv1alpha1.StateHalfOpen, 10*time.Second)
	g.Eventually(tg.heldRequests).WithTimeout(5 * time.Second).Should(Equal(int32(1)))
	g.Eventually(func(g Gomega) {
		s := series(g)
		g.Expect(onlyKeys(s, state)).To(Equal(oneHot("HalfOpen")))
		g.Expect(s).To(HaveKeyWithValue(consecutive, float64(held.Status.ConsecutiveFailures)))
		g.Expect(counted(s, transitions)).To(Equal(map[string]float64{
			transitions + `{from="Closed",to="Open"}`:   1,
			transitions + `{from="Open",to="HalfOpen"}`: 1,
		}))
		// The trial is still in flight: nothing new is counted.
		g.Expect(s).To(HaveKeyWithValue(probes+`{result="success"}`, successes))
		g.Expect(s).To(HaveKeyWithValue(probes+`{result="failure"}`, 2.0))
		probesAddUp(g, s)
	}).WithTimeout(5 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	// Closed again: the trial succeeds.
	release()
	waitState(t, ns, "cycle", circuitv1alpha1.StateClosed, 10*time.Second)
	var last map[string]float64
	g.Eventually(func(g Gomega) {
		s := series(g)
		g.Expect(onlyKeys(s, state)).To(Equal(oneHot("Closed")))
		g.Expect(s).To(HaveKeyWithValue(consecutive, 0.0))
		g.Expect(counted(s, transitions)).To(Equal(map[string]float64{
			transitions + `{from="Closed",to="Open"}`:     1,
			transitions + `{from="Open",to="HalfOpen"}`:   1,
			transitions + `{from="HalfOpen",to="Closed"}`: 1,
		}))
		g.Expect(s[probes+`{result="success"}`]).To(BeNumerically(">=", successes+1))
		g.Expect(s).To(HaveKeyWithValue(probes+`{result="failure"}`, 2.0))
		g.Expect(counted(s, failures)).To(Equal(map[string]float64{failures + `{reason="` + string(circuitv1alpha1.ProbeReasonHTTPStatus) + `"}`: 2}))
		probesAddUp(g, s)
		last = s
	}).WithTimeout(5 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(last).To(HaveKey(HavePrefix("circuitbreaker_probe_duration_seconds_bucket{")))
	g.Expect(last["circuitbreaker_probe_duration_seconds_sum"]).To(BeNumerically(">", 0))

	// No label value anywhere on circuitbreaker_* series carries a URL or a path.
	for _, mf := range scrapeMetrics(g, metricsURL, token) {
		if !strings.HasPrefix(mf.GetName(), "circuitbreaker_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				g.Expect(lp.GetValue()).NotTo(Or(ContainSubstring("http://"), ContainSubstring("/")),
					"label %s of %s", lp.GetName(), mf.GetName())
				g.Expect(lp.GetName()).To(BeElementOf("namespace", "name", "state", "from", "to", "result", "reason", "le", "routing"))
			}
		}
	}

	// Deleting the breaker deletes all its series, and none comes back.
	g.Expect(k8sClient.Delete(context.Background(), &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cycle"},
	})).To(Succeed())
	g.Eventually(series).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(BeEmpty())
	g.Consistently(series).WithTimeout(time.Second).WithPolling(100 * time.Millisecond).Should(BeEmpty())
}

// startSecureOperator runs the CircuitBreaker controller for namespace ns in a
// manager whose metrics server is configured as cmd/manager's default, and
// returns the metrics URL.
func startSecureOperator(t *testing.T, ns string) string {
	t.Helper()
	token := serviceAccountToken(t, ns, "controller-manager", "role.yaml", "metrics_auth_role.yaml")
	managerCfg := rest.AnonymousClientConfig(cfg)
	managerCfg.BearerToken = token
	addr := freeLoopbackAddr(t)
	startOperatorWith(t, ns, operatorOptions{config: managerCfg, metrics: &metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		// An empty directory: the server makes its own self-signed certificate.
		CertDir: t.TempDir(),
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}})

	metricsURL := "https://" + addr + "/metrics"
	NewWithT(t).Eventually(func(g Gomega) {
		code, _ := fetchMetrics(g, metricsURL, "")
		g.Expect(code).To(Equal(http.StatusUnauthorized))
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	return metricsURL
}

// freeLoopbackAddr returns a loopback address with a port nothing listens on.
// The manager exposes no way to learn the port it bound for ":0".
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// serviceAccountToken creates ServiceAccount ns/name, binds it to the
// ClusterRoles of the given config/rbac files (created under names of their
// own, so that tests do not share them), waits until the API server's
// authorizer knows the bindings, and returns a token from the TokenRequest API.
func serviceAccountToken(t *testing.T, ns, name string, roleFiles ...string) string {
	t.Helper()
	roles := make([]*rbacv1.ClusterRole, 0, len(roleFiles))
	for _, file := range roleFiles {
		roles = append(roles, clusterRoleFromFile(t, file))
	}
	return serviceAccountTokenFor(t, ns, name, roles...)
}

// serviceAccountTokenFor creates ServiceAccount ns/name bound to roles and
// returns a token for it.
func serviceAccountTokenFor(t *testing.T, ns, name string, roles ...*rbacv1.ClusterRole) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8sClient.Create(ctx, sa); err != nil {
		t.Fatalf("creating ServiceAccount: %v", err)
	}
	user := "system:serviceaccount:" + ns + ":" + name
	for _, role := range roles {
		role.Name = ns + "-" + role.Name
		if err := k8sClient.Create(ctx, role); err != nil {
			t.Fatalf("creating ClusterRole: %v", err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		}
		if err := k8sClient.Create(ctx, binding); err != nil {
			t.Fatalf("creating ClusterRoleBinding: %v", err)
		}
		t.Cleanup(func() {
			_ = k8sClient.Delete(ctx, binding)
			_ = k8sClient.Delete(ctx, role)
		})
		// The metrics filter caches a denial for 30s, so a scrape must not race
		// the RBAC authorizer's informers.
		for _, rule := range role.Rules {
			waitAllowed(t, user, rule)
		}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := k8sClient.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("requesting a token: %v", err)
	}
	if tr.Status.Token == "" {
		t.Fatal("the TokenRequest returned no token")
	}
	return tr.Status.Token
}

func clusterRoleFromFile(t *testing.T, file string) *rbacv1.ClusterRole {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(raw, role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if role.Kind != "ClusterRole" || len(role.Rules) == 0 {
		t.Fatalf("%s is not a ClusterRole with rules", file)
	}
	return role
}

// waitAllowed waits until a SubjectAccessReview allows user the first verb of rule.
func waitAllowed(t *testing.T, user string, rule rbacv1.PolicyRule) {
	t.Helper()
	spec := authorizationv1.SubjectAccessReviewSpec{User: user}
	switch {
	case len(rule.NonResourceURLs) > 0:
		spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Path: rule.NonResourceURLs[0], Verb: rule.Verbs[0]}
	case len(rule.APIGroups) > 0 && len(rule.Resources) > 0:
		resource, subresource, _ := strings.Cut(rule.Resources[0], "/")
		spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
			Group: rule.APIGroups[0], Resource: resource, Subresource: subresource, Verb: rule.Verbs[0],
		}
	default:
		t.Fatalf("cannot check rule %v", rule)
	}
	NewWithT(t).Eventually(func(g Gomega) {
		sar := &authorizationv1.SubjectAccessReview{Spec: spec}
		g.Expect(k8sClient.Create(context.Background(), sar)).To(Succeed())
		g.Expect(sar.Status.Allowed).To(BeTrue(), "%s may not %v", user, rule)
	}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

var scrapeClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		// The metrics server's certificate is self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	},
}

// fetchMetrics fetches url with token as a bearer token (none if empty).
func fetchMetrics(g Gomega, url, token string) (int, string) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	g.Expect(err).NotTo(HaveOccurred())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := scrapeClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}

// scrapeMetrics fetches and parses the metrics as a metrics reader would.
func scrapeMetrics(g Gomega, url, token string) map[string]*dto.MetricFamily {
	code, body := fetchMetrics(g, url, token)
	g.Expect(code).To(Equal(http.StatusOK), body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	return families
}

// breakerSeries flattens the circuitbreaker_* series of breaker ns/name into
// `metric{label="value",...}` keys without the namespace and name labels, with
// a histogram as its _bucket, _sum and _count series.
func breakerSeries(families map[string]*dto.MetricFamily, ns, name string) map[string]float64 {
	out := map[string]float64{}
	for fname, mf := range families {
		if !strings.HasPrefix(fname, "circuitbreaker_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			var gotNS, gotName string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "namespace":
					gotNS = lp.GetValue()
				case "name":
					gotName = lp.GetValue()
				default:
					labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
				}
			}
			if gotNS != ns || gotName != name {
				continue
			}
			key := func(suffix string, extra ...string) string {
				all := slices.Concat(labels, extra)
				if len(all) == 0 {
					return fname + suffix
				}
				slices.Sort(all)
				return fname + suffix + "{" + strings.Join(all, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[key("_count")] = float64(h.GetSampleCount())
				out[key("_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[key("_bucket", fmt.Sprintf("le=%q", model.FloatString(b.GetUpperBound()).String()))] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			default:
				out[key("")] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// gatedTarget is an HTTP server on loopback that answers 200, or 503 while
// fail is set, and that can hold requests until released.
type gatedTarget struct {
	addr string
	fail atomic.Bool
	mu   sync.Mutex
	gate chan struct{}
	held atomic.Int32
}

func newGatedTarget(t *testing.T) *gatedTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &gatedTarget{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(tg.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return tg
}

func (tg *gatedTarget) url() string { return "http://" + tg.addr + "/healthz" }

func (tg *gatedTarget) serve(w http.ResponseWriter, req *http.Request) {
	tg.mu.Lock()
	gate := tg.gate
	tg.mu.Unlock()
	if gate != nil {
		tg.held.Add(1)
		select {
		case <-gate:
		case <-req.Context().Done():
			return
		}
	}
	if tg.fail.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// hold makes requests wait until the returned function is called.
func (tg *gatedTarget) hold() (release func()) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	gate := make(chan struct{})
	tg.gate = gate
	tg.held.Store(0)
	return func() {
		tg.mu.Lock()
		tg.gate = nil
		tg.mu.Unlock()
		close(gate)
	}
}

func (tg *gatedTarget) heldRequests() int32 { return tg.held.Load() }
