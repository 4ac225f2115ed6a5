package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/testnet"
)

const testUserAgent = "breaker-operator-test/1.0"

// mustTarget parses raw and sets the expected statuses (the default when none).
func mustTarget(t *testing.T, raw string, timeout time.Duration, expected []string) Target {
	t.Helper()
	tg, err := ParseURL(raw, timeout)
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", raw, err)
	}
	if tg.Expected, err = ParseStatusRanges(expected); err != nil {
		t.Fatalf("ParseStatusRanges(%q): %v", expected, err)
	}
	return tg
}

// loopbackProber is a Prober whose guard lets it reach the test servers.
func loopbackProber(t *testing.T) *Prober {
	t.Helper()
	return New(Options{Guard: mustGuard(t, nil, nil, true), UserAgent: testUserAgent})
}

// quietTLSServer is an httptest TLS server that does not log failed handshakes.
func quietTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func statusHandler(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "body that must never reach a result")
	}
}

func TestProbeHTTPJudgesTheStatus(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		expected []string
		want     Result
	}{
		{name: "200 with default statuses succeeds", code: 200, want: Result{Success: true, Reason: ReasonOK, HTTPStatus: 200}},
		{name: "204 with default statuses succeeds", code: 204, want: Result{Success: true, Reason: ReasonOK, HTTPStatus: 204}},
		{name: "503 with default statuses fails as http_status", code: 503, want: Result{Reason: ReasonHTTPStatus, HTTPStatus: 503}},
		{name: "404 with default statuses fails as http_status", code: 404, want: Result{Reason: ReasonHTTPStatus, HTTPStatus: 404}},
		{name: "200 outside the expected 204 fails as http_status", code: 200, expected: []string{"204"}, want: Result{Reason: ReasonHTTPStatus, HTTPStatus: 200}},
		{name: "418 inside an expected code succeeds", code: 418, expected: []string{"200-299", "418"}, want: Result{Success: true, Reason: ReasonOK, HTTPStatus: 418}},
		{name: "500 inside an expected range succeeds", code: 500, expected: []string{"500-599"}, want: Result{Success: true, Reason: ReasonOK, HTTPStatus: 500}},
	}
	prober := loopbackProber(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := newCountingServer(t, statusHandler(tt.code))
			before := time.Now()
			res := prober.Probe(context.Background(), mustTarget(t, srv.URL+"/healthz", 5*time.Second, tt.expected))
			g.Expect(res.Start).To(BeTemporally(">=", before))
			g.Expect(res.Latency).To(BeNumerically(">", 0))
			res.Start, res.Latency = time.Time{}, 0
			g.Expect(res).To(Equal(tt.want))
			g.Expect(srv.requests.Load()).To(BeEquivalentTo(1))
		})
	}
}

func TestProbeHTTPDoesNotFollowRedirects(t *testing.T) {
	tests := []struct {
		name     string
		expected []string
		want     Result
	}{
		{name: "302 within the default statuses succeeds", want: Result{Success: true, Reason: ReasonOK, HTTPStatus: http.StatusFound}},
		{name: "302 outside the expected 200 fails as http_status", expected: []string{"200"}, want: Result{Reason: ReasonHTTPStatus, HTTPStatus: http.StatusFound}},
	}
	prober := loopbackProber(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			target := newCountingServer(t, statusHandler(http.StatusOK))
			redirector := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/elsewhere", http.StatusFound)
			})
			res := prober.Probe(context.Background(), mustTarget(t, redirector.URL, 5*time.Second, tt.expected))
			res.Start, res.Latency = time.Time{}, 0
			g.Expect(res).To(Equal(tt.want))
			g.Expect(redirector.requests.Load()).To(BeEquivalentTo(1))
			g.Expect(target.requests.Load()).To(BeZero(), "the redirect was followed")
		})
	}
}

func TestProbeSendsTheUserAgent(t *testing.T) {
	g := NewWithT(t)
	var got atomic.Value
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("User-Agent"))
		w.WriteHeader(http.StatusOK)
	})
	res := loopbackProber(t).Probe(context.Background(), mustTarget(t, srv.URL, 5*time.Second, nil))
	g.Expect(res.Success).To(BeTrue())
	g.Expect(got.Load()).To(Equal(testUserAgent))
}

