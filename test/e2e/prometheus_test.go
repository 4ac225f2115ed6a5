package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
	"github.com/resilience-dev/breaker-operator/test/ci"
)

// prometheusServer is a real Prometheus (Debian's prometheus package) on
// 127.0.0.1, scraping the manager's secure metrics endpoint with a
// ServiceAccount token, as the ServiceMonitor in config/prometheus does.
type prometheusServer struct {
	*localcp.Process
	url string
	log string
}

func startPrometheus(t *testing.T, metricsAddr, token string) *prometheusServer {
	t.Helper()
	bin := ci.Tool(t, "prometheus", "the real scrape of the manager needs it", "apt-get install prometheus; .ci/run installs it")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: breaker-operator-controller-manager-metrics-service
  scheme: https
  tls_config:
    insecure_skip_verify: true
  authorization:
    credentials_file: %s
  static_configs:
  - targets: [%q]
`, tokenFile, metricsAddr)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := localcp.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	p, err := localcp.StartProcess("prometheus", bin, []string{
		"--config.file=" + configFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
	}, logFile)
	if err != nil {
		t.Fatal(err)
	}
	ps := &prometheusServer{Process: p, url: "http://127.0.0.1:" + strconv.Itoa(port), log: logPath}
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("prometheus log (last lines):\n%s", tail(string(data), 40))
		}
	})
	NewWithT(t).Eventually(func(g Gomega) {
		if !p.Running() {
			StopTrying(fmt.Sprintf("prometheus exited: %v", p.Err())).Now()
		}
		resp, err := http.Get(ps.url + "/-/ready")
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "prometheus did not become ready")
	return ps
}

// query runs an instant PromQL query and returns each series' value keyed
// by its labels other than __name__, as "k=v,k=v" in the order given.
func (ps *prometheusServer) query(g Gomega, expr string, keys ...string) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ps.url+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	g.Expect(json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
	g.Expect(body.Status).To(Equal("success"), body.Error)
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		var k []string
		for _, key := range keys {
			k = append(k, key+"="+r.Metric[key])
		}
		v, err := strconv.ParseFloat(r.Value[1].(string), 64)
		g.Expect(err).NotTo(HaveOccurred())
		out[strings.Join(k, ",")] = v
	}
	return out
}

// TestPrometheusSeesTheFirstOpeningOfABreaker: a real Prometheus scraping the
// secure endpoint through Closed -> Open -> HalfOpen -> Closed counts every
// first transition with increase(), because each series exists at 0 before it
// is first incremented.
func TestPrometheusSeesTheFirstOpeningOfABreaker(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, "e2e-prometheus")

	// The scraper's identity: a ServiceAccount bound to the metrics-reader role.
	mustKubectl(t, "apply", "-f", filepath.Join(env.root, "config", "rbac", "metrics_reader_role.yaml"))
	mustKubectl(t, "create", "serviceaccount", "prometheus", "-n", ns)
	mustKubectl(t, "create", "clusterrolebinding", ns+"-metrics-reader", "--clusterrole=metrics-reader", "--serviceaccount="+ns+":prometheus")
	token := strings.TrimSpace(mustKubectl(t, "create", "token", "prometheus", "-n", ns, "--duration=1h"))

	port, err := localcp.FreePort()
	g.Expect(err).NotTo(HaveOccurred())
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	startManager(t, "manager-prometheus", "--metrics-bind-address", metricsAddr)
	prom := startPrometheus(t, metricsAddr, token)

	tg := newTarget(t, true)
	applyBreaker(t, ns, "checkout", breakerSpec{URL: tg.URL(), Threshold: 2, Timeout: "4s", Interval: "500ms"})
	transitions := func(g Gomega, expr string) map[string]float64 {
		return prom.query(g, fmt.Sprintf(expr, `circuitbreaker_transitions_total{namespace="`+ns+`", name="checkout"}`), "from", "to")
	}

	// Scraped while Closed: the transition series are there, at 0.
	g.Eventually(func(g Gomega) {
		g.Expect(prom.query(g, `up`, "job")).To(Equal(map[string]float64{"job=breaker-operator-controller-manager-metrics-service": 1}))
		g.Expect(transitions(g, "%s")).To(HaveKeyWithValue("from=Closed,to=Open", 0.0))
	}).WithTimeout(30*time.Second).WithPolling(500*time.Millisecond).Should(Succeed(),
		"prometheus never scraped the breaker's transition series at 0")
	time.Sleep(2 * time.Second) // a few scrapes at 0

	tg.set(false)
	eventuallyState(t, ns, "checkout", "Open", 20*time.Second)
	tg.set(true)
	eventuallyState(t, ns, "checkout", "Closed", 30*time.Second)

	g.Eventually(func(g Gomega) {
		got := transitions(g, "increase(%s[2m])")
		for _, pair := range []string{"from=Closed,to=Open", "from=Open,to=HalfOpen", "from=HalfOpen,to=Closed"} {
			g.Expect(got).To(HaveKeyWithValue(pair, BeNumerically(">=", 0.9)), "increase() of %s", pair)
		}
		g.Expect(got).To(HaveKeyWithValue("from=HalfOpen,to=Open", 0.0))
		g.Expect(got).To(HaveKeyWithValue("from=Open,to=Closed", 0.0))
	}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())
}
