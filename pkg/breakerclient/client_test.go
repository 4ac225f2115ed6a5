package breakerclient

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

var errDependency = errors.New("dependency failed")

func succeed(context.Context) error { return nil }

func TestCallRunsWhileClosedRejectsWithinMillisecondsOfTheOpenEventAndRecovers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "user-api", "60s", circuitv1alpha1.StateClosed)
	c, err := New(cfg, Options{Namespace: ns})
	g.Expect(err).NotTo(HaveOccurred())
	var lastEvent atomic.Int64
	c.eventHook = func() { lastEvent.Store(time.Now().UnixNano()) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.Expect(c.StartAndWait(ctx)).To(Succeed())

	var ran atomic.Int32
	count := func(context.Context) error { ran.Add(1); return nil }
	g.Expect(c.Call(ctx, "user-api", count)).To(Succeed())
	g.Expect(ran.Load()).To(BeEquivalentTo(1))
	g.Expect(c.State("user-api")).To(Equal(StateClosed))

	retryAt := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	setState(t, ns, "user-api", circuitv1alpha1.StateOpen, retryAt)
	var rejected error
	deadline := time.Now().Add(10 * time.Second)
	for rejected == nil && time.Now().Before(deadline) {
		if err := c.Call(ctx, "user-api", succeed); errors.Is(err, ErrOpen) {
			rejected = err
			break
		}
		runtime.Gosched()
	}
	lag := time.Since(time.Unix(0, lastEvent.Load()))
	g.Expect(rejected).To(HaveOccurred(), "Call never rejected")
	t.Logf("first rejection %s after the watch event", lag)
	g.Expect(lag).To(BeNumerically("<", 2*time.Millisecond), "rejects within a millisecond or two of the watch event")
	var open *OpenError
	g.Expect(errors.As(rejected, &open)).To(BeTrue())
	g.Expect(open.State).To(Equal(StateOpen))
	g.Expect(open.Local).To(BeFalse())
	g.Expect(open.RetryAt).To(BeTemporally("==", retryAt))
	g.Expect(open.Error()).To(ContainSubstring(ns + "/user-api is Open until"))

	before := ran.Load()
	start := time.Now()
	for range 100 {
		g.Expect(c.Call(ctx, "user-api", count)).To(MatchError(ErrOpen))
	}
	g.Expect(ran.Load()).To(Equal(before), "fn never runs while Open")
	g.Expect(time.Since(start)).To(BeNumerically("<", 10*time.Millisecond), "rejections are at once")
	g.Expect(c.State(ns + "/user-api")).To(Equal(StateOpen))

	setState(t, ns, "user-api", circuitv1alpha1.StateClosed, time.Time{})
	g.Eventually(func() error { return c.Call(ctx, "user-api", count) }).
		WithTimeout(10 * time.Second).WithPolling(time.Millisecond).Should(Succeed())
	g.Expect(ran.Load()).To(Equal(before + 1))
}

func TestCallReturnsTheErrorOfFn(t *testing.T) {
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateClosed)
	c := startClient(t, Options{Namespace: ns})
	err := c.Call(context.Background(), "api", func(context.Context) error { return errDependency })
	NewWithT(t).Expect(err).To(MatchError(errDependency))
}

func TestUnknownBreakersFailOpenUnlessFailClosedIsSet(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	ctx := context.Background()

	open := startClient(t, Options{Namespace: ns})
	ran := false
	g.Expect(open.Call(ctx, "missing", func(context.Context) error { ran = true; return nil })).To(Succeed())
	g.Expect(ran).To(BeTrue())
	g.Expect(open.State("missing")).To(Equal(StateUnknown))

	// A breaker the operator has not given a state yet is unknown too.
	g.Expect(k8sClient.Create(ctx, newBreaker(ns, "fresh", "60s"))).To(Succeed())
	g.Eventually(open.lookup).WithArguments(key{ns, "fresh"}).WithTimeout(10 * time.Second).ShouldNot(BeNil())
	g.Expect(open.State("fresh")).To(Equal(StateUnknown))
	g.Expect(open.Call(ctx, "fresh", succeed)).To(Succeed())

	closed := startClient(t, Options{Namespace: ns, FailClosedWhenUnknown: true})
	err := closed.Call(ctx, "missing", func(context.Context) error { t.Fatal("fn ran for an unknown breaker"); return nil })
	g.Expect(err).To(MatchError(ErrOpen))
	g.Expect(err).To(MatchError(ErrUnknown))
	g.Expect(closed.Call(ctx, "fresh", succeed)).To(MatchError(ErrUnknown))
}

