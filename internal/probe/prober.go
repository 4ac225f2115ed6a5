package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// Reasons a probe reports: the API's ProbeReason values, named here for short.
const (
	ReasonOK                = circuitv1alpha1.ProbeReasonOK
	ReasonTimeout           = circuitv1alpha1.ProbeReasonTimeout
	ReasonConnectionRefused = circuitv1alpha1.ProbeReasonConnectionRefused
	ReasonDNS               = circuitv1alpha1.ProbeReasonDNS
	ReasonTLS               = circuitv1alpha1.ProbeReasonTLS
	ReasonHTTPStatus        = circuitv1alpha1.ProbeReasonHTTPStatus
	ReasonDenied            = circuitv1alpha1.ProbeReasonDenied
	ReasonNoEndpoints       = circuitv1alpha1.ProbeReasonNoEndpoints
	ReasonOther             = circuitv1alpha1.ProbeReasonOther
)

// maxRoundConcurrency bounds the endpoints of one round probed at once.
const maxRoundConcurrency = 16

// maxBodyBytes is how much of a response body is read (and discarded) so that
// the connection can be reused; the rest is dropped with the connection.
const maxBodyBytes = 4 << 10

// Result is the outcome of one probe, or of one round over a Service's endpoints.
type Result struct {
	Start      time.Time
	Latency    time.Duration
	Success    bool
	Reason     circuitv1alpha1.ProbeReason
	HTTPStatus int
	// Endpoints holds each endpoint's outcome, for a round, in the round's order.
	Endpoints []EndpointResult
}

// EndpointResult is the outcome of probing one endpoint in a round.
type EndpointResult struct {
	Endpoint
	Success    bool
	Reason     circuitv1alpha1.ProbeReason
	HTTPStatus int
}

// DialContextFunc dials a network address, like net.Dialer.DialContext.
type DialContextFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Options configure a Prober.
type Options struct {
	// Guard refuses addresses; nil allows all.
	Guard *Guard
	// Dial replaces the network dialer. Tests use it to map cluster addresses to
	// loopback listeners; production leaves it nil.
	Dial DialContextFunc
	// UserAgent is sent with every HTTP probe.
	UserAgent string
}

// Prober sends probes. It is safe for concurrent use; HTTP connections are
// pooled per target so that steady probing costs one request, not one handshake.
type Prober struct {
	dial      DialContextFunc
	transport *http.Transport
	client    *http.Client
	userAgent string

	mu    sync.Mutex
	byTLS map[string]*http.Client
}

// New returns a Prober.
func New(opts Options) *Prober {
	dial := opts.Dial
	if dial == nil {
		d := &net.Dialer{KeepAlive: -1}
		if opts.Guard != nil {
			d.Control = opts.Guard.control
		}
		dial = d.DialContext
	}
	transport := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 0, // bounded by the probe's context
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &Prober{
		dial:      dial,
		userAgent: opts.UserAgent,
		transport: transport,
		client:    newClient(transport),
		byTLS:     map[string]*http.Client{},
	}
}

func newClient(transport *http.Transport) *http.Client {
	return &http.Client{
		Transport: transport,
		// A redirect is an answer like any other, judged by its status.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientFor returns a client that verifies certificates as settings say. Clients
// are shared by targets with the same settings, so connections are reused.
func (p *Prober) clientFor(settings *TLS) (*http.Client, error) {
	key := settings.key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.byTLS[key]; ok {
		return c, nil
	}
	t := p.transport.Clone()
	t.TLSClientConfig.ServerName = settings.ServerName
	t.TLSClientConfig.InsecureSkipVerify = settings.InsecureSkipVerify //nolint:gosec // asked for, and reported in Ready
	if len(settings.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(settings.CAPEM) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		t.TLSClientConfig.RootCAs = pool
	}
	c := newClient(t)
	p.byTLS[key] = c
	return c, nil
}

// Probe sends one probe to t and waits at most t.Timeout for it.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var r Result
	switch {
	case t.Round != nil:
		r = p.probeRound(ctx, t)
	case t.Scheme == TCP:
		r = p.probeTCP(ctx, t)
	default:
		r = p.probeHTTP(ctx, t)
	}
	r.Start = start
	r.Latency = time.Since(start)
	return r
}

func (p *Prober) probeTCP(ctx context.Context, t Target) Result {
	conn, err := p.dial(ctx, "tcp", t.Address)
	if err != nil {
		return Result{Reason: Classify(ctx, err)}
	}
	_ = conn.Close()
	return Result{Success: true, Reason: ReasonOK}
}

// probeRound probes every endpoint of a round concurrently, each with the
// round's deadline, and judges the round by FailurePercent.
func (p *Prober) probeRound(ctx context.Context, t Target) Result {
	round := t.Round
	if round.Unresolved != "" {
		return Result{Reason: ReasonNoEndpoints}
	}
	if len(round.Endpoints) == 0 {
		return Result{Reason: ReasonNoEndpoints}
	}
	results := make([]EndpointResult, len(round.Endpoints))
	sem := make(chan struct{}, maxRoundConcurrency)
	var wg sync.WaitGroup
	for i, ep := range round.Endpoints {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = p.probeEndpoint(ctx, t, ep)
		}()
	}
	wg.Wait()
	return judgeRound(results, round.FailurePercent)
}

