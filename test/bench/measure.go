package main

import (
	"slices"
	"time"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// result is everything measured in the run for one N.
type result struct {
	N               int     `json:"n"`
	Label           string  `json:"label"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	OpenTogether    int     `json:"openTogether"`
	Hanging         int     `json:"hanging"`
	// CreateSeconds is how long creating all N at once took; ReadySeconds is
	// from the first create until every breaker was Closed after a successful probe.
	CreateSeconds float64 `json:"createSeconds"`
	ReadySeconds  float64 `json:"readySeconds"`

	// Burst is the creation of all N at once, with the write floor it is judged against.
	Burst burst `json:"burst"`

	Steady window `json:"steady"`
	// Isolation is the window with hanging targets; IsolationBaseline is the
	// steady window measured over the same (healthy) breakers.
	Isolation         window `json:"isolation"`
	IsolationBaseline window `json:"isolationBaseline"`
	// OpenPhase runs from failing the K targets to the K breakers closed again.
	OpenPhase window `json:"openPhase"`
	// AfterRestart is a window one interval after the manager restarted, over
	// the healthy breakers; RestartGapMs is, for each of them, the gap between
	// its last probe before the restart and its first after, minus the interval.
	AfterRestart window    `json:"afterRestart"`
	RestartGapMs quantiles `json:"restartGapMs"`

	Detection detection `json:"detection"`
	Reset     reset     `json:"reset"`

	// ManagerIdleRSS is before any breaker exists; RSSPerBreaker is the growth
	// to the end of the steady window, per breaker.
	ManagerIdleRSSMiB float64 `json:"managerIdleRssMiB"`
	ManagerRSSMiB     float64 `json:"managerRssMiB"`
	RSSPerBreakerKiB  float64 `json:"rssPerBreakerKiB"`
	// Runtime is the manager's Go heap, stacks and goroutines before any
	// breaker existed and at the end of the steady window; HeapProfile the
	// file its heap profile was saved to then (with -profiles).
	IdleRuntime       goRuntime `json:"idleRuntime"`
	SteadyRuntime     goRuntime `json:"steadyRuntime"`
	HeapProfile       string    `json:"heapProfile,omitempty"`
	HealthyNotClosed  int       `json:"healthyNotClosedAtEnd"`
	EveryTargetProbed bool      `json:"everyTargetProbed"`
	WatchRestarts     int       `json:"watchRestarts"`
	ScrapeErrors      string    `json:"scrapeErrors,omitempty"`
	// GRPC is the gRPC row's figures, measured in the run of N = -grpc-n only.
	GRPC *grpcResult `json:"grpc,omitempty"`
}

// window is what one measuring window showed.
type window struct {
	Seconds  float64 `json:"seconds"`
	Breakers int     `json:"breakers"`
	Manager  cadence `json:"manager"`
	Ref      cadence `json:"reference"`
	// CPU per probe, in milliseconds, of the manager and the reference prober;
	// the API server's and etcd's CPU use in cores.
	ManagerCPUPerProbeMs float64 `json:"managerCpuPerProbeMs"`
	RefCPUPerProbeMs     float64 `json:"referenceCpuPerProbeMs"`
	ManagerCores         float64 `json:"managerCores"`
	RefCores             float64 `json:"referenceCores"`
	APIServerCores       float64 `json:"apiServerCores"`
	EtcdCores            float64 `json:"etcdCores"`
	TargetCores          float64 `json:"targetCores"`
	// StallMs is the longest time the driver process itself went unscheduled
	// in the window (over 50 ms): a stall of the machine, not of a prober.
	StallMs float64 `json:"stallMs"`
	// StatusPatches is the API server's count of status PATCHes of
	// CircuitBreakers; WritesSeen counts the writes the watch saw on the window's breakers.
	StatusPatches float64 `json:"statusPatches"`
	WritesSeen    int     `json:"writesSeen"`
	// ManagerRequestsPerSecond and ManagerWritesPerSecond come from the manager's
	// client-go metrics (all requests, and POST/PUT/PATCH/DELETE).
	ManagerRequestsPerSecond float64 `json:"managerRequestsPerSecond"`
	ManagerWritesPerSecond   float64 `json:"managerWritesPerSecond"`
	// EventWrites counts Event creates and patches (API server count).
	EventWrites float64 `json:"eventWrites"`
	// Means over the window: a status PATCH's latency in the API server, and
	// from the manager's metrics the time a request waits in the work queue and a reconcile.
	PatchMeanMs float64 `json:"patchMeanMs"`
	QueueMeanMs float64 `json:"queueMeanMs"`
	WorkMeanMs  float64 `json:"reconcileMeanMs"`
}

// WritesPerBreakerHour is the status writes per breaker per hour that the API server counted.
func (w window) WritesPerBreakerHour() float64 {
	if w.Seconds == 0 || w.Breakers == 0 {
		return 0
	}
	return w.StatusPatches / float64(w.Breakers) / (w.Seconds / 3600)
}

// detection: for the breakers whose targets failed together, the time from
// the last successful probe to Open being visible in the API, minus the ideal
// threshold x interval.
type detection struct {
	Breakers int `json:"breakers"`
	Opened   int `json:"opened"`
	// DelayMs is seen Open (watch) - (last good probe + threshold x interval);
	// DecisionDelayMs uses status.openedAt (the manager's decision) instead.
	DelayMs         quantiles `json:"delayMs"`
	DecisionDelayMs quantiles `json:"decisionDelayMs"`
	// OpenSpreadMs is how far apart the openings were: the 99th minus the 1st percentile of openedAt.
	OpenSpreadMs float64 `json:"openSpreadMs"`
	// OpenedAtMs lists every openedAt, sorted, in ms after the targets failed.
	OpenedAtMs []float64 `json:"openedAtMs"`
}

// reset: for the same breakers, how late after nextRetryTime they went HalfOpen.
type reset struct {
	HalfOpened int `json:"halfOpened"`
	// LateMs is HalfOpen seen by the watch - nextRetryTime; DecisionLateMs uses
	// the HalfOpen lastTransitionTime; TrialLateMs the arrival of the trial probe.
	LateMs         quantiles `json:"lateMs"`
	DecisionLateMs quantiles `json:"decisionLateMs"`
	TrialLateMs    quantiles `json:"trialLateMs"`
}

func (r *sizeRun) measure(res *result, arr arrivals, s0, s1, i0, i1 snapshot, flip time.Time) {
	g := r.groups
	interval := r.env.cfg.interval
	res.Steady = r.window(arr, g.all, s0, s1)
	healthy := g.healthy
	res.IsolationBaseline = r.window(arr, healthy, s0, s1)
	res.Isolation = r.window(arr, healthy, i0, i1)
	res.ManagerIdleRSSMiB = float64(r.idleRSS) / (1 << 20)
	res.ManagerRSSMiB = float64(s1.managerRSS) / (1 << 20)
	res.RSSPerBreakerKiB = float64(s1.managerRSS-r.idleRSS) / 1024 / float64(r.n)
	res.IdleRuntime, res.SteadyRuntime = r.idleRuntime, s1.runtime
	if err := s0.scrapeErr; err != nil {
		res.ScrapeErrors = err.Error()
	}
	if err := s1.scrapeErr; err != nil {
		res.ScrapeErrors += " " + err.Error()
	}

	res.EveryTargetProbed = true
	for _, i := range g.all {
		if len(arr.mgr[i]) == 0 {
			res.EveryTargetProbed = false
		}
	}
	for _, i := range slices.Concat(g.together, g.healthy) {
		if r.obs.snapshot(i).state != circuitv1alpha1.StateClosed {
			res.HealthyNotClosed++
		}
	}
	r.obs.mu.Lock()
	res.WatchRestarts = r.obs.relists
	r.obs.mu.Unlock()

	threshold := time.Duration(r.env.cfg.resetThreshold)
	res.Detection.Breakers = len(g.together)
	var delay, decision, late, lateDecision, trial, openedAt []float64
	for _, i := range g.together {
		b := r.obs.snapshot(i)
		open, ok := firstChange(b.changes, circuitv1alpha1.StateOpen, flip)
		if !ok {
			continue
		}
		res.Detection.Opened++
		if lastOK := lastBefore(arr.mgr[i], flip.UnixNano()); lastOK != 0 {
			ideal := time.Unix(0, lastOK).Add(threshold * interval)
			delay = append(delay, ms(open.seen.Sub(ideal)))
			decision = append(decision, ms(open.openedAt.Sub(ideal)))
		}
		openedAt = append(openedAt, ms(open.openedAt.Sub(flip)))
		half, ok := firstChange(b.changes, circuitv1alpha1.StateHalfOpen, open.seen)
		if !ok || open.nextRetry.IsZero() {
			continue
		}
		res.Reset.HalfOpened++
		late = append(late, ms(half.seen.Sub(open.nextRetry)))
		lateDecision = append(lateDecision, ms(half.since.Sub(open.nextRetry)))
		ts := arr.mgr[i]
		if k := firstAtOrAfter(ts, open.openedAt.UnixNano()+1); k < len(ts) {
			trial = append(trial, ms(time.Unix(0, ts[k]).Sub(open.nextRetry)))
		}
	}
	res.Detection.DelayMs = quantilesOf(delay)
	res.Detection.DecisionDelayMs = quantilesOf(decision)
	if len(openedAt) > 0 {
		slices.Sort(openedAt)
		res.Detection.OpenSpreadMs = rank(openedAt, 0.99) - rank(openedAt, 0.01)
		res.Detection.OpenedAtMs = openedAt
	}
	res.Reset.LateMs = quantilesOf(late)
	res.Reset.DecisionLateMs = quantilesOf(lateDecision)
	res.Reset.TrialLateMs = quantilesOf(trial)
}

// window measures the breakers idx between two snapshots.
func (r *sizeRun) window(arr arrivals, idx []int, s0, s1 snapshot) window {
	interval := r.env.cfg.interval
	secs := s1.at.Sub(s0.at).Seconds()
	w := window{
		Seconds:  secs,
		Breakers: len(idx),
		Manager:  cadenceIn(arr.mgr, idx, s0.at, s1.at, interval),
		Ref:      cadenceIn(arr.ref, idx, s0.at, s1.at, interval),
	}
	// CPU and API figures are for the whole process, so only meaningful per probe
	// over all probes the process sent in the window.
	mgrProbes := cadenceIn(arr.mgr, r.groups.all, s0.at, s1.at, interval).Delivered
	refProbes := cadenceIn(arr.ref, r.groups.all, s0.at, s1.at, interval).Delivered
	if mgrProbes > 0 {
		w.ManagerCPUPerProbeMs = ms(s1.manager-s0.manager) / float64(mgrProbes)
	}
	if refProbes > 0 {
		w.RefCPUPerProbeMs = ms(s1.ref-s0.ref) / float64(refProbes)
	}
	if secs > 0 {
		w.ManagerCores = (s1.manager - s0.manager).Seconds() / secs
		w.RefCores = (s1.ref - s0.ref).Seconds() / secs
		w.APIServerCores = (s1.api - s0.api).Seconds() / secs
		w.EtcdCores = (s1.etcd - s0.etcd).Seconds() / secs
		w.TargetCores = (s1.target - s0.target).Seconds() / secs
		w.ManagerRequestsPerSecond = (s1.managerRequests - s0.managerRequests) / secs
		w.ManagerWritesPerSecond = (s1.mgrPuts - s0.mgrPuts) / secs
	}
	w.StatusPatches = s1.statusPatches - s0.statusPatches
	w.StallMs = ms(r.stalls.longest(s0.at, s1.at))
	w.EventWrites = s1.events - s0.events
	w.PatchMeanMs = meanMs(s1.patchSum-s0.patchSum, s1.patchCount-s0.patchCount)
	w.QueueMeanMs = meanMs(s1.queueSum-s0.queueSum, s1.queueCount-s0.queueCount)
	w.WorkMeanMs = meanMs(s1.workSum-s0.workSum, s1.workCount-s0.workCount)
	for _, i := range idx {
		for _, t := range r.obs.snapshot(i).writes {
			if !t.Before(s0.at) && t.Before(s1.at) {
				w.WritesSeen++
			}
		}
	}
	return w
}

// meanMs is sum/count in milliseconds, for sums in seconds.
func meanMs(sum, count float64) float64 {
	if count <= 0 {
		return 0
	}
	return 1000 * sum / count
}

// restartGaps measures, for the targets idx, the gap from the last probe
// before stopped to the first after it, minus the interval: positive when the
// restart delayed the probe, negative when it brought it forward.
func restartGaps(times [][]int64, idx []int, stopped time.Time, interval time.Duration) quantiles {
	var gaps []float64
	for _, i := range idx {
		ts := times[i]
		k := firstAtOrAfter(ts, stopped.UnixNano())
		if k == 0 || k >= len(ts) {
			continue
		}
		gaps = append(gaps, ms(time.Duration(ts[k]-ts[k-1])-interval))
	}
	return quantilesOf(gaps)
}
