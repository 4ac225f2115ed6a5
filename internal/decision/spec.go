package decision

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/breaker"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// Settings is a breaker's spec, parsed once per reconcile.
type Settings struct {
	Policy   breaker.Policy
	Interval time.Duration
	Target   probe.Target
	// SpecID identifies what is probed and how; results of an older one are dropped.
	SpecID string
}

func ParseSpec(spec circuitv1alpha1.CircuitBreakerSpec) (Settings, error) {
	var s Settings
	var err error
	// Objects stored without API-server defaulting (old manifests) get the CRD's defaults.
	s.Policy.Threshold = orDefault(spec.Threshold, circuitv1alpha1.DefaultThreshold)
	s.Policy.SuccessThreshold = orDefault(spec.SuccessThreshold, circuitv1alpha1.DefaultSuccessThreshold)
	if s.Policy.Timeout, err = parseDuration("timeout", spec.Timeout, circuitv1alpha1.DefaultTimeout); err != nil {
		return s, err
	}
	if s.Interval, err = parseDuration("interval", spec.Interval, circuitv1alpha1.DefaultInterval); err != nil {
		return s, err
	}
	retryTimeout, err := parseDuration("retryTimeout", spec.RetryTimeout, circuitv1alpha1.DefaultRetryTimeout)
	if err != nil {
		return s, err
	}
	if err := parsePolicy(spec, &s.Policy); err != nil {
		return s, err
	}
	var statuses []string
	if spec.HTTP != nil {
		for _, r := range spec.HTTP.ExpectedStatuses {
			statuses = append(statuses, string(r))
		}
	}
	expected, err := probe.ParseStatusRanges(statuses)
	if err != nil {
		return s, fmt.Errorf("http.expectedStatuses: %w", err)
	}
	how := retryTimeout.String() + "|" + strings.Join(statuses, ",") + "|" + HTTPSpecID(spec.HTTP) + grpcSpecID(spec.GRPC)
	if svc := spec.Target.Service; svc != nil {
		s.Target = serviceTarget(svc, retryTimeout, int(orDefault(spec.FailurePercent, circuitv1alpha1.DefaultFailurePercent)))
		s.SpecID = fmt.Sprintf("service|%s|%s|%s|%s|%d|%s", svc.Name, svc.Port.String(), s.Target.Scheme,
			s.Target.Round.Path, s.Target.Round.FailurePercent, how)
	} else {
		if s.Target, err = probe.ParseURL(spec.Target.URL, retryTimeout); err != nil {
			return s, fmt.Errorf("target.%w", err)
		}
		s.SpecID = "url|" + spec.Target.URL + "|" + how
	}
	s.Target.Expected = expected
	grpcSettings(spec, &s.Target)
	return s, nil
}

// parsePolicy reads the trip policies and the mode. They change how results
// are judged, not what is probed, so they are no part of specID.
func parsePolicy(spec circuitv1alpha1.CircuitBreakerSpec, p *breaker.Policy) error {
	if fr := spec.FailureRate; fr != nil {
		p.FailureRate = &breaker.RatePolicy{Window: fr.Window, MinimumProbes: fr.MinimumProbes, Percent: fr.Percent}
	}
	if spec.SlowProbe != "" {
		d, err := parseDuration("slowProbe", spec.SlowProbe, "")
		if err != nil {
			return err
		}
		p.SlowProbe = d
	}
	if b := spec.Backoff; b != nil {
		maxTimeout, err := parseDuration("backoff.maxTimeout", b.MaxTimeout, "")
		if err != nil {
			return err
		}
		p.Backoff = &breaker.Backoff{Multiplier: orDefault(b.Multiplier, 2), MaxTimeout: maxTimeout, JitterPercent: b.JitterPercent}
	}
	switch spec.Mode {
	case "", circuitv1alpha1.ModeAuto:
		p.Mode = breaker.ModeAuto
	case circuitv1alpha1.ModeForcedOpen:
		p.Mode = breaker.ModeForcedOpen
	case circuitv1alpha1.ModeForcedClosed:
		p.Mode = breaker.ModeForcedClosed
	default:
		return fmt.Errorf("mode %q is not Auto, ForcedOpen or ForcedClosed", spec.Mode)
	}
	return nil
}

// SeedOf derives the per-breaker seed of its backoff jitter and first-probe
// spread from its UID: stable across restarts, different between breakers.
func SeedOf(uid types.UID) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return h.Sum64()
}

// serviceTarget is the probe round for a Service target; its endpoints are
// filled in from the cache at each reconcile.
func serviceTarget(svc *circuitv1alpha1.ServiceTarget, timeout time.Duration, failurePercent int) probe.Target {
	scheme := probe.Scheme(strings.ToLower(string(svc.Scheme)))
	if scheme == "" {
		scheme = probe.HTTP
	}
	path := svc.Path
	if path == "" {
		path = "/"
	}
	return probe.Target{Scheme: scheme, Timeout: timeout, Round: &probe.Round{Path: path, FailurePercent: failurePercent}}
}

func orDefault(v, def int32) int32 {
	if v <= 0 {
		return def
	}
	return v
}

func parseDuration(field string, v, def circuitv1alpha1.GoDuration) (time.Duration, error) {
	if v == "" {
		v = def
	}
	d, err := time.ParseDuration(string(v))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive duration", field, v)
	}
	return d, nil
}

// HTTPSpecID describes the headers and TLS settings without any value, so that a
// change of them probes at once while secret values never enter an identifier.
func HTTPSpecID(h *circuitv1alpha1.HTTPProbe) string {
	if h == nil {
		return ""
	}
	var b strings.Builder
	for _, hd := range h.Headers {
		b.WriteString(hd.Name + ";")
		if hd.ValueFrom != nil {
			b.WriteString(hd.ValueFrom.SecretKeyRef.Name + "/" + hd.ValueFrom.SecretKeyRef.Key + ";")
		}
	}
	b.WriteString(tlsSpecID(h.TLS))
	return b.String()
}
