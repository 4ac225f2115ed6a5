// Package breakerclient lets Go programs act on the cluster's CircuitBreakers:
// Call runs a function unless the dependency's circuit is open, State reports
// the circuit's state, Reset closes it and Trip holds it open for a while.
//
// State comes from one watch per Client (an informer), so Call costs a map
// lookup and no API request. An unknown breaker, or a cache that has not synced
// yet, never blocks a call unless Options.FailClosedWhenUnknown is set.
// Options.LocalThreshold adds failure counting inside the process, which opens
// the circuit locally before the operator's probes notice.
//
// Breakers are named "name" (in Options.Namespace) or "namespace/name".
package breakerclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/apiready"
)

// State is the state of a breaker as a Client sees it.
type State string

const (
	// StateClosed: calls run.
	StateClosed State = State(circuitv1alpha1.StateClosed)
	// StateOpen: calls are rejected with an error matching ErrOpen.
	StateOpen State = State(circuitv1alpha1.StateOpen)
	// StateHalfOpen: the operator's trial probes decide; calls are rejected
	// unless Options.HalfOpenPassShare lets some through.
	StateHalfOpen State = State(circuitv1alpha1.StateHalfOpen)
	// StateUnknown: the breaker is not in the cache (missing, not synced yet,
	// outside the watch) or has no state yet; calls run unless
	// Options.FailClosedWhenUnknown is set.
	StateUnknown State = "Unknown"
)

// defaultTimeout is how long a local opening lasts when the breaker's
// spec.timeout is not known; it is the CRD's default.
const defaultTimeout = 60 * time.Second

// Options configure a Client. The zero value watches every namespace and
// resolves bare names in "default".
type Options struct {
	// Namespace is where bare breaker names are looked up, and the only
	// namespace watched unless AllNamespaces is set. Empty: bare names are in
	// "default" and every namespace is watched.
	Namespace string
	// AllNamespaces watches breakers in every namespace even when Namespace is set.
	AllNamespaces bool
	// LabelSelector, if set, limits the watch to the breakers it selects; the
	// others are unknown to the Client.
	LabelSelector labels.Selector
	// FailClosedWhenUnknown rejects calls to breakers the Client does not know
	// (with an error matching both ErrOpen and ErrUnknown) instead of running them.
	FailClosedWhenUnknown bool
	// HalfOpenPassShare is the share of calls, from 0 to 1, that run while a
	// breaker is HalfOpen. Defaults to 0: the operator's trial probes decide alone.
	HalfOpenPassShare float64
	// LocalThreshold, if positive, counts failed calls (errors and panics) per
	// breaker in this process: that many in a row open the circuit locally for
	// the breaker's spec.timeout. After it, one more failure opens it again
	// and a success closes it.
	LocalThreshold int
	// Registerer, if set, receives the counter circuitbreaker_client_calls_total
	// by namespace, name and result (success, failure, rejected).
	Registerer prometheus.Registerer
	// Clock gives the time; the real clock by default.
	Clock clock.PassiveClock
}

// Client acts on CircuitBreakers. Its methods are safe for concurrent use.
// Start must run for State and Call to see the cluster.
type Client struct {
	opts   Options
	clock  clock.PassiveClock
	cache  cache.Cache
	writer client.Client
	calls  *prometheus.CounterVec

	mu       sync.RWMutex
	breakers map[key]*entry

	localMu sync.Mutex
	local   map[key]*localState

	started  atomic.Bool
	synced   atomic.Bool
	syncedCh chan struct{}

	// eventHook, if set, is called when the informer delivers a change,
	// before the Client applies it. Tests measure reaction times with it.
	eventHook func()
}

// key names a breaker.
type key struct{ namespace, name string }

func (k key) String() string { return k.namespace + "/" + k.name }

// entry is what the Client keeps of a breaker.
type entry struct {
	state     State
	nextRetry time.Time
	timeout   time.Duration
	counters  *counters
}

// localState is the in-process failure count of a breaker.
type localState struct {
	failures  int
	openUntil time.Time
}

