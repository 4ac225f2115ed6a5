package controller

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/apiready"
	"github.com/resilience-dev/breaker-operator/internal/probe"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
	"github.com/resilience-dev/breaker-operator/internal/ring"
	"github.com/resilience-dev/breaker-operator/internal/testnet"
)

// The suite starts one real kube-apiserver + etcd for the package. Each test
// gets its own namespace and, where it needs one, its own manager watching only
// that namespace, so tests can stop and restart "the operator" independently.
var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	nsCounter atomic.Int32
)

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := circuitv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	// `go test -short` (make test-unit) runs only the tests that need no
	// control plane; the others skip in newNamespace.
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assetsDir(),
	}
	// KEP-5866 sharded list and watch (alpha in v1.37), for the sharding tests.
	testEnv.ControlPlane.GetAPIServer().Configure().Append("feature-gates", "ShardedListAndWatch=true")
	var err error
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "starting envtest: %v\n", err)
		os.Exit(1)
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = testEnv.Stop()
	os.Exit(code)
}

// assetsDir finds the envtest binaries: KUBEBUILDER_ASSETS if set, otherwise
// what hack/envtest-assets.sh prints (it builds them if they are missing).
func assetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	out, err := exec.Command(filepath.Join("..", "..", "hack", "envtest-assets.sh")).Output()
	if err != nil {
		panic(fmt.Sprintf("envtest assets: %v", err))
	}
	return strings.TrimSpace(string(out))
}

// newNamespace creates a fresh namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	if k8sClient == nil {
		t.Skip("needs the envtest control plane (skipped in -short mode)")
	}
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-")))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(strings.ReplaceAll(name, "/", "-"), "-")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// operator is a running manager with the CircuitBreaker controller.
type operator struct {
	cancel     context.CancelFunc
	done       chan struct{}
	runner     *runner.Runner
	reconciler *CircuitBreakerReconciler
}

// startOperator runs a manager that watches only namespace ns. Loopback
// targets are allowed, as with --probe-allow-loopback.
func startOperator(t *testing.T, ns string) *operator {
	t.Helper()
	return startOperatorWith(t, ns, operatorOptions{})
}

// startOperatorWithDial is startOperator with the prober's dialer replaced, so
// that tests can map cluster addresses (EndpointSlices refuse loopback ones) to
// loopback listeners.
func startOperatorWithDial(t *testing.T, ns string, dial probe.DialContextFunc) *operator {
	t.Helper()
	return startOperatorWith(t, ns, operatorOptions{dial: dial})
}

type operatorOptions struct {
	// config is the manager's client configuration; the suite's admin by default.
	config *rest.Config
	// metrics configures the metrics server; off by default.
	metrics *metricsserver.Options
	dial    probe.DialContextFunc
	// denyLoopback runs the guard as in production, without --probe-allow-loopback.
	denyLoopback bool
	// workers is the number of reconcile workers; 4 by default.
	workers int
	// perNamespace bounds the probes one namespace may hold; 0: no bound.
	perNamespace int
	// inFlight bounds the probes in flight; 1024 by default.
	inFlight int
	// alsoWatch are more namespaces the manager watches besides its own.
	alsoWatch []string
	// wrapRecorder, if set, wraps the manager's event recorder.
	wrapRecorder func(events.EventRecorder) events.EventRecorder
	// member, if set, makes the manager a member of a sharded ring (--sharding);
	// its Client is set here.
	member *ring.Member
	// clientSideOnly leaves the member's informer unsharded, as on an API
	// server without the ShardedListAndWatch feature gate: it filters here only.
	clientSideOnly bool
}

