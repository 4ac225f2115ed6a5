// Command manager (cmd/manager, the design card's layout) runs the breaker-operator's controller manager.
package main

import (
	"crypto/tls"
	"flag"
	"net/http"
	"os"
	"strings"
	"time"

	toolscache "k8s.io/client-go/tools/cache"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/apiready"
	"github.com/resilience-dev/breaker-operator/internal/controller"
	"github.com/resilience-dev/breaker-operator/internal/probe"
	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
	"github.com/resilience-dev/breaker-operator/internal/version"
	// +kubebuilder:scaffold:imports
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(circuitv1alpha1.AddToScheme(scheme))
	// +kubebuilder:scaffold:scheme
}

// cidrList is a flag holding comma-separated CIDRs.
type cidrList []string

func (c *cidrList) String() string { return strings.Join(*c, ",") }

func (c *cidrList) Set(v string) error {
	*c = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*c = append(*c, s)
		}
	}
	return nil
}

func main() {
	var metricsAddr, probeAddr, pprofAddr, leaderElectionNamespace string
	var enableLeaderElection, secureMetrics, enableHTTP2, allowLoopback, showVersion bool
	var maxProbes, maxProbesPerNamespace, maxReconciles int
	var denyCIDRs cidrList
	var allowCIDRs cidrList
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "The address the metrics endpoint binds to. "+
		"Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0",
		"The address Go's /debug/pprof endpoints bind to, for heap and CPU profiles (e.g. 127.0.0.1:8082); 0 disables them. "+
			"They are served without authentication: bind them to loopback.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Enable leader election for controller manager. "+
			"Enabling this will ensure there is only one active controller manager.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "",
		"Namespace of the leader election lease. Defaults to the manager's own namespace in a cluster, "+
			"and to \"default\" when the manager runs outside one.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"If set, the metrics endpoint is served securely via HTTPS, with authentication and authorization. Use --metrics-secure=false to use HTTP instead.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"If set, HTTP/2 will be enabled for the metrics server")
	flag.Var(&denyCIDRs, "probe-deny-cidrs", "Comma-separated CIDRs that probes may never connect to, in addition to the "+
		"built-in list (link-local, unspecified and cloud metadata addresses), which no flag lifts. "+
		"Checked on the resolved address at connect time; deny wins over allow.")
	flag.Var(&allowCIDRs, "probe-allow-cidrs", "Comma-separated CIDRs that probes may connect to; empty allows every address not denied.")
	flag.BoolVar(&allowLoopback, "probe-allow-loopback", false, "Allow probes to loopback addresses (127.0.0.0/8, ::1), for local runs and tests.")
	probeKeepAlive := flag.Bool("probe-keep-alive", true, "Keep one idle connection per HTTP(S) target host for its next probe. "+
		"false opens a fresh connection for every probe and closes it after, as kubelet does: no memory held between probes, "+
		"but a TCP (and TLS) handshake per probe and a socket left in TIME_WAIT.")
	flag.IntVar(&maxProbes, "max-concurrent-probes", 4096, "How many probes may be in flight at once. "+
		"They are shared max-min fairly between the namespaces that have breakers: a namespace may use idle slots beyond its share, "+
		"but one free slot is kept for each namespace below its share.")
	flag.IntVar(&maxProbesPerNamespace, "max-concurrent-probes-per-namespace", 1024,
		"How many of --max-concurrent-probes the breakers of one namespace may hold at once (0: no bound of its own). "+
			"A namespace at its bound waits without delaying the probes of any other.")
	flag.IntVar(&maxReconciles, "max-concurrent-reconciles", 16, "How many breakers may be reconciled at once. "+
		"A reconcile that writes mostly waits for the API server, which takes most writes a second with about 16 in flight.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	var ringFlags memberFlags
	ringFlags.bind(flag.CommandLine)
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	if showVersion {
		_, _ = os.Stdout.WriteString(version.Version + "\n")
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	if ringFlags.enabled && enableLeaderElection {
		setupLog.Error(nil, "--sharding and --leader-elect are mutually exclusive: with --sharding every replica "+
			"is active and owns a share of the breakers; leave out --leader-elect")
		os.Exit(1)
	}

	guard, err := probe.NewGuard(denyCIDRs, allowCIDRs, allowLoopback)
	if err != nil {
		setupLog.Error(err, "Invalid probe address lists")
		os.Exit(1)
	}

	// HTTP/2 stays off by default: see CVE-2023-44487 (HTTP/2 Rapid Reset) and
	// CVE-2023-39325 (Stream Cancellation).
	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsServerOptions := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		metricsServerOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	restConfig := ctrl.GetConfigOrDie()
	member, err := ringFlags.member(restConfig, scheme)
	if err != nil {
		setupLog.Error(err, "Failed to set up ring membership")
		os.Exit(1)
	}
	// Informers wait out an API server outage instead of backing off for up to a minute.
	gate, err := apiready.New(restConfig)
	if err != nil {
		setupLog.Error(err, "Failed to create the API server readiness gate")
		os.Exit(1)
	}
	// Managed fields are never read here; dropping them keeps the cache small.
	cacheOpts := cache.Options{DefaultTransform: cache.TransformStripManagedFields(), NewInformer: gate.NewInformer}
	if member != nil {
		// The breakers' informer lists and watches this member's range only,
		// where the API server applies shard selectors (KEP-5866), through the
		// readiness gate like every other informer.
		sharded := member.NewInformer(&circuitv1alpha1.CircuitBreaker{})
		cacheOpts.NewInformer = func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration,
			indexers toolscache.Indexers) toolscache.SharedIndexInformer {
			return sharded(gate.ListerWatcher(lw), obj, resync, indexers)
		}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsServerOptions,
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          enableLeaderElection,
		LeaderElectionID:        "breaker-operator.circuit.resilience.dev",
		LeaderElectionNamespace: leaseNamespace(leaderElectionNamespace),
		// Release the lease on a clean shutdown so a standby takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOpts,
	})
	if err != nil {
		setupLog.Error(err, "Failed to create manager")
		os.Exit(1)
	}
	if member != nil {
		if err := mgr.Add(member); err != nil {
			setupLog.Error(err, "Failed to set up ring membership")
			os.Exit(1)
		}
	}

	prober := probe.New(probe.Options{Guard: guard, UserAgent: version.UserAgent(), FreshConnections: !*probeKeepAlive})
	probes := runner.NewRunner(prober, runner.Limits{InFlight: maxProbes, PerNamespace: maxProbesPerNamespace})
	if err := (&controller.CircuitBreakerReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("circuitbreaker-controller"),
		Runner:                  probes,
		NewInformer:             gate.NewInformer,
		MaxConcurrentReconciles: maxReconciles,
		Member:                  member,
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Failed to create controller", "controller", "CircuitBreaker")
		os.Exit(1)
	}

	// +kubebuilder:scaffold:builder

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "Failed to set up health check")
		os.Exit(1)
	}
	// A probe still running long past its deadline means the runner is wedged:
	// fail /healthz so that the kubelet restarts the manager.
	if err := mgr.AddHealthzCheck("probes", func(*http.Request) error { return probes.Healthy(time.Now()) }); err != nil {
		setupLog.Error(err, "Failed to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "Failed to set up ready check")
		os.Exit(1)
	}

	setupLog.Info("Starting manager", "version", version.Version)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "Problem running manager")
		os.Exit(1)
	}
}

// inClusterNamespaceFile holds the namespace of a pod's service account.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// leaseNamespace is where the leader election lease lives: the flag's value,
// else the pod's namespace in a cluster, else "default" (a manager run from a
// workstation or in tests, where controller-runtime would refuse to start).
func leaseNamespace(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if _, err := os.Stat(inClusterNamespaceFile); err == nil {
		return "" // controller-runtime reads it
	}
	return "default"
}