// New returns a Client for the cluster cfg points at. It sends no request:
// Start opens the watch.
func New(cfg *rest.Config, opts Options) (*Client, error) {
	if opts.HalfOpenPassShare < 0 || opts.HalfOpenPassShare > 1 {
		return nil, fmt.Errorf("breakerclient: HalfOpenPassShare %v is not between 0 and 1", opts.HalfOpenPassShare)
	}
	if opts.LocalThreshold < 0 {
		return nil, fmt.Errorf("breakerclient: LocalThreshold %d is negative", opts.LocalThreshold)
	}
	scheme := runtime.NewScheme()
	if err := circuitv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("breakerclient: registering the API types: %w", err)
	}
	// The watch of breakers waits out an API server outage instead of backing
	// off for up to a minute, so that callers see the states again at once.
	gate, err := apiready.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("breakerclient: creating the readiness gate: %w", err)
	}
	cacheOpts := cache.Options{
		NewInformer:          gate.NewInformer,
		Scheme:               scheme,
		DefaultLabelSelector: opts.LabelSelector,
		DefaultTransform:     cache.TransformStripManagedFields(),
	}
	if opts.Namespace != "" && !opts.AllNamespaces {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{opts.Namespace: {}}
	}
	informers, err := cache.New(cfg, cacheOpts)
	if err != nil {
		return nil, fmt.Errorf("breakerclient: creating the cache: %w", err)
	}
	writer, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("breakerclient: creating the API client: %w", err)
	}
	c := &Client{
		opts:     opts,
		clock:    opts.Clock,
		cache:    informers,
		writer:   writer,
		breakers: map[key]*entry{},
		local:    map[key]*localState{},
		syncedCh: make(chan struct{}),
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	if opts.Registerer != nil {
		if c.calls, err = registerCalls(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Start watches the breakers until ctx ends. It returns an error if the
// watch cannot be set up, and nil when ctx ends. Call it once.
func (c *Client) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("breakerclient: Start called twice")
	}
	informer, err := c.cache.GetInformer(ctx, &circuitv1alpha1.CircuitBreaker{}, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("breakerclient: watching CircuitBreakers: %w", err)
	}
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    c.apply,
		UpdateFunc: func(_, obj any) { c.apply(obj) },
		DeleteFunc: c.remove,
	})
	if err != nil {
		return fmt.Errorf("breakerclient: handling CircuitBreaker events: %w", err)
	}
	go func() {
		if toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			c.synced.Store(true)
			close(c.syncedCh)
		}
	}()
	if err := c.cache.Start(ctx); err != nil {
		return fmt.Errorf("breakerclient: running the cache: %w", err)
	}
	return nil
}

// WaitForSync waits until the Client has seen every breaker it watches, or
// ctx ends.
func (c *Client) WaitForSync(ctx context.Context) error {
	select {
	case <-c.syncedCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("breakerclient: waiting for the cache to sync: %w", ctx.Err())
	}
}

// StartAndWait runs Start in the background until ctx ends and returns once
// the cache has synced, or with Start's error.
func (c *Client) StartAndWait(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	select {
	case <-c.syncedCh:
		return nil
	case err := <-errc:
		if err == nil {
			err = fmt.Errorf("breakerclient: stopped before the cache synced: %w", ctx.Err())
		}
		return err
	}
}

// Synced reports whether the Client has seen every breaker it watches.
func (c *Client) Synced() bool { return c.synced.Load() }

// State returns the state Call acts on: Open while the circuit is open
// locally, else the cluster's state, or StateUnknown.
func (c *Client) State(name string) State {
	k := c.key(name)
	if c.opts.LocalThreshold > 0 {
		if _, open := c.localOpen(k, c.clock.Now()); open {
			return StateOpen
		}
	}
	if e := c.lookup(k); e != nil {
		return e.state
	}
	return StateUnknown
}

// Call runs fn unless the named breaker's circuit is open, in the cluster or
// locally; then it returns at once an *OpenError, which matches ErrOpen and
// says when to retry. Otherwise it returns fn's error. A panic in fn counts
// as a failure and is raised again.
func (c *Client) Call(ctx context.Context, name string, fn func(context.Context) error) (err error) {
	k := c.key(name)
	e := c.lookup(k)
	if rejected := c.admit(k, e); rejected != nil {
		c.count(k, e, resultRejected)
		return rejected
	}
	done := false
	defer func() {
		if !done {
			c.finish(ctx, k, e, errPanicked)
		}
	}()
	err = fn(ctx)
	done = true
	c.finish(ctx, k, e, err)
	return err
}

// errPanicked stands for a panic of fn when counting failures.
var errPanicked = errors.New("breakerclient: the call panicked")

// admit returns the error that rejects a call, or nil to run it.
func (c *Client) admit(k key, e *entry) error {
	if e != nil && e.state == StateOpen {
		return &OpenError{Breaker: k.String(), State: StateOpen, RetryAt: e.nextRetry}
	}
	if c.opts.LocalThreshold > 0 {
		if until, open := c.localOpen(k, c.clock.Now()); open {
			return &OpenError{Breaker: k.String(), State: StateOpen, Local: true, RetryAt: until}
		}
	}
	switch {
	case e == nil || e.state == StateUnknown:
		if c.opts.FailClosedWhenUnknown {
			return &OpenError{Breaker: k.String(), State: StateUnknown}
		}
	case e.state == StateHalfOpen:
		if c.opts.HalfOpenPassShare == 0 || rand.Float64() >= c.opts.HalfOpenPassShare {
			return &OpenError{Breaker: k.String(), State: StateHalfOpen}
		}
	}
	return nil
}

