// Package apiready holds an informer's list and watch requests while the API
// server is down, and lets them go the moment it is ready again.
//
// client-go's reflector retries a failed list or watch with an exponential
// backoff that reaches [30s, 60s) after about 20 s of failures, and neither
// client-go's shared informer nor controller-runtime lets a caller change it.
// After an outage of that length an informer would then see the API server's
// return up to a minute late, and the controller would act on a cache that
// misses every change made meanwhile. A Gate makes a list or watch that fails
// because the server is unreachable (or says it is not ready) wait for the
// server's /readyz instead of failing: the reflector's backoff does not grow
// during the outage, and every informer lists and watches again within one
// poll interval of the server's return.
package apiready

import (
	"context"
	"errors"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

var log = logf.Log.WithName("apiready")

const (
	// PollInterval is how often a Gate asks /readyz while the API server is
	// away: the longest it adds to the server's return.
	PollInterval = 250 * time.Millisecond
	// probeTimeout bounds one /readyz request, for a server that does not answer at all.
	probeTimeout = 2 * time.Second
)

// Gate holds list and watch requests while the API server is down. One Gate
// serves every informer of a process: however many requests wait, it asks
// /readyz at most once per interval.
type Gate struct {
	// probe asks the API server whether it is ready.
	probe    func(context.Context) bool
	interval time.Duration
	// probing is a lock that a waiter whose context ends can give up on.
	probing chan struct{}
	// lastReady is the last probe's answer, taken at checkedAt (guarded by probing);
	// a change is logged.
	lastReady bool
	checkedAt time.Time
}

// New returns a Gate that asks the API server of cfg for /readyz.
func New(cfg *rest.Config) (*Gate, error) {
	cfg = rest.CopyConfig(cfg)
	// The polls are few and must not queue behind other requests.
	cfg.QPS, cfg.RateLimiter = -1, nil
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	rc := dc.RESTClient()
	probe := func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		var code int
		res := rc.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		return answered(code, res.Error())
	}
	return newGate(probe, PollInterval), nil
}

// answered reads a /readyz answer: ready unless there was no answer or the
// server said it is not ready (5xx). A server that refuses the request (401,
// 403, 404) is up; the requests it holds fail and back off as without a Gate.
func answered(code int, err error) bool {
	if code == 0 {
		return err == nil
	}
	return code < http.StatusInternalServerError
}

func newGate(probe func(context.Context) bool, interval time.Duration) *Gate {
	// Ready until a probe says otherwise: the first probe follows a failed request.
	return &Gate{probe: probe, interval: interval, probing: make(chan struct{}, 1), lastReady: true}
}

// NewInformer builds a shared informer whose lists and watches wait for the
// API server through the Gate. It fits controller-runtime's
// cache.Options.NewInformer and stands in for toolscache.NewSharedIndexInformer.
func (g *Gate) NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration,
	indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(g.ListerWatcher(lw), obj, resync, indexers)
}

// ListerWatcher wraps lw so that its lists and watches wait for the API server
// while it is down.
func (g *Gate) ListerWatcher(lw toolscache.ListerWatcher) toolscache.ListerWatcher {
	return &listerWatcher{gate: g, inner: toolscache.ToListerWatcherWithContext(lw), unwrapped: lw}
}

type listerWatcher struct {
	gate  *Gate
	inner toolscache.ListerWatcherWithContext
	// unwrapped is the ListerWatcher as given, asked about WatchList support.
	unwrapped toolscache.ListerWatcher
}

func (l *listerWatcher) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *listerWatcher) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

func (l *listerWatcher) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return whenReady(ctx, l.gate, func() (runtime.Object, error) { return l.inner.ListWithContext(ctx, opts) })
}

func (l *listerWatcher) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return whenReady(ctx, l.gate, func() (watch.Interface, error) { return l.inner.WatchWithContext(ctx, opts) })
}

// IsWatchListSemanticsUnSupported passes on what the wrapped ListerWatcher
// says (client-go's reflector asks it before it streams a list).
func (l *listerWatcher) IsWatchListSemanticsUnSupported() bool {
	u, ok := l.unwrapped.(interface{ IsWatchListSemanticsUnSupported() bool })
	return ok && u.IsWatchListSemanticsUnSupported()
}

// whenReady makes a request; if it fails as a request to a server that is
// down does, it waits until the server is ready and makes it again. A failure
// while the server says it is ready is returned at once, to the reflector's
// usual backoff: only an outage the Gate saw is waited out.
func whenReady[T any](ctx context.Context, g *Gate, request func() (T, error)) (T, error) {
	for {
		v, err := request()
		if !mayBeDown(err) {
			return v, err
		}
		if waited, werr := g.waitReady(ctx); werr != nil || !waited {
			return v, err
		}
	}
}

// mayBeDown says whether err may come from an API server that is down or not
// ready: no answer at all (connection refused or reset, timeout) or a 5xx.
func mayBeDown(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Code >= http.StatusInternalServerError
	}
	return true
}

// waitReady returns once the API server says it is ready, or with ctx's error.
// waited says whether it found the server not ready first.
func (g *Gate) waitReady(ctx context.Context) (waited bool, err error) {
	for {
		if g.ready(ctx) {
			return waited, nil
		}
		waited = true
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(g.interval):
		}
	}
}

// ready asks the API server whether it is ready, or repeats the answer it
// gave less than an interval ago: concurrent waiters share one probe.
func (g *Gate) ready(ctx context.Context) bool {
	select {
	case g.probing <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-g.probing }()
	if !g.checkedAt.IsZero() && time.Since(g.checkedAt) < g.interval {
		return g.lastReady
	}
	ok := g.probe(ctx)
	if ctx.Err() == nil {
		if ok != g.lastReady {
			if ok {
				log.Info("API server is ready again: lists and watches resume")
			} else {
				log.Info("API server is not ready: lists and watches wait for it")
			}
		}
		g.lastReady, g.checkedAt = ok, time.Now()
	}
	return ok
}
