package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/resilience-dev/breaker-operator/pkg/breakerclient"
)

// outcome is what one call of the caller came to.
type outcome string

const (
	wentThrough    outcome = "went through"
	failedAtTarget outcome = "failed at the target"
	failedFast     outcome = "failed fast"
)

// caller is an application that calls the demo target through
// pkg/breakerclient twice a second, as the seed's users do, and prints a line
// (caller: ...) each time its calls come to something else.
type caller struct {
	client *breakerclient.Client
	url    string
	http   *http.Client

	mu   sync.Mutex
	last outcome
}

// startCaller starts a breakerclient.Client on the control plane and the
// caller's loop, which ends with ctx.
func startCaller(ctx context.Context, cfg *rest.Config, url string) (*caller, error) {
	client, err := breakerclient.New(cfg, breakerclient.Options{Namespace: "default"})
	if err != nil {
		return nil, err
	}
	if err := client.StartAndWait(ctx); err != nil {
		return nil, err
	}
	c := &caller{client: client, url: url, http: &http.Client{Timeout: 2 * time.Second}}
	go c.run(ctx)
	return c, nil
}

func (c *caller) run(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.client.Call(ctx, httpStory.breaker, c.get)
		if ctx.Err() != nil {
			return
		}
		c.observe(err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// get is the call the breaker guards: GET on the target.
func (c *caller) get(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the target answered %s", resp.Status)
	}
	return nil
}

// observe prints a line when a call's outcome differs from the last one's.
func (c *caller) observe(err error) {
	o, line := wentThrough, fmt.Sprintf("caller: GET %s through breakerclient.Call went through", c.url)
	var open *breakerclient.OpenError
	switch {
	case errors.As(err, &open):
		o, line = failedFast, fmt.Sprintf("caller: GET %s failed fast, the target was not called (%v)", c.url, err)
	case err != nil:
		o, line = failedAtTarget, fmt.Sprintf("caller: GET %s reached the target and failed (%v)", c.url, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o != c.last {
		c.last = o
		fmt.Println(line)
	}
}

// waitOutcome waits until the caller's last call came to want.
func (c *caller) waitOutcome(ctx context.Context, want outcome) error {
	for {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		if last == want {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
