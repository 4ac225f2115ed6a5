package apiready

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// server is a fake API server for a ListerWatcher: down or up, it counts the
// requests it was sent and the /readyz probes.
type server struct {
	down     atomic.Bool
	requests atomic.Int32
	probes   atomic.Int32
	// fail, if set, is what an up server answers a request with.
	fail error
	// watcher is the watch an up server returns.
	watcher *watch.FakeWatcher
	// items are what an up server lists.
	mu    sync.Mutex
	items []corev1.ConfigMap
}

// refused is what a request to a port nobody listens on returns.
var refused = &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api/v1/configmaps",
	Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}

func (s *server) gate(interval time.Duration) *Gate {
	return newGate(func(context.Context) bool { s.probes.Add(1); return !s.down.Load() }, interval)
}

// answer is the error a request gets: refused while down, else fail.
func (s *server) answer() error {
	s.requests.Add(1)
	if s.down.Load() {
		return refused
	}
	return s.fail
}

func (s *server) listerWatcher() *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			if err := s.answer(); err != nil {
				return nil, err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			return &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: s.items}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			if err := s.answer(); err != nil {
				return nil, err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.watcher, nil
		},
	}
}

func TestListAndWatchWaitForTheAPIServerInsteadOfFailing(t *testing.T) {
	for _, call := range []struct {
		name string
		do   func(context.Context, toolscache.ListerWatcher) error
	}{
		{"list", func(ctx context.Context, lw toolscache.ListerWatcher) error {
			_, err := toolscache.ToListerWatcherWithContext(lw).ListWithContext(ctx, metav1.ListOptions{})
			return err
		}},
		{"watch", func(ctx context.Context, lw toolscache.ListerWatcher) error {
			_, err := toolscache.ToListerWatcherWithContext(lw).WatchWithContext(ctx, metav1.ListOptions{})
			return err
		}},
	} {
		t.Run(call.name, func(t *testing.T) {
			g := NewWithT(t)
			s := &server{watcher: watch.NewFake()}
			s.down.Store(true)
			lw := s.gate(20 * time.Millisecond).ListerWatcher(s.listerWatcher())
			done := make(chan error, 1)
			go func() { done <- call.do(t.Context(), lw) }()
			g.Consistently(done, 500*time.Millisecond).ShouldNot(Receive(), "the request failed while the server was down")
			back := time.Now()
			s.down.Store(false)
			var err error
			g.Eventually(done, 2*time.Second).Should(Receive(&err))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(time.Since(back)).To(BeNumerically("<", time.Second), "the request went out long after the server's return")
			// One request failed, one went out after the return: the Gate, not
			// the request, polled the server meanwhile.
			g.Expect(s.requests.Load()).To(BeEquivalentTo(2))
			g.Expect(s.probes.Load()).To(BeNumerically(">=", 10))
		})
	}
}

func TestFailuresOfAServerThatIsUpPassThroughAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   error
		probes int32
	}{
		// A refusal is an answer: the server is up, nothing to wait for.
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "s", nil), 0},
		{"not found", apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "s"), 0},
		// A 5xx may come from a server that is not ready: one probe says it is.
		{"internal error", apierrors.NewInternalError(context.DeadlineExceeded), 1},
		{"unavailable", apierrors.NewServiceUnavailable("etcd"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			s := &server{fail: tc.fail}
			lw := toolscache.ToListerWatcherWithContext(s.gate(20 * time.Millisecond).ListerWatcher(s.listerWatcher()))
			start := time.Now()
			_, err := lw.ListWithContext(t.Context(), metav1.ListOptions{})
			g.Expect(err).To(MatchError(tc.fail))
			g.Expect(time.Since(start)).To(BeNumerically("<", 200*time.Millisecond))
			g.Expect(s.requests.Load()).To(BeEquivalentTo(1))
			g.Expect(s.probes.Load()).To(Equal(tc.probes))
		})
	}
}

func TestAWaitEndsWithItsContext(t *testing.T) {
	g := NewWithT(t)
	s := &server{}
	s.down.Store(true)
	lw := toolscache.ToListerWatcherWithContext(s.gate(20 * time.Millisecond).ListerWatcher(s.listerWatcher()))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := lw.WatchWithContext(ctx, metav1.ListOptions{})
		done <- err
	}()
	g.Consistently(done, 200*time.Millisecond).ShouldNot(Receive())
	cancel()
	var err error
	g.Eventually(done, time.Second).Should(Receive(&err))
	g.Expect(err).To(HaveOccurred(), "a stopped informer's request must end, not report success")
	g.Expect(s.requests.Load()).To(BeEquivalentTo(1))
}

