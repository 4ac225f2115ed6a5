package runner

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/resilience-dev/breaker-operator/internal/probe"
	"github.com/resilience-dev/breaker-operator/internal/testnet"
	"github.com/resilience-dev/breaker-operator/test/grpctarget"
)

func watchTarget(addr, service string) probe.Target {
	tg := grpcTarget(probe.GRPC, addr, service)
	tg.GRPC.Watch = true
	return tg
}

// nextResult waits for a notification of key and returns its newest pending result.
func nextResult(t *testing.T, r *Runner, notified <-chan Key, key Key, within time.Duration) probe.Result {
	t.Helper()
	select {
	case got := <-notified:
		if got != key {
			t.Fatalf("notified of %v, want %v", got, key)
		}
	case <-time.After(within):
		t.Fatalf("no result for %v within %v", key, within)
	}
	pending := r.View(key, "spec").Pending
	if len(pending) == 0 {
		t.Fatalf("notified of %v with nothing pending", key)
	}
	last := pending[len(pending)-1]
	r.Settle(key, last.Start, time.Time{})
	return last
}

func TestRunnerWatchDeliversAStatusChangeAtOnce(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	srv.Health.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("watched")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, "api"), Next: time.Now(), Every: time.Hour})
	if got := nextResult(t, r, notified, key, 5*time.Second); !got.Success {
		t.Fatalf("first result %+v, want a success", got)
	}

	flipped := time.Now()
	srv.Health.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	got := nextResult(t, r, notified, key, time.Second)
	if got.Success || got.Reason != probe.ReasonGRPCNotServing {
		t.Fatalf("after the flip: %+v, want grpc_not_serving", got)
	}
	t.Logf("NOT_SERVING delivered %v after the flip", time.Since(flipped))

	// A change within minPushGap of the last waits for its end.
	srv.Health.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	if got := nextResult(t, r, notified, key, minPushGap+time.Second); !got.Success {
		t.Fatalf("after the flip back: %+v, want a success", got)
	}
}

// flappingWatch sends SERVING and NOT_SERVING in turn as fast as it can.
type flappingWatch struct{ *health.Server }

func (flappingWatch) Watch(_ *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	for i := 0; ; i++ {
		status := healthpb.HealthCheckResponse_SERVING
		if i%2 == 1 {
			status = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: status}); err != nil {
			return err
		}
	}
}

func TestRunnerWatchOfAFlappingTargetDeliversAtMostOneChangeASecond(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{Register: func(s *grpc.Server, h *health.Server) {
		healthpb.RegisterHealthServer(s, flappingWatch{Server: h})
	}})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("flapping")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	const window = 3 * time.Second
	deadline := time.After(window)
	results := 0
	for done := false; !done; {
		select {
		case <-notified:
			results++
		case <-deadline:
			done = true
		}
	}
	// The first tick, then at most one change a second.
	if limit := 1 + int(window/time.Second) + 1; results < 2 || results > limit {
		t.Fatalf("%d results in %v from a target flapping as fast as it can, want 2 to %d", results, window, limit)
	}
}

func TestRunnerWatchTicksWithTheLastStatusWithoutACall(t *testing.T) {
	var checks atomic.Int64
	srv := startGRPCServer(t, grpcServerOptions{Register: func(s *grpc.Server, h *health.Server) {
		healthpb.RegisterHealthServer(s, countingChecks{Server: h, checks: &checks})
	}})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("ticking")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: 200 * time.Millisecond})
	for range 4 {
		if got := nextResult(t, r, notified, key, 5*time.Second); !got.Success {
			t.Fatalf("tick %+v, want a success", got)
		}
	}
	if n := checks.Load(); n != 0 {
		t.Fatalf("%d Check calls while watching, want none", n)
	}
}

// countingChecks is the standard health server counting Check calls.
type countingChecks struct {
	*health.Server
	checks *atomic.Int64
}

func (c countingChecks) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	c.checks.Add(1)
	return c.Server.Check(ctx, req)
}

// checkOnly implements Check but not Watch.
type checkOnly struct {
	healthpb.UnimplementedHealthServer
	*countingChecks
}

func (c checkOnly) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return c.countingChecks.Check(ctx, req)
}

func TestRunnerWatchFallsBackToCheckWhenWatchIsUnimplemented(t *testing.T) {
	var checks atomic.Int64
	srv := startGRPCServer(t, grpcServerOptions{Register: func(s *grpc.Server, h *health.Server) {
		healthpb.RegisterHealthServer(s, checkOnly{countingChecks: &countingChecks{Server: h, checks: &checks}})
	}})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("fallback")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: 200 * time.Millisecond})
	for range 3 {
		if got := nextResult(t, r, notified, key, 5*time.Second); !got.Success {
			t.Fatalf("result %+v, want a success from Check", got)
		}
	}
	if n := checks.Load(); n < 3 {
		t.Fatalf("%d Check calls, want one per result", n)
	}
}

// closingWatch sends the status, then ends the stream.
type closingWatch struct {
	*health.Server
	watches *atomic.Int64
}

