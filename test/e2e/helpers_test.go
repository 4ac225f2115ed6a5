package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// kubectlTimeout bounds one kubectl call; generous for a loaded machine.
const kubectlTimeout = 60 * time.Second

// kubectl runs kubectl against the control plane and returns its combined output.
func kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	out, err := env.cp.Kubectl(ctx, args...).CombinedOutput()
	return string(out), err
}

// mustKubectl runs kubectl and fails the test if it fails.
func mustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// newNamespace creates a namespace for one test. Namespaces are not deleted:
// without a kube-controller-manager they would stay Terminating for ever, and
// the control plane is thrown away after the run anyway.
func newNamespace(t testing.TB, name string) string {
	t.Helper()
	mustKubectl(t, "create", "namespace", name)
	return name
}

// breakerSpec is the part of a CircuitBreaker manifest a test chooses.
type breakerSpec struct {
	URL              string
	Threshold        int
	Timeout          string
	RetryTimeout     string
	Interval         string
	SuccessThreshold int
}

// applyBreaker writes a CircuitBreaker manifest to a file and applies it with
// `kubectl apply -f`, as a user would.
func applyBreaker(t testing.TB, ns, name string, s breakerSpec) {
	t.Helper()
	if s.SuccessThreshold == 0 {
		s.SuccessThreshold = 1
	}
	if s.RetryTimeout == "" {
		// A probe's deadline may not exceed the interval (admission refuses it).
		s.RetryTimeout = s.Interval
	}
	manifest := fmt.Sprintf(`apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata:
  name: %s
  namespace: %s
spec:
  target:
    url: %s
  threshold: %d
  timeout: %s
  retryTimeout: %s
  interval: %s
  successThreshold: %d
`, name, ns, s.URL, s.Threshold, s.Timeout, s.RetryTimeout, s.Interval, s.SuccessThreshold)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, "apply", "-f", path)
	// Delete it before the test's target goes away, so that the manager does
	// not keep probing a closed port.
	t.Cleanup(func() { _, _ = kubectl("delete", "-f", path, "--wait=false") })
}

// breaker is what the tests read of a CircuitBreaker, from `kubectl get -o json`.
type breaker struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Status struct {
		State               string     `json:"state"`
		ConsecutiveFailures int32      `json:"consecutiveFailures"`
		LastTransitionTime  *time.Time `json:"lastTransitionTime"`
		OpenedAt            *time.Time `json:"openedAt"`
		NextRetryTime       *time.Time `json:"nextRetryTime"`
		LastHandledReset    string     `json:"lastHandledReset"`
		ProbedBy            string     `json:"probedBy"`
	} `json:"status"`
}

func getBreaker(ns, name string) (breaker, error) {
	var b breaker
	out, err := kubectl("get", "circuitbreaker", name, "-n", ns, "-o", "json")
	if err != nil {
		return b, fmt.Errorf("%w: %s", err, out)
	}
	return b, json.Unmarshal([]byte(out), &b)
}

// row returns the columns of `kubectl get cb NAME` as the user sees them,
// keyed by header (NAME, STATE, FAILURES, TARGET, NEXT RETRY, AGE).
func row(ns, name string) (map[string]string, error) {
	out, err := kubectl("get", "cb", name, "-n", ns)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("want a header and one row, got:\n%s", out)
	}
	return parseTable(lines[0], lines[1]), nil
}

// parseTable cuts a row at the offsets of the header's columns. Headers are
// separated by at least two spaces ("NEXT RETRY" holds one).
func parseTable(header, line string) map[string]string {
	type col struct {
		name  string
		start int
	}
	var cols []col
	for i := 0; i < len(header); {
		for i < len(header) && header[i] == ' ' {
			i++
		}
		if i >= len(header) {
			break
		}
		end := strings.Index(header[i:], "  ")
		if end < 0 {
			end = len(header) - i
		}
		cols = append(cols, col{strings.TrimSpace(header[i : i+end]), i})
		i += end
	}
	cells := map[string]string{}
	for k, c := range cols {
		if c.start >= len(line) {
			cells[c.name] = ""
			continue
		}
		end := len(line)
		if k+1 < len(cols) && cols[k+1].start < end {
			end = cols[k+1].start
		}
		cells[c.name] = strings.TrimSpace(line[c.start:end])
	}
	return cells
}

// eventuallyState waits until `kubectl get cb` shows the breaker in state.
func eventuallyState(t testing.TB, ns, name, state string, within time.Duration) map[string]string {
	t.Helper()
	var cells map[string]string
	NewWithT(t).Eventually(func(g Gomega) {
		var err error
		cells, err = row(ns, name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cells).To(HaveKeyWithValue("STATE", state))
	}).WithTimeout(within).WithPolling(250*time.Millisecond).Should(Succeed(), "breaker %s/%s never showed STATE %s", ns, name, state)
	return cells
}

// describe returns what `kubectl describe cb` prints, Events included.
func describe(ns, name string) (string, error) {
	return kubectl("describe", "cb", name, "-n", ns)
}

// target is an HTTP health endpoint on 127.0.0.1 that the test can break and
// heal, and that records every request it answers.
type target struct {
	srv *httptest.Server

	mu      sync.Mutex
	healthy bool
	hits    []hit
}

type hit struct {
	at      time.Time
	healthy bool
}

func newTarget(t testing.TB, healthy bool) *target {
	tg := &target{healthy: healthy}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		ok := tg.healthy
		tg.hits = append(tg.hits, hit{time.Now(), ok})
		tg.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) URL() string { return tg.srv.URL + "/healthz" }

