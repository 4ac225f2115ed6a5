package ring

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// malformedSelector is refused (400, "invalid shard selector") by an API
// server with the ShardedListAndWatch feature gate on, and ignored by one
// without it: how a member tells whether the server filters by range (the
// server does not echo ShardInfo for custom resources, as of v1.37.2).
const malformedSelector = "shardRange(object.metadata.uid, '0x0', '0x1')"

// NewInformer is a cache.Options.NewInformer for a member's manager: the
// informers of objects of sharded's type (the breakers) list and watch only
// this member's range when the API server applies KEP-5866 shard selectors,
// and list again with the new range when the ring changes. Other informers are
// the usual ones. The controller filters on its own side in any case.
func (m *Member) NewInformer(sharded runtime.Object) func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer {
	return func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
		if reflect.TypeOf(obj) == reflect.TypeOf(sharded) {
			s := &shardedListerWatcher{inner: toolscache.ToListerWatcherWithContext(lw), member: m, example: obj}
			m.OnChange(s.rangeChanged)
			lw = &toolscache.ListWatch{ListWithContextFunc: s.list, WatchFuncWithContext: s.watch}
		}
		return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
	}
}

// shardedListerWatcher adds the member's shard selector to the lists and
// watches of one informer. When the range changes, its watch moves to the new
// range in place: it lists the new range, sends the informer a deletion for
// each object that left it and the current state of each in it, and watches
// on from that list's resource version. Ending the watch instead would do,
// but the reflector waits out a growing backoff (0.8 s, doubling) before it
// lists again, and the handover would wait with it.
type shardedListerWatcher struct {
	inner   toolscache.ListerWatcherWithContext
	member  *Member
	example runtime.Object
	// serverFilters: 0 not known yet, 1 the server applies shard selectors, 2 it does not.
	serverFilters atomic.Int32

	mu sync.Mutex
	// known are the objects the informer holds, as far as the lists and
	// watch events that passed here tell.
	known   map[types.NamespacedName]struct{}
	watches map[*rangeWatch]struct{}
}

// ServerFilters reports whether the API server applies shard selectors, once
// an informer has asked; false until then.
func (m *Member) ServerFilters() bool { return m.serverFilters.Load() }

// selector is the shard selector to send: the member's, where the server
// applies it; "" for none.
func (s *shardedListerWatcher) selector(ctx context.Context) string {
	sel := s.member.Selector()
	if sel == nil || !s.applies(ctx) {
		return ""
	}
	return sel.String()
}

// applies asks the server once whether it applies shard selectors.
func (s *shardedListerWatcher) applies(ctx context.Context) bool {
	switch s.serverFilters.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	_, err := s.inner.ListWithContext(ctx, metav1.ListOptions{ShardSelector: malformedSelector, Limit: 1})
	switch {
	case refusesSelector(err):
		s.serverFilters.Store(1)
		s.member.serverFilters.Store(true)
		logf.FromContext(ctx).Info("The API server applies shard selectors: listing and watching this member's range only",
			"member", s.member.Identity)
		return true
	case err == nil:
		s.serverFilters.Store(2)
		logf.FromContext(ctx).Info("The API server ignores shard selectors (feature gate ShardedListAndWatch off): "+
			"listing and watching every breaker, filtering here", "member", s.member.Identity)
	}
	return false // asked again next time after any other error
}

// refusesSelector reports whether err is the refusal of the malformed
// selector. The API server answers 400 "invalid shard selector"; through
// client-go's REST client for a custom resource (v1.37.2) it arrives as a
// StatusError without a reason (code 500), so the message is what tells.
func refusesSelector(err error) bool {
	return err != nil && (apierrors.IsBadRequest(err) || strings.Contains(err.Error(), "invalid shard selector"))
}

func (s *shardedListerWatcher) list(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	s.member.join(ctx)
	opts.ShardSelector = s.selector(ctx)
	list, err := s.inner.ListWithContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Continue == "" || s.known == nil {
		s.known = map[types.NamespacedName]struct{}{}
	}
	for _, item := range items {
		s.known[nameOf(item)] = struct{}{}
	}
	return list, nil
}

func (s *shardedListerWatcher) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	s.member.join(ctx) // a watch list (client-go's default) starts with a watch
	opts.ShardSelector = s.selector(ctx)
	initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	w, err := s.inner.WatchWithContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	rw := &rangeWatch{s: s, ctx: ctx, inner: w, selector: opts.ShardSelector, initialDone: !initial,
		out: make(chan watch.Event), stop: make(chan struct{}), moved: make(chan struct{}, 1)}
	s.mu.Lock()
	if initial || s.known == nil {
		s.known = map[types.NamespacedName]struct{}{}
	}
	if s.watches == nil {
		s.watches = map[*rangeWatch]struct{}{}
	}
	s.watches[rw] = struct{}{}
	s.mu.Unlock()
	go rw.run()
	return rw, nil
}

// rangeChanged tells the open watches that the member's range changed.
func (s *shardedListerWatcher) rangeChanged() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rw := range s.watches {
		select {
		case rw.moved <- struct{}{}:
		default:
		}
	}
}