// finish counts the outcome of a call that ran.
func (c *Client) finish(ctx context.Context, k key, e *entry, err error) {
	if err == nil {
		c.count(k, e, resultSuccess)
	} else {
		c.count(k, e, resultFailure)
	}
	// The caller giving up is not the dependency failing.
	if c.opts.LocalThreshold > 0 && (err == nil || !errors.Is(ctx.Err(), context.Canceled)) {
		c.trackLocal(k, e, err != nil)
	}
}

// trackLocal counts a failure or a success in the process, and opens the
// circuit locally when failures reach the threshold.
func (c *Client) trackLocal(k key, e *entry, failed bool) {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	ls := c.local[k]
	if !failed {
		if ls != nil {
			ls.failures = 0
		}
		return
	}
	if ls == nil {
		ls = &localState{}
		c.local[k] = ls
	}
	ls.failures++
	now := c.clock.Now()
	if ls.failures >= c.opts.LocalThreshold && !now.Before(ls.openUntil) {
		timeout := defaultTimeout
		if e != nil {
			timeout = e.timeout
		}
		ls.openUntil = now.Add(timeout)
	}
}

// localOpen reports whether the circuit is open locally at now, and until when.
// A local opening that has run out leaves the count one short of the
// threshold, so that one more failure opens it again.
func (c *Client) localOpen(k key, now time.Time) (time.Time, bool) {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	ls := c.local[k]
	if ls == nil || ls.openUntil.IsZero() {
		return time.Time{}, false
	}
	if now.Before(ls.openUntil) {
		return ls.openUntil, true
	}
	ls.openUntil = time.Time{}
	ls.failures = c.opts.LocalThreshold - 1
	return time.Time{}, false
}

// Reset closes the named breaker by setting its reset annotation to a new
// value; the operator acts on it once. It first forgets local failures,
// even if the write then fails.
func (c *Client) Reset(ctx context.Context, name string) error {
	k := c.key(name)
	c.localMu.Lock()
	delete(c.local, k)
	c.localMu.Unlock()
	value := c.clock.Now().UTC().Format(time.RFC3339Nano)
	if err := c.annotate(ctx, k, circuitv1alpha1.ResetAnnotation, value); err != nil {
		return fmt.Errorf("resetting breaker %s: %w", k, err)
	}
	return nil
}

// Trip holds the named breaker Open for d by setting its trip-until
// annotation to now + d (RFC 3339).
func (c *Client) Trip(ctx context.Context, name string, d time.Duration) error {
	k := c.key(name)
	if d <= 0 {
		return fmt.Errorf("tripping breaker %s: the duration %s is not positive", k, d)
	}
	until := c.clock.Now().Add(d).UTC().Format(time.RFC3339)
	if err := c.annotate(ctx, k, circuitv1alpha1.TripUntilAnnotation, until); err != nil {
		return fmt.Errorf("tripping breaker %s: %w", k, err)
	}
	return nil
}

// annotate sets one annotation with a merge patch, which needs no
// resourceVersion and so never conflicts with the operator's writes.
func (c *Client) annotate(ctx context.Context, k key, name, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{name: value}}})
	if err != nil {
		return fmt.Errorf("encoding the patch: %w", err)
	}
	cb := &circuitv1alpha1.CircuitBreaker{ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name}}
	return c.writer.Patch(ctx, cb, client.RawPatch(types.MergePatchType, patch))
}

// key resolves "name" or "namespace/name".
func (c *Client) key(name string) key {
	if ns, n, ok := strings.Cut(name, "/"); ok {
		return key{namespace: ns, name: n}
	}
	ns := c.opts.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	return key{namespace: ns, name: name}
}

func (c *Client) lookup(k key) *entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.breakers[k]
}

// apply records a breaker added or changed in the cache.
func (c *Client) apply(obj any) {
	if c.eventHook != nil {
		c.eventHook()
	}
	cb, ok := obj.(*circuitv1alpha1.CircuitBreaker)
	if !ok {
		return
	}
	k := key{namespace: cb.Namespace, name: cb.Name}
	e := entryOf(cb)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.breakers[k]; old != nil {
		e.counters = old.counters
	} else if c.calls != nil {
		e.counters = newCounters(c.calls, k)
	}
	c.breakers[k] = e
}

// remove forgets a deleted breaker.
func (c *Client) remove(obj any) {
	if c.eventHook != nil {
		c.eventHook()
	}
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	cb, ok := obj.(*circuitv1alpha1.CircuitBreaker)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.breakers, key{namespace: cb.Namespace, name: cb.Name})
}

// entryOf keeps what Call needs of a breaker.
func entryOf(cb *circuitv1alpha1.CircuitBreaker) *entry {
	e := &entry{state: State(cb.Status.State), timeout: defaultTimeout}
	if e.state == "" {
		e.state = StateUnknown
	}
	if cb.Status.NextRetryTime != nil {
		e.nextRetry = cb.Status.NextRetryTime.Time
	}
	if d, err := time.ParseDuration(string(cb.Spec.Timeout)); err == nil && d > 0 {
		e.timeout = d
	}
	return e
}