func (tg *target) set(healthy bool) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.healthy = healthy
}

// hitsBetween returns the requests answered in [from, to).
func (tg *target) hitsBetween(from, to time.Time) []hit {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var hs []hit
	for _, h := range tg.hits {
		if !h.at.Before(from) && h.at.Before(to) {
			hs = append(hs, h)
		}
	}
	return hs
}

func (tg *target) hitsSince(from time.Time) []hit {
	return tg.hitsBetween(from, time.Now().Add(time.Hour))
}

func failures(hs []hit) int {
	n := 0
	for _, h := range hs {
		if !h.healthy {
			n++
		}
	}
	return n
}

// manager is a running bin/manager process.
type manager struct {
	*localcp.Process
	log string
	// health is the base URL of its /healthz and /readyz.
	health string
}

// startManager starts the manager binary against the control plane and waits
// until it is ready. Its log is printed if the test fails.
func startManager(t testing.TB, name string, extraArgs ...string) *manager {
	t.Helper()
	// Targets are test servers on 127.0.0.1.
	return startManagerWith(t, name, append([]string{"--probe-allow-loopback"}, extraArgs...)...)
}

// startGuardedManager starts the manager as it runs in production: its probe
// guard refuses loopback.
func startGuardedManager(t testing.TB, name string) *manager {
	t.Helper()
	return startManagerWith(t, name)
}

func startManagerWith(t testing.TB, name string, extraArgs ...string) *manager {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The child holds its own descriptor.
	defer func() { _ = logFile.Close() }()
	healthPort, err := localcp.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := &manager{log: logPath, health: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort))}
	m.Process, err = env.cp.StartManager(t.Context(), localcp.ManagerOptions{
		Binary:     env.manager,
		Name:       name,
		Args:       append([]string{"--metrics-bind-address", "0", "--zap-log-level", "debug"}, extraArgs...),
		Log:        logFile,
		HealthPort: healthPort,
	})
	if err != nil {
		t.Fatalf("%v; its log:\n%s", err, tail(m.logText(), 40))
	}
	t.Cleanup(func() {
		_ = m.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("log of %s (last lines):\n%s", name, tail(m.logText(), 80))
		}
	})
	return m
}

func (m *manager) logText() string {
	data, _ := os.ReadFile(m.log)
	return string(data)
}

// kill stops the manager with SIGKILL, like a crash: nothing is cleaned up.
func (m *manager) kill(t testing.TB) {
	t.Helper()
	if err := m.Stop(0); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// observation is one line of `kubectl get cb -w`.
type observation struct {
	at                 time.Time
	state              string
	failures           string
	lastTransitionTime time.Time
}

// watch records every version of a breaker that `kubectl get cb -w` shows,
// so that short-lived states such as HalfOpen are seen without polling races.
type watch struct {
	mu  sync.Mutex
	obs []observation
}

// The breaker must exist: kubectl cannot watch a named object that does not.
func watchBreaker(t testing.TB, ns, name string) *watch {
	t.Helper()
	w := &watch{}
	pr := &lineWriter{onLine: w.add}
	p, err := localcp.StartProcess("kubectl-watch", env.cp.KubectlPath, env.cp.KubectlArgs(
		"get", "cb", name, "-n", ns, "--watch", "-o",
		`jsonpath={.status.state}{"|"}{.status.consecutiveFailures}{"|"}{.status.lastTransitionTime}{"\n"}`,
	), pr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return w
}

func (w *watch) add(line string) {
	parts := strings.Split(line, "|")
	if len(parts) != 3 {
		return
	}
	o := observation{at: time.Now(), state: parts[0], failures: parts[1]}
	o.lastTransitionTime, _ = time.Parse(time.RFC3339Nano, parts[2])
	w.mu.Lock()
	w.obs = append(w.obs, o)
	w.mu.Unlock()
}

// states returns the states seen, without consecutive repeats.
func (w *watch) states() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for _, o := range w.obs {
		if o.state != "" && (len(s) == 0 || s[len(s)-1] != o.state) {
			s = append(s, o.state)
		}
	}
	return s
}

// first returns the first observation in state.
func (w *watch) first(state string) (observation, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.obs {
		if o.state == state {
			return o, true
		}
	}
	return observation{}, false
}

// lineWriter calls onLine for each complete line written to it.
type lineWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		data := l.buf.Bytes()
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(data[:i])
		l.buf.Next(i + 1)
		l.onLine(line)
	}
}

// breakerRequests sums the API server's apiserver_request_total for requests
// on CircuitBreakers with verb (such as "PATCH") and subresource ("status",
// or "" for the object) that answered code (such as "409"), since the API
// server last started.
func breakerRequests(t testing.TB, verb, subresource, code string) int {
	t.Helper()
	n, err := sumMetric(mustKubectl(t, "get", "--raw", "/metrics"), "apiserver_request_total{",
		`resource="circuitbreakers"`, `subresource="`+subresource+`"`, `verb="`+verb+`"`, `code="`+code+`"`)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sumMetric sums the samples in metrics (Prometheus text) of the metric that
// starts with prefix and whose labels contain every one of labels.
func sumMetric(metrics, prefix string, labels ...string) (int, error) {
	total := 0
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		have, value, ok := strings.Cut(line, "} ")
		if !ok || !containsAll(have, labels) {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %q: %w", line, err)
		}
		total += int(n)
	}
	return total, nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