func (p *Prober) probeEndpoint(ctx context.Context, t Target, ep Endpoint) EndpointResult {
	addr := net.JoinHostPort(ep.Address, strconv.Itoa(int(ep.Port)))
	var r Result
	if t.Scheme == TCP {
		r = p.probeTCP(ctx, Target{Address: addr})
	} else {
		u := (&url.URL{Scheme: string(t.Scheme), Host: addr, Path: t.Round.Path}).String()
		r = p.probeHTTP(ctx, Target{Scheme: t.Scheme, URL: u, Expected: t.Expected, Round: t.Round})
	}
	return EndpointResult{Endpoint: ep, Success: r.Success, Reason: r.Reason, HTTPStatus: r.HTTPStatus}
}

// judgeRound fails a round when at least failurePercent of its endpoints
// failed; its reason is that of the first failing endpoint.
func judgeRound(results []EndpointResult, failurePercent int) Result {
	failing, reason := 0, ReasonOK
	for _, r := range results {
		if !r.Success {
			if failing == 0 {
				reason = r.Reason
			}
			failing++
		}
	}
	if failurePercent <= 0 || failurePercent > 100 {
		failurePercent = 100
	}
	ok := failing*100 < failurePercent*len(results)
	if ok {
		reason = ReasonOK
	}
	return Result{Success: ok, Reason: reason, Endpoints: results}
}

func (p *Prober) probeHTTP(ctx context.Context, t Target) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return Result{Reason: ReasonOther}
	}
	for _, h := range t.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	if p.userAgent != "" {
		req.Header.Set("User-Agent", p.userAgent)
	}
	client := p.client
	tlsSettings := t.TLS
	if t.Round != nil && t.Round.ServerName != "" {
		req.Host = t.Round.ServerName
		if tlsSettings == nil {
			tlsSettings = &TLS{}
		}
		if tlsSettings.ServerName == "" {
			// Endpoints are dialled by IP but present the Service's name.
			withName := *tlsSettings
			withName.ServerName = t.Round.ServerName
			tlsSettings = &withName
		}
	}
	if t.Scheme == HTTPS && tlsSettings != nil {
		if client, err = p.clientFor(tlsSettings); err != nil {
			return Result{Reason: ReasonTLS}
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Reason: Classify(ctx, err)}
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxBodyBytes)
	_ = resp.Body.Close()
	if !Accepts(t.Expected, resp.StatusCode) {
		return Result{Reason: ReasonHTTPStatus, HTTPStatus: resp.StatusCode}
	}
	return Result{Success: true, Reason: ReasonOK, HTTPStatus: resp.StatusCode}
}

// Classify maps a probe error to one of the fixed reasons.
func Classify(ctx context.Context, err error) circuitv1alpha1.ProbeReason {
	var (
		dnsErr     *net.DNSError
		netErr     net.Error
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
	)
	switch {
	case errors.Is(err, ErrDenied):
		return ReasonDenied
	case errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return ReasonTimeout
	case errors.As(err, &dnsErr):
		return ReasonDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnectionRefused
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		// net/http replaces the RecordHeaderError of a plain HTTP answer with this.
		errors.Is(err, http.ErrSchemeMismatch):
		return ReasonTLS
	case errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	}
	return ReasonOther
}
