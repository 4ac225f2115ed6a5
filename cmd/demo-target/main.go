// Command demo-target is a tiny HTTP service for `make demo` that can be made
// to fail and recover: GET /healthz answers 200 while it is healthy and 503
// while it is broken.
//
// Break and heal it with
//
//	curl -X POST http://127.0.0.1:8090/break
//	curl -X POST http://127.0.0.1:8090/heal
//
// or with the signals SIGUSR1 (break) and SIGUSR2 (heal). GET /state reports
// the state and how many health checks it answered; GET /whoami the address
// the request arrived at.
//
// With --grpc-listen it also serves the standard gRPC health service
// (grpc.health.v1.Health): SERVING while healthy, NOT_SERVING while broken,
// for the server as a whole ("") and for the service demo.Target; a Watch
// stream is told of each change at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// target is the service's state; the handlers and signals share it.
type target struct {
	broken atomic.Bool
	checks atomic.Int64
	// health is the gRPC health service, nil without --grpc-listen.
	health *health.Server
}

// grpcService is the service name the gRPC health service reports on, besides "".
const grpcService = "demo.Target"

func (t *target) set(broken bool, via string) {
	if t.broken.Swap(broken) != broken {
		log.Printf("Target is now %s (via %s)", stateName(broken), via)
	}
	t.setHealth(broken)
}

func (t *target) setHealth(broken bool) {
	if t.health == nil {
		return
	}
	status := healthpb.HealthCheckResponse_SERVING
	if broken {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, service := range []string{"", grpcService} {
		t.health.SetServingStatus(service, status)
	}
}

// serveGRPC serves the gRPC health service on addr until the process ends.
func (t *target) serveGRPC(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	t.health = health.NewServer()
	t.setHealth(t.broken.Load())
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, t.health)
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Printf("gRPC server: %v", err)
		}
	}()
	log.Printf("Serving the gRPC health service on grpc://%s (service %q and the whole server)", addr, grpcService)
	return nil
}

func stateName(broken bool) string {
	if broken {
		return "broken"
	}
	return "healthy"
}

func (t *target) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		t.checks.Add(1)
		if t.broken.Load() {
			http.Error(w, "broken", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	control := func(broken bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			t.set(broken, r.Method+" "+r.URL.Path)
			_, _ = fmt.Fprintln(w, stateName(broken))
		}
	}
	// GET as well, so a browser can flip it too.
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /break", control(true))
		mux.HandleFunc(m+" /heal", control(false))
	}
	// GET /whoami names the address the request arrived at, whatever the state:
	// behind a Service, it tells which endpoint answered.
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		addr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		_, _ = fmt.Fprintln(w, addr)
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "%s, %d health checks answered\n", stateName(t.broken.Load()), t.checks.Load())
	})
	return mux
}

func main() {
	addr := flag.String("listen", "127.0.0.1:8090", "Address to serve /healthz and the control endpoints on.")
	grpcAddr := flag.String("grpc-listen", "", "Address to serve the gRPC health service on; empty serves none.")
	broken := flag.Bool("broken", false, "Start broken.")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("demo-target: ")

	t := &target{}
	t.broken.Store(*broken)
	srv := &http.Server{Addr: *addr, Handler: t.routes(), ReadHeaderTimeout: 5 * time.Second}
	if *grpcAddr != "" {
		if err := t.serveGRPC(*grpcAddr); err != nil {
			log.Fatal(err)
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			switch s {
			case syscall.SIGUSR1:
				t.set(true, "SIGUSR1")
			case syscall.SIGUSR2:
				t.set(false, "SIGUSR2")
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = srv.Shutdown(ctx)
				cancel()
				return
			}
		}
	}()

	log.Printf("Serving http://%s/healthz (%s); POST /break or /heal to change it", *addr, stateName(*broken))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