func TestManyWaitingRequestsShareOneProbePerInterval(t *testing.T) {
	g := NewWithT(t)
	s := &server{}
	s.down.Store(true)
	const interval = 50 * time.Millisecond
	gate := s.gate(interval)
	var wg sync.WaitGroup
	for range 100 {
		lw := toolscache.ToListerWatcherWithContext(gate.ListerWatcher(s.listerWatcher()))
		wg.Go(func() { _, _ = lw.ListWithContext(t.Context(), metav1.ListOptions{}) })
	}
	time.Sleep(time.Second)
	s.down.Store(false)
	wg.Wait()
	// 1 s of outage at one probe per 50 ms is about 20 probes, however many wait.
	g.Expect(s.probes.Load()).To(BeNumerically("<=", 30))
	g.Expect(s.requests.Load()).To(BeEquivalentTo(200))
}

func TestAnInformerListsAgainWithinAPollOfTheServersReturn(t *testing.T) {
	g := NewWithT(t)
	s := &server{watcher: watch.NewFakeWithChanSize(1, false)}
	// The fake watch sends no bookmark: list, then watch.
	lw := toolscache.ToListWatcherWithWatchListSemantics(s.listerWatcher(), fakeClient{})
	informer := s.gate(PollInterval).NewInformer(lw, &corev1.ConfigMap{}, 0, toolscache.Indexers{})
	go informer.RunWithContext(t.Context())
	g.Eventually(informer.HasSynced, 5*time.Second).Should(BeTrue())

	// The server goes away for longer than the reflector's backoff needs to
	// reach several seconds; an object is created meanwhile. Whether the
	// reflector lists or watches again, it learns of it at once.
	s.down.Store(true)
	created := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "new", ResourceVersion: "2"}}
	s.mu.Lock()
	s.watcher.Stop()
	s.watcher = watch.NewFakeWithChanSize(1, false)
	s.watcher.Add(created.DeepCopy())
	s.items = []corev1.ConfigMap{created}
	s.mu.Unlock()
	time.Sleep(6 * time.Second)
	back := time.Now()
	s.down.Store(false)
	g.Eventually(func() []string { return informer.GetStore().ListKeys() }, 3*time.Second, 10*time.Millisecond).
		Should(ConsistOf("ns/new"))
	t.Logf("the informer had the new object %s after the server's return", time.Since(back).Round(time.Millisecond))
	g.Expect(time.Since(back)).To(BeNumerically("<", time.Second))
}

func TestWatchListSupportIsPassedOn(t *testing.T) {
	g := NewWithT(t)
	gate := newGate(func(context.Context) bool { return true }, time.Millisecond)
	lw := &toolscache.ListWatch{}
	unsupported := toolscache.ToListWatcherWithWatchListSemantics(lw, fakeClient{})
	g.Expect(gate.ListerWatcher(unsupported).(interface{ IsWatchListSemanticsUnSupported() bool }).
		IsWatchListSemanticsUnSupported()).To(BeTrue())
	g.Expect(gate.ListerWatcher(lw).(interface{ IsWatchListSemanticsUnSupported() bool }).
		IsWatchListSemanticsUnSupported()).To(BeFalse())
}

type fakeClient struct{}

func (fakeClient) IsWatchListSemanticsUnSupported() bool { return true }

func TestReadyzDecidesWhetherTheServerIsBack(t *testing.T) {
	g := NewWithT(t)
	var code atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	gate, err := New(&rest.Config{Host: srv.URL})
	g.Expect(err).NotTo(HaveOccurred())
	for _, tc := range []struct {
		code  int32
		ready bool
	}{
		{http.StatusOK, true},
		{http.StatusInternalServerError, false}, // a readyz check fails
		{http.StatusServiceUnavailable, false},
		{http.StatusForbidden, true}, // up, though it will not say more
	} {
		code.Store(tc.code)
		g.Expect(gate.probe(t.Context())).To(Equal(tc.ready), "readyz answered %d", tc.code)
	}
	srv.Close()
	g.Expect(gate.probe(t.Context())).To(BeFalse(), "nobody answers")
}
