package runner

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Timing in these tests is generous: the machine may be loaded. Waits for
// something that must happen are long; checks that something did not happen
// wait a short while and can only miss a fault, never invent one.
const (
	waitLimit = 5 * time.Second
	quietFor  = 300 * time.Millisecond
)

// fakeDoer records the probes it is asked to send. A probe of an address with
// the prefix "block" waits until release is closed or its context ends; one
// with the prefix "slow" waits slowFor; one with the prefix "stuck" waits for
// release and ignores its context. Every other probe returns at once.
type fakeDoer struct {
	release chan struct{}
	slowFor time.Duration
	started chan string

	mu          sync.Mutex
	calls       []probeCall
	inFlight    int
	maxInFlight int
}

type probeCall struct {
	address string
	at      time.Time
}

func newFakeDoer() *fakeDoer {
	return &fakeDoer{release: make(chan struct{}), slowFor: 2 * time.Second, started: make(chan string, 1000)}
}

func (d *fakeDoer) Probe(ctx context.Context, t probe.Target) probe.Result {
	d.mu.Lock()
	d.calls = append(d.calls, probeCall{address: t.Address, at: time.Now()})
	d.inFlight++
	d.maxInFlight = max(d.maxInFlight, d.inFlight)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inFlight--
		d.mu.Unlock()
	}()
	d.started <- t.Address

	switch {
	case strings.HasPrefix(t.Address, "stuck"):
		// A Doer that ignores its context.
		<-d.release
	case strings.HasPrefix(t.Address, "block"):
		select {
		case <-d.release:
		case <-ctx.Done():
			return probe.Result{Reason: probe.ReasonTimeout}
		}
	case strings.HasPrefix(t.Address, "slow"):
		select {
		case <-time.After(d.slowFor):
		case <-ctx.Done():
			return probe.Result{Reason: probe.ReasonTimeout}
		}
	}
	// The Runner must replace Start with its own.
	return probe.Result{Start: time.Unix(1, 0), Latency: time.Millisecond, Success: true, Reason: probe.ReasonOK}
}

func (d *fakeDoer) callCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.calls)
}

func (d *fakeDoer) callsTo(address string) []probeCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []probeCall
	for _, c := range d.calls {
		if c.address == address {
			out = append(out, c)
		}
	}
	return out
}

// startRunner returns a started Runner and the channel its notifications arrive on.
func startRunner(t *testing.T, d *fakeDoer, maxInFlight int) (*Runner, chan Key) {
	t.Helper()
	return startRunnerWith(t, d, Limits{InFlight: maxInFlight})
}

func startRunnerWith(t *testing.T, d Doer, limits Limits) (*Runner, chan Key) {
	t.Helper()
	r := NewRunner(d, limits)
	notified := make(chan Key, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.Start(ctx, func(k Key) { notified <- k })
	return r, notified
}

func runnerKey(name string) Key { return Key{Namespace: "ns", Name: name} }

func tcpTarget(address string) probe.Target {
	return probe.Target{Scheme: probe.TCP, Address: address, Timeout: time.Second}
}

func waitStarted(t *testing.T, d *fakeDoer, address string) {
	t.Helper()
	select {
	case got := <-d.started:
		if got != address {
			t.Fatalf("probe of %q started, want %q", got, address)
		}
	case <-time.After(waitLimit):
		t.Fatalf("probe of %q did not start within %v", address, waitLimit)
	}
}

func waitNotified(t *testing.T, notified <-chan Key, want Key) {
	t.Helper()
	select {
	case got := <-notified:
		if got != want {
			t.Fatalf("notified of %v, want %v", got, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("no notification for %v within %v", want, waitLimit)
	}
}

func expectNoNotification(t *testing.T, notified <-chan Key) {
	t.Helper()
	select {
	case got := <-notified:
		t.Fatalf("unexpected notification for %v", got)
	case <-time.After(quietFor):
	}
}

func expectNoProbe(t *testing.T, d *fakeDoer) {
	t.Helper()
	select {
	case got := <-d.started:
		t.Fatalf("unexpected probe of %q", got)
	case <-time.After(quietFor):
	}
}

func TestRunnerFiresAScheduledProbeAtItsTime(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")
	at := time.Now().Add(400 * time.Millisecond)

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: at})
	waitNotified(t, notified, k)

	calls := d.callsTo("a")
	g.Expect(calls).To(HaveLen(1))
	g.Expect(calls[0].at).NotTo(BeTemporally("<", at), "the probe started early")
	g.Expect(calls[0].at).To(BeTemporally("<", at.Add(2*time.Second)), "the probe started far too late")
}

func TestRunnerFiresATimeInThePastAtOnce(t *testing.T) {
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(-time.Hour)})
	waitNotified(t, notified, runnerKey("a"))
}

