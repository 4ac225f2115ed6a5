package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// TestServiceTargetProbesEveryEndpointOverARealNetwork runs demo targets in a
// network namespace, publishes them through a Service and its EndpointSlice
// (there is no kube-controller-manager, so the test owns the slices), and
// checks that the manager, with its default dial guard, probes each endpoint
// and decides for the Service as a whole. The cases share the targets, so
// they run one after the other; each heals what it broke.
func TestServiceTargetProbesEveryEndpointOverARealNetwork(t *testing.T) {
	_, targets := netnsTargets(t, 4)
	// a, b and c are a Service's three endpoints; d replaces c in one case.
	a, b, c, d := targets[0], targets[1], targets[2], targets[3]

	threeReady := func(prefix string) []endpoint {
		return []endpoint{{a.addr, prefix + "-a", true}, {b.addr, prefix + "-b", true}, {c.addr, prefix + "-c", true}}
	}
	healthyStatuses := func(eps []endpoint, port int32) []endpointStatus {
		var out []endpointStatus
		for _, e := range eps {
			out = append(out, endpointStatus{Address: e.addr, Port: port, TargetRef: &endpointRef{"Pod", e.pod},
				LastResult: "Success", Reason: circuitv1alpha1.ProbeReasonOK})
		}
		return out
	}

	t.Run("the default guard is on: a loopback target is refused", func(t *testing.T) {
		ns := newNamespace(t, "e2e-svc-guard")
		// The guard refuses the address before connecting: nothing is sent.
		applyBreaker(t, ns, "loopback", breakerSpec{URL: "http://127.0.0.1:9/healthz", Threshold: 2, Timeout: "1h", Interval: "300ms"})
		eventuallyBreaker(t, ns, "loopback", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.LastProbe).NotTo(BeNil())
			g.Expect(got.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonDenied))
			g.Expect(got.ready()).To(Equal(condition{Status: "False", Reason: circuitv1alpha1.ReasonProbeDenied}))
		})
	})

	t.Run("three healthy endpoints keep the breaker Closed and are listed sorted with their target port", func(t *testing.T) {
		ns := newNamespace(t, "e2e-svc-healthy")
		eps := threeReady("web")
		applyService(t, ns, "web", httpPort)
		applySlice(t, ns, "web", "web-1", []servicePort{httpPort}, eps...)
		applyServiceBreaker(t, ns, "web", serviceBreakerSpec{Service: "web", Port: "http", Threshold: 3, Timeout: "2s"})

		eventuallyBreaker(t, ns, "web", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Closed"))
			g.Expect(got.Status.Target).To(Equal("service/web:http"))
			g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
			g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(0))
			g.Expect(got.Status.Endpoints).To(Equal(healthyStatuses(eps, 8080)))
			g.Expect(got.Status.LastProbe).NotTo(BeNil())
			g.Expect(got.Status.LastProbe.Result).To(Equal("Success"))
			g.Expect(got.ready()).To(Equal(condition{Status: "True", Reason: circuitv1alpha1.ReasonProbing}))
		})
		// Every address really is probed over the veth pair, round after round.
		before := []int{a.mustChecks(t), b.mustChecks(t), c.mustChecks(t)}
		NewWithT(t).Eventually(func(g Gomega) {
			for i, tg := range []*nsTarget{a, b, c} {
				n, err := tg.checks()
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(n).To(BeNumerically(">=", before[i]+3), "probes answered by %s", tg.addr)
			}
		}).WithTimeout(60 * time.Second).WithPolling(300 * time.Millisecond).Should(Succeed())
		got := mustGetServiceBreaker(t, ns, "web")
		NewWithT(t).Expect(got.Status.State).To(Equal("Closed"))
		NewWithT(t).Expect(got.Status.ConsecutiveFailures).To(BeEquivalentTo(0))
	})

	t.Run("one failing endpoint of three leaves failurePercent 50 and 100 Closed and opens failurePercent 30", func(t *testing.T) {
		ns := newNamespace(t, "e2e-svc-percent")
		applyService(t, ns, "web", httpPort)
		applySlice(t, ns, "web", "web-1", []servicePort{httpPort}, threeReady("web")...)
		for _, p := range []int{50, 100, 30} {
			// A long timeout keeps p30 Open once it opens, with its count as it opened.
			applyServiceBreaker(t, ns, fmt.Sprintf("p%d", p), serviceBreakerSpec{Service: "web", Port: "http",
				FailurePercent: p, Threshold: 2, Timeout: "1h"})
		}
		for _, name := range []string{"p50", "p100", "p30"} {
			eventuallyBreaker(t, ns, name, 60*time.Second, func(g Gomega, got serviceBreaker) {
				g.Expect(got.Status.State).To(Equal("Closed"))
				g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
				g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(0))
			})
		}
		watches := map[string]*watch{"p50": watchBreaker(t, ns, "p50"), "p100": watchBreaker(t, ns, "p100")}

		b.set(t, false)
		t.Cleanup(func() { b.set(t, true) })
		// 1 of 3 is 33%: at least 30% fails the round, less than 50% does not.
		eventuallyBreaker(t, ns, "p30", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Open"))
			g.Expect(got.Status.ConsecutiveFailures).To(BeEquivalentTo(2))
			g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(1))
			g.Expect(got.Status.LastProbe).NotTo(BeNil())
			g.Expect(got.Status.LastProbe.Result).To(Equal("Failure"))
			g.Expect(got.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonHTTPStatus))
		})
		for _, name := range []string{"p50", "p100"} {
			// The failing endpoint's own count proves how many rounds ran; the
			// breaker counted none of them as failed.
			got := eventuallyBreaker(t, ns, name, 60*time.Second, func(g Gomega, got serviceBreaker) {
				g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
				g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(1))
				g.Expect(got.endpoint(b.addr)).NotTo(BeNil())
				g.Expect(got.endpoint(b.addr).ConsecutiveFailures).To(BeNumerically(">=", 5))
			})
			g := NewWithT(t)
			g.Expect(got.Status.State).To(Equal("Closed"), name)
			g.Expect(got.Status.ConsecutiveFailures).To(BeEquivalentTo(0), name)
			g.Expect(got.endpoint(b.addr).LastResult).To(Equal("Failure"))
			g.Expect(got.endpoint(b.addr).Reason).To(Equal(circuitv1alpha1.ProbeReasonHTTPStatus))
			g.Expect(got.endpoint(a.addr).LastResult).To(Equal("Success"))
			g.Expect(got.endpoint(c.addr).LastResult).To(Equal("Success"))
			g.Expect(got.Status.LastProbe.Result).To(Equal("Success"))
			g.Expect(watches[name].states()).To(HaveExactElements("Closed"), "%s left Closed", name)
		}
	})

	t.Run("endpoints scaled to zero fail each round and open after threshold; scaled back, the breaker closes after the timeout", func(t *testing.T) {
		const threshold = 3
		ns := newNamespace(t, "e2e-svc-scale")
		applyService(t, ns, "scale", httpPort)
		applySlice(t, ns, "scale", "scale-1", []servicePort{httpPort}, threeReady("scale")...)
		applyServiceBreaker(t, ns, "scale", serviceBreakerSpec{Service: "scale", Port: "http", Threshold: threshold, Timeout: "3s"})
		eventuallyBreaker(t, ns, "scale", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Closed"))
			g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
		})
		w := watchBreaker(t, ns, "scale")

		for _, scaledDown := range []struct {
			how       string
			endpoints []endpoint
		}{
			{"every endpoint not ready", []endpoint{{a.addr, "scale-a", false}, {b.addr, "scale-b", false}, {c.addr, "scale-c", false}}},
			{"no endpoints at all", nil},
		} {
			// The watch has caught up with the Closed breaker before the slice changes.
			NewWithT(t).Eventually(func() string { return strings.Join(w.states(), ",") }).
				WithTimeout(30 * time.Second).Should(HaveSuffix("Closed"))
			opensBefore := len(w.openings())
			applySlice(t, ns, "scale", "scale-1", []servicePort{httpPort}, scaledDown.endpoints...)
			open := eventuallyBreaker(t, ns, "scale", 60*time.Second, func(g Gomega, got serviceBreaker) {
				g.Expect(got.Status.State).To(Equal("Open"), scaledDown.how)
			})
			g := NewWithT(t)
			g.Expect(open.Status.LastProbe).NotTo(BeNil())
			g.Expect(open.Status.LastProbe.Result).To(Equal("Failure"))
			g.Expect(open.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonNoEndpoints), scaledDown.how)
			g.Expect(open.Status.EndpointsTotal).To(BeEquivalentTo(0), scaledDown.how)
			g.Expect(open.Status.Endpoints).To(BeEmpty(), scaledDown.how)
			g.Expect(open.Status.NextRetryTime).NotTo(BeNil())
			// It opened at the threshold, and each failed round on the way was written.
			// (Read from the watch: polling may see only a later reopening.)
			g.Eventually(func() []string { return w.failuresWhileClosedBefore(opensBefore) }).
				WithTimeout(30*time.Second).Should(ContainElements("1", "2"), scaledDown.how)
			g.Expect(w.failuresAtOpening(opensBefore)).To(Equal(strconv.Itoa(threshold)), scaledDown.how)

			applySlice(t, ns, "scale", "scale-1", []servicePort{httpPort}, threeReady("scale")...)
			closed := eventuallyBreaker(t, ns, "scale", 60*time.Second, func(g Gomega, got serviceBreaker) {
				g.Expect(got.Status.State).To(Equal("Closed"), scaledDown.how)
				g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
				g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(0))
			})
			g.Expect(closed.Status.ConsecutiveFailures).To(BeEquivalentTo(0))
			g.Expect(*closed.Status.LastTransitionTime).To(BeTemporally(">=", *open.Status.NextRetryTime),
				"closed before its timeout ran out (%s)", scaledDown.how)
		}
		// A trial that came before the slice was scaled back failed and reopened
		// the circuit: allowed, the box may be slow.
		cycle := `,Open(,HalfOpen,Open)*,HalfOpen,Closed`
		NewWithT(t).Eventually(func() string { return strings.Join(w.states(), ",") }).WithTimeout(30 * time.Second).
			Should(MatchRegexp(`^Closed` + cycle + cycle + `$`))
	})

	t.Run("the Service port is found by name or by number and probed on the slice's port of that name", func(t *testing.T) {
		ns := newNamespace(t, "e2e-svc-ports")
		// Nothing listens on admin's target port: probes of it are refused.
		admin := servicePort{name: "admin", port: 9090, targetPort: 9999}
		eps := threeReady("multi")
		applyService(t, ns, "multi", httpPort, admin)
		applySlice(t, ns, "multi", "multi-1", []servicePort{httpPort, admin}, eps...)
		applyServiceBreaker(t, ns, "by-name", serviceBreakerSpec{Service: "multi", Port: "http", Threshold: 2, Timeout: "3s"})
		applyServiceBreaker(t, ns, "by-number", serviceBreakerSpec{Service: "multi", Port: "80", Threshold: 2, Timeout: "3s"})
		applyServiceBreaker(t, ns, "admin", serviceBreakerSpec{Service: "multi", Port: "9090", Threshold: 2, Timeout: "1h"})
		applyServiceBreaker(t, ns, "target-port", serviceBreakerSpec{Service: "multi", Port: "8080", Threshold: 2, Timeout: "1h"})

		for name, summary := range map[string]string{"by-name": "service/multi:http", "by-number": "service/multi:80"} {
			eventuallyBreaker(t, ns, name, 60*time.Second, func(g Gomega, got serviceBreaker) {
				g.Expect(got.Status.State).To(Equal("Closed"))
				g.Expect(got.Status.Target).To(Equal(summary))
				g.Expect(got.Status.Endpoints).To(Equal(healthyStatuses(eps, 8080)))
				g.Expect(got.ready()).To(Equal(condition{Status: "True", Reason: circuitv1alpha1.ReasonProbing}))
			})
		}
		eventuallyBreaker(t, ns, "admin", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Open"))
			g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(3))
			g.Expect(got.Status.Endpoints).To(HaveEach(And(
				HaveField("Port", BeEquivalentTo(9999)),
				HaveField("Reason", circuitv1alpha1.ProbeReasonConnectionRefused))))
		})
		// A targetPort is not a Service port.
		eventuallyBreaker(t, ns, "target-port", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Open"))
			g.Expect(got.ready()).To(Equal(condition{Status: "False", Reason: circuitv1alpha1.ReasonServicePortNotFound}))
		})
	})

	t.Run("a breaker on a missing Service is not Ready and opens; it closes once the Service appears", func(t *testing.T) {
		ns := newNamespace(t, "e2e-svc-missing")
		applyServiceBreaker(t, ns, "ghost", serviceBreakerSpec{Service: "ghost", Port: "http", Threshold: 2, Timeout: "2s"})
		eventuallyBreaker(t, ns, "ghost", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Open"))
			g.Expect(got.Status.LastProbe).NotTo(BeNil())
			g.Expect(got.Status.LastProbe.Reason).To(Equal(circuitv1alpha1.ProbeReasonNoEndpoints))
			g.Expect(got.ready()).To(Equal(condition{Status: "False", Reason: circuitv1alpha1.ReasonServiceNotFound}))
		})

		eps := threeReady("ghost")
		applyService(t, ns, "ghost", httpPort)
		applySlice(t, ns, "ghost", "ghost-1", []servicePort{httpPort}, eps...)
		eventuallyBreaker(t, ns, "ghost", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Closed"))
			g.Expect(got.Status.Endpoints).To(Equal(healthyStatuses(eps, 8080)))
			g.Expect(got.ready()).To(Equal(condition{Status: "True", Reason: circuitv1alpha1.ReasonProbing}))
		})
	})

	t.Run("a slice changed during a probe round takes effect in the next round", func(t *testing.T) {
		// Rounds last retryTimeout while c hangs, which leaves ample time to
		// change the slice before the round in flight ends.
		const retryTimeout = 10 * time.Second
		ns := newNamespace(t, "e2e-svc-midround")
		applyService(t, ns, "mid", httpPort)
		applySlice(t, ns, "mid", "mid-1", []servicePort{httpPort}, threeReady("mid")...)
		applyServiceBreaker(t, ns, "mid", serviceBreakerSpec{Service: "mid", Port: "http", Threshold: 3, Timeout: "3s",
			RetryTimeout: retryTimeout.String(), Interval: retryTimeout.String()})
		eventuallyBreaker(t, ns, "mid", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.Endpoints).To(Equal(healthyStatuses(threeReady("mid"), 8080)))
		})

		c.freeze(t)
		eventuallyBreaker(t, ns, "mid", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.endpoint(c.addr)).NotTo(BeNil())
			g.Expect(got.endpoint(c.addr).Reason).To(Equal(circuitv1alpha1.ProbeReasonTimeout))
			g.Expect(got.Status.State).To(Equal("Closed"), "one hanging endpoint of three fails no round at failurePercent 100")
		})
		w := watchEndpoints(t, ns, "mid")

		// a answers at once when a round starts; the round then waits for c.
		started := a.mustChecks(t)
		NewWithT(t).Eventually(a.checks).WithTimeout(2 * retryTimeout).WithPolling(20 * time.Millisecond).
			Should(BeNumerically(">", started))
		inFlight := a.mustChecks(t)
		replacedAt := time.Now()
		dBefore := d.mustChecks(t)
		replaced := []endpoint{{a.addr, "mid-a", true}, {b.addr, "mid-b", true}, {d.addr, "mid-d", true}}
		applySlice(t, ns, "mid", "mid-1", []servicePort{httpPort}, replaced...)
		NewWithT(t).Expect(a.mustChecks(t)).To(Equal(inFlight),
			"the slice was not replaced within the round in flight (%s after it started)", time.Since(replacedAt))

		eventuallyBreaker(t, ns, "mid", 60*time.Second, func(g Gomega, got serviceBreaker) {
			g.Expect(got.Status.State).To(Equal("Closed"))
			g.Expect(got.Status.Endpoints).To(Equal(healthyStatuses(replaced, 8080)))
			g.Expect(got.Status.EndpointsTotal).To(BeEquivalentTo(3))
			g.Expect(got.Status.EndpointsFailing).To(BeEquivalentTo(0))
		})
		NewWithT(t).Expect(d.mustChecks(t)).To(BeNumerically(">", dBefore), "the new endpoint was probed")
		// Later rounds keep to the new set.
		after := a.mustChecks(t)
		NewWithT(t).Eventually(a.checks).WithTimeout(60 * time.Second).WithPolling(300 * time.Millisecond).
			Should(BeNumerically(">=", after+3))
		g := NewWithT(t)
		g.Expect(mustGetServiceBreaker(t, ns, "mid").Status.Endpoints).To(Equal(healthyStatuses(replaced, 8080)))
		versions := w.since(replacedAt)
		var seen [][]string
		for _, v := range versions {
			seen = append(seen, addresses(v))
		}
		newSet := slices.IndexFunc(versions, func(eps []endpointStatus) bool { return hasAddress(eps, d.addr) })
		g.Expect(newSet).To(BeNumerically(">=", 0), "status never showed the new endpoint: %q", seen)
		for _, v := range versions[newSet:] {
			g.Expect(hasAddress(v, c.addr)).To(BeFalse(), "the replaced endpoint was probed again: %q", seen)
		}
		t.Logf("status.endpoints since the slice changed mid-round: %q", seen)
	})
}

