package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// backWithin is how soon after the API server's return the manager must act
// on changes made after it: every informer watches again by then.
const backWithin = 5 * time.Second

// TestManagerRidesOutAnAPIServerOutage stops kube-apiserver for 20s while
// breakers run and starts it again on the same port: the same manager
// process carries on, the breakers keep their states, it acts within 5 s on
// changes to every kind of object it watches, and it does not flood the API
// server while it catches up.
func TestManagerRidesOutAnAPIServerOutage(t *testing.T) {
	ns := newNamespace(t, "e2e-outage")
	fenced := newNamespace(t, "e2e-outage-fenced")
	steady := newTarget(t, true)
	tripped := newTarget(t, false)
	m := startManager(t, "manager")
	applyBreaker(t, ns, "steady", breakerSpec{URL: steady.URL(), Threshold: 3, Timeout: "5s", Interval: "300ms"})
	applyBreaker(t, ns, "tripped", breakerSpec{URL: tripped.URL(), Threshold: 2, Timeout: "1h", Interval: "300ms"})
	applyBreaker(t, fenced, "fenced", breakerSpec{URL: steady.URL(), Threshold: 3, Timeout: "5s", Interval: "300ms"})
	// A breaker waiting for a Secret (its header's value) and one waiting for a
	// Service and its endpoints: both are created only after the outage.
	applyManifest(t, "waiting.yaml", fmt.Sprintf(`apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: secret, namespace: %[1]s}
spec:
  target:
    url: %[2]s
  http:
    headers:
    - name: Authorization
      valueFrom: {secretKeyRef: {name: late-token, key: token}}
  threshold: 3
  interval: 300ms
  retryTimeout: 300ms
---
apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: service, namespace: %[1]s}
spec:
  target:
    service: {name: late, port: http}
  threshold: 3
  interval: 300ms
  retryTimeout: 300ms
`, ns, steady.URL()))
	eventuallyState(t, ns, "steady", "Closed", 60*time.Second)
	eventuallyState(t, ns, "tripped", "Open", 60*time.Second)
	eventuallyReady(t, fenced, "fenced", "Probing", 60*time.Second)
	eventuallyReady(t, ns, "secret", "SecretNotAllowed", 60*time.Second)
	eventuallyReady(t, ns, "service", "ServiceNotFound", 60*time.Second)
	g := NewWithT(t)
	before, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(env.cp.StopAPIServer()).To(Succeed())
	stopped := time.Now()
	time.Sleep(20 * time.Second)
	g.Expect(m.Running()).To(BeTrue(), "the manager exited during the outage")
	t.Logf("steady target probed %d times during the outage", len(steady.hitsBetween(stopped, time.Now())))
	g.Expect(env.cp.StartAPIServer(t.Context())).To(Succeed())
	back := time.Now()
	t.Logf("API server back %s after it stopped", back.Sub(stopped).Round(time.Millisecond))

	// The breakers kept their states.
	after, err := getBreaker(ns, "tripped")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after.Status.State).To(Equal("Open"))
	g.Expect(after.Status.OpenedAt).To(Equal(before.Status.OpenedAt))
	g.Expect(after.Status.NextRetryTime).To(Equal(before.Status.NextRetryTime))

	// At once, a change to each kind the manager watches: a breaker (reset
	// annotation), a Namespace (allowed probe ranges that leave its target
	// out), a referenced Secret, a Service and its EndpointSlice (one endpoint,
	// not ready: nothing is probed).
	tripped.set(true)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, args := range [][]string{
		{"annotate", "cb", "tripped", "-n", ns, "circuit.resilience.dev/reset=after-outage", "--overwrite"},
		{"annotate", "namespace", fenced, "circuit.resilience.dev/probe-allowed-cidrs=192.0.2.0/24", "--overwrite"},
	} {
		wg.Go(func() {
			if out, err := kubectl(args...); err != nil {
				errs <- fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
			}
		})
	}
	wg.Go(func() {
		errs <- applyFile(t.TempDir(), fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: late-token
  namespace: %[1]s
  labels: {circuit.resilience.dev/probe-credentials: "true"}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: %[1]s}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: late-1
  namespace: %[1]s
  labels: {kubernetes.io/service-name: late}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [192.0.2.10]
  conditions: {ready: false}
`, ns))
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	t.Logf("changes made %s after the return", time.Since(back).Round(time.Millisecond))

	// Each is acted on within backWithin of the return. The Service breaker's
	// Ready=True needs both the Service and its slice in the cache (a Service
	// without either says ServiceNotFound or ServiceWithoutEndpoints).
	seen := map[string]time.Duration{}
	want := map[string]func(breakerView) bool{
		"tripped (breaker)":       func(b breakerView) bool { return b.Status.State == "Closed" },
		"fenced (namespace)":      func(b breakerView) bool { return b.ready() == "ProbeDenied" },
		"secret (secret)":         func(b breakerView) bool { return b.ready() == "Probing" },
		"service (service+slice)": func(b breakerView) bool { return b.ready() == "Probing" },
	}
	g.Eventually(func(g Gomega) {
		views, err := listBreakers()
		g.Expect(err).NotTo(HaveOccurred())
		shown := map[string]string{}
		for what, ok := range want {
			if _, done := seen[what]; !done && ok(views[what]) {
				seen[what] = time.Since(back)
			}
			shown[what] = views[what].Status.State + "/" + views[what].ready()
		}
		g.Expect(seen).To(HaveLen(len(want)), "acted on: %v; state/Ready reason now: %v", seen, shown)
	}).WithTimeout(time.Until(back.Add(backWithin))).WithPolling(100*time.Millisecond).Should(Succeed(),
		"the manager did not act on every change within %s of the API server's return", backWithin)
	for what, d := range seen {
		t.Logf("%s acted on %s after the return", what, d.Round(time.Millisecond))
	}

	eventuallyState(t, ns, "steady", "Closed", 10*time.Second)

	// The manager records a new failure as promptly as before the outage: its
	// cache follows its own writes again.
	broke := time.Now()
	steady.set(false)
	eventuallyState(t, ns, "steady", "Open", 15*time.Second)
	t.Logf("steady breaker Open %s after its target broke, %s after the API server came back",
		time.Since(broke).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	g.Expect(m.Running()).To(BeTrue(), "the manager restarted")

	// Recovering must not flood the API server that just came back: a few
	// conflicting writes while the cache catches up are fine, a retry loop is not.
	conflicts := breakerRequests(t, "PATCH", "status", "409")
	t.Logf("%d status PATCHes answered 409 Conflict since the API server came back", conflicts)
	g.Expect(conflicts).To(BeNumerically("<=", 100), "the manager hammers the API server with writes based on a stale cache")
}

// applyFile writes a manifest into dir and applies it with `kubectl apply -f`;
// unlike applyManifest it may run on any goroutine.
func applyFile(dir, manifest string) error {
	f, err := os.CreateTemp(dir, "manifest-*.yaml")
	if err != nil {
		return err
	}
	_, err = f.WriteString(manifest)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if out, err := kubectl("apply", "-f", f.Name()); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	return nil
}

// breakerView is what the outage test reads of each breaker.
type breakerView struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Status struct {
		State      string `json:"state"`
		Conditions []struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"conditions"`
	} `json:"status"`
}

