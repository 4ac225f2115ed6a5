package controller

import (
	"hash/fnv"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// consistency keeps decisions taken on the cache honest.
type consistency struct {
	// locks serialize the decisions on one breaker (Reconcile and the quiet
	// path), so that the same results are never recorded by both; striped, so
	// that their number is bounded.
	locks [1024]sync.Mutex
	// writes remembers this manager's last writes that the cache may not show yet.
	writes lastWrites
}

// lock locks key's stripe and returns its unlock.
func (c *consistency) lock(key runner.Key) (unlock func()) {
	l := c.stripe(key)
	l.Lock()
	return l.Unlock
}

// tryLock locks key's stripe if it is free.
func (c *consistency) tryLock(key runner.Key) (unlock func(), ok bool) {
	l := c.stripe(key)
	if !l.TryLock() {
		return nil, false
	}
	return l.Unlock, true
}

func (c *consistency) stripe(key runner.Key) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.Namespace))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key.Name))
	return &c.locks[h.Sum32()%uint32(len(c.locks))]
}

// writtenKind tells apart the objects whose writes are remembered.
type writtenKind string

const (
	breakerKind writtenKind = "CircuitBreaker"
	sliceKind   writtenKind = "EndpointSlice"
)

type writtenKey struct {
	kind writtenKind
	name types.NamespacedName
}

// lastWrites holds the resourceVersion of each object as this manager last
// wrote it, until the cache shows it: read-your-writes for a cache that lags.
// Resource versions are compared only for equality, as the API asks; an object
// whose cache never shows the recorded one (a later writer's version arrived
// through a relist) keeps being read from the server, which is always safe.
type lastWrites struct{ m sync.Map }

// wrote records that this manager wrote the object at resourceVersion rv.
func (w *lastWrites) wrote(kind writtenKind, name types.NamespacedName, rv string) {
	w.m.Store(writtenKey{kind, name}, rv)
}

// awaits reports whether a write of the object by this manager may not be in
// the cache yet.
func (w *lastWrites) awaits(kind writtenKind, name types.NamespacedName) bool {
	_, written := w.m.Load(writtenKey{kind, name})
	return written
}

// cacheShows reports whether the cached object (at resourceVersion rv) is at
// least this manager's last write of it. Only then can a decision on the cache
// be trusted: on a cache behind that write, "nothing changes" could be wrong.
// Once the cache shows the write, it is forgotten.
func (w *lastWrites) cacheShows(kind writtenKind, name types.NamespacedName, rv string) bool {
	k := writtenKey{kind, name}
	last, written := w.m.Load(k)
	if !written {
		return true
	}
	if last.(string) == rv {
		w.m.CompareAndDelete(k, last)
		return true
	}
	return false
}

// serverShows is told what the API server holds (resourceVersion rv): when it
// is not this manager's last write, another writer came after it, and the
// cache, which follows the server in order, will show that one.
func (w *lastWrites) serverShows(kind writtenKind, name types.NamespacedName, rv string) {
	k := writtenKey{kind, name}
	if last, written := w.m.Load(k); written && last.(string) != rv {
		w.m.CompareAndDelete(k, last)
	}
}

// forget drops what is remembered of an object that is gone.
func (w *lastWrites) forget(kind writtenKind, name types.NamespacedName) {
	w.m.Delete(writtenKey{kind, name})
}
