package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const healthKey = "resource.customizations.health.circuit.resilience.dev_CircuitBreaker"

type health struct{ status, message string }

// argoHealth runs the health script the way Argo CD does: obj is the resource
// as a Lua table, and the script returns a table with status and message.
func argoHealth(t *testing.T, script, manifest string) health {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &obj); err != nil {
		t.Fatal(err)
	}
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %v, not a table", L.Get(-1))
	}
	return health{status: ret.RawGetString("status").String(), message: ret.RawGetString("message").String()}
}

// toLua converts decoded JSON into Lua values, as Argo CD's lua package does.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		tbl := L.NewTable()
		for k, e := range v {
			tbl.RawSetString(k, toLua(L, e))
		}
		return tbl
	case []any:
		tbl := L.NewTable()
		for _, e := range v {
			tbl.Append(toLua(L, e))
		}
		return tbl
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	panic("unexpected JSON value")
}

func healthScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), "config", "argocd", "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const breakerHead = `
apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: payments, namespace: shop, generation: 2}
spec: {target: {url: "http://payments.shop:8080/healthz"}}
`

func TestArgoCDHealthMapsEachBreakerState(t *testing.T) {
	script := healthScript(t)
	ready := `{type: Ready, status: "True", reason: Probing, message: "Probing the http target every 10s with a 10s deadline", observedGeneration: 2}`
	for _, tc := range []struct {
		name, status string
		wantStatus   string
		wantMessage  []string
	}{
		{"closed and healthy", `{state: Closed, consecutiveFailures: 0, conditions: [` + ready + `]}`,
			"Healthy", []string{"Circuit Closed"}},
		{"closed with failing probes", `{state: Closed, consecutiveFailures: 2, lastProbe: {result: Failure, reason: timeout}, conditions: [` + ready + `]}`,
			"Healthy", []string{"Circuit Closed", "2 consecutive failed probes", "timeout"}},
		{"half-open", `{state: HalfOpen, consecutiveSuccesses: 0, conditions: [` + ready + `]}`,
			"Progressing", []string{"HalfOpen", "trial probes"}},
		{"open", `{state: Open, consecutiveFailures: 5, nextRetryTime: "2026-12-02T06:00:00.000000Z", lastProbe: {result: Failure, reason: connection_refused}, conditions: [` + ready + `]}`,
			"Degraded", []string{"Circuit Open after 5 consecutive failed probes", "connection_refused", "next trial at 2026-12-02T06:00:00.000000Z"}},
		{"ready false", `{state: Closed, conditions: [{type: Ready, status: "False", reason: SecretNotFound, message: "Secret api-token not found", observedGeneration: 2}]}`,
			"Degraded", []string{"SecretNotFound", "Secret api-token not found", "circuit Closed"}},
		{"open and ready false", `{state: Open, consecutiveFailures: 3, conditions: [{type: Ready, status: "False", reason: ProbeDenied, message: "The operator's probe guard refused the target's address", observedGeneration: 2}]}`,
			"Degraded", []string{"ProbeDenied", "circuit Open"}},
		{"new, no status", ``, "Progressing", []string{"first state"}},
		{"spec change not yet seen", `{state: Closed, conditions: [{type: Ready, status: "True", reason: Probing, message: "x", observedGeneration: 1}]}`,
			"Progressing", []string{"generation 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			manifest := breakerHead
			if tc.status != "" {
				manifest += "status: " + tc.status + "\n"
			}
			got := argoHealth(t, script, manifest)
			g.Expect(got.status).To(Equal(tc.wantStatus), got.message)
			for _, m := range tc.wantMessage {
				g.Expect(got.message).To(ContainSubstring(m))
			}
		})
	}
}

func TestArgoCDConfigMapCarriesTheHealthScript(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(root(), "config", "argocd", "argocd-cm.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var cm corev1.ConfigMap
	g.Expect(yaml.UnmarshalStrict(b, &cm)).To(Succeed())
	g.Expect(cm.Name).To(Equal("argocd-cm"))
	g.Expect(strings.TrimSpace(cm.Data[healthKey])).To(Equal(strings.TrimSpace(healthScript(t))),
		"config/argocd/argocd-cm.yaml must carry config/argocd/health.lua verbatim")
}