func TestACacheNotYetSyncedFailsOpenUnlessFailClosedIsSet(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateOpen)
	notStarted, err := New(cfg, Options{Namespace: ns})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(notStarted.Synced()).To(BeFalse())
	g.Expect(notStarted.Call(context.Background(), "api", succeed)).To(Succeed())

	strict, err := New(cfg, Options{Namespace: ns, FailClosedWhenUnknown: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strict.Call(context.Background(), "api", succeed)).To(MatchError(ErrUnknown))
}

func TestHalfOpenRejectsByDefaultAndLetsAShareThroughWhenAsked(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateHalfOpen)
	ctx := context.Background()

	var open *OpenError
	err := startClient(t, Options{Namespace: ns}).Call(ctx, "api", succeed)
	g.Expect(errors.As(err, &open)).To(BeTrue())
	g.Expect(open.State).To(Equal(StateHalfOpen))

	all := startClient(t, Options{Namespace: ns, HalfOpenPassShare: 1})
	g.Expect(all.Call(ctx, "api", succeed)).To(Succeed())

	half := startClient(t, Options{Namespace: ns, HalfOpenPassShare: 0.5})
	passed := 0
	for range 1000 {
		if half.Call(ctx, "api", succeed) == nil {
			passed++
		}
	}
	g.Expect(passed).To(BeNumerically("~", 500, 100))

	_, err = New(cfg, Options{HalfOpenPassShare: 1.5})
	g.Expect(err).To(MatchError(ContainSubstring("HalfOpenPassShare")))
}

func TestLocalThresholdOpensForTheBreakersTimeoutAndExpires(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "30s", circuitv1alpha1.StateClosed)
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC))
	c := startClient(t, Options{Namespace: ns, LocalThreshold: 3, Clock: clk})
	ctx := context.Background()
	fail := func(context.Context) error { return errDependency }

	// A success in between restarts the count.
	g.Expect(c.Call(ctx, "api", fail)).To(MatchError(errDependency))
	g.Expect(c.Call(ctx, "api", succeed)).To(Succeed())
	g.Expect(c.Call(ctx, "api", fail)).To(MatchError(errDependency))
	g.Expect(c.Call(ctx, "api", fail)).To(MatchError(errDependency))
	g.Expect(c.State("api")).To(Equal(StateClosed))
	// A panic counts as a failure and is raised again.
	g.Expect(func() { _ = c.Call(ctx, "api", func(context.Context) error { panic("boom") }) }).To(PanicWith("boom"))

	ran := false
	err := c.Call(ctx, "api", func(context.Context) error { ran = true; return nil })
	g.Expect(ran).To(BeFalse())
	var open *OpenError
	g.Expect(errors.As(err, &open)).To(BeTrue())
	g.Expect(open.Local).To(BeTrue())
	g.Expect(open.RetryAt).To(Equal(clk.Now().Add(30 * time.Second)))
	g.Expect(open.RetryAfter(clk.Now())).To(Equal(30 * time.Second))
	g.Expect(c.State("api")).To(Equal(StateOpen))

	clk.SetTime(clk.Now().Add(29 * time.Second))
	g.Expect(c.Call(ctx, "api", succeed)).To(MatchError(ErrOpen))
	clk.SetTime(clk.Now().Add(time.Second))
	g.Expect(c.State("api")).To(Equal(StateClosed))
	// After the opening, one more failure opens it again...
	g.Expect(c.Call(ctx, "api", fail)).To(MatchError(errDependency))
	g.Expect(c.Call(ctx, "api", succeed)).To(MatchError(ErrOpen))
	clk.SetTime(clk.Now().Add(30 * time.Second))
	// ... and a success closes it.
	g.Expect(c.Call(ctx, "api", succeed)).To(Succeed())
	g.Expect(c.Call(ctx, "api", fail)).To(MatchError(errDependency))
	g.Expect(c.Call(ctx, "api", succeed)).To(Succeed())

	// Without local tracking, failures never reject.
	plain := startClient(t, Options{Namespace: ns})
	for range 10 {
		g.Expect(plain.Call(ctx, "api", fail)).To(MatchError(errDependency))
	}
}

