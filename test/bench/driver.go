package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

const namespace = "bench"

// runEnv is what the runs of one invocation share.
type runEnv struct {
	cfg config
	// root is the repository root; self is this binary, which plays the target and the reference prober.
	root, self string
	manager    string
	work       string
	scheme     *runtime.Scheme
	failed     bool
}

func newRunEnv(ctx context.Context, cfg config) (*runEnv, error) {
	// The driver's own clients have nothing to log; without a logger controller-runtime complains.
	logf.SetLogger(logr.Discard())
	env := &runEnv{cfg: cfg, scheme: runtime.NewScheme()}
	if err := clientgoscheme.AddToScheme(env.scheme); err != nil {
		return nil, err
	}
	if err := circuitv1alpha1.AddToScheme(env.scheme); err != nil {
		return nil, err
	}
	var err error
	if env.root, err = repoRoot(); err != nil {
		return nil, err
	}
	if env.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if env.work, err = os.MkdirTemp("", "breaker-bench-"); err != nil {
		return nil, err
	}
	env.manager = cfg.manager
	if env.manager == "" {
		// Built here so that a stale bin/manager is never measured.
		env.manager = filepath.Join(env.work, "manager")
		say("Building the manager (go build ./cmd/manager)")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", env.manager, "./cmd/manager")
		cmd.Dir = env.root
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(env.work)
			return nil, fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	}
	return env, nil
}

func (env *runEnv) close() {
	if env.cfg.keep || env.failed {
		say("Work directory kept: %s", env.work)
		return
	}
	_ = os.RemoveAll(env.work)
}

// repoRoot walks up from the working directory to the module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/resilience-dev/breaker-operator\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the breaker-operator repository")
		}
		dir = parent
	}
}

// groups splits the breakers by role: K opened together (created first, in one
// burst, so that they are probed in step), the hanging ones (spread over the
// rest), and the ones that stay healthy throughout.
type groups struct {
	all, together, hanging, healthy []int
}

func planGroups(n int, cfg config) groups {
	k := cfg.openCount
	if k <= 0 {
		k = min(1000, n/5)
	}
	k = min(k, n/2)
	h := n * cfg.hangPercent / 100
	var g groups
	for i := range n {
		g.all = append(g.all, i)
	}
	g.together = g.all[:k]
	others := slices.Clone(g.all[k:])
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	rng.Shuffle(len(others), func(a, b int) { others[a], others[b] = others[b], others[a] })
	h = min(h, len(others))
	g.hanging = slices.Sorted(slices.Values(others[:h]))
	g.healthy = slices.Sorted(slices.Values(others[h:]))
	return g
}

// sizeRun is one benchmark run for one N.
type sizeRun struct {
	env        *runEnv
	n          int
	dir        string
	cp         *localcp.ControlPlane
	c          client.WithWatch
	target     *targetClient
	port       int
	manager    *localcp.Process
	ref        *localcp.Process
	obs        *observer
	groups     groups
	metrics    string
	apiHTTP    *http.Client
	apiPID     int
	etcdPID    int
	targetPIDs []int
	stalls     *stallWatch
	idleRSS    int64
	floor      writeFloor
	// idleRuntime is the manager's Go runtime before any breaker existed.
	idleRuntime goRuntime
	// pprof is the manager's /debug/pprof base URL.
	pprof    string
	stopping []func()
}

