package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/resilience-dev/breaker-operator/test/ci"
)

// promtoolPath finds promtool (Debian's prometheus package, which .ci/run
// installs when missing); without it the test fails under CI=true and skips
// elsewhere.
func promtoolPath(t *testing.T) string {
	t.Helper()
	return ci.Tool(t, "promtool", "the alert unit tests and the dashboard's PromQL checks need it", "apt-get install prometheus")
}

func runPromtool(t *testing.T, promtool, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// prometheusRule reads a PrometheusRule manifest and returns its spec, which
// is a Prometheus rules file.
func prometheusRule(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Spec       map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	if rule.APIVersion != "monitoring.coreos.com/v1" || rule.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %s %s, not a monitoring.coreos.com/v1 PrometheusRule", path, rule.APIVersion, rule.Kind)
	}
	return rule.Spec
}

// TestAlertsFireForTheSeriesTheyDescribe runs the promtool unit tests in
// testdata/alerts_test.yaml against config/prometheus/rules.yaml.
func TestAlertsFireForTheSeriesTheyDescribe(t *testing.T) {
	promtool := promtoolPath(t)
	dir := t.TempDir()
	writeYAML(t, filepath.Join(dir, "rules.yaml"), prometheusRule(t, filepath.Join(root(), "config", "prometheus", "rules.yaml")))
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, promtool, dir, "check", "rules", "rules.yaml")
	runPromtool(t, promtool, dir, "test", "rules", "alerts_test.yaml")
}

// Every alert says what it is about: a summary and a description, which name
// the breaker for the breaker alerts.
func TestEveryAlertHasASummaryAndDescription(t *testing.T) {
	g := NewWithT(t)
	spec := prometheusRule(t, filepath.Join(root(), "config", "prometheus", "rules.yaml"))
	var n int
	for _, group := range spec["groups"].([]any) {
		for _, r := range group.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			ann, _ := rule["annotations"].(map[string]any)
			g.Expect(ann).To(HaveKey("summary"), "%v", rule["alert"])
			g.Expect(ann).To(HaveKey("description"), "%v", rule["alert"])
			if group.(map[string]any)["name"] == "circuitbreaker.rules" {
				for _, k := range []string{"summary", "description"} {
					g.Expect(ann[k]).To(ContainSubstring("{{ $labels.namespace }}/{{ $labels.name }}"), "%v %s", rule["alert"], k)
				}
			}
			n++
		}
	}
	g.Expect(n).To(Equal(6))
}