func TestProbeReusesOneConnectionUnlessFreshConnectionsAreAsked(t *testing.T) {
	const probes = 3
	tests := []struct {
		name      string
		https     bool
		fresh     bool
		wantConns int64
	}{
		{name: "http with keep-alive uses one connection", wantConns: 1},
		{name: "http with fresh connections opens one per probe", fresh: true, wantConns: probes},
		// A CA bundle puts the target on a shared client: the option reaches it too.
		{name: "https with keep-alive uses one connection", https: true, wantConns: 1},
		{name: "https with fresh connections opens one per probe", https: true, fresh: true, wantConns: probes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := newCountingServer(t, statusHandler(http.StatusOK))
			if tt.https {
				srv = newCountingTLSServer(t, statusHandler(http.StatusOK))
			}
			tg := mustTarget(t, srv.URL, 5*time.Second, nil)
			if tt.https {
				tg.TLS = &TLS{CAPEM: srv.caPEM()}
			}
			prober := New(Options{Guard: mustGuard(t, nil, nil, true), FreshConnections: tt.fresh})
			prober.Retain(tg) // as the runner does, so that a shared client is kept between probes
			defer prober.Release(tg)
			for range probes {
				g.Expect(prober.Probe(context.Background(), tg).Success).To(BeTrue())
			}
			g.Expect(srv.requests.Load()).To(BeEquivalentTo(probes))
			g.Expect(srv.conns.Load()).To(BeEquivalentTo(tt.wantConns))
			if tt.fresh {
				g.Eventually(srv.closed.Load).Should(BeEquivalentTo(probes), "a fresh connection is closed after its probe")
			} else {
				g.Consistently(srv.closed.Load, 100*time.Millisecond).Should(BeZero(), "the kept connection was closed")
			}
		})
	}
}

func TestProbeOfAHangingTargetTimesOutAtItsDeadline(t *testing.T) {
	const timeout = time.Second
	addr := testnet.Hanging(t).Addr().String()
	prober := loopbackProber(t)
	for _, raw := range []string{"http://" + addr + "/", "https://" + addr + "/"} {
		t.Run(raw, func(t *testing.T) {
			g := NewWithT(t)
			res := prober.Probe(context.Background(), mustTarget(t, raw, timeout, nil))
			g.Expect(res.Success).To(BeFalse())
			g.Expect(res.Reason).To(Equal(ReasonTimeout))
			g.Expect(res.HTTPStatus).To(BeZero())
			g.Expect(res.Latency).To(BeNumerically(">=", timeout))
			// Half a second of slack for a loaded machine, yet well below twice the
			// deadline, so a probe that waits out a second deadline is caught.
			g.Expect(res.Latency).To(BeNumerically("<", timeout+500*time.Millisecond))
		})
	}
}

func TestProbeOfAClosedPortIsConnectionRefused(t *testing.T) {
	addr := testnet.ClosedPort(t)
	prober := loopbackProber(t)
	for _, raw := range []string{"http://" + addr + "/", "tcp://" + addr} {
		t.Run(raw, func(t *testing.T) {
			g := NewWithT(t)
			res := prober.Probe(context.Background(), mustTarget(t, raw, 5*time.Second, nil))
			g.Expect(res.Success).To(BeFalse())
			g.Expect(res.Reason).To(Equal(ReasonConnectionRefused))
			g.Expect(res.Latency).To(BeNumerically("<", 5*time.Second))
		})
	}
}

func TestProbeTCPSucceedsWhenTheConnectionOpens(t *testing.T) {
	g := NewWithT(t)
	addr := testnet.Hanging(t).Addr().String()
	res := loopbackProber(t).Probe(context.Background(), mustTarget(t, "tcp://"+addr, 5*time.Second, nil))
	g.Expect(res.Success).To(BeTrue())
	g.Expect(res.Reason).To(Equal(ReasonOK))
	g.Expect(res.HTTPStatus).To(BeZero())
	g.Expect(res.Latency).To(BeNumerically("<", 5*time.Second))
}

func TestProbeOfAnUnresolvableHostIsDNS(t *testing.T) {
	const host = "nonexistent.invalid"
	// Without a resolver that answers, the lookup can only time out; that is the
	// environment's fault, not the prober's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var dnsErr *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(ctx, host); !errors.As(err, &dnsErr) || dnsErr.IsTimeout {
		t.Skipf("no DNS resolver answers here: %v", err)
	}
	prober := loopbackProber(t)
	for _, raw := range []string{"http://" + host + "/", "tcp://" + host + ":80"} {
		t.Run(raw, func(t *testing.T) {
			g := NewWithT(t)
			res := prober.Probe(context.Background(), mustTarget(t, raw, 5*time.Second, nil))
			g.Expect(res.Success).To(BeFalse())
			g.Expect(res.Reason).To(Equal(ReasonDNS))
		})
	}
}

