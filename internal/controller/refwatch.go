package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// refKind is the kind of object a breaker may reference.
type refKind string

const (
	refSecret    refKind = "secrets"
	refConfigMap refKind = "configmaps"
)

// ref names a Secret or ConfigMap in a breaker's namespace.
type ref struct {
	kind      refKind
	namespace string
	name      string
}

// refWatcher watches exactly the Secrets and ConfigMaps that breakers
// reference, each through its own list+watch restricted by a field selector on
// its name, rather than caching every Secret of the cluster. When a watched
// object changes, the breakers that use it are enqueued.
type refWatcher struct {
	client      kubernetes.Interface
	newInformer func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer
	mu          sync.Mutex
	ctx         context.Context
	enqueue     func(types.NamespacedName)
	watches     map[ref]*refWatch
	uses        map[types.NamespacedName][]ref
}

// errForbidden: the manager may not list or watch a referenced object.
var errForbidden = errors.New("forbidden")

type refWatch struct {
	informer toolscache.SharedIndexInformer
	// forbidden is set while the API server refuses the watch (RBAC).
	forbidden atomic.Bool
	stop      context.CancelFunc
	users     map[types.NamespacedName]struct{}
}

// newRefWatcher watches through client, building its informers with
// newInformer (client-go's own if nil).
func newRefWatcher(client kubernetes.Interface,
	newInformer func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer) *refWatcher {
	if newInformer == nil {
		newInformer = toolscache.NewSharedIndexInformer
	}
	return &refWatcher{
		client:      client,
		newInformer: newInformer,
		ctx:         context.Background(),
		watches:     map[ref]*refWatch{},
		uses:        map[types.NamespacedName][]ref{},
	}
}

// start sets the context watches run under and the function that enqueues a breaker.
func (w *refWatcher) start(ctx context.Context, enqueue func(types.NamespacedName)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx, w.enqueue = ctx, enqueue
}

// use records that breaker references exactly refs, starting watches for new
// references and stopping those no breaker uses any more.
func (w *refWatcher) use(breaker types.NamespacedName, refs []ref) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.uses[breaker] {
		if slices.Contains(refs, r) {
			continue // still used: the watch goes on
		}
		if rw := w.watches[r]; rw != nil {
			delete(rw.users, breaker)
			if len(rw.users) == 0 {
				rw.stop()
				delete(w.watches, r)
			}
		}
	}
	if len(refs) == 0 {
		delete(w.uses, breaker)
		return
	}
	w.uses[breaker] = refs
	for _, r := range refs {
		rw := w.watches[r]
		if rw == nil {
			rw = w.watch(r)
			w.watches[r] = rw
		}
		rw.users[breaker] = struct{}{}
	}
}

func (w *refWatcher) watch(r ref) *refWatch {
	lw := toolscache.NewListWatchFromClient(w.client.CoreV1().RESTClient(), string(r.kind), r.namespace,
		fields.OneTermEqualSelector("metadata.name", r.name))
	var obj runtime.Object = &corev1.Secret{}
	if r.kind == refConfigMap {
		obj = &corev1.ConfigMap{}
	}
	informer := w.newInformer(lw, obj, 0, toolscache.Indexers{})
	rw := &refWatch{informer: informer, users: map[types.NamespacedName]struct{}{}}
	notify := func(any) { w.notify(r) }
	_, _ = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: notify,
	})
	_ = informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, rf *toolscache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			if !rw.forbidden.Swap(true) {
				w.notify(r)
			}
			return
		}
		toolscache.DefaultWatchErrorHandler(ctx, rf, err)
	})
	ctx, cancel := context.WithCancel(w.ctx)
	rw.stop = cancel
	go informer.RunWithContext(ctx)
	go func() {
		// Once the watch syncs (also after RBAC was granted late), the users
		// learn the answer: an object that does not exist sends no event.
		if toolscache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			rw.forbidden.Store(false)
			w.notify(r)
		}
	}()
	return rw
}

func (w *refWatcher) notify(r ref) {
	w.mu.Lock()
	rw := w.watches[r]
	var users []types.NamespacedName
	if rw != nil {
		for u := range rw.users {
			users = append(users, u)
		}
	}
	enqueue := w.enqueue
	w.mu.Unlock()
	for _, u := range users {
		if enqueue != nil {
			enqueue(u)
		}
	}
}

// get returns the watched object, waiting briefly for a new watch to fill.
// found is false when it does not exist.
func (w *refWatcher) get(ctx context.Context, r ref) (obj any, found bool, err error) {
	w.mu.Lock()
	rw := w.watches[r]
	w.mu.Unlock()
	if rw == nil {
		return nil, false, fmt.Errorf("%s %s/%s is not watched", r.kind, r.namespace, r.name)
	}
	if !rw.informer.HasSynced() {
		// A new watch syncs in milliseconds; one the API server refuses never does.
		synced := func(context.Context) (bool, error) {
			return rw.informer.HasSynced() || rw.forbidden.Load(), nil
		}
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, synced); err != nil {
			return nil, false, fmt.Errorf("watch of %s %s/%s did not sync", r.kind, r.namespace, r.name)
		}
		if !rw.informer.HasSynced() {
			return nil, false, errForbidden
		}
	}
	return rw.informer.GetStore().GetByKey(r.namespace + "/" + r.name)
}

// watched returns how many objects are watched (for tests).
func (w *refWatcher) watched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watches)
}