func TestRunnerKeepsTheResultUntilAcknowledged(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	g.Expect(r.View(k, "spec").Pending).To(BeEmpty(), "a result before any probe")
	g.Expect(r.View(k, "spec").LastStart).To(BeZero())

	before := time.Now()
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: before})
	waitNotified(t, notified, k)

	res, ok := lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue())
	g.Expect(res.Success).To(BeTrue())
	g.Expect(res.Reason).To(Equal(probe.ReasonOK))
	g.Expect(res.Start).To(BeTemporally(">=", before), "the Runner stamps the start itself")
	g.Expect(r.View(k, "spec").LastStart).To(Equal(res.Start))

	again, ok := lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue(), "reading a result does not consume it")
	g.Expect(again).To(Equal(res))
	_, ok = lastPending(r, k, "other-spec")
	g.Expect(ok).To(BeFalse(), "a result is only given for its own spec")
	_, ok = lastPending(r, runnerKey("b"), "spec")
	g.Expect(ok).To(BeFalse(), "a result is only given for its own key")
	g.Expect(r.View(k, "other-spec").LastStart).To(BeZero())

	r.Settle(k, res.Start.Add(-time.Nanosecond), time.Time{})
	_, ok = lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue(), "an Ack through an earlier start leaves the result")

	r.Settle(runnerKey("unknown"), res.Start, time.Time{})
	r.Settle(k, res.Start, time.Time{})
	_, ok = lastPending(r, k, "spec")
	g.Expect(ok).To(BeFalse(), "the acknowledged result is gone")
	g.Expect(r.View(k, "spec").LastStart).To(Equal(res.Start), "lastStart outlives the Ack")
}

func TestRunnerNotifiesOncePerResult(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")
	for i := range 3 {
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitNotified(t, notified, k)
		res, ok := lastPending(r, k, "spec")
		g.Expect(ok).To(BeTrue(), "round %d", i)
		r.Settle(k, res.Start, time.Time{})
	}
	expectNoNotification(t, notified)
	g.Expect(d.callCount()).To(Equal(3))
}

func TestRunnerWithoutStartProbesButNotifiesNoOne(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r := NewRunner(d, Limits{InFlight: 4})
	r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
	waitStarted(t, d, "a")
	g.Eventually(func() bool {
		_, ok := lastPending(r, runnerKey("a"), "spec")
		return ok
	}, waitLimit, 10*time.Millisecond).Should(BeTrue())
}

func TestRunnerAProbeDueWhileOneIsInFlightStartsWhenItEnds(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now()})
	waitStarted(t, d, "block-a")
	// "Now" while one is in flight is that one.
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now()})
	expectNoProbe(t, d)
	// A later time that comes while it is still in flight waits for it.
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now().Add(50 * time.Millisecond)})
	expectNoProbe(t, d)

	close(d.release)
	waitNotified(t, notified, k)
	waitStarted(t, d, "block-a")
	waitNotified(t, notified, k)
	expectNoProbe(t, d)
	g.Expect(d.callCount()).To(Equal(2))
	g.Expect(r.View(k, "spec").Pending).To(HaveLen(2), "results wait in order")
}

