package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// The gRPC row. In the run whose N is -grpc-n, once the HTTP figures are
// taken, the HTTP breakers are deleted and as many gRPC breakers are created
// (grpc:// URLs, Health/Check every interval, a connection per probe) against
// one process serving the standard health service; the manager's CPU per
// probe over a steady window then stands beside the HTTP one.

// grpcResult is the gRPC row's figures.
type grpcResult struct {
	Breakers int     `json:"breakers"`
	Seconds  float64 `json:"seconds"`
	// Probes counts the manager's probes in the window (circuitbreaker_probes_total).
	Probes               float64 `json:"probes"`
	ManagerCPUPerProbeMs float64 `json:"managerCpuPerProbeMs"`
	ManagerCores         float64 `json:"managerCores"`
	TargetCores          float64 `json:"targetCores"`
}

func grpcBreakerName(i int) string { return "g-" + strconv.Itoa(i) }

// runGRPCTarget is `bench grpc-target`: the standard health service (SERVING)
// on a free loopback port, written to -ready-file, until SIGTERM.
func runGRPCTarget(args []string) int {
	fs := flag.NewFlagSet("grpc-target", flag.ContinueOnError)
	readyFile := fs.String("ready-file", "", "Where to write the port once listening.")
	if err := fs.Parse(args); err != nil || *readyFile == "" {
		fmt.Fprintln(os.Stderr, "grpc-target: need -ready-file")
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-target:", err)
		return 1
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	ready, _ := json.Marshal(targetReady{Port: ln.Addr().(*net.TCPAddr).Port})
	tmp := *readyFile + ".tmp"
	if err := os.WriteFile(tmp, ready, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "grpc-target:", err)
		return 1
	}
	if err := os.Rename(tmp, *readyFile); err != nil {
		fmt.Fprintln(os.Stderr, "grpc-target:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	srv.Stop()
	return 0
}

// measureGRPC replaces the run's breakers with gRPC ones and measures them.
func (r *sizeRun) measureGRPC(ctx context.Context) (*grpcResult, error) {
	cfg := r.env.cfg
	say("N=%d: replacing the HTTP breakers with %d gRPC ones", r.n, r.n)
	if err := r.c.DeleteAllOf(ctx, &circuitv1alpha1.CircuitBreaker{}, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	if err := r.waitCount(ctx, "every HTTP breaker gone", func(list []circuitv1alpha1.CircuitBreaker) bool { return len(list) == 0 }); err != nil {
		return nil, err
	}
	readyFile := filepath.Join(r.dir, "grpc-target.ready")
	p, err := r.startProcess("grpc-target", r.env.self, []string{"grpc-target", "-ready-file", readyFile})
	if err != nil {
		return nil, err
	}
	ready, err := waitTargetReady(readyFile, time.Minute, p.Exited())
	if err != nil {
		return nil, err
	}
	url := "grpc://127.0.0.1:" + strconv.Itoa(ready.Port)
	if err := parallel(ctx, burstWorkers, r.n, func(i int) error {
		return r.c.Create(ctx, &circuitv1alpha1.CircuitBreaker{
			ObjectMeta: metav1.ObjectMeta{Name: grpcBreakerName(i), Namespace: namespace},
			Spec: circuitv1alpha1.CircuitBreakerSpec{
				Target:       circuitv1alpha1.Target{URL: url},
				RetryTimeout: circuitv1alpha1.GoDuration(cfg.retryTimeout.String()),
				Interval:     circuitv1alpha1.GoDuration(cfg.interval.String()),
			},
		})
	}); err != nil {
		return nil, err
	}
	if err := r.waitCount(ctx, "every gRPC breaker probed successfully", func(list []circuitv1alpha1.CircuitBreaker) bool {
		ok := 0
		for _, cb := range list {
			if lp := cb.Status.LastProbe; lp != nil && lp.Result == circuitv1alpha1.ProbeSuccess {
				ok++
			}
		}
		return ok == r.n
	}); err != nil {
		return nil, err
	}
	sleepCtx(ctx, cfg.interval)

	say("N=%d: gRPC steady state for %s", r.n, cfg.steady)
	probes0, err := r.probesSent(ctx)
	if err != nil {
		return nil, err
	}
	sleepCtx(ctx, 2*time.Second) // the scrape's garbage
	at0 := time.Now()
	mgr0, _ := cpuTime(r.manager.Pid())
	tgt0, _ := cpuTime(p.Pid())
	sleepCtx(ctx, cfg.steady)
	at1 := time.Now()
	mgr1, _ := cpuTime(r.manager.Pid())
	tgt1, _ := cpuTime(p.Pid())
	probes1, err := r.probesSent(ctx)
	if err != nil {
		return nil, err
	}
	res := &grpcResult{Breakers: r.n, Seconds: at1.Sub(at0).Seconds(), Probes: probes1 - probes0}
	if res.Probes > 0 {
		res.ManagerCPUPerProbeMs = ms(mgr1-mgr0) / res.Probes
	}
	if res.Seconds > 0 {
		res.ManagerCores = (mgr1 - mgr0).Seconds() / res.Seconds
		res.TargetCores = (tgt1 - tgt0).Seconds() / res.Seconds
	}
	return res, ctx.Err()
}

// probesSent is the manager's count of probes sent, all breakers and results.
func (r *sizeRun) probesSent(ctx context.Context) (float64, error) {
	mf, err := scrape(ctx, http.DefaultClient, r.metrics)
	if err != nil {
		return 0, err
	}
	return sumCounter(mf, "circuitbreaker_probes_total", nil), nil
}

// waitCount lists the run's breakers every second until done holds, for at
// most five minutes and 20 ms per breaker.
func (r *sizeRun) waitCount(ctx context.Context, what string, done func([]circuitv1alpha1.CircuitBreaker) bool) error {
	deadline := time.Now().Add(5*time.Minute + time.Duration(r.n)*20*time.Millisecond)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		list := &circuitv1alpha1.CircuitBreakerList{}
		if err := r.c.List(ctx, list, client.InNamespace(namespace)); err == nil && done(list.Items) {
			return nil
		}
		sleepCtx(ctx, time.Second)
	}
	return fmt.Errorf("timed out waiting for %s (N=%d)", what, r.n)
}
