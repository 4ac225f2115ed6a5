package breakerclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/resilience-dev/breaker-operator/pkg/breakerclient"
)

// The examples run against the test suite's API server, where the breaker
// shop/user-api is Closed and shop/payments is Open; KUBECONFIG points at it.

// newShopClient starts a Client for namespace shop and waits for its cache.
func newShopClient(ctx context.Context) *breakerclient.Client {
	cfg, err := ctrl.GetConfig() // $KUBECONFIG, ~/.kube/config or in-cluster
	if err != nil {
		log.Fatal(err)
	}
	c, err := breakerclient.New(cfg, breakerclient.Options{Namespace: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.StartAndWait(ctx); err != nil {
		log.Fatal(err)
	}
	return c
}

func ExampleClient_Call() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newShopClient(ctx)

	err := c.Call(ctx, "user-api", func(ctx context.Context) error {
		fmt.Println("calling user-api")
		return nil
	})
	fmt.Println("error:", err)
	// Output:
	// calling user-api
	// error: <nil>
}

func ExampleClient_Call_fallback() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newShopClient(ctx)

	answer := "fresh"
	err := c.Call(ctx, "payments", func(ctx context.Context) error {
		fmt.Println("calling payments") // not printed: the circuit is Open
		return nil
	})
	var open *breakerclient.OpenError
	if errors.As(err, &open) {
		answer = "cached"
		fmt.Println("retry in about an hour:", open.RetryAfter(time.Now()) > 59*time.Minute)
	}
	fmt.Println("open:", errors.Is(err, breakerclient.ErrOpen), "answer:", answer)
	// Output:
	// retry in about an hour: true
	// open: true answer: cached
}

func ExampleClient_State() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newShopClient(ctx)

	fmt.Println(c.State("user-api"), c.State("shop/payments"), c.State("nowhere/missing"))
	// Output: Closed Open Unknown
}

func ExampleOptions_localThreshold() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Fatal(err)
	}
	// Two failed calls in a row open the circuit in this process for the
	// breaker's spec.timeout, before the operator's probes notice.
	c, err := breakerclient.New(cfg, breakerclient.Options{Namespace: "shop", LocalThreshold: 2})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.StartAndWait(ctx); err != nil {
		log.Fatal(err)
	}
	broken := func(context.Context) error { return errors.New("connection refused") }
	for range 3 {
		err := c.Call(ctx, "user-api", broken)
		var open *breakerclient.OpenError
		if errors.As(err, &open) {
			fmt.Println("rejected, local:", open.Local)
			continue
		}
		fmt.Println(err)
	}
	fmt.Println(c.State("user-api"))
	// Output:
	// connection refused
	// connection refused
	// rejected, local: true
	// Open
}

func ExampleClient_Trip() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newShopClient(ctx)

	// Hold the circuit open for a maintenance window, then close it. (The
	// operator acts on both annotations; here the API server records them.)
	fmt.Println("trip:", c.Trip(ctx, "user-api", 10*time.Minute))
	fmt.Println("reset:", c.Reset(ctx, "user-api"))
	fmt.Println("trip:", c.Trip(ctx, "user-api", 0))
	fmt.Println("trip:", c.Trip(ctx, "no-such-breaker", time.Minute))
	// Output:
	// trip: <nil>
	// reset: <nil>
	// trip: tripping breaker shop/user-api: the duration 0s is not positive
	// trip: tripping breaker shop/no-such-breaker: circuitbreakers.circuit.resilience.dev "no-such-breaker" not found
}