// servicePort is a port of a Service, and by its name the port of its EndpointSlice.
type servicePort struct {
	name             string
	port, targetPort int32
}

var httpPort = servicePort{name: "http", port: 80, targetPort: 8080}

// endpoint is one endpoint of an EndpointSlice, backed by a Pod named pod.
type endpoint struct {
	addr, pod string
	ready     bool
}

// applyManifest writes a manifest to a file and applies it with kubectl.
func applyManifest(t testing.TB, file, manifest string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, "apply", "-f", path)
	return path
}

// applyService applies a Service selecting app=name.
func applyService(t testing.TB, ns, name string, ports ...servicePort) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  selector: {app: %s}\n  ports:\n",
		name, ns, name)
	for _, p := range ports {
		fmt.Fprintf(&b, "  - {name: %s, port: %d, targetPort: %d}\n", p.name, p.port, p.targetPort)
	}
	applyManifest(t, "service-"+name+".yaml", b.String())
}

// applySlice applies an EndpointSlice of service, as the EndpointSlice
// controller would write it: each port under its Service port's name, on its
// targetPort.
func applySlice(t testing.TB, ns, service, name string, ports []servicePort, eps ...endpoint) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: %s
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports:
`, name, ns, service)
	for _, p := range ports {
		fmt.Fprintf(&b, "- {name: %s, port: %d, protocol: TCP}\n", p.name, p.targetPort)
	}
	b.WriteString("endpoints:")
	if len(eps) == 0 {
		b.WriteString(" []")
	}
	b.WriteString("\n")
	for _, e := range eps {
		fmt.Fprintf(&b, "- addresses: [%q]\n  conditions: {ready: %t}\n  targetRef: {kind: Pod, name: %s, namespace: %s}\n",
			e.addr, e.ready, e.pod, ns)
	}
	applyManifest(t, "slice-"+name+".yaml", b.String())
}

// serviceBreakerSpec is the part of a Service-target breaker a test chooses.
type serviceBreakerSpec struct {
	Service string
	// Port is a port name or number, as written in YAML.
	Port           string
	FailurePercent int
	Threshold      int
	Timeout        string
	RetryTimeout   string
	// Interval is 300ms unless set.
	Interval string
}

// applyServiceBreaker applies a breaker that probes /healthz of each endpoint
// of a Service every 300ms, and deletes it when the test ends.
func applyServiceBreaker(t testing.TB, ns, name string, s serviceBreakerSpec) {
	t.Helper()
	if s.FailurePercent == 0 {
		s.FailurePercent = 100
	}
	if s.Interval == "" {
		s.Interval = "300ms"
	}
	if s.RetryTimeout == "" {
		s.RetryTimeout = s.Interval
	}
	path := applyManifest(t, "breaker-"+name+".yaml", fmt.Sprintf(`apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata:
  name: %s
  namespace: %s