func TestRunnerKeepsTheCadenceWhileResultsWait(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, _ := startRunner(t, d, 4)
	k := runnerKey("a")
	const every = 100 * time.Millisecond
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now(), Every: every})
	g.Eventually(func() int { return len(r.View(k, "spec").Pending) }).WithTimeout(waitLimit).Should(BeNumerically(">=", 5))
	calls := d.callsTo("a")
	for i := 1; i < len(calls); i++ {
		g.Expect(calls[i].at.Sub(calls[i-1].at)).To(BeNumerically(">=", every-time.Millisecond),
			"probe %d started early", i)
	}
	pending := r.View(k, "spec").Pending
	for i := 1; i < len(pending); i++ {
		g.Expect(pending[i].Start).To(BeTemporally(">", pending[i-1].Start), "results are kept in order")
	}
	// Acknowledging through one result drops it and every older one.
	r.Settle(k, pending[2].Start, time.Time{})
	g.Expect(r.View(k, "spec").Pending[0].Start).To(BeTemporally(">", pending[2].Start))
}

func TestRunnerHoldsProbesBackWhileMaxPendingResultsWait(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, _ := startRunner(t, d, 4)
	k := runnerKey("a")
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now(), Every: time.Millisecond})
	g.Eventually(func() int { return len(r.View(k, "spec").Pending) }).WithTimeout(waitLimit).Should(Equal(MaxPending))
	calls := d.callCount()
	time.Sleep(50 * time.Millisecond)
	g.Expect(d.callCount()).To(Equal(calls), "no probe while the queue is full")
	g.Expect(r.View(k, "spec").Pending).To(HaveLen(MaxPending))

	r.Settle(k, time.Now(), time.Time{})
	g.Eventually(d.callCount).WithTimeout(waitLimit).Should(BeNumerically(">", calls), "an Ack lets the overdue probe go")
}

func TestRunnerScheduleMovesAWaitingTimer(t *testing.T) {
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(200 * time.Millisecond)})
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(time.Hour)})
	expectNoProbe(t, d)

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
	waitStarted(t, d, "a")
	waitNotified(t, notified, k)
}

func TestRunnerNewSpecDropsEarlierTimers(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, _ := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "old", Target: tcpTarget("old"), Next: time.Now().Add(100 * time.Millisecond)})
	r.Plan(k, Plan{SpecID: "new", Target: tcpTarget("new"), Next: time.Now().Add(time.Hour)})
	expectNoProbe(t, d)
	g.Expect(r.Len()).To(Equal(1))
}

func TestRunnerNewSpecDropsAnInFlightResult(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "old", Target: tcpTarget("block-old"), Next: time.Now()})
	waitStarted(t, d, "block-old")
	r.Plan(k, Plan{SpecID: "new", Target: tcpTarget("block-new"), Next: time.Now().Add(time.Hour)})
	close(d.release)
	expectNoNotification(t, notified)
	_, ok := lastPending(r, k, "old")
	g.Expect(ok).To(BeFalse(), "the old spec's result was kept")
	_, ok = lastPending(r, k, "new")
	g.Expect(ok).To(BeFalse(), "the old spec's result was given to the new one")
	g.Expect(r.View(k, "new").LastStart).To(BeZero())

	// The new spec is not held up by the old probe.
	r.Plan(k, Plan{SpecID: "new", Target: tcpTarget("new"), Next: time.Now()})
	waitStarted(t, d, "new")
	waitNotified(t, notified, k)
	_, ok = lastPending(r, k, "new")
	g.Expect(ok).To(BeTrue())
}

func TestRunnerNewSpecDropsAPendingResult(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "old", Target: tcpTarget("old"), Next: time.Now()})
	waitNotified(t, notified, k)
	r.Plan(k, Plan{SpecID: "new", Target: tcpTarget("new"), Next: time.Now()})
	_, ok := lastPending(r, k, "old")
	g.Expect(ok).To(BeFalse())
	waitNotified(t, notified, k)
	g.Expect(d.callsTo("new")).To(HaveLen(1), "the pending result of the old spec held up the new one")
}

