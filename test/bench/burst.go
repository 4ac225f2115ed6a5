package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// burstWorkers is how many creates the burst sends in parallel, as a GitOps
// sync or a `kubectl apply --server-side` of many objects does; the write rate
// is measured with as many.
const burstWorkers = 16

// calibrationNamespace holds the breakers of the write-rate measurement, which
// runs before the manager does and deletes them again.
const calibrationNamespace = "bench-write-rate"

// writeFloor is the API server's own pace for CircuitBreaker status writes on
// this machine, measured by the benchmark: the floor below which no operator
// can record N verdicts.
type writeFloor struct {
	// Writes is how many status PATCHes were timed, PerSecond the rate they
	// were taken at, burstWorkers in parallel.
	Writes    int     `json:"writes"`
	PerSecond float64 `json:"perSecond"`
}

// seconds is the floor for n writes.
func (f writeFloor) seconds(n int) float64 {
	if f.PerSecond <= 0 {
		return 0
	}
	return float64(n) / f.PerSecond
}

// measureWriteRate times m status PATCHes of m CircuitBreakers, each with a
// status like a manager's first write (Ready, target, lastProbe, state), sent
// burstWorkers at a time, before the manager runs. The breakers are created
// first (not timed) and deleted afterwards.
func (r *sizeRun) measureWriteRate(ctx context.Context, m int) (writeFloor, error) {
	if err := r.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: calibrationNamespace}}); err != nil {
		return writeFloor{}, err
	}
	objs := make([]*circuitv1alpha1.CircuitBreaker, m)
	if err := parallel(ctx, burstWorkers, m, func(i int) error {
		cb := r.breaker(i)
		cb.Namespace = calibrationNamespace
		objs[i] = cb
		return r.c.Create(ctx, cb)
	}); err != nil {
		return writeFloor{}, fmt.Errorf("creating the write-rate breakers: %w", err)
	}
	start := time.Now()
	if err := parallel(ctx, burstWorkers, m, func(i int) error {
		body, err := json.Marshal(map[string]any{"status": firstStatus(objs[i], time.Now())})
		if err != nil {
			return err
		}
		return r.c.Status().Patch(ctx, objs[i], client.RawPatch(types.MergePatchType, body))
	}); err != nil {
		return writeFloor{}, fmt.Errorf("timing status writes: %w", err)
	}
	took := time.Since(start)
	if err := r.c.DeleteAllOf(ctx, &circuitv1alpha1.CircuitBreaker{}, client.InNamespace(calibrationNamespace)); err != nil {
		return writeFloor{}, err
	}
	return writeFloor{Writes: m, PerSecond: float64(m) / took.Seconds()}, nil
}

// firstStatus is what the manager writes for a new breaker with its first result.
func firstStatus(cb *circuitv1alpha1.CircuitBreaker, now time.Time) circuitv1alpha1.CircuitBreakerStatus {
	at := metav1.NewMicroTime(now)
	return circuitv1alpha1.CircuitBreakerStatus{
		Conditions: []metav1.Condition{{
			Type: circuitv1alpha1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 1,
			LastTransitionTime: metav1.NewTime(now), Reason: circuitv1alpha1.ReasonProbing,
			Message: "probing " + cb.Spec.Target.URL,
		}},
		State:              circuitv1alpha1.StateClosed,
		Target:             cb.Spec.Target.URL,
		LastTransitionTime: &at,
		LastProbe:          &circuitv1alpha1.LastProbe{Time: at, Result: circuitv1alpha1.ProbeSuccess, Reason: circuitv1alpha1.ProbeReasonOK, HTTPStatus: 200, Latency: metav1.Duration{Duration: time.Millisecond}},
		ObservedGeneration: 1,
	}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(i int) error) error {
	jobs := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := f(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// burst is the creation burst: every breaker created at once, burstWorkers
// creates in parallel, while the manager runs.
type burst struct {
	// Seconds is how long the creates took; Floor the measured write rate.
	Seconds float64    `json:"seconds"`
	Floor   writeFloor `json:"floor"`
	// VerdictMs is, per breaker, from its create to the watch seeing its first
	// recorded verdict (status.lastProbe); AllVerdictsSeconds from the first
	// create to the last verdict; Verdicts how many were seen at all.
	VerdictMs          quantiles `json:"verdictMs"`
	AllVerdictsSeconds float64   `json:"allVerdictsSeconds"`
	Verdicts           int       `json:"verdicts"`
	// FirstProbeMs is, per breaker, from its create to its first probe at the target.
	FirstProbeMs quantiles `json:"firstProbeMs"`
	// Window runs from the first create to two intervals after the last
	// verdict: the cadence of every breaker from its first probe on.
	Window window `json:"window"`
	// StatusWrites is how many status writes the watch saw per breaker until
	// the last verdict (1 is the floor: the first status and first result together).
	StatusWritesPerBreaker float64 `json:"statusWritesPerBreaker"`
}

// measureBurst fills b from what the watch and the target saw.
func (r *sizeRun) measureBurst(b *burst, arr arrivals, created []time.Time, w0, w1 snapshot, lastVerdict time.Time) {
	var verdict, first []float64
	writes := 0
	for i := range r.n {
		o := r.obs.snapshot(i)
		for _, t := range o.writes {
			if !t.After(lastVerdict) {
				writes++
			}
		}
		if !o.verdictAt.IsZero() {
			b.Verdicts++
			verdict = append(verdict, ms(o.verdictAt.Sub(created[i])))
		}
		ts := arr.mgr[i]
		if k := firstAtOrAfter(ts, created[i].UnixNano()); k < len(ts) {
			first = append(first, ms(time.Unix(0, ts[k]).Sub(created[i])))
		}
	}
	b.VerdictMs = quantilesOf(verdict)
	b.FirstProbeMs = quantilesOf(first)
	if len(created) > 0 {
		b.AllVerdictsSeconds = lastVerdict.Sub(slices.MinFunc(created, time.Time.Compare)).Seconds()
	}
	b.StatusWritesPerBreaker = float64(writes) / float64(r.n)
	b.Window = r.window(arr, r.groups.all, w0, w1)
}