// observe keeps known in step with an event the informer receives.
func (s *shardedListerWatcher) observe(ev watch.Event) {
	if ev.Type != watch.Added && ev.Type != watch.Modified && ev.Type != watch.Deleted {
		return
	}
	key := nameOf(ev.Object)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Type == watch.Deleted {
		delete(s.known, key)
	} else {
		s.known[key] = struct{}{}
	}
}

// blank is an empty object of the informer's type with only a name and a resource version.
func (s *shardedListerWatcher) blank(key types.NamespacedName, rv string) runtime.Object {
	obj := reflect.New(reflect.TypeOf(s.example).Elem()).Interface().(runtime.Object)
	if a, err := meta.Accessor(obj); err == nil {
		a.SetNamespace(key.Namespace)
		a.SetName(key.Name)
		a.SetResourceVersion(rv)
	}
	return obj
}

func nameOf(obj runtime.Object) types.NamespacedName {
	a, err := meta.Accessor(obj)
	if err != nil {
		return types.NamespacedName{}
	}
	return types.NamespacedName{Namespace: a.GetNamespace(), Name: a.GetName()}
}

// rangeWatch is an informer's watch of a range; it moves to a new range in
// place (see shardedListerWatcher).
type rangeWatch struct {
	s           *shardedListerWatcher
	ctx         context.Context
	inner       watch.Interface
	selector    string
	initialDone bool // past the initial events of a watch list, if it is one
	out         chan watch.Event
	stop        chan struct{}
	moved       chan struct{}
	once        sync.Once
}

func (rw *rangeWatch) ResultChan() <-chan watch.Event { return rw.out }
func (rw *rangeWatch) Stop()                          { rw.once.Do(func() { close(rw.stop) }) }

func (rw *rangeWatch) run() {
	defer func() {
		rw.inner.Stop()
		close(rw.out)
		rw.s.mu.Lock()
		delete(rw.s.watches, rw)
		rw.s.mu.Unlock()
	}()
	for {
		select {
		case ev, ok := <-rw.inner.ResultChan():
			if !ok {
				return
			}
			rw.s.observe(ev)
			if ev.Type == watch.Bookmark {
				if a, err := meta.Accessor(ev.Object); err == nil && a.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
					rw.initialDone = true
				}
			}
			if !rw.send(ev) {
				return
			}
		case <-rw.moved:
			if !rw.move() {
				// The reflector lists again (after its backoff) on an expired watch.
				rw.send(watch.Event{Type: watch.Error, Object: &metav1.Status{Status: metav1.StatusFailure, Code: 410,
					Reason: metav1.StatusReasonExpired, Message: "the member's shard range changed"}})
				return
			}
		case <-rw.stop:
			return
		}
	}
}

func (rw *rangeWatch) send(ev watch.Event) bool {
	select {
	case rw.out <- ev:
		return true
	case <-rw.stop:
		return false
	}
}

// move lists the new range, sends what changed and watches on from there; false
// if it could not (the caller ends the watch, and the informer lists again).
func (rw *rangeWatch) move() bool {
	if rw.s.member.Selector() == nil {
		// Not live (stopping, or its Lease expired): the controller owns nothing
		// meanwhile; keep the range rather than list every breaker.
		return true
	}
	want := rw.s.selector(rw.ctx)
	if want == rw.selector {
		return true
	}
	if !rw.initialDone {
		return false
	}
	rw.inner.Stop()
	rw.inner = watch.NewEmptyWatch()
	list, err := rw.s.inner.ListWithContext(rw.ctx, metav1.ListOptions{ShardSelector: want})
	if err != nil {
		return false
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return false
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return false
	}
	rv := lm.GetResourceVersion()
	in := make(map[types.NamespacedName]struct{}, len(items))
	for _, item := range items {
		in[nameOf(item)] = struct{}{}
	}
	rw.s.mu.Lock()
	var gone []types.NamespacedName
	for key := range rw.s.known {
		if _, ok := in[key]; !ok {
			gone = append(gone, key)
		}
	}
	was := rw.s.known
	rw.s.known = in
	rw.s.mu.Unlock()
	for _, key := range gone {
		if !rw.send(watch.Event{Type: watch.Deleted, Object: rw.s.blank(key, rv)}) {
			return true // stopped: run returns
		}
	}
	for _, item := range items {
		t := watch.Modified
		if _, ok := was[nameOf(item)]; !ok {
			t = watch.Added
		}
		if !rw.send(watch.Event{Type: t, Object: item}) {
			return true
		}
	}
	if !rw.send(watch.Event{Type: watch.Bookmark, Object: rw.s.blank(types.NamespacedName{}, rv)}) {
		return true
	}
	w, err := rw.s.inner.WatchWithContext(rw.ctx, metav1.ListOptions{ShardSelector: want, ResourceVersion: rv,
		AllowWatchBookmarks: true, Watch: true})
	if err != nil {
		return false
	}
	rw.inner, rw.selector = w, want
	return true
}