spec:
  target:
    service: {name: %s, port: %s, path: /healthz, scheme: HTTP}
  failurePercent: %d
  threshold: %d
  timeout: %s
  retryTimeout: %s
  interval: %s
`, name, ns, s.Service, s.Port, s.FailurePercent, s.Threshold, s.Timeout, s.RetryTimeout, s.Interval))
	t.Cleanup(func() { _, _ = kubectl("delete", "-f", path, "--wait=false") })
}

// serviceBreaker is what the tests read of a Service-target breaker.
type serviceBreaker struct {
	Status struct {
		State               string     `json:"state"`
		Target              string     `json:"target"`
		ConsecutiveFailures int32      `json:"consecutiveFailures"`
		LastTransitionTime  *time.Time `json:"lastTransitionTime"`
		NextRetryTime       *time.Time `json:"nextRetryTime"`
		LastProbe           *struct {
			Result string                      `json:"result"`
			Reason circuitv1alpha1.ProbeReason `json:"reason"`
		} `json:"lastProbe"`
		Endpoints        []endpointStatus `json:"endpoints"`
		EndpointsTotal   int32            `json:"endpointsTotal"`
		EndpointsFailing int32            `json:"endpointsFailing"`
		Conditions       []struct {
			Type string `json:"type"`
			condition
		} `json:"conditions"`
	} `json:"status"`
}

type endpointStatus struct {
	Address             string                      `json:"address"`
	Port                int32                       `json:"port"`
	TargetRef           *endpointRef                `json:"targetRef"`
	LastResult          string                      `json:"lastResult"`
	Reason              circuitv1alpha1.ProbeReason `json:"reason"`
	ConsecutiveFailures int32                       `json:"consecutiveFailures"`
}

type endpointRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// condition is the part of a condition the tests compare.
type condition struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func (b serviceBreaker) ready() condition {
	for _, c := range b.Status.Conditions {
		if c.Type == circuitv1alpha1.ConditionReady {
			return c.condition
		}
	}
	return condition{}
}

func (b serviceBreaker) endpoint(addr string) *endpointStatus {
	for i := range b.Status.Endpoints {
		if b.Status.Endpoints[i].Address == addr {
			return &b.Status.Endpoints[i]
		}
	}
	return nil
}

func getServiceBreaker(ns, name string) (serviceBreaker, error) {
	var b serviceBreaker
	out, err := kubectl("get", "cb", name, "-n", ns, "-o", "json")
	if err != nil {
		return b, fmt.Errorf("%w: %s", err, out)
	}
	return b, json.Unmarshal([]byte(out), &b)
}

func mustGetServiceBreaker(t testing.TB, ns, name string) serviceBreaker {
	t.Helper()
	b, err := getServiceBreaker(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventuallyBreaker waits until the breaker's status passes check, and returns it.
func eventuallyBreaker(t testing.TB, ns, name string, within time.Duration, check func(Gomega, serviceBreaker)) serviceBreaker {
	t.Helper()
	var b serviceBreaker
	NewWithT(t).Eventually(func(g Gomega) {
		var err error
		b, err = getServiceBreaker(ns, name)
		g.Expect(err).NotTo(HaveOccurred())
		check(g, b)
	}).WithTimeout(within).WithPolling(300*time.Millisecond).Should(Succeed(), "breaker %s/%s; last status: %+v", ns, name, &b.Status)
	return b
}

// openings returns the indexes of the observations where the breaker had just opened.
func (w *watch) openings() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var at []int
	for i, o := range w.obs {
		if o.state == "Open" && (i == 0 || w.obs[i-1].state != "Open") {
			at = append(at, i)
		}
	}
	return at
}

// failuresAtOpening returns the failure count seen at the opening number n (from 0).
func (w *watch) failuresAtOpening(n int) string {
	open := w.openings()
	if n >= len(open) {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.obs[open[n]].failures
}

// failuresWhileClosedBefore returns the failure counts seen while Closed just
// before the opening number n (from 0).
func (w *watch) failuresWhileClosedBefore(n int) []string {
	open := w.openings()
	if n >= len(open) {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var counts []string
	for i := open[n] - 1; i >= 0 && w.obs[i].state == "Closed"; i-- {
		counts = append(counts, w.obs[i].failures)
	}
	return counts
}

// endpointWatch records each version of a breaker's status.endpoints that
// `kubectl get cb -w` shows.
type endpointWatch struct {
	mu       sync.Mutex
	versions []endpointsVersion
}

type endpointsVersion struct {
	at        time.Time
	endpoints []endpointStatus
}

func watchEndpoints(t testing.TB, ns, name string) *endpointWatch {
	t.Helper()
	w := &endpointWatch{}
	lw := &lineWriter{onLine: func(l string) {
		var eps []endpointStatus
		if l != "" && json.Unmarshal([]byte(l), &eps) != nil {
			return // not status, such as a warning on stderr
		}
		w.mu.Lock()
		w.versions = append(w.versions, endpointsVersion{time.Now(), eps})
		w.mu.Unlock()
	}}
	// The list is printed as JSON, one version a line. A {range} template
	// would be simpler, but kubectl (1.37) exits after the first event with one.
	p, err := localcp.StartProcess("kubectl-watch-endpoints", env.cp.KubectlPath, env.cp.KubectlArgs(
		"get", "cb", name, "-n", ns, "--watch", "-o", `jsonpath={.status.endpoints}{"\n"}`), lw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return w
}

// since returns the versions recorded at or after from.
func (w *endpointWatch) since(from time.Time) [][]endpointStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out [][]endpointStatus
	for _, v := range w.versions {
		if !v.at.Before(from) {
			out = append(out, v.endpoints)
		}
	}
	return out
}

// addresses lists the addresses of eps, for messages.
func addresses(eps []endpointStatus) []string {
	var out []string
	for _, e := range eps {
		ref := "-"
		if e.TargetRef != nil {
			ref = e.TargetRef.Name
		}
		out = append(out, fmt.Sprintf("%s=%s/%s/%d/%s", e.Address, e.LastResult, e.Reason, e.ConsecutiveFailures, ref))
	}
	return out
}

func hasAddress(eps []endpointStatus, addr string) bool {
	for _, e := range eps {
		if e.Address == addr {
			return true
		}
	}
	return false
}
