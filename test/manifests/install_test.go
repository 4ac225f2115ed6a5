package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	installNamespace = "breaker-operator-system"
	testImage        = "example.com/breaker-operator:v0.1.0"
)

// clone is a copy of the working tree as a fresh clone has it: the files git
// tracks or would track, so no bin/ and no dist/install.yaml.
var clone struct {
	once sync.Once
	dir  string
	err  error
}

func freshClone(t *testing.T) string {
	t.Helper()
	clone.once.Do(func() {
		clone.dir, clone.err = copyWorkingTree(root())
	})
	if clone.err != nil {
		t.Fatal(clone.err)
	}
	return clone.dir
}

func copyWorkingTree(src string) (string, error) {
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return "", err
	}
	dst, err := os.MkdirTemp("", "breaker-clone-")
	if err != nil {
		return "", err
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		info, err := os.Stat(filepath.Join(src, f))
		if err != nil {
			continue // deleted in the working tree
		}
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// runMake runs a make target in the clone against the shared control plane.
func runMake(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := controlPlane(t)
	cmd := exec.CommandContext(ctx, "make", append(args, "KUBECTL="+c.KubectlPath)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.KubeconfigPath)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("make %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Second))
	return string(out)
}

var installer struct {
	once sync.Once
	path string
}

// installYAML runs `make build-installer` once in the clone.
func installYAML(t *testing.T) string {
	t.Helper()
	dir := freshClone(t)
	installer.once.Do(func() {
		runMake(t, dir, "build-installer", "IMG="+testImage)
		installer.path = filepath.Join(dir, "dist", "install.yaml")
	})
	if installer.path == "" {
		t.Fatal("make build-installer failed earlier")
	}
	return installer.path
}

func decodeAll(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// finalizeNamespace does the namespace controller's last step, which this
// control plane (no kube-controller-manager) lacks: once ns is Terminating
// it clears its finalizers, so that deleting it completes.
func finalizeNamespace(t *testing.T, ns string, stop <-chan struct{}) {
	t.Helper()
	for {
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		out, err := kubectl(t, "", "get", "namespace", ns, "-o", "json")
		if err != nil {
			continue
		}
		var obj map[string]any
		if json.Unmarshal([]byte(out), &obj) != nil {
			continue
		}
		if _, terminating := obj["metadata"].(map[string]any)["deletionTimestamp"]; !terminating {
			continue
		}
		obj["spec"] = map[string]any{"finalizers": []any{}}
		body, _ := json.Marshal(obj)
		_, _ = kubectl(t, string(body), "replace", "--raw", "/api/v1/namespaces/"+ns+"/finalize", "-f", "-")
	}
}

// whileFinalizing runs f while namespace ns is finalized when deleted.
func whileFinalizing(t *testing.T, ns string, f func()) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		finalizeNamespace(t, ns, stop)
	}()
	defer func() {
		close(stop)
		<-done
	}()
	f()
}

// podFromTemplate makes a Pod of a Deployment's pod template, so that the
// API server's Pod Security admission judges it (it only warns about
// Deployments; it enforces on Pods).
func podFromTemplate(t *testing.T, dep *unstructured.Unstructured, ns string) string {
	t.Helper()
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "pss-check", "namespace": ns},
		"spec":     spec,
	}
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expectRestrictedPodSecurity creates (server-side dry run) a Pod from the
// Deployment's template in a namespace that enforces the restricted Pod
// Security Standard, after checking that the namespace does refuse a Pod that
// breaks it.
func expectRestrictedPodSecurity(t *testing.T, dep *unstructured.Unstructured, ns string) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(mustKubectl(t, "", "get", "namespace", ns, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}")).To(Equal("restricted"))
	bad := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pss-bad","namespace":"` + ns + `"},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}]}}`
	out, err := kubectl(t, bad, "create", "--dry-run=server", "-f", "-")
	g.Expect(err).To(HaveOccurred(), "a privileged pod must be refused in %s: %s", ns, out)
	g.Expect(out).To(ContainSubstring(`violates PodSecurity "restricted`))

	out, err = kubectl(t, podFromTemplate(t, dep, ns), "create", "--dry-run=server", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred(), "the manager's pod template under restricted Pod Security: %s", out)
	g.Expect(out).NotTo(ContainSubstring("PodSecurity"))
}

func TestInstallYAMLIsAcceptedServerSideAndMeetsRestrictedPodSecurity(t *testing.T) {
	controlPlane(t)
	g := NewWithT(t)
	path := installYAML(t)
	data, err := os.ReadFile(path)
	g.Expect(err).NotTo(HaveOccurred())
	objs := decodeAll(t, data)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" {
			image, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			g.Expect(image[0].(map[string]any)["image"]).To(Equal(testImage))
		}
	}
	g.Expect(kinds).To(Equal(map[string]int{
		"CustomResourceDefinition": 1, "Namespace": 1, "ServiceAccount": 1, "Deployment": 1, "Service": 1,
		"Role": 1, "RoleBinding": 1, "ClusterRole": 7, "ClusterRoleBinding": 2,
	}))

	// A server-side dry run does not create the namespace, so the namespaced
	// objects would be refused for want of it; it exists first, unlabelled.
	mustKubectl(t, "", "create", "namespace", installNamespace)
	mustKubectl(t, "", "apply", "--server-side", "--dry-run=server", "-f", path)
	out := mustKubectl(t, "", "apply", "--server-side", "-f", path)
	g.Expect(strings.Count(out, "serverside-applied")).To(Equal(len(objs)), out)
	g.Expect(strings.Split(strings.TrimSpace(mustKubectl(t, "", "get", "-f", path, "-o", "name")), "\n")).To(HaveLen(len(objs)))

	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			expectRestrictedPodSecurity(t, o, installNamespace)
		}
	}
	whileFinalizing(t, installNamespace, func() {
		mustKubectl(t, "", "delete", "-f", path, "--timeout=2m")
	})
}

// A new user's first commands: the install targets build their own tools
// into the clone's empty bin/.
func TestInstallTargetsWorkOnAFreshClone(t *testing.T) {
	controlPlane(t)
	g := NewWithT(t)
	dir := freshClone(t)
	installYAML(t) // make build-installer, with bin/ empty if it runs first

	runMake(t, dir, "deploy", "IMG="+testImage)
	g.Expect(mustKubectl(t, "", "get", "deployment", "-n", installNamespace, "breaker-operator-controller-manager",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}")).To(Equal(testImage))
	g.Expect(mustKubectl(t, "", "get", "crd", "circuitbreakers.circuit.resilience.dev", "-o", "name")).NotTo(BeEmpty())

	whileFinalizing(t, installNamespace, func() { runMake(t, dir, "undeploy") })
	for _, what := range [][]string{{"crd", "circuitbreakers.circuit.resilience.dev"}, {"namespace", installNamespace}, {"clusterrole", "breaker-operator-manager-role"}} {
		out, err := kubectl(t, "", append([]string{"get"}, what...)...)
		g.Expect(err).To(HaveOccurred(), "%v is still there after make undeploy: %s", what, out)
		g.Expect(out).To(ContainSubstring("NotFound"))
	}
}