func TestRunnerPauseCancelsATimer(t *testing.T) {
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(100 * time.Millisecond)})
	r.Plan(k, Plan{})
	r.Plan(runnerKey("unknown"), Plan{})
	expectNoProbe(t, d)

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
	waitStarted(t, d, "a")
	waitNotified(t, notified, k)
}

func TestRunnerPauseLetsAnInFlightProbeDeliver(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now()})
	waitStarted(t, d, "block-a")
	r.Plan(k, Plan{})
	close(d.release)
	waitNotified(t, notified, k)
	_, ok := lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue())
}

func TestRunnerForgetDropsEverything(t *testing.T) {
	t.Run("a waiting timer", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, _ := startRunner(t, d, 4)
		r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(100 * time.Millisecond)})
		r.Forget(runnerKey("a"))
		g.Expect(r.Len()).To(BeZero())
		expectNoProbe(t, d)
	})
	t.Run("a pending result", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitNotified(t, notified, runnerKey("a"))
		r.Forget(runnerKey("a"))
		_, ok := lastPending(r, runnerKey("a"), "spec")
		g.Expect(ok).To(BeFalse())
		g.Expect(r.View(runnerKey("a"), "spec").LastStart).To(BeZero())
		g.Expect(r.Len()).To(BeZero())
	})
	t.Run("an in-flight result", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now()})
		waitStarted(t, d, "block-a")
		r.Forget(runnerKey("a"))
		close(d.release)
		expectNoNotification(t, notified)
		_, ok := lastPending(r, runnerKey("a"), "spec")
		g.Expect(ok).To(BeFalse())
		g.Expect(r.Len()).To(BeZero(), "the finished probe brought its breaker back")
	})
	t.Run("only its own key", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		r.Plan(runnerKey("b"), Plan{SpecID: "spec", Target: tcpTarget("b"), Next: time.Now().Add(200 * time.Millisecond)})
		r.Forget(runnerKey("a"))
		waitNotified(t, notified, runnerKey("b"))
		g.Expect(r.Len()).To(Equal(1))
	})
}

func TestRunnerStopsItsTimersWhenItsContextEnds(t *testing.T) {
	d := newFakeDoer()
	r := NewRunner(d, Limits{InFlight: 4})
	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan Key, 10)
	r.Start(ctx, func(k Key) { notified <- k })
	r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(200 * time.Millisecond)})
	cancel()
	expectNoProbe(t, d)
	expectNoNotification(t, notified)
}

func TestRunnerBoundsTheProbesInFlight(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 2)
	for i := range 6 {
		name := fmt.Sprintf("block-%d", i)
		r.Plan(runnerKey(name), Plan{SpecID: "spec", Target: tcpTarget(name), Next: time.Now()})
	}
	receiveN(t, d.started, 2, "the first two probes did not start")
	expectNoProbe(t, d)

	close(d.release)
	receiveN(t, notified, 6, "not every probe finished")
	d.mu.Lock()
	defer d.mu.Unlock()
	g.Expect(d.calls).To(HaveLen(6))
	g.Expect(d.maxInFlight).To(Equal(2))
}

func TestRunnerSlowProbesDoNotDelayFastOnes(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 64)
	for i := range 20 {
		name := fmt.Sprintf("slow-%d", i)
		r.Plan(runnerKey(name), Plan{SpecID: "spec", Target: tcpTarget(name), Next: time.Now()})
	}
	receiveN(t, d.started, 20, "the slow probes did not all start")

	start := time.Now()
	fast := map[Key]bool{}
	for i := range 20 {
		k := runnerKey(fmt.Sprintf("fast-%d", i))
		fast[k] = true
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget(k.Name), Next: start})
	}
	// The slow probes take 2s; the fast ones must not wait for them.
	deadline := time.After(time.Second)
	for len(fast) > 0 {
		select {
		case k := <-notified:
			g.Expect(fast).To(HaveKey(k), "a slow probe finished first")
			delete(fast, k)
		case <-deadline:
			t.Fatalf("%d fast probes had not finished after %v", len(fast), time.Since(start))
		}
	}
	t.Logf("20 fast probes finished in %v beside 20 slow ones", time.Since(start))
}

