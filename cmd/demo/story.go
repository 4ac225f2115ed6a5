package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// sampleBreaker is the breaker config/samples creates, and its settings the
// story quotes.
const (
	sampleBreaker   = "user-api"
	sampleThreshold = 3
	sampleTimeout   = "15s"
)

// playStory runs the cycle by itself: a few healthy probes, the target breaks,
// the circuit opens and the caller fails fast, the target heals while Open,
// the circuit goes HalfOpen and closes, and the caller's calls go through
// again. Each step is told in one line before it happens; the watches started
// before show the breaker and its Events as they come, the caller its calls.
func playStory(ctx context.Context, cp *localcp.ControlPlane, base string, app *caller) error {
	say("Step 1/3: the target is healthy; letting the breaker probe it a few times (every 2s)")
	if err := waitFor(ctx, cp, "{.status.lastProbe.result}", "Success"); err != nil {
		return err
	}
	if err := sleep(ctx, 6*time.Second); err != nil {
		return err
	}

	say("Step 2/3: breaking the target (POST %s/break): /healthz answers 503; the circuit opens after %d failed probes", base, sampleThreshold)
	if err := post(ctx, base+"/break"); err != nil {
		return err
	}
	if err := waitFor(ctx, cp, "{.status.state}", "Open"); err != nil {
		return err
	}
	if err := app.waitOutcome(ctx, failedFast); err != nil {
		return err
	}
	say("The circuit is Open: the caller's breakerclient.Call fails fast with an OpenError and sends nothing to the target")

	say("Step 3/3: healing the target (POST %s/heal) while Open; no probe is sent until its %s timeout passes, "+
		"then the circuit goes HalfOpen, a trial probe succeeds and it closes", base, sampleTimeout)
	if err := post(ctx, base+"/heal"); err != nil {
		return err
	}
	if err := waitFor(ctx, cp, "{.status.state}", "Closed"); err != nil {
		return err
	}
	if err := app.waitOutcome(ctx, wentThrough); err != nil {
		return err
	}
	say("The circuit is Closed again: the caller's calls go through to the target again")
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	say("The cycle is done: Closed -> Open -> HalfOpen -> Closed. Now it is yours to drive:")
	return nil
}

// waitFor polls the sample breaker until the JSONPath shows want.
func waitFor(ctx context.Context, cp *localcp.ControlPlane, jsonPath, want string) error {
	for {
		out, err := cp.Kubectl(ctx, "get", "circuitbreaker", sampleBreaker, "-o", "jsonpath="+jsonPath).Output()
		if err == nil && strings.TrimSpace(string(out)) == want {
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func post(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}
