package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/resilience-dev/breaker-operator/internal/probe/runner"
)

// A decision on a cache that is behind this manager's last status write is
// never trusted to write nothing.
func TestQuietNeedsTheCacheToShowTheLastWrite(t *testing.T) {
	g := NewWithT(t)
	w := &lastWrites{}
	name := types.NamespacedName{Namespace: "ns", Name: "b"}
	g.Expect(w.cacheShows(breakerKind, name, "5")).To(BeTrue(), "never written by this manager")
	w.wrote(breakerKind, name, "7")
	g.Expect(w.cacheShows(breakerKind, name, "5")).To(BeFalse(), "the cache is behind")
	g.Expect(w.cacheShows(sliceKind, name, "5")).To(BeTrue(), "a slice of the same name is another object")
	g.Expect(w.cacheShows(breakerKind, name, "7")).To(BeTrue(), "the cache shows it")
	g.Expect(w.awaits(breakerKind, name)).To(BeFalse(), "dropped once seen")

	w.wrote(breakerKind, name, "9")
	w.serverShows(breakerKind, name, "9")
	g.Expect(w.awaits(breakerKind, name)).To(BeTrue(), "the server holds our write: the cache has yet to show it")
	w.serverShows(breakerKind, name, "10")
	g.Expect(w.awaits(breakerKind, name)).To(BeFalse(), "a later writer came: the cache will show that one")

	c := &consistency{}
	key := runner.Key{Namespace: "ns", Name: "b"}
	g.Expect(c.stripe(key)).To(BeIdenticalTo(c.stripe(runner.Key{Namespace: "ns", Name: "b"})))
	unlock := c.lock(key)
	_, ok := c.tryLock(key)
	g.Expect(ok).To(BeFalse(), "a Reconcile holds the breaker: the quiet path leaves it")
	unlock()
	unlock, ok = c.tryLock(key)
	g.Expect(ok).To(BeTrue())
	unlock()
}
