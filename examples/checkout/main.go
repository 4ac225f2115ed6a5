// Command checkout is an example HTTP service that calls a dependency through
// breakerclient.Call. While the dependency's CircuitBreaker is Open, it answers
// with a fallback at once, without contacting the dependency.
//
//	checkout --listen 127.0.0.1:8080 --breaker shop/user-api --dependency http://user-api.shop.svc:8080/api
//
// GET /checkout answers JSON {"source": "dependency"|"fallback", "answer": ..., "reason": ...}.
// GET /healthz answers 200 once the breakers are in the cache.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/resilience-dev/breaker-operator/pkg/breakerclient"
)

// answer is what GET /checkout returns.
type answer struct {
	Source string `json:"source"`
	Answer string `json:"answer"`
	Reason string `json:"reason,omitempty"`
}

// fallbackAnswer is served when the dependency cannot be used.
const fallbackAnswer = "recommendations are unavailable, showing bestsellers"

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "Address to serve on")
	breaker := flag.String("breaker", "user-api", "The dependency's CircuitBreaker, name or namespace/name")
	namespace := flag.String("namespace", "default", "Namespace of a bare --breaker name")
	dependency := flag.String("dependency", "", "URL of the dependency, requested with GET")
	flag.Parse() // --kubeconfig comes from controller-runtime
	if *dependency == "" {
		log.Fatal("--dependency is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *breaker, *namespace, *dependency); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, breaker, namespace, dependency string) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	breakers, err := breakerclient.New(cfg, breakerclient.Options{Namespace: namespace})
	if err != nil {
		return err
	}
	if err := breakers.StartAndWait(ctx); err != nil {
		return err
	}
	svc := &service{breakers: breakers, breaker: breaker, dependency: dependency, http: &http.Client{Timeout: 2 * time.Second}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", svc.checkout)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("Serving on %s, calling %s through breaker %s", listen, dependency, breaker)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

type service struct {
	breakers   *breakerclient.Client
	breaker    string
	dependency string
	http       *http.Client
}

func (s *service) checkout(w http.ResponseWriter, r *http.Request) {
	var body string
	err := s.breakers.Call(r.Context(), s.breaker, func(ctx context.Context) error {
		var err error
		body, err = s.fetch(ctx)
		return err
	})
	var open *breakerclient.OpenError
	switch {
	case err == nil:
		writeJSON(w, answer{Source: "dependency", Answer: body})
	case errors.As(err, &open):
		if after := open.RetryAfter(time.Now()); after > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(after.Seconds()+0.5)))
		}
		writeJSON(w, answer{Source: "fallback", Answer: fallbackAnswer, Reason: "circuit open"})
	default:
		writeJSON(w, answer{Source: "fallback", Answer: fallbackAnswer, Reason: "dependency failed"})
	}
}

// fetch GETs the dependency and returns the start of its answer.
func (s *service) fetch(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.dependency, nil)
	if err != nil {
		return "", fmt.Errorf("building the request: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("calling the dependency: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading the dependency's answer: %w", err)
	}
	if resp.StatusCode >= http.StatusInternalServerError {
		return "", fmt.Errorf("the dependency answered %d", resp.StatusCode)
	}
	return string(data), nil
}

func writeJSON(w http.ResponseWriter, a answer) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}
