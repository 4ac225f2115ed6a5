package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// observer follows every breaker through one watch and records, per breaker,
// when each status write was seen and every change of state, with the times
// the status itself gives. Writes are counted from the watch, so they can be
// attributed to single breakers and time windows.
type observer struct {
	mu       sync.Mutex
	breakers []observed
	// relists counts watches that had to restart from a fresh list (events may be missing).
	relists int
}

type observed struct {
	// writes are the times MODIFIED events were seen.
	writes []time.Time
	state  circuitv1alpha1.State
	// lastProbeOK: status.lastProbe says Success.
	lastProbeOK bool
	// verdictAt is when the watch first saw a recorded result (status.lastProbe).
	verdictAt time.Time
	changes   []stateChange
}

type stateChange struct {
	state circuitv1alpha1.State
	// seen is when the watch delivered it.
	seen time.Time
	// since is status.lastTransitionTime; openedAt and nextRetry are set while Open.
	since, openedAt, nextRetry time.Time
}

func newObserver(n int) *observer { return &observer{breakers: make([]observed, n)} }

// breakerName is the name of breaker i; breakerIndex is its inverse.
func breakerName(i int) string { return "b-" + strconv.Itoa(i) }

func breakerIndex(name string) (int, bool) {
	i, err := strconv.Atoi(strings.TrimPrefix(name, "b-"))
	return i, err == nil
}

// run watches the namespace until ctx ends, restarting the watch where it
// stopped, or from a fresh list when the API server no longer has that point.
func (o *observer) run(ctx context.Context, c client.WithWatch, ns string) {
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			list := &circuitv1alpha1.CircuitBreakerList{}
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
			now := time.Now()
			for i := range list.Items {
				o.observe(&list.Items[i], watch.Added, now)
			}
			rv = list.ResourceVersion
		}
		w, err := c.Watch(ctx, &circuitv1alpha1.CircuitBreakerList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		rv = o.consume(w, rv)
	}
}

// consume reads events until the watch ends and returns the resource version to resume from.
func (o *observer) consume(w watch.Interface, rv string) string {
	defer w.Stop()
	for ev := range w.ResultChan() {
		now := time.Now()
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
			cb, ok := ev.Object.(*circuitv1alpha1.CircuitBreaker)
			if !ok {
				continue
			}
			rv = cb.ResourceVersion
			if ev.Type != watch.Bookmark {
				o.observe(cb, ev.Type, now)
			}
		case watch.Error:
			o.mu.Lock()
			o.relists++
			o.mu.Unlock()
			return ""
		}
	}
	return rv
}

func (o *observer) observe(cb *circuitv1alpha1.CircuitBreaker, typ watch.EventType, now time.Time) {
	i, ok := breakerIndex(cb.Name)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok || i < 0 || i >= len(o.breakers) {
		return
	}
	b := &o.breakers[i]
	if typ == watch.Modified {
		b.writes = append(b.writes, now)
	}
	st := cb.Status
	b.lastProbeOK = st.LastProbe != nil && st.LastProbe.Result == circuitv1alpha1.ProbeSuccess
	if st.LastProbe != nil && b.verdictAt.IsZero() {
		b.verdictAt = now
	}
	if st.State != b.state {
		b.state = st.State
		b.changes = append(b.changes, stateChange{state: st.State, seen: now,
			since: microTime(st.LastTransitionTime), openedAt: microTime(st.OpenedAt), nextRetry: microTime(st.NextRetryTime)})
	}
}

func microTime(t *metav1.MicroTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// count returns how many of the breakers idx satisfy cond.
func (o *observer) count(idx []int, cond func(*observed) bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, i := range idx {
		if cond(&o.breakers[i]) {
			n++
		}
	}
	return n
}

// latestVerdict is the latest time a breaker's first verdict was seen.
func (o *observer) latestVerdict() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var t time.Time
	for i := range o.breakers {
		if v := o.breakers[i].verdictAt; v.After(t) {
			t = v
		}
	}
	return t
}

// snapshot returns a deep copy of what was observed of breaker i.
func (o *observer) snapshot(i int) observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.breakers[i]
	b.writes = append([]time.Time(nil), b.writes...)
	b.changes = append([]stateChange(nil), b.changes...)
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