func TestRunnerLastStartIsKnownWhileAProbeIsInFlight(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	before := time.Now()
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: before})
	waitStarted(t, d, "block-a")
	inFlight := r.View(k, "spec").LastStart
	g.Expect(inFlight).To(BeTemporally(">=", before), "the start of the probe in flight")
	close(d.release)
	waitNotified(t, notified, k)
	res, ok := lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue())
	g.Expect(res.Start).To(Equal(inFlight), "the result carries the same start")
}

func TestRunnerNeverStartsAProbeBeforeItsTime(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")

	at := time.Now().Add(200 * time.Millisecond)
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: at})
	waitNotified(t, notified, k)
	res, ok := lastPending(r, k, "spec")
	g.Expect(ok).To(BeTrue())
	g.Expect(res.Start).NotTo(BeTemporally("<", at))
}

// lastPending is the newest result waiting for key and specID.
func lastPending(r *Runner, key Key, specID string) (probe.Result, bool) {
	p := r.View(key, specID).Pending
	if len(p) == 0 {
		return probe.Result{}, false
	}
	return p[len(p)-1], true
}

func nsKey(ns, name string) Key { return Key{Namespace: ns, Name: name} }

func TestRunnerForgetFreesTheSlotOfAProbeInFlightAtOnce(t *testing.T) {
	d := newFakeDoer()
	t.Cleanup(func() { close(d.release) })
	r, notified := startRunner(t, d, 1)
	r.Plan(runnerKey("a"), Plan{SpecID: "spec", Target: tcpTarget("stuck-a"), Next: time.Now()})
	waitStarted(t, d, "stuck-a")
	r.Forget(runnerKey("a"))

	// The only slot is free although the stuck Doer has not returned.
	r.Plan(runnerKey("b"), Plan{SpecID: "spec", Target: tcpTarget("b"), Next: time.Now()})
	waitStarted(t, d, "b")
	waitNotified(t, notified, runnerKey("b"))
}

func TestRunnerEditsOfOneBreakerNeverTakeEverySlot(t *testing.T) {
	d := newFakeDoer()
	t.Cleanup(func() { close(d.release) })
	r, notified := startRunner(t, d, 2)
	k := runnerKey("edited")
	for i := range 50 {
		addr := fmt.Sprintf("stuck-%d", i)
		r.Plan(k, Plan{SpecID: addr, Target: tcpTarget(addr), Next: time.Now()})
		waitStarted(t, d, addr)
	}
	r.Plan(runnerKey("other"), Plan{SpecID: "spec", Target: tcpTarget("other"), Next: time.Now()})
	waitStarted(t, d, "other")
	waitNotified(t, notified, runnerKey("other"))
}

func TestRunnerCancelsTheProbeInFlightOfAReplacedSpec(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, _ := startRunner(t, d, 4)
	k := runnerKey("a")
	r.Plan(k, Plan{SpecID: "old", Target: tcpTarget("block-old"), Next: time.Now()})
	waitStarted(t, d, "block-old")
	r.Plan(k, Plan{SpecID: "new", Target: tcpTarget("new"), Next: time.Now().Add(time.Hour)})
	g.Eventually(func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.inFlight
	}).WithTimeout(waitLimit).Should(BeZero(), "the old spec's probe was not cancelled")
}

