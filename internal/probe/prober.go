package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Reasons a probe reports. They are a small fixed set so that they can serve as
// metric labels; none carries anything the target sent.
const (
	ReasonOK                = "ok"
	ReasonTimeout           = "timeout"
	ReasonConnectionRefused = "connection_refused"
	ReasonDNS               = "dns"
	ReasonTLS               = "tls"
	ReasonHTTPStatus        = "http_status"
	ReasonDenied            = "denied"
	ReasonOther             = "other"
)

// maxBodyBytes is how much of a response body is read (and discarded) so that
// the connection can be reused; the rest is dropped with the connection.
const maxBodyBytes = 4 << 10

// Result is the outcome of one probe.
type Result struct {
	Start      time.Time
	Latency    time.Duration
	Success    bool
	Reason     string
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
	client    *http.Client
	userAgent string
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
		client: &http.Client{
			Transport: transport,
			// A redirect is an answer like any other, judged by its status.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Probe sends one probe to t and waits at most t.Timeout for it.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var r Result
	if t.Scheme == TCP {
		r = p.probeTCP(ctx, t)
	} else {
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

func (p *Prober) probeHTTP(ctx context.Context, t Target) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return Result{Reason: ReasonOther}
	}
	if p.userAgent != "" {
		req.Header.Set("User-Agent", p.userAgent)
	}
	resp, err := p.client.Do(req)
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
func Classify(ctx context.Context, err error) string {
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
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return ReasonTLS
	case errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	}
	return ReasonOther
}
