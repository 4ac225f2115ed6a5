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

// story is what the cycle says of one sample breaker of config/samples.
type story struct {
	breaker string
	// healthy, broken and healed narrate steps 1 to 3; %[1]s is the target's
	// control URL.
	healthy, broken, healed string
}

// The sample breakers' stories; they quote the samples' settings.
var (
	httpStory = story{
		breaker: "user-api",
		healthy: "Step 1/3: the target is healthy; letting the breaker probe it a few times (every 2s)",
		broken:  "Step 2/3: breaking the target (POST %[1]s/break): /healthz answers 503; the circuit opens after 3 failed probes",
		healed: "Step 3/3: healing the target (POST %[1]s/heal) while Open; no probe is sent until its 15s timeout passes, " +
			"then the circuit goes HalfOpen, a trial probe succeeds and it closes",
	}
	grpcStory = story{
		breaker: "user-api-grpc",
		healthy: "Step 1/3: the target's gRPC health service says SERVING on a Health/Watch stream the breaker holds (judged every 30s)",
		broken: "Step 2/3: breaking the target (POST %[1]s/break): its health service pushes NOT_SERVING on the stream; " +
			"the circuit opens at once, not at the next 30s interval",
		healed: "Step 3/3: healing the target (POST %[1]s/heal) while Open; after its 15s timeout the circuit goes HalfOpen, " +
			"the trial reads SERVING from the stream and it closes",
	}
)

// playStory runs the cycle by itself: a few healthy probes, the target breaks,
// the circuit opens and the caller (if any) fails fast, the target heals while
// Open, the circuit goes HalfOpen and closes, and the caller's calls go through
// again. Each step is told in one line before it happens; the watches started
// before show the breaker and its Events as they come, the caller its calls.
func playStory(ctx context.Context, cp *localcp.ControlPlane, base string, s story, app *caller) error {
	say(s.healthy)
	if err := waitFor(ctx, cp, s.breaker, "{.status.lastProbe.result}", "Success"); err != nil {
		return err
	}
	if err := sleep(ctx, 6*time.Second); err != nil {
		return err
	}

	say(s.broken, base)
	if err := post(ctx, base+"/break"); err != nil {
		return err
	}
	if err := waitFor(ctx, cp, s.breaker, "{.status.state}", "Open"); err != nil {
		return err
	}
	if app != nil {
		if err := app.waitOutcome(ctx, failedFast); err != nil {
			return err
		}
		say("The circuit is Open: the caller's breakerclient.Call fails fast with an OpenError and sends nothing to the target")
	}

	say(s.healed, base)
	if err := post(ctx, base+"/heal"); err != nil {
		return err
	}
	if err := waitFor(ctx, cp, s.breaker, "{.status.state}", "Closed"); err != nil {
		return err
	}
	if app != nil {
		if err := app.waitOutcome(ctx, wentThrough); err != nil {
			return err
		}
		say("The circuit is Closed again: the caller's calls go through to the target again")
	}
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	say("The cycle is done: Closed -> Open -> HalfOpen -> Closed. Now it is yours to drive:")
	return nil
}

// waitFor polls a sample breaker until the JSONPath shows want.
func waitFor(ctx context.Context, cp *localcp.ControlPlane, breaker, jsonPath, want string) error {
	for {
		out, err := cp.Kubectl(ctx, "get", "circuitbreaker", breaker, "-o", "jsonpath="+jsonPath).Output()
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