func (c closingWatch) Watch(_ *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	c.watches.Add(1)
	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

func TestRunnerWatchReestablishesAClosedStreamWithBackoff(t *testing.T) {
	var watches atomic.Int64
	srv := startGRPCServer(t, grpcServerOptions{Register: func(s *grpc.Server, h *health.Server) {
		healthpb.RegisterHealthServer(s, closingWatch{Server: h, watches: &watches})
	}})
	r, _ := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("closing")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	// Attempts at 0, 0.25, 0.75, 1.75 and 3.75 s: four within 3 s, not dozens.
	time.Sleep(3 * time.Second)
	if n := watches.Load(); n < 3 || n > 5 {
		t.Fatalf("%d Watch calls in 3 s, want 3 to 5 (re-established with backoff)", n)
	}
	// Between two streams the tick of the held-less target is a failure.
	pending := r.View(key, "spec").Pending
	if len(pending) == 0 || !pending[0].Success {
		t.Fatalf("pending %+v, want the first status delivered", pending)
	}
}

func TestRunnerWatchTickFailsWhileNoStreamIsHeld(t *testing.T) {
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("unreachable")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(testnet.ClosedPort(t), ""), Next: time.Now(), Every: 200 * time.Millisecond})
	for range 3 {
		if got := nextResult(t, r, notified, key, 5*time.Second); got.Success || got.Reason != probe.ReasonConnectionRefused {
			t.Fatalf("tick %+v, want a connection_refused failure", got)
		}
	}
}

func TestRunnerWatchOfAServerThatNeverAnswersFailsByTheDeadline(t *testing.T) {
	hanging := testnet.Hanging(t)
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("hanging")
	tg := watchTarget(hanging.Addr().String(), "")
	tg.Timeout = 300 * time.Millisecond
	start := time.Now()
	r.Plan(key, Plan{SpecID: "spec", Target: tg, Next: time.Now(), Every: 500 * time.Millisecond})
	for range 2 {
		if got := nextResult(t, r, notified, key, 5*time.Second); got.Success || got.Reason != probe.ReasonTimeout {
			t.Fatalf("tick %+v, want a timeout", got)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("two ticks took %v at a 500ms interval", took)
	}
}

func TestRunnerWatchStreamHoldsANamespaceSlot(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8, PerNamespace: 1})
	watched, polled := runnerKey("watched"), runnerKey("polled")
	r.Plan(watched, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	nextResult(t, r, notified, watched, 5*time.Second)
	r.Plan(polled, Plan{SpecID: "spec", Target: grpcTarget(probe.GRPC, srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	select {
	case k := <-notified:
		t.Fatalf("%v probed while the namespace's only slot holds a stream", k)
	case <-time.After(500 * time.Millisecond):
	}
	r.Forget(watched)
	if got := nextResult(t, r, notified, polled, 5*time.Second); !got.Success {
		t.Fatalf("polled breaker %+v once the stream closed", got)
	}
}

func TestRunnerForgetClosesTheStreamAndLeavesNoGoroutineOrConnection(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	before := runtime.NumGoroutine()
	keys := []Key{runnerKey("a"), runnerKey("b"), runnerKey("c")}
	for _, k := range keys {
		r.Plan(k, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	}
	for range keys {
		<-notified
	}
	if open := srv.Open(); open != int64(len(keys)) {
		t.Fatalf("%d connections open on the server, want one per stream", open)
	}
	held := runtime.NumGoroutine()
	for _, k := range keys {
		r.Forget(k)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Open() != 0 || runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after Forget: %d connections open, %d goroutines (%d before, %d while held)\n%s",
				srv.Open(), runtime.NumGoroutine(), before, held, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d with %d streams, back to %d", before, held, len(keys), runtime.NumGoroutine())
}

func TestRunnerNewSpecClosesTheOldStream(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	other := startGRPCServer(t, grpcServerOptions{})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("moved")
	r.Plan(key, Plan{SpecID: "spec", Target: watchTarget(srv.Addr, ""), Next: time.Now(), Every: time.Hour})
	nextResult(t, r, notified, key, 5*time.Second)
	r.Plan(key, Plan{SpecID: "spec2", Target: watchTarget(other.Addr, ""), Next: time.Now(), Every: time.Hour})
	deadline := time.Now().Add(5 * time.Second)
	for srv.Open() != 0 || other.Open() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("old server holds %d connections, new one %d; want 0 and 1", srv.Open(), other.Open())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunnerWatchRoundJudgesEachEndpointsStream(t *testing.T) {
	up := startGRPCServer(t, grpcServerOptions{})
	flips := startGRPCServer(t, grpcServerOptions{})
	r, notified := startRunnerWith(t, loopbackProber(t), Limits{InFlight: 8})
	key := runnerKey("round")
	tg := watchTarget("", "")
	tg.Round = &probe.Round{Endpoints: []probe.Endpoint{endpointOf(t, up), endpointOf(t, flips)}, FailurePercent: 50}
	r.Plan(key, Plan{SpecID: "spec", Target: tg, Next: time.Now(), Every: time.Hour})
	if got := nextResult(t, r, notified, key, 5*time.Second); !got.Success || len(got.Endpoints) != 2 {
		t.Fatalf("first round %+v", got)
	}
	flips.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	got := nextResult(t, r, notified, key, time.Second)
	if got.Success || got.Reason != probe.ReasonGRPCNotServing || !got.Endpoints[0].Success || got.Endpoints[1].Success {
		t.Fatalf("after one endpoint flipped: %+v", got)
	}
}

// loopbackProber is a Prober whose guard lets it reach the test servers.
func loopbackProber(t *testing.T) *probe.Prober {
	t.Helper()
	guard, err := probe.NewGuard(nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return probe.New(probe.Options{Guard: guard})
}

func grpcTarget(scheme probe.Scheme, addr, service string) probe.Target {
	return probe.Target{Scheme: scheme, Address: addr, Timeout: 2 * time.Second, GRPC: &probe.GRPCSettings{Service: service}}
}

type grpcServerOptions = grpctarget.Options

func startGRPCServer(t *testing.T, o grpcServerOptions) *grpctarget.Server {
	t.Helper()
	return grpctarget.Start(t, o)
}

func endpointOf(t *testing.T, s *grpctarget.Server) probe.Endpoint {
	t.Helper()
	host, port := s.HostPort(t)
	return probe.Endpoint{Address: host, Port: port}
}
