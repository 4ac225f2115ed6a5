package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// consumerBinaries are private copies of bin/kubectl-breaker and bin/checkout
// (built when missing), made once per run in the control plane's directory.
var consumerBinaries struct {
	once             sync.Once
	plugin, checkout string
	err              error
}

func consumerBinary(t testing.TB, name string) string {
	t.Helper()
	consumerBinaries.once.Do(func() {
		dir := filepath.Join(env.cp.Dir, "consumer-bin")
		if consumerBinaries.err = os.MkdirAll(dir, 0o700); consumerBinaries.err != nil {
			return
		}
		if consumerBinaries.plugin, consumerBinaries.err = privateBinary(dir, "kubectl-breaker", "./cmd/kubectl-breaker"); consumerBinaries.err != nil {
			return
		}
		consumerBinaries.checkout, consumerBinaries.err = privateBinary(dir, "checkout", "./examples/checkout")
	})
	if consumerBinaries.err != nil {
		t.Fatal(consumerBinaries.err)
	}
	if name == "checkout" {
		return consumerBinaries.checkout
	}
	return consumerBinaries.plugin
}

// privateBinary copies bin/<name> into dir, or builds pkg there when missing.
func privateBinary(dir, name, pkg string) (string, error) {
	dst := filepath.Join(dir, name)
	if data, err := os.ReadFile(filepath.Join(env.root, "bin", name)); err == nil {
		return dst, os.WriteFile(dst, data, 0o755)
	}
	fmt.Printf("e2e: bin/%s not found; building %s\n", name, pkg)
	cmd := exec.Command("go", "build", "-o", dst, pkg)
	cmd.Dir = env.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", pkg, err, out)
	}
	return dst, nil
}