func TestLocalThresholdForAnUnknownBreakerOpensForTheDefaultTimeout(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC))
	c := startClient(t, Options{Namespace: newNamespace(t), LocalThreshold: 1, Clock: clk})
	g.Expect(c.Call(context.Background(), "missing", func(context.Context) error { return errDependency })).To(MatchError(errDependency))
	var open *OpenError
	g.Expect(errors.As(c.Call(context.Background(), "missing", succeed), &open)).To(BeTrue())
	g.Expect(open.RetryAt).To(Equal(clk.Now().Add(defaultTimeout)))
}

func TestResetSetsANewResetAnnotationEachTimeAndForgetsLocalFailures(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateOpen)
	c := startClient(t, Options{Namespace: ns, LocalThreshold: 1})
	ctx := context.Background()
	g.Expect(c.Call(ctx, ns+"/missing", func(context.Context) error { return errDependency })).To(HaveOccurred())

	g.Expect(c.Reset(ctx, "api")).To(Succeed())
	first := annotations(g, ns, "api")[circuitv1alpha1.ResetAnnotation]
	g.Expect(first).NotTo(BeEmpty())
	time.Sleep(time.Millisecond)
	g.Expect(c.Reset(ctx, ns+"/api")).To(Succeed())
	g.Expect(annotations(g, ns, "api")[circuitv1alpha1.ResetAnnotation]).NotTo(Equal(first))

	err := c.Reset(ctx, "missing")
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	g.Expect(err).To(MatchError(ContainSubstring("resetting breaker " + ns + "/missing")))
	// The failed reset still closed the local circuit.
	g.Expect(c.Call(ctx, "missing", succeed)).To(Succeed())
}

func TestTripSetsTripUntilToNowPlusTheDuration(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateClosed)
	c := startClient(t, Options{Namespace: ns})
	before := time.Now()
	g.Expect(c.Trip(context.Background(), "api", 10*time.Minute)).To(Succeed())
	until, err := time.Parse(time.RFC3339, annotations(g, ns, "api")[circuitv1alpha1.TripUntilAnnotation])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(until).To(BeTemporally("~", before.Add(10*time.Minute), 2*time.Second))
	g.Expect(until.Location()).To(Equal(time.UTC))

	g.Expect(c.Trip(context.Background(), "api", 0)).To(MatchError(ContainSubstring("not positive")))
}

func annotations(g Gomega, ns, name string) map[string]string {
	cb := &circuitv1alpha1.CircuitBreaker{}
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cb)).To(Succeed())
	return cb.Annotations
}

func TestTheWatchIsScopedToTheNamespaceAndTheLabelSelector(t *testing.T) {
	g := NewWithT(t)
	ns, other := newNamespace(t), newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateOpen)
	createBreaker(t, other, "api", "60s", circuitv1alpha1.StateOpen)
	ctx := context.Background()

	scoped := startClient(t, Options{Namespace: ns})
	g.Expect(scoped.State("api")).To(Equal(StateOpen))
	g.Expect(scoped.State(other + "/api")).To(Equal(StateUnknown))

	everywhere := startClient(t, Options{Namespace: ns, AllNamespaces: true})
	g.Expect(everywhere.State(other + "/api")).To(Equal(StateOpen))

	labelled := newBreaker(ns, "labelled", "60s")
	labelled.Labels = map[string]string{"app": "checkout"}
	g.Expect(k8sClient.Create(ctx, labelled)).To(Succeed())
	setState(t, ns, "labelled", circuitv1alpha1.StateOpen, time.Time{})
	selected := startClient(t, Options{Namespace: ns, LabelSelector: labels.SelectorFromSet(labels.Set{"app": "checkout"})})
	g.Expect(selected.State("labelled")).To(Equal(StateOpen))
	g.Expect(selected.State("api")).To(Equal(StateUnknown))
}