func TestRunnerNamespaceAtItsBoundDoesNotStarveAnother(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	t.Cleanup(func() { close(d.release) })
	r, notified := startRunnerWith(t, d, Limits{InFlight: 8, PerNamespace: 3})

	for i := range 10 {
		name := fmt.Sprintf("block-%d", i)
		r.Plan(nsKey("greedy", name), Plan{SpecID: "spec", Target: tcpTarget(name), Next: time.Now()})
	}
	g.Eventually(d.callCount).WithTimeout(waitLimit).Should(Equal(3))
	for i := range 5 {
		name := fmt.Sprintf("healthy-%d", i)
		r.Plan(nsKey("healthy", name), Plan{SpecID: "spec", Target: tcpTarget(name), Next: time.Now()})
	}
	for range 5 {
		select {
		case k := <-notified:
			g.Expect(k.Namespace).To(Equal("healthy"))
		case <-time.After(waitLimit):
			t.Fatal("a healthy namespace's probe waited behind a full one")
		}
	}
	g.Expect(d.callCount()).To(Equal(8), "the greedy namespace went past its bound")
}

func TestRunnerNamespaceEntriesGoWhenUnused(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunnerWith(t, d, Limits{InFlight: 8, PerNamespace: 2})
	for i := range 20 {
		k := nsKey(fmt.Sprintf("ns-%d", i), "a")
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitNotified(t, notified, k)
	}
	g.Eventually(func() int {
		r.slots.mu.Lock()
		defer r.slots.mu.Unlock()
		return len(r.slots.held)
	}).WithTimeout(waitLimit).Should(BeZero(), "no entry for a namespace that holds no slot")
	for i := range 20 {
		r.Forget(nsKey(fmt.Sprintf("ns-%d", i), "a"))
	}
	r.slots.mu.Lock()
	defer r.slots.mu.Unlock()
	g.Expect(r.slots.breakers).To(BeEmpty(), "no entry for a namespace without breakers")
}

func TestRunnerDiscardBeforeDropsResultsOfProbesThatStartedEarlier(t *testing.T) {
	t.Run("a pending result", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		k := runnerKey("a")
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitNotified(t, notified, k)
		r.Settle(k, time.Time{}, time.Now())
		_, ok := lastPending(r, k, "spec")
		g.Expect(ok).To(BeFalse())
	})
	t.Run("a probe in flight", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		k := runnerKey("a")
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("block-a"), Next: time.Now()})
		waitStarted(t, d, "block-a")
		r.Settle(k, time.Time{}, time.Now())
		expectNoNotification(t, notified)
		_, ok := lastPending(r, k, "spec")
		g.Expect(ok).To(BeFalse())
		// The breaker can be probed again at once.
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitStarted(t, d, "a")
		waitNotified(t, notified, k)
	})
	t.Run("a result that started later", func(t *testing.T) {
		g := NewWithT(t)
		d := newFakeDoer()
		r, notified := startRunner(t, d, 4)
		k := runnerKey("a")
		before := time.Now()
		r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now()})
		waitNotified(t, notified, k)
		r.Settle(k, time.Time{}, before)
		_, ok := lastPending(r, k, "spec")
		g.Expect(ok).To(BeTrue())
	})
}

func TestRunnerIsUnhealthyWhileAProbeRunsFarPastItsDeadline(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunnerWith(t, d, Limits{InFlight: 4, WedgeGrace: 100 * time.Millisecond})
	k := runnerKey("a")
	tg := tcpTarget("stuck-a")
	tg.Timeout = 50 * time.Millisecond
	r.Plan(k, Plan{SpecID: "spec", Target: tg, Next: time.Now()})
	waitStarted(t, d, "stuck-a")
	g.Expect(r.Healthy(time.Now())).To(Succeed())
	g.Expect(r.Healthy(time.Now().Add(time.Second))).To(MatchError(ContainSubstring("1 probes are still running")))
	r.Forget(k) // cancelling does not end a Doer that ignores its context
	g.Expect(r.Healthy(time.Now().Add(time.Second))).NotTo(Succeed())
	close(d.release)
	g.Eventually(func() error { return r.Healthy(time.Now().Add(time.Second)) }).WithTimeout(waitLimit).Should(Succeed())
	expectNoNotification(t, notified)
}