// breakerPlugin runs `kubectl breaker ARGS` (the plugin binary) against the
// control plane and returns its combined output.
func breakerPlugin(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, consumerBinary(t, "kubectl-breaker"), append([]string{"--kubeconfig", env.cp.KubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustBreakerPlugin(t testing.TB, args ...string) string {
	t.Helper()
	out, err := breakerPlugin(t, args...)
	if err != nil {
		t.Fatalf("kubectl breaker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// dependency is a service on 127.0.0.1 with a health endpoint the breaker
// probes and an API that counts the requests it serves.
type dependency struct {
	srv      *httptest.Server
	healthy  atomic.Bool
	apiCalls atomic.Int32
}

func newDependency(t testing.TB) *dependency {
	d := &dependency{}
	d.healthy.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, _ *http.Request) {
		d.apiCalls.Add(1)
		_, _ = w.Write([]byte("fresh recommendations"))
	})
	d.srv = httptest.NewServer(mux)
	t.Cleanup(d.srv.Close)
	return d
}

// checkoutAnswer is what the example service answers.
type checkoutAnswer struct {
	Source string `json:"source"`
	Answer string `json:"answer"`
	Reason string `json:"reason"`
}

// startCheckout runs the example service against the control plane and waits
// until it answers; it returns the URL of its /checkout endpoint.
func startCheckout(t testing.TB, ns, breaker, dependencyURL string) string {
	t.Helper()
	port, err := localcp.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "checkout.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := localcp.StartProcess("checkout", consumerBinary(t, "checkout"), []string{
		"--kubeconfig", env.cp.KubeconfigPath, "--listen", addr,
		"--namespace", ns, "--breaker", breaker, "--dependency", dependencyURL,
	}, logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("log of checkout:\n%s", tail(string(data), 40))
		}
	})
	NewWithT(t).Eventually(func(g Gomega) {
		resp, err := http.Get("http://" + addr + "/healthz")
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "checkout did not start")
	return "http://" + addr + "/checkout"
}

func getCheckout(g Gomega, url string) checkoutAnswer {
	resp, err := http.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	var a checkoutAnswer
	g.Expect(json.Unmarshal(data, &a)).To(Succeed(), string(data))
	return a
}

// TestCheckoutAnswersItsFallbackWithoutCallingTheDependencyWhileOpen runs the
// operator, a real dependency and the example service, and drives the breaker
// with the plugin.
func TestCheckoutAnswersItsFallbackWithoutCallingTheDependencyWhileOpen(t *testing.T) {
	startManager(t, "manager")
	ns := newNamespace(t, "e2e-checkout")
	dep := newDependency(t)
	applyBreaker(t, ns, "user-api", breakerSpec{URL: dep.srv.URL + "/healthz", Threshold: 2, Timeout: "1h", Interval: "300ms"})
	eventuallyState(t, ns, "user-api", "Closed", 60*time.Second)
	url := startCheckout(t, ns, "user-api", dep.srv.URL+"/api")
	g := NewWithT(t)

	g.Expect(getCheckout(g, url)).To(Equal(checkoutAnswer{Source: "dependency", Answer: "fresh recommendations"}))
	g.Expect(dep.apiCalls.Load()).To(BeEquivalentTo(1))

	// The health endpoint fails; the API would still answer, but must not be asked.
	dep.healthy.Store(false)
	eventuallyState(t, ns, "user-api", "Open", 60*time.Second)
	g.Eventually(func(g Gomega) string { return getCheckout(g, url).Source }).WithTimeout(5 * time.Second).Should(Equal("fallback"))
	calls := dep.apiCalls.Load()
	for range 5 {
		a := getCheckout(g, url)
		g.Expect(a.Source).To(Equal("fallback"))
		g.Expect(a.Reason).To(Equal("circuit open"))
	}
	g.Expect(dep.apiCalls.Load()).To(Equal(calls), "no request reaches the dependency while Open")

	t.Run("list shows the breaker Open with the time left until its retry", func(t *testing.T) {
		g := NewWithT(t)
		out := mustBreakerPlugin(t, "list", "-n", ns)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		g.Expect(lines).To(HaveLen(2), out)
		cells := parseTable(lines[0], lines[1])
		g.Expect(cells).To(HaveKeyWithValue("NAME", "user-api"))
		g.Expect(cells).To(HaveKeyWithValue("STATE", "Open"))
		g.Expect(cells).To(HaveKeyWithValue("FAILURES", "2"))
		g.Expect(cells["RETRY IN"]).To(MatchRegexp(`^(59m|1h0m)[0-9]+s$|^1h0m0s$`))

		all := mustBreakerPlugin(t, "list", "-A")
		g.Expect(all).To(MatchRegexp(`(?m)^NAMESPACE\s+NAME\s+STATE`))
		g.Expect(all).To(MatchRegexp(`(?m)^` + ns + `\s+user-api\s+Open\s`))

		var list struct {
			Kind  string `json:"kind"`
			Items []struct {
				Status struct {
					State string `json:"state"`
				} `json:"status"`
			} `json:"items"`
		}
		g.Expect(json.Unmarshal([]byte(mustBreakerPlugin(t, "list", "-n", ns, "-o", "json")), &list)).To(Succeed())
		g.Expect(list.Kind).To(Equal("CircuitBreakerList"))
		g.Expect(list.Items).To(HaveLen(1))
		g.Expect(list.Items[0].Status.State).To(Equal("Open"))
		g.Expect(mustBreakerPlugin(t, "status", "user-api", "-n", ns, "-o", "yaml")).To(ContainSubstring("kind: CircuitBreaker"))
	})

	t.Run("status shows state, counters, the retry and the transitions from Events", func(t *testing.T) {
		NewWithT(t).Eventually(func(g Gomega) {
			out := mustBreakerPlugin(t, "status", "user-api", "-n", ns)
			g.Expect(out).To(MatchRegexp(`State:\s+Open \(for `))
			g.Expect(out).To(MatchRegexp(`Consecutive failures:\s+2 \(threshold 2\)`))
			g.Expect(out).To(MatchRegexp(`Next retry:\s+(59m|1h0m)[0-9]+s \(`))
			g.Expect(out).To(MatchRegexp(`Last probe:\s+Failure \(http_status\)`))
			g.Expect(out).To(MatchRegexp(`Warning\s+CircuitOpened\s`))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		out, err := breakerPlugin(t, "status", "missing", "-n", ns)
		NewWithT(t).Expect(err).To(HaveOccurred())
		NewWithT(t).Expect(out).To(ContainSubstring("not found"))
	})

	t.Run("trip writes trip-until, and mode says when the CRD lacks spec.mode", func(t *testing.T) {
		g := NewWithT(t)
		before := time.Now()
		g.Expect(mustBreakerPlugin(t, "trip", "user-api", "--for", "10m", "-n", ns)).To(ContainSubstring("tripped until"))
		b, err := getBreaker(ns, "user-api")
		g.Expect(err).NotTo(HaveOccurred())
		until, err := time.Parse(time.RFC3339, b.Metadata.Annotations["circuit.resilience.dev/trip-until"])
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(until).To(BeTemporally("~", before.Add(10*time.Minute), 5*time.Second))

		out, err := breakerPlugin(t, "mode", "user-api", "Sideways", "-n", ns)
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring(`unknown mode "Sideways"`))
		out, err = breakerPlugin(t, "mode", "user-api", "ForcedOpen", "-n", ns)
		if _, explainErr := kubectl("explain", "circuitbreaker.spec.mode"); explainErr != nil {
			g.Expect(err).To(HaveOccurred(), out)
			g.Expect(out).To(ContainSubstring("the installed CircuitBreaker CRD does not support spec.mode yet"))
		} else {
			g.Expect(err).NotTo(HaveOccurred(), out)
			g.Expect(mustKubectl(t, "get", "cb", "user-api", "-n", ns, "-o", "jsonpath={.spec.mode}")).To(Equal("ForcedOpen"))
			mustBreakerPlugin(t, "mode", "user-api", "Auto", "-n", ns)
		}
	})

	// Healed and reset through the plugin, the breaker closes and calls go through.
	dep.healthy.Store(true)
	g.Expect(mustBreakerPlugin(t, "reset", "user-api", "-n", ns)).To(ContainSubstring("reset requested"))
	eventuallyState(t, ns, "user-api", "Closed", 30*time.Second)
	g.Eventually(func(g Gomega) string { return getCheckout(g, url).Source }).WithTimeout(5 * time.Second).Should(Equal("dependency"))
	g.Expect(dep.apiCalls.Load()).To(BeNumerically(">", calls))
}

// TestKubectlWaitForAvailableReturnsWhenTheBreakerCloses is the deploy gate:
// `kubectl wait --for=condition=Available` blocks while the dependency's
// breaker is Open and returns when it closes.
func TestKubectlWaitForAvailableReturnsWhenTheBreakerCloses(t *testing.T) {
	startManager(t, "manager")
	ns := newNamespace(t, "e2e-available")
	dep := newDependency(t)
	dep.healthy.Store(false)
	applyBreaker(t, ns, "user-api", breakerSpec{URL: dep.srv.URL + "/healthz", Threshold: 1, Timeout: "2s", Interval: "300ms"})
	eventuallyState(t, ns, "user-api", "Open", 60*time.Second)
	available := func() string {
		out, _ := kubectl("get", "cb", "user-api", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for available() == "" && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	if available() == "" {
		t.Fatal("the controller wrote no Available condition within 10s")
	}
	g := NewWithT(t)
	g.Expect(available()).To(Equal("False"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wait := env.cp.Kubectl(ctx, "wait", "--for=condition=Available", "cb/user-api", "-n", ns, "--timeout=90s")
	done := make(chan error, 1)
	var out strings.Builder
	wait.Stdout, wait.Stderr = &out, &out
	g.Expect(wait.Start()).To(Succeed())
	go func() { done <- wait.Wait() }()
	g.Consistently(done).WithTimeout(3*time.Second).ShouldNot(Receive(), "kubectl wait returned while the breaker was Open")

	dep.healthy.Store(true)
	var err error
	g.Eventually(done).WithTimeout(90 * time.Second).Should(Receive(&err))
	g.Expect(err).NotTo(HaveOccurred(), out.String())
	b, getErr := getBreaker(ns, "user-api")
	g.Expect(getErr).NotTo(HaveOccurred())
	g.Expect(b.Status.State).To(Equal("Closed"))
}