func TestDeletedBreakersBecomeUnknown(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateOpen)
	c := startClient(t, Options{Namespace: ns})
	g.Expect(c.State("api")).To(Equal(StateOpen))
	g.Expect(k8sClient.Delete(context.Background(), newBreaker(ns, "api", "60s"))).To(Succeed())
	g.Eventually(c.State).WithArguments("api").WithTimeout(10 * time.Second).Should(Equal(StateUnknown))
}

func TestMetricsCountCallsByBreakerAndResult(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateClosed)
	createBreaker(t, ns, "down", "60s", circuitv1alpha1.StateOpen)
	reg := prometheus.NewPedanticRegistry()
	c := startClient(t, Options{Namespace: ns, Registerer: reg})
	ctx := context.Background()
	_ = c.Call(ctx, "api", succeed)
	_ = c.Call(ctx, "api", succeed)
	_ = c.Call(ctx, "api", func(context.Context) error { return errDependency })
	_ = c.Call(ctx, "down", succeed)
	_ = c.Call(ctx, "missing", succeed)

	calls := func(name, result string) float64 {
		return testutil.ToFloat64(c.calls.WithLabelValues(ns, name, result))
	}
	g.Expect(calls("api", "success")).To(BeEquivalentTo(2))
	g.Expect(calls("api", "failure")).To(BeEquivalentTo(1))
	g.Expect(calls("down", "rejected")).To(BeEquivalentTo(1))
	g.Expect(calls("missing", "success")).To(BeEquivalentTo(1))
	g.Expect(testutil.GatherAndCount(reg, "circuitbreaker_client_calls_total")).To(Equal(7))

	// A second Client on the same registry shares the counter.
	again := startClient(t, Options{Namespace: ns, Registerer: reg})
	_ = again.Call(ctx, "api", succeed)
	g.Expect(calls("api", "success")).To(BeEquivalentTo(3))
}

// BenchmarkCallClosed measures what Call adds to a call on a Closed breaker:
// a map lookup under a read lock, with and without metrics and local tracking.
func BenchmarkCallClosed(b *testing.B) {
	ns := newNamespace(b)
	createBreaker(b, ns, "api", "60s", circuitv1alpha1.StateClosed)
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"plain", Options{Namespace: ns}},
		{"metrics+local", Options{Namespace: ns, Registerer: prometheus.NewRegistry(), LocalThreshold: 5}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := startClient(b, bc.opts)
			ctx := context.Background()
			if c.State("api") != StateClosed {
				b.Fatal("the breaker is not Closed in the cache")
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Call(ctx, "api", succeed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConcurrentCallsWhileTheStateFlipsEndWithTheLastState(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createBreaker(t, ns, "api", "60s", circuitv1alpha1.StateClosed)
	c := startClient(t, Options{Namespace: ns, LocalThreshold: 1000, Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				_ = c.Call(ctx, "api", func(context.Context) error {
					if i%2 == 0 {
						return errDependency
					}
					return nil
				})
				_ = c.State("api")
			}
		}()
	}
	for i := range 6 {
		state := circuitv1alpha1.StateOpen
		if i%2 == 1 {
			state = circuitv1alpha1.StateClosed
		}
		setState(t, ns, "api", state, time.Now().Add(time.Minute))
		time.Sleep(20 * time.Millisecond)
	}
	setState(t, ns, "api", circuitv1alpha1.StateOpen, time.Now().Add(time.Minute))
	g.Eventually(c.State).WithArguments("api").WithTimeout(10 * time.Second).Should(Equal(StateOpen))
	cancel()
	for range 8 {
		<-done
	}
}
