package ring

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// fakeServer lists and watches a fixed set of objects, applying shard
// selectors as the API server does.
type fakeServer struct {
	objs    []corev1.ConfigMap
	mu      sync.Mutex
	watches []metav1.ListOptions
	fakes   []*watch.FakeWatcher
}

func (f *fakeServer) ListWithContext(_ context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	list := &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "100"}}
	for i := range f.objs {
		if in(opts.ShardSelector, &f.objs[i]) {
			list.Items = append(list.Items, f.objs[i])
		}
	}
	return list, nil
}

func (f *fakeServer) WatchWithContext(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := watch.NewFake()
	f.watches, f.fakes = append(f.watches, opts), append(f.fakes, w)
	return w, nil
}

// in applies a selector string as made by Selector (one range).
func in(selector string, obj runtime.Object) bool {
	if selector == "" {
		return true
	}
	body := strings.TrimSuffix(strings.TrimPrefix(selector, "shardRange("+UIDField+", '"), "')")
	start, end, _ := strings.Cut(body, "', '")
	ok, _ := sharding.NewSelector(sharding.ShardRangeRequirement{Key: UIDField, Start: start, End: end}).Matches(obj)
	return ok
}

func TestTheInformersWatchMovesToTheNewRangeInPlace(t *testing.T) {
	g := NewWithT(t)
	server := &fakeServer{}
	for i := range 40 {
		server.objs = append(server.objs, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: fmt.Sprintf("cm-%02d", i), UID: types.UID(fmt.Sprintf("uid-%02d", i)), ResourceVersion: "90"}})
	}
	m := &Member{Identity: "a"}
	m.set([]string{"a", "b"})
	s := &shardedListerWatcher{inner: server, member: m, example: &corev1.ConfigMap{}}
	s.serverFilters.Store(1)
	ctx := context.Background()
	owned := func(members []string) map[string]bool {
		sel, _ := Selector(members, "a")
		out := map[string]bool{}
		for i := range server.objs {
			if ok, _ := sel.Matches(&server.objs[i]); ok {
				out[server.objs[i].Name] = true
			}
		}
		return out
	}

	list, err := s.list(ctx, metav1.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(list.(*corev1.ConfigMapList).Items).To(HaveLen(len(owned([]string{"a", "b"}))))
	w, err := s.watch(ctx, metav1.ListOptions{ResourceVersion: "100"})
	g.Expect(err).NotTo(HaveOccurred())
	sel, _ := Selector([]string{"a", "b"}, "a")
	g.Expect(server.watches[0].ShardSelector).To(Equal(sel.String()))

	// events reads what the informer receives until the bookmark that ends a move.
	events := func() map[watch.EventType][]string {
		out := map[watch.EventType][]string{}
		for {
			select {
			case ev := <-w.ResultChan():
				if ev.Type == watch.Bookmark {
					g.Expect(ev.Object.(*corev1.ConfigMap).ResourceVersion).To(Equal("100"))
					return out
				}
				out[ev.Type] = append(out[ev.Type], ev.Object.(*corev1.ConfigMap).Name)
			case <-time.After(5 * time.Second):
				t.Fatalf("no bookmark; so far %v", out)
			}
		}
	}

	// b leaves: a owns everything. What a held is sent as modified, the rest as added.
	m.set([]string{"a"})
	s.rangeChanged()
	got := events()
	g.Expect(got[watch.Deleted]).To(BeEmpty())
	g.Expect(got[watch.Modified]).To(HaveLen(len(owned([]string{"a", "b"}))))
	g.Expect(len(got[watch.Added]) + len(got[watch.Modified])).To(Equal(40))
	g.Eventually(func() int { server.mu.Lock(); defer server.mu.Unlock(); return len(server.watches) }).Should(Equal(2))
	everything, _ := Selector([]string{"a"}, "a")
	g.Expect(server.watches[1].ShardSelector).To(Equal(everything.String()))
	g.Expect(server.watches[1].ResourceVersion).To(Equal("100"), "the new watch goes on from the list")

	// Events of the new watch reach the informer.
	server.fakes[1].Modify(&server.objs[0])
	g.Expect((<-w.ResultChan()).Object.(*corev1.ConfigMap).Name).To(Equal("cm-00"))

	// c and d join: what left a's range is deleted, nothing is added.
	m.set([]string{"a", "c", "d"})
	s.rangeChanged()
	got = events()
	want := owned([]string{"a", "c", "d"})
	g.Expect(got[watch.Added]).To(BeEmpty())
	g.Expect(got[watch.Modified]).To(HaveLen(len(want)))
	g.Expect(got[watch.Deleted]).To(HaveLen(40 - len(want)))
	for _, name := range got[watch.Deleted] {
		g.Expect(want[name]).To(BeFalse(), "%s is still a's", name)
	}

	// A member that is not live keeps its range rather than list everything.
	m.set(nil)
	s.rangeChanged()
	time.Sleep(100 * time.Millisecond)
	server.mu.Lock()
	g.Expect(server.watches).To(HaveLen(3))
	server.mu.Unlock()
	w.Stop()
}
