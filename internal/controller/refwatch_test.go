package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"
)

// A breaker reconciled again with the same references keeps their watches:
// restarting a watch on every reconcile would list the object again, and its
// sync would enqueue the breaker again, a loop that hammers the API server.
func TestReferencesStillUsedKeepTheirWatch(t *testing.T) {
	g := NewWithT(t)
	built := 0
	count := func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, ix toolscache.Indexers) toolscache.SharedIndexInformer {
		built++
		return toolscache.NewSharedIndexInformer(lw, obj, resync, ix)
	}
	w := newRefWatcher(kubefake.NewClientset(), count)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.start(ctx, func(types.NamespacedName) {})
	breaker := types.NamespacedName{Namespace: "ns", Name: "cb"}
	token, ca := ref{refSecret, "ns", "token"}, ref{refConfigMap, "ns", "ca"}

	w.use(breaker, []ref{token})
	first := w.watches[token]
	w.use(breaker, []ref{token})
	w.use(breaker, []ref{token, ca})
	g.Expect(w.watches[token]).To(BeIdenticalTo(first))
	g.Expect(built).To(Equal(2), "one informer per reference, not one per reconcile")

	w.use(breaker, []ref{ca})
	g.Expect(w.watched()).To(Equal(1), "a reference no breaker uses is no longer watched")
	w.use(breaker, nil)
	g.Expect(w.watched()).To(BeZero())
}