func runSize(ctx context.Context, env *runEnv, n int) (_ *result, err error) {
	cfg := env.cfg
	r := &sizeRun{env: env, n: n, dir: filepath.Join(env.work, "n"+strconv.Itoa(n)), groups: planGroups(n, cfg)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	defer r.stopAll()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// A listener and two connections per target in a target process, and a few hundred descriptors besides.
	if want := uint64(3*min(n, targetsPerProcess) + 1024); raiseFileLimit(want) < want {
		say("N=%d: the open-file limit is below %d; the target server may run out of descriptors", n, want)
	}
	say("N=%d: starting the control plane", n)
	if err := r.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := r.startTarget(); err != nil {
		return nil, err
	}
	say("N=%d: timing the API server's status writes", n)
	if r.floor, err = r.measureWriteRate(ctx, min(max(n, 200), 2000)); err != nil {
		return nil, err
	}
	if err := r.startManager(ctx); err != nil {
		return nil, err
	}
	r.obs = newObserver(n)
	go r.obs.run(ctx, r.c, namespace)
	r.stalls = watchStalls(ctx)

	res := &result{N: n, Label: cfg.label, IntervalSeconds: cfg.interval.Seconds(),
		OpenTogether: len(r.groups.together), Hanging: len(r.groups.hanging)}
	closedOK := func(b *observed) bool { return b.state == circuitv1alpha1.StateClosed && b.lastProbeOK }
	// The creation burst: every breaker at once, the K to be opened together
	// first. Created in one burst, the K are probed at once, so they are in
	// step: they later fail, open and go HalfOpen as nearly together as the
	// system allows. (A restarted manager spreads first probes over one
	// interval, so a restart would not put them in step.)
	say("N=%d: creating all %d breakers at once, %d in parallel (the %d to be opened together first)",
		n, n, burstWorkers, len(r.groups.together))
	res.Burst.Floor = r.floor
	created := make([]time.Time, n)
	b0 := r.snap(ctx, true)
	if err := parallel(ctx, burstWorkers, n, func(i int) error {
		created[i] = time.Now()
		if err := r.c.Create(ctx, r.breaker(i)); err != nil {
			return fmt.Errorf("creating %s: %w", breakerName(i), err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res.Burst.Seconds = time.Since(b0.at).Seconds()
	res.CreateSeconds = res.Burst.Seconds
	within := 5*time.Minute + time.Duration(n)*20*time.Millisecond
	if err := r.waitAll(ctx, "a recorded verdict of every breaker", r.groups.all, within,
		func(b *observed) bool { return !b.verdictAt.IsZero() }); err != nil {
		return nil, err
	}
	lastVerdict := r.obs.latestVerdict()
	if err := r.waitAll(ctx, "every breaker Closed after a successful probe", r.groups.all, within, closedOK); err != nil {
		return nil, err
	}
	res.ReadySeconds = time.Since(b0.at).Seconds()
	// Two more rounds of every breaker after the last verdict, for the cadence during the burst.
	sleepCtx(ctx, time.Until(lastVerdict.Add(2*cfg.interval)))
	b1 := r.snap(ctx, false)

	if err := r.startRefProber(); err != nil {
		return nil, err
	}
	// One full round of the reference prober, and the last initial writes, before measuring.
	sleepCtx(ctx, cfg.interval*3/2)

	say("N=%d: steady state for %s", n, cfg.steady)
	s0 := r.snap(ctx, true)
	sleepCtx(ctx, cfg.steady)
	s1 := r.snap(ctx, false)
	r.saveHeapProfile(ctx, res)

	p0 := r.snap(ctx, true)
	flip, err := r.openTogether(ctx)
	if err != nil {
		return nil, err
	}
	p1 := r.snap(ctx, false)
	// Let the breakers opened together settle back into their cadence.
	sleepCtx(ctx, cfg.interval)

	say("N=%d: %d targets hang for %s", n, len(r.groups.hanging), cfg.isolation)
	i0 := r.snap(ctx, true)
	hangAt, err := r.target.setMode(modeHang, r.groups.hanging)
	if err != nil {
		return nil, err
	}
	i0.at = hangAt
	sleepCtx(ctx, cfg.isolation)
	i1 := r.snap(ctx, false)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// The manager goes down and comes back, as in an upgrade or a leader change
	// (the targets that hang go on hanging): do the breakers keep their cadence?
	say("N=%d: restarting the manager", n)
	stopped := time.Now()
	if err := r.manager.Stop(30 * time.Second); err != nil {
		return nil, err
	}
	if err := r.startManager(ctx); err != nil {
		return nil, err
	}
	sleepCtx(ctx, cfg.interval)
	r0 := r.snap(ctx, true)
	sleepCtx(ctx, cfg.restartWindow)
	r1 := r.snap(ctx, false)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	_ = r.ref.Stop(10 * time.Second)
	arr, err := r.target.arrivals(n)
	if err != nil {
		return nil, err
	}
	res.OpenPhase = r.window(arr, r.groups.together, p0, p1)
	res.AfterRestart = r.window(arr, r.groups.healthy, r0, r1)
	res.RestartGapMs = restartGaps(arr.mgr, r.groups.healthy, stopped, cfg.interval)
	r.measureBurst(&res.Burst, arr, created, b0, b1, lastVerdict)
	r.measure(res, arr, s0, s1, i0, i1, flip)
	if n == cfg.grpcN {
		if res.GRPC, err = r.measureGRPC(ctx); err != nil {
			return nil, err
		}
	}
	say("N=%d: done", n)
	return res, nil
}

func (r *sizeRun) stopAll() {
	for i := len(r.stopping) - 1; i >= 0; i-- {
		r.stopping[i]()
	}
}

func (r *sizeRun) onStop(f func()) { r.stopping = append(r.stopping, f) }

func (r *sizeRun) startControlPlane(ctx context.Context) error {
	opts := localcp.Options{}
	if r.env.cfg.keep {
		opts.Dir = filepath.Join(r.dir, "controlplane")
	}
	cp, err := localcp.Start(ctx, opts)
	if err != nil {
		return err
	}
	r.cp = cp
	r.onStop(func() {
		if err := cp.Stop(); err != nil {
			say("Stopping the control plane: %v", err)
		}
	})
	if err := cp.InstallCRDs(ctx, filepath.Join(r.env.root, "config", "crd", "bases")); err != nil {
		return err
	}
	if r.c, err = client.NewWithWatch(cp.RESTConfig, client.Options{Scheme: r.env.scheme}); err != nil {
		return err
	}
	if err := r.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	if r.apiHTTP, err = rest.HTTPClientFor(cp.RESTConfig); err != nil {
		return err
	}
	r.apiPID = findPID("kube-apiserver", "--cert-dir="+cp.Dir)
	r.etcdPID = findPID("etcd", "--data-dir="+filepath.Join(cp.Dir, "etcd"))
	return nil
}

func (r *sizeRun) startProcess(name, path string, args []string) (*localcp.Process, error) {
	log, err := os.OpenFile(filepath.Join(r.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = log.Close() }()
	p, err := localcp.StartProcess(name, path, args, log)
	if err != nil {
		return nil, err
	}
	r.onStop(func() {
		if err := p.Stop(15 * time.Second); err != nil {
			say("Stopping %s: %v", name, err)
		}
	})
	return p, nil
}

// startTarget starts the target processes, each serving targetsPerProcess
// targets on the same port.
func (r *sizeRun) startTarget() error {
	r.target = &targetClient{http: &http.Client{Timeout: 2 * time.Minute}}
	r.port = 0
	for from := 0; from < r.n; from += targetsPerProcess {
		to := min(from+targetsPerProcess, r.n)
		name := "target-" + strconv.Itoa(from/targetsPerProcess)
		readyFile := filepath.Join(r.dir, name+".ready")
		p, err := r.startProcess(name, r.env.self, []string{"target", "-n", strconv.Itoa(r.n),
			"-from", strconv.Itoa(from), "-to", strconv.Itoa(to), "-port", strconv.Itoa(r.port), "-ready-file", readyFile})
		if err != nil {
			return err
		}
		ready, err := waitTargetReady(readyFile, time.Minute, p.Exited())
		if err != nil {
			return err
		}
		r.port = ready.Port
		r.targetPIDs = append(r.targetPIDs, p.Pid())
		r.target.bases = append(r.target.bases, "http://"+ready.Control)
	}
	return nil
}

func (r *sizeRun) startManager(ctx context.Context) error {
	metricsPort, err := localcp.FreePort()
	if err != nil {
		return err
	}
	r.metrics = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	pprofPort, err := localcp.FreePort()
	if err != nil {
		return err
	}
	r.pprof = "http://127.0.0.1:" + strconv.Itoa(pprofPort) + "/debug/pprof"
	logPath := filepath.Join(r.dir, "manager.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	r.manager, err = r.cp.StartManager(ctx, localcp.ManagerOptions{
		Binary: r.env.manager,
		Args: append([]string{
			"--probe-allow-loopback",
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
			"--metrics-secure=false",
			"--pprof-bind-address=127.0.0.1:" + strconv.Itoa(pprofPort),
		}, r.env.cfg.managerArgs...),
		Log: log,
	})
	if err != nil {
		return fmt.Errorf("%w; see %s", err, logPath)
	}
	p := r.manager
	r.onStop(func() {
		if err := p.Stop(15 * time.Second); err != nil {
			say("Stopping the manager: %v", err)
		}
	})
	if r.idleRSS != 0 {
		return nil
	}
	// Let the caches sync and the heap settle before taking the idle footprint.
	sleepCtx(ctx, 2*time.Second)
	r.idleRSS, err = rssBytes(r.manager.Pid())
	if mf, err := scrape(ctx, http.DefaultClient, r.metrics); err == nil {
		r.idleRuntime = goRuntimeOf(mf)
	}
	return err
}

func (r *sizeRun) startRefProber() error {
	urls := make([]string, r.n)
	for i := range urls {
		urls[i] = targetURL(i, r.port)
	}
	file := filepath.Join(r.dir, "urls.txt")
	if err := os.WriteFile(file, []byte(strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	p, err := r.startProcess("refprober", r.env.self, []string{"refprober", "-urls", file,
		"-interval", r.env.cfg.interval.String(), "-timeout", r.env.cfg.retryTimeout.String()})
	r.ref = p
	return err
}

func (r *sizeRun) breaker(i int) *circuitv1alpha1.CircuitBreaker {
	cfg := r.env.cfg
	// The breakers that are not opened together keep the API's defaults.
	threshold, timeout := circuitv1alpha1.DefaultThreshold, circuitv1alpha1.DefaultTimeout
	if i < len(r.groups.together) {
		threshold, timeout = cfg.resetThreshold, circuitv1alpha1.GoDuration(cfg.resetTimeout.String())
	}
	cb := &circuitv1alpha1.CircuitBreaker{
		ObjectMeta: metav1.ObjectMeta{Name: breakerName(i), Namespace: namespace},
		Spec: circuitv1alpha1.CircuitBreakerSpec{
			Target:       circuitv1alpha1.Target{URL: targetURL(i, r.port)},
			Threshold:    threshold,
			Timeout:      timeout,
			RetryTimeout: circuitv1alpha1.GoDuration(cfg.retryTimeout.String()),
			Interval:     circuitv1alpha1.GoDuration(cfg.interval.String()),
		},
	}
	if cfg.failureRateWindow > 0 {
		cb.Spec.FailureRate = &circuitv1alpha1.FailureRate{Window: cfg.failureRateWindow, Percent: 50}
	}
	return cb
}

// waitAll waits until cond holds for every breaker of idx.
func (r *sizeRun) waitAll(ctx context.Context, what string, idx []int, within time.Duration, cond func(*observed) bool) error {
	deadline := time.Now().Add(within)
	for {
		done := r.obs.count(idx, cond)
		if done == len(idx) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !r.manager.Running() {
			return fmt.Errorf("the manager exited: %v", r.manager.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %d of %d after %s", what, done, len(idx), within)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// openTogether fails the targets of the breakers meant to open together, waits
// until they are all Open, heals the targets and waits until the breakers have
// gone HalfOpen and Closed again. It returns when the targets failed.
func (r *sizeRun) openTogether(ctx context.Context) (time.Time, error) {
	cfg := r.env.cfg
	idx := r.groups.together
	if err := r.waitBetweenRounds(ctx, idx); err != nil {
		return time.Time{}, err
	}
	say("N=%d: failing %d targets together (threshold %d, timeout %s)", r.n, len(idx), cfg.resetThreshold, cfg.resetTimeout)
	flip, err := r.target.setMode(modeFail, idx)
	if err != nil {
		return flip, err
	}
	openedAfterFlip := func(b *observed) bool {
		_, ok := firstChange(b.changes, circuitv1alpha1.StateOpen, flip)
		return ok
	}
	err = r.waitAll(ctx, "the failing breakers to open", idx, time.Duration(cfg.resetThreshold+3)*cfg.interval+time.Minute, openedAfterFlip)
	// Heal even when some did not open, so that what follows is not disturbed.
	if _, herr := r.target.setMode(modeOK, idx); herr != nil && err == nil {
		err = herr
	}
	if err != nil {
		return flip, err
	}
	say("N=%d: all %d open; targets healed, waiting for the timed reset", r.n, len(idx))
	closedAgain := func(b *observed) bool {
		open, ok := firstChange(b.changes, circuitv1alpha1.StateOpen, flip)
		if !ok {
			return false
		}
		_, ok = firstChange(b.changes, circuitv1alpha1.StateClosed, open.seen)
		return ok && b.lastProbeOK
	}
	err = r.waitAll(ctx, "the healed breakers to close", idx, cfg.resetTimeout+3*cfg.interval+time.Minute, closedAgain)
	return flip, err
}

// waitBetweenRounds waits until the breakers idx, probed in step, have all
// been probed in this round and the next round is not about to start, so
// that failing their targets now makes every one of them see its first
// failure in the same round. It gives up after two intervals.
func (r *sizeRun) waitBetweenRounds(ctx context.Context, idx []int) error {
	interval := r.env.cfg.interval
	margin := min(interval/20, 500*time.Millisecond)
	deadline := time.Now().Add(2 * interval)
	for time.Now().Before(deadline) {
		last, err := r.target.lastArrivals()
		if err != nil {
			return err
		}
		var lo, hi time.Time
		for _, i := range idx {
			if i >= len(last) || last[i].IsZero() {
				return nil
			}
			if lo.IsZero() || last[i].Before(lo) {
				lo = last[i]
			}
			if last[i].After(hi) {
				hi = last[i]
			}
		}
		now := time.Now()
		if hi.Sub(lo) > interval/2 {
			// Not in step (or caught in the middle of a round): look again shortly.
			sleepCtx(ctx, margin)
			continue
		}
		if now.After(hi.Add(margin)) && now.Before(lo.Add(interval-margin)) {
			return nil
		}
		sleepCtx(ctx, margin)
	}
	return nil
}

// firstChange finds the first change to state seen after t.
func firstChange(changes []stateChange, state circuitv1alpha1.State, after time.Time) (stateChange, bool) {
	for _, c := range changes {
		if c.state == state && c.seen.After(after) {
			return c, true
		}
	}
	return stateChange{}, false
}

// snapshot is what the counters said at one moment.
type snapshot struct {
	at                              time.Time
	manager, ref, api, etcd, target time.Duration
	managerRSS                      int64
	// The manager's Go runtime, from its metrics at the end of a window.
	runtime                  goRuntime
	statusPatches, events    float64
	managerRequests, mgrPuts float64
	// Sums and counts of histograms: the API server's status PATCH latency, and
	// the manager's time queued before a reconcile and reconcile time.
	patchSum, patchCount float64
	queueSum, queueCount float64
	workSum, workCount   float64
	scrapeErr            error
}

// snap reads the counters. Scraping metrics costs the scraped process CPU, so
// a window's start is taken after the scrapes (and a pause for the garbage they
// leave) and its end before them.
func (r *sizeRun) snap(ctx context.Context, start bool) snapshot {
	var s snapshot
	scrapeAll := func() {
		if mf, err := scrape(ctx, r.apiHTTP, r.cp.APIServerURL+"/metrics"); err == nil {
			statusPatches := apiRequests("circuitbreakers", "status", http.MethodPatch)
			s.statusPatches = sumCounter(mf, "apiserver_request_total", statusPatches)
			s.patchSum, s.patchCount = sumHistogram(mf, "apiserver_request_duration_seconds", statusPatches)
			s.events = sumCounter(mf, "apiserver_request_total", apiRequests("events", "", http.MethodPost)) +
				sumCounter(mf, "apiserver_request_total", apiRequests("events", "", http.MethodPatch))
		} else {
			s.scrapeErr = err
		}
		if mf, err := scrape(ctx, http.DefaultClient, r.metrics); err == nil {
			s.managerRequests = sumCounter(mf, "rest_client_requests_total", nil)
			for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
				s.mgrPuts += sumCounter(mf, "rest_client_requests_total", map[string]string{"method": m})
			}
			queue := map[string]string{"name": "circuitbreaker"}
			s.queueSum, s.queueCount = sumHistogram(mf, "workqueue_queue_duration_seconds", queue)
			s.workSum, s.workCount = sumHistogram(mf, "workqueue_work_duration_seconds", queue)
			s.runtime = goRuntimeOf(mf)
		} else {
			s.scrapeErr = errors.Join(s.scrapeErr, err)
		}
	}
	if start {
		scrapeAll()
		sleepCtx(ctx, 2*time.Second)
	}
	s.at = time.Now()
	s.manager, _ = cpuTime(r.manager.Pid())
	if r.ref != nil && r.ref.Running() {
		s.ref, _ = cpuTime(r.ref.Pid())
	}
	for _, pid := range r.targetPIDs {
		t, _ := cpuTime(pid)
		s.target += t
	}
	if r.apiPID > 0 {
		s.api, _ = cpuTime(r.apiPID)
	}
	if r.etcdPID > 0 {
		s.etcd, _ = cpuTime(r.etcdPID)
	}
	s.managerRSS, _ = rssBytes(r.manager.Pid())
	if !start {
		scrapeAll()
	}
	return s
}

// apiRequests selects the API server's request series for a resource and verb.
func apiRequests(resource, subresource, verb string) map[string]string {
	m := map[string]string{"resource": resource, "verb": verb}
	if subresource != "" {
		m["subresource"] = subresource
	}
	return m
}

// stallWatch notices when this process was not scheduled for a while: a tick
// every 10ms that comes much later means the whole machine stalled (another
// job, or the VM paused), which no prober could have helped.
type stallWatch struct {
	mu     sync.Mutex
	stalls []stall
}

type stall struct {
	at    time.Time
	delay time.Duration
}

func watchStalls(ctx context.Context) *stallWatch {
	w := &stallWatch{}
	go func() {
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if late := now.Sub(last) - tick; late > 50*time.Millisecond {
					w.mu.Lock()
					w.stalls = append(w.stalls, stall{at: now, delay: late})
					w.mu.Unlock()
				}
				last = now
			}
		}
	}()
	return w
}

// longest is the longest stall that ended in [from, to).
func (w *stallWatch) longest(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	for _, s := range w.stalls {
		if !s.at.Before(from) && s.at.Before(to) {
			longest = max(longest, s.delay)
		}
	}
	return longest
}

// saveHeapProfile writes the manager's heap profile (after a collection) and a
// 20 s CPU profile into the -profiles directory, if one was given.
func (r *sizeRun) saveHeapProfile(ctx context.Context, res *result) {
	dir := r.env.cfg.profiles
	if dir == "" {
		return
	}
	path := filepath.Join(dir, "heap-n"+strconv.Itoa(r.n)+".pb.gz")
	if err := fetchToFile(ctx, r.pprof+"/heap?gc=1", path); err != nil {
		say("N=%d: saving the heap profile: %v", r.n, err)
		return
	}
	res.HeapProfile = path
	// A CPU profile of the steady state too, after the window (profiling costs CPU).
	cpu := filepath.Join(dir, "cpu-n"+strconv.Itoa(r.n)+".pb.gz")
	if err := fetchToFile(ctx, r.pprof+"/profile?seconds=20", cpu); err != nil {
		say("N=%d: saving the CPU profile: %v", r.n, err)
	}
}

func fetchToFile(ctx context.Context, url, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
