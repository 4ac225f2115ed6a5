package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// everyToggle turns on every optional part of the chart and sets every
// manager flag away from its default.
var everyToggle = []string{
	"prometheus.serviceMonitor.enable=true",
	"prometheus.rules.enable=true",
	"prometheus.rules.labels.release=kube-prometheus-stack",
	"grafana.dashboard.enable=true",
	"controllerManager.replicas=2",
	"controllerManager.leaderElection.namespace=breaker-leases",
	"controllerManager.probeGuard.denyCIDRs={169.254.0.0/16,10.96.0.0/12}",
	"controllerManager.probeGuard.allowCIDRs={10.0.0.0/8}",
	"controllerManager.probeGuard.allowLoopback=true",
	"controllerManager.concurrency.maxProbes=512",
	"controllerManager.concurrency.maxProbesPerNamespace=128",
	"controllerManager.concurrency.maxReconciles=8",
	"controllerManager.probeKeepAlive=false",
	"controllerManager.enableHTTP2=true",
	"controllerManager.logLevel=debug",
	"controllerManager.container.image.repository=example.com/breaker-operator",
	"controllerManager.container.image.tag=v0.1.0",
	"controllerManager.container.resources.limits.memory=1Gi",
	"metrics.port=9443",
}

func chartDir() string { return filepath.Join(root(), "dist", "chart") }

// helmPath is bin/helm, which `make helm` builds (make test depends on it).
func helmPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(root(), "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Skip("bin/helm not found; `make helm` builds it")
	}
	return p
}

func runHelm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(helmPath(t), args...)
	// Helm's cache, config and data stay in the test's own directory.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helmTemplate renders the chart as release breaker-operator in ns.
func helmTemplate(t *testing.T, ns string, set []string) string {
	t.Helper()
	out := runHelm(t, append([]string{"template", "breaker-operator", chartDir(), "--namespace", ns}, setArgs(set)...)...)
	// Strictly: a key written twice (two helpers emitting one label) fails.
	for _, doc := range strings.Split(out, "\n---\n") {
		var obj map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			t.Fatalf("helm template renders invalid YAML: %v\n%s", err, doc)
		}
	}
	return out
}