// sharingDoer counts the targets retained, by address.
type sharingDoer struct {
	*fakeDoer
	mu       sync.Mutex
	retained map[string]int
}

func (s *sharingDoer) Retain(t probe.Target) { s.mu.Lock(); s.retained[t.Address]++; s.mu.Unlock() }

func (s *sharingDoer) Release(t probe.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retained[t.Address]--; s.retained[t.Address] == 0 {
		delete(s.retained, t.Address)
	}
}

func (s *sharingDoer) count() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.retained)
}

func TestRunnerRetainsEachBreakersTargetOnceAndReleasesItWhenItGoes(t *testing.T) {
	g := NewWithT(t)
	d := &sharingDoer{fakeDoer: newFakeDoer(), retained: map[string]int{}}
	r := NewRunner(d, Limits{InFlight: 4})
	later := time.Now().Add(time.Hour)
	r.Plan(runnerKey("a"), Plan{SpecID: "s1", Target: tcpTarget("x"), Next: later})
	r.Plan(runnerKey("a"), Plan{SpecID: "s1", Target: tcpTarget("x"), Next: later})
	r.Plan(runnerKey("b"), Plan{SpecID: "s1", Target: tcpTarget("x"), Next: later})
	g.Expect(d.count()).To(Equal(map[string]int{"x": 2}))
	r.Plan(runnerKey("a"), Plan{SpecID: "s2", Target: tcpTarget("y"), Next: later})
	g.Expect(d.count()).To(Equal(map[string]int{"x": 1, "y": 1}))
	r.Forget(runnerKey("a"))
	r.Forget(runnerKey("b"))
	g.Expect(d.count()).To(BeEmpty())
}

func TestRunnerHoldsTheNextProbeWhileWaitingResultsWillOpenTheCircuit(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	holdAll := func([]probe.Result) bool { return true } // every waiting result "opens" the circuit
	k := runnerKey("a")
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now(), Every: 50 * time.Millisecond, HoldIf: holdAll})
	waitNotified(t, notified, k)
	time.Sleep(300 * time.Millisecond)
	g.Expect(d.callCount()).To(Equal(1), "no probe while the decision on the waiting result is pending")

	// The decision moves the next probe (an Open circuit's trial) and acknowledges the result.
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now().Add(100 * time.Millisecond), Every: 50 * time.Millisecond, HoldIf: holdAll})
	r.Settle(k, time.Now(), time.Time{})
	waitNotified(t, notified, k)
	g.Expect(d.callCount()).To(Equal(2))
}

// A failed status write leaves the plan's hold in force until the retry plans
// again: the held probe is then sent as that plan says, never lost.
func TestRunnerAHeldProbeLeavesOnTheNextPlan(t *testing.T) {
	g := NewWithT(t)
	d := newFakeDoer()
	r, notified := startRunner(t, d, 4)
	k := runnerKey("a")
	holdAll := func([]probe.Result) bool { return true }
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now(), Every: 50 * time.Millisecond, HoldIf: holdAll})
	waitNotified(t, notified, k)
	time.Sleep(200 * time.Millisecond)
	g.Expect(d.callCount()).To(Equal(1), "held while the waiting result would open the circuit")

	// The retry decides that the result opens nothing after all: same
	// cadence, a hold that lets it go. No Settle yet (the write is pending).
	r.Plan(k, Plan{SpecID: "spec", Target: tcpTarget("a"), Next: time.Now(), Every: 50 * time.Millisecond,
		HoldIf: func([]probe.Result) bool { return false }})
	waitNotified(t, notified, k)
	g.Expect(d.callCount()).To(BeNumerically(">=", 2))
}

// receiveN waits for n values from ch, each within waitLimit, and fails the
// test with what as the message if one does not come.
func receiveN[T any](t *testing.T, ch <-chan T, n int, what string) []T {
	t.Helper()
	out := make([]T, 0, n)
	for range n {
		select {
		case v := <-ch:
			out = append(out, v)
		case <-time.After(waitLimit):
			t.Fatal(what)
		}
	}
	return out
}