func startOperatorWith(t *testing.T, ns string, opts operatorOptions) *operator {
	t.Helper()
	dial := opts.dial
	managerCfg, metrics := cfg, metricsserver.Options{BindAddress: "0"}
	if opts.config != nil {
		managerCfg = opts.config
	}
	if opts.metrics != nil {
		metrics = *opts.metrics
	}
	// As in cmd: every informer waits out an API server outage.
	gate, err := apiready.New(managerCfg)
	if err != nil {
		t.Fatal(err)
	}
	cacheOpts := cache.Options{DefaultNamespaces: watched(ns, opts.alsoWatch), NewInformer: gate.NewInformer}
	if opts.member != nil && !opts.clientSideOnly {
		sharded := opts.member.NewInformer(&circuitv1alpha1.CircuitBreaker{})
		cacheOpts.NewInformer = func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration,
			indexers toolscache.Indexers) toolscache.SharedIndexInformer {
			return sharded(gate.ListerWatcher(lw), obj, resync, indexers)
		}
	}
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metrics,
		HealthProbeBindAddress: "0",
		Cache:                  cacheOpts,
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	guard, err := probe.NewGuard(nil, nil, !opts.denyLoopback)
	if err != nil {
		t.Fatal(err)
	}
	inFlight := opts.inFlight
	if inFlight == 0 {
		inFlight = 1024
	}
	probes := runner.NewRunner(probe.New(probe.Options{Guard: guard, Dial: dial, UserAgent: "breaker-operator/test"}),
		runner.Limits{InFlight: inFlight, PerNamespace: opts.perNamespace})
	var recorder events.EventRecorder = mgr.GetEventRecorder("circuitbreaker-controller")
	if opts.wrapRecorder != nil {
		recorder = opts.wrapRecorder(recorder)
	}
	workers := opts.workers
	if workers == 0 {
		workers = 4
	}
	r := &CircuitBreakerReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                recorder,
		Runner:                  probes,
		NewInformer:             gate.NewInformer,
		MaxConcurrentReconciles: workers,
		SkipNameValidation:      true,
	}
	if m := opts.member; m != nil {
		if m.Client, err = client.New(managerCfg, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
		if err := mgr.Add(m); err != nil {
			t.Fatal(err)
		}
		r.Member = m
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatalf("setting up controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	op := &operator{cancel: cancel, done: make(chan struct{}), runner: probes, reconciler: r}
	go func() {
		defer close(op.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(op.stop)
	return op
}

func watched(ns string, more []string) map[string]cache.Config {
	out := map[string]cache.Config{ns: {}}
	for _, n := range more {
		out[n] = cache.Config{}
	}
	return out
}

func (o *operator) stop() {
	o.cancel()
	<-o.done
}

// target is a real HTTP server on loopback that can be made to fail and that
// records when each request arrived.
type target struct {
	srv     *http.Server
	addr    string
	healthy atomic.Bool
	mu      sync.Mutex
	arrived map[string][]time.Time
}

func newTarget(t *testing.T) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{addr: ln.Addr().String(), arrived: map[string][]time.Time{}}
	tg.healthy.Store(true)
	tg.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tg.mu.Lock()
		tg.arrived[req.URL.Path] = append(tg.arrived[req.URL.Path], time.Now())
		tg.mu.Unlock()
		if tg.healthy.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = tg.srv.Serve(ln) }()
	t.Cleanup(func() { _ = tg.srv.Close() })
	return tg
}

func (tg *target) url(path string) string { return "http://" + tg.addr + path }

func (tg *target) count(path string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.arrived[path])
}

func (tg *target) arrivals(path string) []time.Time {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]time.Time(nil), tg.arrived[path]...)
}

func breakerSpec(url string) circuitv1alpha1.CircuitBreakerSpec {
	return circuitv1alpha1.CircuitBreakerSpec{
		Target:           circuitv1alpha1.Target{URL: url},
		Threshold:        3,
		Timeout:          "2s",
		RetryTimeout:     "200ms",
		Interval:         "200ms",
		SuccessThreshold: 1,
	}
}

func createBreaker(t *testing.T, ns, name string, spec circuitv1alpha1.CircuitBreakerSpec) *circuitv1alpha1.CircuitBreaker {
	t.Helper()
	cb := &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       spec,
	}
	if err := k8sClient.Create(context.Background(), cb); err != nil {
		t.Fatalf("creating breaker: %v", err)
	}
	return cb
}

func getBreaker(g Gomega, ns, name string) *circuitv1alpha1.CircuitBreaker {
	cb := &circuitv1alpha1.CircuitBreaker{}
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cb)).To(Succeed())
	return cb
}

// waitState waits until the breaker reaches state and returns it.
func waitState(t *testing.T, ns, name string, state circuitv1alpha1.State, within time.Duration) *circuitv1alpha1.CircuitBreaker {
	t.Helper()
	g := NewWithT(t)
	var cb *circuitv1alpha1.CircuitBreaker
	g.Eventually(func(g Gomega) {
		cb = getBreaker(g, ns, name)
		g.Expect(cb.Status.State).To(Equal(state))
	}).WithTimeout(within).WithPolling(20 * time.Millisecond).Should(Succeed())
	return cb
}

// eventReasons lists the reasons and types of the Events about a breaker.
func eventReasons(g Gomega, ns, name string) []string {
	list := &corev1.EventList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Type+"/"+e.Reason)
		}
	}
	return out
}

// hangingListener accepts connections on loopback and never answers.
func hangingListener(t *testing.T) string { return testnet.Hanging(t).Addr().String() }

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string { return testnet.ClosedPort(t) }