func TestProbeHTTPSWithAnUntrustedCertificateIsTLS(t *testing.T) {
	g := NewWithT(t)
	var requests atomic.Int64
	srv := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	res := loopbackProber(t).Probe(context.Background(), mustTarget(t, srv.URL, 5*time.Second, nil))
	g.Expect(res.Success).To(BeFalse())
	g.Expect(res.Reason).To(Equal(ReasonTLS))
	g.Expect(requests.Load()).To(BeZero())
}

func TestProbeHTTPSAgainstPlainHTTPIsTLS(t *testing.T) {
	g := NewWithT(t)
	srv := newCountingServer(t, statusHandler(http.StatusOK))
	res := loopbackProber(t).Probe(context.Background(), mustTarget(t, "https://"+srv.Listener.Addr().String()+"/", 5*time.Second, nil))
	g.Expect(res.Success).To(BeFalse())
	g.Expect(res.Reason).To(Equal(ReasonTLS))
}

// countingConn counts the bytes the prober reads from the network.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// countingWriter counts the bytes a handler manages to write.
type countingWriter struct {
	w       io.Writer
	written *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func TestProbeReadsOnlyTheStartOfAHugeBody(t *testing.T) {
	const bodySize = 10 << 20
	g := NewWithT(t)
	var written atomic.Int64
	srv := newCountingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bodySize))
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		cw := countingWriter{w: w, written: &written}
		for sent := 0; sent < bodySize; sent += len(chunk) {
			if _, err := cw.Write(chunk); err != nil {
				return // the prober hung up, as it should
			}
		}
	})
	// The dialer is replaced (so no guard) only to count what crosses the socket.
	var read atomic.Int64
	d := &net.Dialer{}
	prober := New(Options{UserAgent: testUserAgent, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, read: &read}, nil
	}})

	res := prober.Probe(context.Background(), mustTarget(t, srv.URL, 10*time.Second, nil))
	g.Expect(res.Success).To(BeTrue())
	g.Expect(res.HTTPStatus).To(Equal(http.StatusOK))
	g.Expect(res.Latency).To(BeNumerically("<", 2*time.Second), "the probe waited for the body")
	// maxBodyBytes of body plus the headers and a read buffer or two; far less
	// than the 10 MiB offered.
	g.Expect(read.Load()).To(BeNumerically("<", 64<<10), "the prober read %d bytes", read.Load())
	// What the server wrote depends on socket buffers, so it is only reported.
	t.Logf("prober read %d bytes; server wrote %d of %d bytes", read.Load(), written.Load(), bodySize)
}

func TestClassify(t *testing.T) {
	live := context.Background()
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want circuitv1alpha1.ProbeReason
	}{
		{name: "guard refusal is denied", ctx: live, err: opErr(ErrDenied), want: ReasonDenied},
		{name: "guard refusal is denied even after the deadline", ctx: expired, err: opErr(ErrDenied), want: ReasonDenied},
		{name: "deadline exceeded is timeout", ctx: live, err: fmt.Errorf("get: %w", context.DeadlineExceeded), want: ReasonTimeout},
		{name: "any error after the context ended is timeout", ctx: expired, err: errors.New("read: connection reset"), want: ReasonTimeout},
		{name: "DNS error is dns", ctx: live, err: opErr(&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}), want: ReasonDNS},
		{name: "ECONNREFUSED is connection_refused", ctx: live, err: opErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), want: ReasonConnectionRefused},
		{name: "unknown authority is tls", ctx: live, err: fmt.Errorf("get: %w", x509.UnknownAuthorityError{}), want: ReasonTLS},
		{name: "hostname mismatch is tls", ctx: live, err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}, want: ReasonTLS},
		{name: "a record that is not TLS is tls", ctx: live, err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, want: ReasonTLS},
		{name: "a plain HTTP answer to HTTPS is tls", ctx: live, err: fmt.Errorf("get: %w", http.ErrSchemeMismatch), want: ReasonTLS},
		{name: "network timeout is timeout", ctx: live, err: opErr(timeoutError{}), want: ReasonTimeout},
		{name: "connection reset is other", ctx: live, err: opErr(os.NewSyscallError("read", syscall.ECONNRESET)), want: ReasonOther},
		{name: "unknown error is other", ctx: live, err: errors.New("something else"), want: ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(Classify(tt.ctx, tt.err)).To(Equal(tt.want))
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
