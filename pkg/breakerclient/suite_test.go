package breakerclient

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// The suite starts one kube-apiserver + etcd for the package (the envtest
// binaries where localcp finds them), with the CRDs
// but no operator: tests write each breaker's status themselves to drive it.
// KUBECONFIG points at it, so that the examples load their configuration the
// way a program does.
var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	nsCounter atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: localcp.AssetsDir(""),
	}
	var err error
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "starting envtest: %v\n", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if k8sClient, err = client.New(cfg, client.Options{Scheme: testScheme()}); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "breakerclient-")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := writeKubeconfig(filepath.Join(dir, "kubeconfig")); err != nil {
		fmt.Fprintf(os.Stderr, "writing the kubeconfig: %v\n", err)
		return 1
	}
	if err := exampleFixtures(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "creating the examples' breakers: %v\n", err)
		return 1
	}
	return m.Run()
}

// writeKubeconfig writes an admin kubeconfig for the test API server and
// points KUBECONFIG at it.
func writeKubeconfig(path string) error {
	user, err := testEnv.AddUser(envtest.User{Name: "examples", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return os.Setenv("KUBECONFIG", path)
}

// exampleFixtures creates the breakers the examples use: shop/user-api
// Closed and shop/payments Open for an hour.
func exampleFixtures(ctx context.Context) error {
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		return err
	}
	for name, state := range map[string]circuitv1alpha1.State{"user-api": circuitv1alpha1.StateClosed, "payments": circuitv1alpha1.StateOpen} {
		if err := k8sClient.Create(ctx, newBreaker("shop", name, "60s")); err != nil {
			return err
		}
		if err := patchStatus(ctx, "shop", name, state, time.Now().Add(time.Hour)); err != nil {
			return err
		}
	}
	return nil
}

// testScheme knows Namespaces and CircuitBreakers, all the tests create.
func testScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(circuitv1alpha1.AddToScheme(scheme))
	return scheme
}

// newNamespace creates a fresh namespace for one test.
func newNamespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", nsCounter.Add(1))
	if err := k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

func newBreaker(ns, name, timeout string) *circuitv1alpha1.CircuitBreaker {
	return &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: circuitv1alpha1.CircuitBreakerSpec{
			Target:  circuitv1alpha1.Target{URL: "http://127.0.0.1:9/healthz"},
			Timeout: circuitv1alpha1.GoDuration(timeout),
		},
	}
}

// createBreaker creates a breaker and gives it state, as the operator would.
func createBreaker(t testing.TB, ns, name, timeout string, state circuitv1alpha1.State) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), newBreaker(ns, name, timeout)); err != nil {
		t.Fatalf("creating breaker: %v", err)
	}
	setState(t, ns, name, state, time.Time{})
}

// setState writes the breaker's status.state (and nextRetryTime while Open)
// through the status subresource, standing in for the operator.
func setState(t testing.TB, ns, name string, state circuitv1alpha1.State, nextRetry time.Time) {
	t.Helper()
	if err := patchStatus(context.Background(), ns, name, state, nextRetry); err != nil {
		t.Fatalf("setting state %s: %v", state, err)
	}
}

func patchStatus(ctx context.Context, ns, name string, state circuitv1alpha1.State, nextRetry time.Time) error {
	status := map[string]any{"state": state, "nextRetryTime": nil}
	if state == circuitv1alpha1.StateOpen && !nextRetry.IsZero() {
		status["nextRetryTime"] = metav1.NewMicroTime(nextRetry)
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	cb := &circuitv1alpha1.CircuitBreaker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return k8sClient.Status().Patch(ctx, cb, client.RawPatch(types.MergePatchType, patch))
}

// startClient starts a Client and waits for its cache to sync; it stops when
// the test ends.
func startClient(t testing.TB, opts Options) *Client {
	t.Helper()
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		if err := c.Start(ctx); err != nil {
			t.Error(err)
		}
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := c.WaitForSync(waitCtx); err != nil {
		t.Fatal(err)
	}
	return c
}