// ready is the reason of the Ready condition.
func (b breakerView) ready() string {
	for _, c := range b.Status.Conditions {
		if c.Type == "Ready" {
			return c.Reason
		}
	}
	return ""
}

// listBreakers reads every breaker with one kubectl call, keyed as the outage
// test names them: "<name> (<what it shows>)".
func listBreakers() (map[string]breakerView, error) {
	out, err := kubectl("get", "cb", "-A", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []breakerView `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	shows := map[string]string{"tripped": "breaker", "fenced": "namespace", "secret": "secret", "service": "service+slice"}
	views := map[string]breakerView{}
	for _, b := range list.Items {
		if what, ok := shows[b.Metadata.Name]; ok {
			views[b.Metadata.Name+" ("+what+")"] = b
		}
	}
	return views, nil
}

// eventuallyReady waits until the breaker's Ready condition has reason.
func eventuallyReady(t testing.TB, ns, name, reason string, within time.Duration) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		out, err := kubectl("get", "cb", name, "-n", ns, "-o", "json")
		g.Expect(err).NotTo(HaveOccurred())
		var b breakerView
		g.Expect(json.Unmarshal([]byte(out), &b)).To(Succeed())
		g.Expect(b.ready()).To(Equal(reason))
	}).WithTimeout(within).WithPolling(250*time.Millisecond).Should(Succeed(), "breaker %s/%s never showed Ready reason %s", ns, name, reason)
}
