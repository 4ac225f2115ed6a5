package probe

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// Reasons a probe reports: the API's ProbeReason values, named here for short.
const (
	ReasonOK                 = circuitv1alpha1.ProbeReasonOK
	ReasonTimeout            = circuitv1alpha1.ProbeReasonTimeout
	ReasonConnectionRefused  = circuitv1alpha1.ProbeReasonConnectionRefused
	ReasonDNS                = circuitv1alpha1.ProbeReasonDNS
	ReasonTLS                = circuitv1alpha1.ProbeReasonTLS
	ReasonHTTPStatus         = circuitv1alpha1.ProbeReasonHTTPStatus
	ReasonGRPCNotServing     = circuitv1alpha1.ProbeReasonGRPCNotServing
	ReasonGRPCUnknown        = circuitv1alpha1.ProbeReasonGRPCUnknown
	ReasonGRPCServiceUnknown = circuitv1alpha1.ProbeReasonGRPCServiceUnknown
	ReasonGRPCStatus         = circuitv1alpha1.ProbeReasonGRPCStatus
	ReasonDenied             = circuitv1alpha1.ProbeReasonDenied
	ReasonNoEndpoints        = circuitv1alpha1.ProbeReasonNoEndpoints
	ReasonOther              = circuitv1alpha1.ProbeReasonOther
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
	// loopback listeners; production leaves it nil. The guard still judges
	// addresses that are IP literals.
	Dial DialContextFunc
	// UserAgent is sent with every HTTP probe.
	UserAgent string
	// FreshConnections opens a connection for every HTTP(S) probe and closes it
	// after, as kubelet does, instead of keeping one idle connection per target
	// host for the next probe.
	FreshConnections bool

	// bufferBytes, when not zero, replaces transportBufferBytes; benchmarks set
	// it to compare sizes.
	bufferBytes int
}

// maxHeaderBytes caps a response's header block: a health check needs a few
// hundred bytes, and net/http's default (10 MiB) lets a hostile target make
// every probe cost megabytes.
const maxHeaderBytes = 16 << 10

// transportBufferBytes sizes each connection's read and write buffers (net/http's
// default is 4 KiB each). An idle kept connection holds both, so they are most
// of what one costs: BenchmarkConnectionIdle measured 20.9 KiB per idle HTTP
// connection and 29.5 KiB per HTTPS one with 4 KiB buffers, 13.3 and 21.8 KiB
// with these (8 KiB of each is its two goroutines' stacks). A probe's request
// and the head of its answer fit in 1 KiB; longer header lines are read in
// pieces, still within maxHeaderBytes.
const transportBufferBytes = 1 << 10

// errInformational aborts a request when the target answers 1xx: the probe is
// judged on that status, and the connection is closed, never read further.
var errInformational = errors.New("informational answer")

// Prober sends probes. It is safe for concurrent use. HTTP connections are
// pooled per target (unless FreshConnections) so that steady probing costs one
// request, not one handshake; targets whose TLS settings or allowed ranges differ never share a
// connection.
type Prober struct {
	guard     *Guard
	baseDial  DialContextFunc
	userAgent string
	fresh     bool
	// bufferBytes sizes each connection's read and write buffers.
	bufferBytes int
	// plain serves targets with default TLS settings and no namespace restriction.
	plain *http.Client

	mu sync.Mutex
	// shared holds the other clients, each with the number of targets that use
	// it (see Retain); a client no target uses is dropped.
	shared map[string]*sharedClient
}

type sharedClient struct {
	client    *http.Client
	transport *http.Transport
	users     int
}

// New returns a Prober.
func New(opts Options) *Prober {
	p := &Prober{
		guard:       opts.Guard,
		baseDial:    opts.Dial,
		userAgent:   opts.UserAgent,
		fresh:       opts.FreshConnections,
		bufferBytes: cmp.Or(opts.bufferBytes, transportBufferBytes),
		shared:      map[string]*sharedClient{},
	}
	p.plain = newClient(p.newTransport(opts.Guard))
	return p
}