func setArgs(set []string) []string {
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

func TestHelmChartLints(t *testing.T) {
	runHelm(t, "lint", "--strict", chartDir())
	runHelm(t, append([]string{"lint", "--strict", chartDir()}, setArgs(everyToggle)...)...)
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func managerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	deps := byKind(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, got %d", len(deps))
	}
	containers, _, _ := unstructured.NestedSlice(deps[0].Object, "spec", "template", "spec", "containers")
	var args []string
	for _, a := range containers[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}

// The rendered chart, with its defaults and with every toggle on, is accepted
// by the API server (server-side dry run) and its pod passes the restricted
// Pod Security Standard.
func TestHelmChartRendersObjectsTheAPIServerAccepts(t *testing.T) {
	controlPlane(t)
	mustKubectl(t, "", "apply", "-f", filepath.Join("testdata", "monitoring-crds.yaml"))
	mustKubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
	for name, tc := range map[string]struct {
		set   []string
		kinds map[string]int
	}{
		"defaults": {nil, map[string]int{
			"CustomResourceDefinition": 1, "ServiceAccount": 1, "Deployment": 1, "Service": 1,
			"Role": 1, "RoleBinding": 1, "ClusterRole": 7, "ClusterRoleBinding": 2,
		}},
		"every-toggle": {everyToggle, map[string]int{
			"CustomResourceDefinition": 1, "ServiceAccount": 1, "Deployment": 1, "Service": 1,
			"Role": 1, "RoleBinding": 1, "ClusterRole": 7, "ClusterRoleBinding": 2,
			"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := "chart-" + name
			mustKubectl(t, "", "create", "namespace", ns)
			mustKubectl(t, "", "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
			rendered := helmTemplate(t, ns, tc.set)
			objs := decodeAll(t, []byte(rendered))
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			g.Expect(kinds).To(Equal(tc.kinds))
			out := mustKubectl(t, rendered, "apply", "--dry-run=server", "-f", "-")
			g.Expect(strings.Count(out, "(server dry run)")).To(Equal(len(objs)), out)
			expectRestrictedPodSecurity(t, byKind(objs, "Deployment")[0], ns)

			// helm itself, as a user runs it, up to the API server.
			install := runHelm(t, append([]string{"install", "breaker-operator", chartDir(), "--namespace", ns,
				"--kubeconfig", controlPlane(t).KubeconfigPath, "--dry-run=server"}, setArgs(tc.set)...)...)
			g.Expect(install).To(ContainSubstring("NOTES:"))
			g.Expect(install).To(ContainSubstring("pod-security.kubernetes.io/enforce=restricted"))
		})
	}
}

// Every value reaches the manager as the flag it names, and the manager knows
// every flag the chart passes.
func TestHelmChartPassesEveryManagerFlag(t *testing.T) {
	g := NewWithT(t)
	args := managerArgs(t, decodeAll(t, []byte(helmTemplate(t, "ns", everyToggle))))
	g.Expect(args).To(ConsistOf(
		"--leader-elect", "--leader-election-namespace=breaker-leases", "--health-probe-bind-address=:8081",
		"--metrics-bind-address=:9443", "--metrics-secure=true",
		"--probe-deny-cidrs=169.254.0.0/16,10.96.0.0/12", "--probe-allow-cidrs=10.0.0.0/8", "--probe-allow-loopback",
		"--max-concurrent-probes=512", "--max-concurrent-probes-per-namespace=128", "--max-concurrent-reconciles=8", "--probe-keep-alive=false", "--enable-http2", "--zap-log-level=debug",
	))
	defaults := managerArgs(t, decodeAll(t, []byte(helmTemplate(t, "ns", nil))))
	g.Expect(defaults).NotTo(ContainElement(HavePrefix("--probe-allow-loopback")), "loopback probes stay off by default")
	off := managerArgs(t, decodeAll(t, []byte(helmTemplate(t, "ns", []string{"metrics.enable=false", "controllerManager.leaderElection.enable=false"}))))
	g.Expect(off).To(ContainElement("--metrics-bind-address=0"))
	g.Expect(off).NotTo(ContainElement("--leader-elect"))
	sharded := managerArgs(t, decodeAll(t, []byte(helmTemplate(t, "ns", []string{"sharding.enabled=true", "controllerManager.replicas=3"}))))
	g.Expect(sharded).To(ContainElements("--sharding", "--member-renew-interval=2s", "--member-lease-duration=10s"))
	g.Expect(sharded).NotTo(ContainElement("--leader-elect"), "--sharding and --leader-elect are mutually exclusive")

	manager := filepath.Join(root(), "bin", "manager")
	if _, err := os.Stat(manager); err != nil {
		t.Skip("bin/manager not found (`make build`); not checking the flags against it")
	}
	help, _ := exec.Command(manager, "-h").CombinedOutput()
	for _, a := range args {
		name := strings.SplitN(strings.TrimPrefix(a, "--"), "=", 2)[0]
		g.Expect(string(help)).To(MatchRegexp(`(?m)^\s+-`+regexp.QuoteMeta(name)+`(\s|$)`), "bin/manager -h does not list --%s", name)
	}
}

// The chart installs what config/default installs: the generated CRD and
// manager role (checked current), the same RBAC, and a manager with the same
// arguments and security settings; its alerts and dashboard are config's.
func TestHelmChartIsCurrentWithTheGeneratedManifests(t *testing.T) {
	g := NewWithT(t)
	chart := map[string]*unstructured.Unstructured{}
	for _, o := range decodeAll(t, []byte(helmTemplate(t, installNamespace, nil))) {
		chart[o.GetKind()+"/"+o.GetName()] = o
	}
	for _, want := range render(t, "config/default") {
		key := want.GetKind() + "/" + want.GetName()
		if want.GetKind() == "Namespace" {
			continue // helm install --create-namespace, or the user's own
		}
		got, ok := chart[key]
		if !ok {
			t.Errorf("the chart has no %s (make helm-chart?)", key)
			continue
		}
		switch want.GetKind() {
		case "CustomResourceDefinition":
			g.Expect(got.Object["spec"]).To(Equal(want.Object["spec"]), "%s: run make helm-chart", key)
			g.Expect(got.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		case "ClusterRole", "Role":
			g.Expect(got.Object["rules"]).To(Equal(want.Object["rules"]), "%s: run make helm-chart", key)
		case "ClusterRoleBinding", "RoleBinding":
			g.Expect(got.Object["roleRef"]).To(Equal(want.Object["roleRef"]), key)
			g.Expect(got.Object["subjects"]).To(Equal(want.Object["subjects"]), key)
		case "Service":
			g.Expect(got.Object["spec"]).To(Equal(want.Object["spec"]), key)
		case "Deployment":
			gotPod, _, _ := unstructured.NestedMap(got.Object, "spec", "template", "spec")
			wantPod, _, _ := unstructured.NestedMap(want.Object, "spec", "template", "spec")
			g.Expect(gotPod["securityContext"]).To(Equal(wantPod["securityContext"]), key)
			gc, wc := gotPod["containers"].([]any)[0].(map[string]any), wantPod["containers"].([]any)[0].(map[string]any)
			for _, f := range []string{"securityContext", "resources", "livenessProbe", "readinessProbe", "command"} {
				g.Expect(gc[f]).To(Equal(wc[f]), "%s container %s", key, f)
			}
			g.Expect(managerArgs(t, []*unstructured.Unstructured{got})).To(ContainElements(managerArgs(t, []*unstructured.Unstructured{want})))
		case "ServiceAccount":
		default:
			t.Errorf("%s: no comparison for this kind", key)
		}
	}
	for chartFile, source := range map[string]string{
		"files/rules.yaml":                    "config/prometheus/rules.yaml",
		"files/circuitbreaker-dashboard.json": "config/grafana/circuitbreaker-dashboard.json",
	} {
		got, err := os.ReadFile(filepath.Join(chartDir(), chartFile))
		g.Expect(err).NotTo(HaveOccurred())
		want, err := os.ReadFile(filepath.Join(root(), source))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "dist/chart/%s is not %s: run make helm-chart", chartFile, source)
	}
	g.Expect(chart).To(HaveLen(15), "the chart installs nothing that config/default does not")
}

// The toggled parts carry what config carries: the PrometheusRule's groups are
// config/prometheus/rules.yaml's and the dashboard ConfigMap holds the JSON.
func TestHelmChartTogglesCarryTheAlertsAndTheDashboard(t *testing.T) {
	g := NewWithT(t)
	objs := decodeAll(t, []byte(helmTemplate(t, "monitoring", everyToggle)))
	rules := byKind(objs, "PrometheusRule")
	g.Expect(rules).To(HaveLen(1))
	g.Expect(rules[0].Object["spec"]).To(Equal(prometheusRule(t, filepath.Join(root(), "config", "prometheus", "rules.yaml"))))
	g.Expect(rules[0].GetLabels()).To(HaveKeyWithValue("release", "kube-prometheus-stack"))
	cms := byKind(objs, "ConfigMap")
	g.Expect(cms).To(HaveLen(1))
	g.Expect(cms[0].GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	dashboard, err := os.ReadFile(dashboardFile)
	g.Expect(err).NotTo(HaveOccurred())
	data, _, _ := unstructured.NestedStringMap(cms[0].Object, "data")
	g.Expect(data["circuitbreaker-dashboard.json"]).To(Equal(strings.TrimRight(string(dashboard), "\n")))
	monitors := byKind(objs, "ServiceMonitor")
	g.Expect(monitors).To(HaveLen(1))
	port, _, _ := unstructured.NestedSlice(monitors[0].Object, "spec", "endpoints")
	g.Expect(port[0].(map[string]any)["port"]).To(Equal("https"))
}