func (p *Prober) newTransport(g *Guard) *http.Transport {
	return &http.Transport{
		DialContext:            g.dialer(p.baseDial),
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    0, // bounded by the probe's context
		DisableKeepAlives:      p.fresh,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        5 * time.Minute,
		MaxResponseHeaderBytes: maxHeaderBytes,
		ReadBufferSize:         p.bufferBytes,
		WriteBufferSize:        p.bufferBytes,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
	}
}

func newClient(transport *http.Transport) *http.Client {
	return &http.Client{
		Transport: transport,
		// A redirect is an answer like any other, judged by its status.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// guardFor is the guard a target's connections go through.
func (p *Prober) guardFor(t Target) *Guard {
	if !t.Restricted {
		return p.guard
	}
	return p.guard.Restrict(t.Allowed)
}

// clientKey names the client an HTTP(S) target uses; empty is the plain one.
func clientKey(t Target) string {
	var key string
	if settings := effectiveTLS(t); t.Scheme == HTTPS && settings != nil {
		key = "tls:" + settings.key()
	}
	if t.Restricted {
		key += "|allow:" + prefixesKey(t.Allowed)
	}
	return key
}

func prefixesKey(prefixes []netip.Prefix) string {
	parts := make([]string, len(prefixes))
	for i, p := range prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// effectiveTLS is the TLS settings a target's requests use: a Service round's
// endpoints are dialled by IP but present the Service's name.
func effectiveTLS(t Target) *TLS {
	settings := t.TLS
	if t.Round != nil && t.Round.ServerName != "" {
		if settings == nil {
			settings = &TLS{}
		}
		if settings.ServerName == "" {
			withName := *settings
			withName.ServerName = t.Round.ServerName
			settings = &withName
		}
	}
	return settings
}

// Retain records that a breaker probes t, so that the client it needs is kept
// (and shared) until the matching Release.
func (p *Prober) Retain(t Target) {
	key := clientKey(t)
	if key == "" || !usesHTTPClient(t) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.shared[key]; ok {
		c.users++
		return
	}
	c, err := p.buildClient(t)
	if err != nil {
		return // the probe reports it
	}
	c.users = 1
	p.shared[key] = c
}

// Release undoes one Retain of t; a client no breaker uses any more is dropped
// with its idle connections.
func (p *Prober) Release(t Target) {
	key := clientKey(t)
	if key == "" || !usesHTTPClient(t) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.shared[key]
	if !ok {
		return
	}
	if c.users--; c.users <= 0 {
		delete(p.shared, key)
		c.transport.CloseIdleConnections()
	}
}

// usesHTTPClient reports whether t is probed with an HTTP client (gRPC targets
// open a connection of their own per probe or stream).
func usesHTTPClient(t Target) bool {
	return t.Scheme == HTTP || t.Scheme == HTTPS
}

// sharedClients returns how many non-plain clients are kept (for tests).
func (p *Prober) sharedClients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.shared)
}

// clientFor returns the client for t and a function to call when the probe is
// done: a client built for a target no one retained is not kept.
func (p *Prober) clientFor(t Target) (*http.Client, func(), error) {
	key := clientKey(t)
	if key == "" {
		return p.plain, func() {}, nil
	}
	p.mu.Lock()
	c, ok := p.shared[key]
	p.mu.Unlock()
	if ok {
		return c.client, func() {}, nil
	}
	c, err := p.buildClient(t)
	if err != nil {
		return nil, nil, err
	}
	return c.client, c.transport.CloseIdleConnections, nil
}

func (p *Prober) buildClient(t Target) (*sharedClient, error) {
	transport := p.newTransport(p.guardFor(t))
	if settings := effectiveTLS(t); t.Scheme == HTTPS && settings != nil {
		if err := settings.apply(transport.TLSClientConfig); err != nil {
			return nil, err
		}
	}
	return &sharedClient{client: newClient(transport), transport: transport}, nil
}

// apply sets the verification and client certificate of settings on cfg.
func (t *TLS) apply(cfg *tls.Config) error {
	cfg.ServerName = t.ServerName
	cfg.InsecureSkipVerify = t.InsecureSkipVerify //nolint:gosec // asked for, and reported in Ready
	if len(t.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CAPEM) {
			return errors.New("the CA bundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(t.ClientCertPEM) > 0 {
		cert, err := tls.X509KeyPair(t.ClientCertPEM, t.ClientKeyPEM)
		if err != nil {
			return errors.New("the client certificate and key do not form a key pair")
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
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
	case t.Scheme.IsGRPC():
		r = p.probeGRPC(ctx, t)
	default:
		r = p.probeHTTP(ctx, t)
	}
	r.Start = start
	r.Latency = time.Since(start)
	return r
}

func (p *Prober) probeTCP(ctx context.Context, t Target) Result {
	conn, err := p.guardFor(t).dialer(p.baseDial)(ctx, "tcp", t.Address)
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
	switch {
	case t.Scheme == TCP:
		r = p.probeTCP(ctx, Target{Address: addr, Allowed: t.Allowed, Restricted: t.Restricted})
	case t.Scheme.IsGRPC():
		r = p.probeGRPC(ctx, endpointTarget(t, ep))
	default:
		u := (&url.URL{Scheme: string(t.Scheme), Host: addr, Path: t.Round.Path}).String()
		r = p.probeHTTP(ctx, Target{Scheme: t.Scheme, URL: u, Expected: t.Expected, Headers: t.Headers, TLS: t.TLS,
			Round: t.Round, Allowed: t.Allowed, Restricted: t.Restricted})
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
	client, done, err := p.clientFor(t)
	if err != nil {
		return Result{Reason: ReasonTLS}
	}
	defer done()
	informational := 0
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			informational = code
			return errInformational
		},
	})
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
	if t.Round != nil && t.Round.ServerName != "" {
		req.Host = t.Round.ServerName
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, errInformational) {
			return judgeStatus(t.Expected, informational)
		}
		return Result{Reason: Classify(ctx, err)}
	}
	if resp.StatusCode < 200 {
		// 101 Switching Protocols hands over the raw connection, which the
		// request's context no longer closes: never read it.
		_ = resp.Body.Close()
		return judgeStatus(t.Expected, resp.StatusCode)
	}
	// The body is read (up to a cap) so that the connection can be reused; a
	// body that is not done by the deadline fails the probe.
	_, err = io.CopyN(io.Discard, resp.Body, maxBodyBytes)
	_ = resp.Body.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return Result{Reason: Classify(ctx, err), HTTPStatus: resp.StatusCode}
	}
	return judgeStatus(t.Expected, resp.StatusCode)
}

func judgeStatus(expected []StatusRange, code int) Result {
	if !Accepts(expected, code) {
		return Result{Reason: ReasonHTTPStatus, HTTPStatus: code}
	}
	return Result{Success: true, Reason: ReasonOK, HTTPStatus: code}
}

// isTLSAlert reports whether err is a TLS alert the peer sent, such as a
// server's refusal of the client's certificate, which crypto/tls reports as
// a net.OpError of op "remote error".
func isTLSAlert(err error) bool {
	var opErr *net.OpError
	var alertErr tls.AlertError
	return errors.As(err, &alertErr) || (errors.As(err, &opErr) && opErr.Op == "remote error")
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
		errors.As(err, &invalidErr), errors.As(err, &recordErr), isTLSAlert(err),
		// net/http replaces the RecordHeaderError of a plain HTTP answer with this.
		errors.Is(err, http.ErrSchemeMismatch):
		return ReasonTLS
	case errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	}
	return ReasonOther
}
