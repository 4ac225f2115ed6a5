package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// maxGRPCMessageBytes caps a message received from a gRPC target: a health
// answer is a few bytes, and gRPC's default (4 MiB) would let a hostile target
// make every probe cost megabytes.
const maxGRPCMessageBytes = 4 << 10

// grpcBufferBytes sizes each gRPC connection's read and write buffers (gRPC's
// default is 32 KiB each); a health call and its answer fit in a few hundred bytes.
const grpcBufferBytes = 4 << 10

// streamKeepalive is how often a held Health/Watch stream's connection is
// pinged, so that a peer that vanished without closing it is noticed. It is
// the least gRPC servers accept by default (their enforcement policy's
// MinTime): shorter would get the connection closed with too_many_pings.
const streamKeepalive = 5 * time.Minute

// grpcFailure remembers why a gRPC connection could not be made: the dial or
// the TLS handshake error, which the failed call's status only carries as text.
type grpcFailure struct {
	mu  sync.Mutex
	err error
	// certAsked: a server asked for a client certificate. Under TLS 1.3 one
	// that refuses it says so after the handshake, in an alert the client may
	// not get to read before the connection is gone.
	certAsked bool
}

func (f *grpcFailure) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *grpcFailure) askedForCertificate() {
	f.mu.Lock()
	f.certAsked = true
	f.mu.Unlock()
}

func (f *grpcFailure) get() (certAsked bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.certAsked, f.err
}

// recordingCreds is TLS (or plaintext) transport credentials that remember
// a handshake's error.
type recordingCreds struct {
	credentials.TransportCredentials
	failure *grpcFailure
}

func (c recordingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err != nil {
		c.failure.set(err)
		return nil, nil, err
	}
	return alertRecordingConn{Conn: out, failure: c.failure}, info, nil
}

// alertRecordingConn remembers a TLS alert read after the handshake: under TLS
// 1.3 a server that refuses the client's certificate says so only then.
type alertRecordingConn struct {
	net.Conn
	failure *grpcFailure
}

func (c alertRecordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && isTLSAlert(err) {
		c.failure.set(err)
	}
	return n, err
}

func (c recordingCreds) Clone() credentials.TransportCredentials {
	return recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), failure: c.failure}
}

// dialGRPC opens a client connection to t.Address (it connects at the first
// call): every dial goes through the probe guard, received messages and
// metadata are capped, and nothing is retried, resolved by gRPC itself or
// sent through a proxy.
func (p *Prober) dialGRPC(t Target, failure *grpcFailure, keepaliveTimeout time.Duration) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	settings := effectiveTLS(t)
	if t.Scheme == GRPCS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if settings != nil {
			if err := settings.apply(cfg); err != nil {
				return nil, err
			}
		}
		certs := cfg.Certificates
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			failure.askedForCertificate()
			if len(certs) > 0 {
				return &certs[0], nil
			}
			return &tls.Certificate{}, nil
		}
		creds = credentials.NewTLS(cfg)
	}
	dial := p.guardFor(t).dialer(p.baseDial)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(recordingCreds{TransportCredentials: creds, failure: failure}),
		grpc.WithContextDialer(func(ctx context.Context, address string) (net.Conn, error) {
			conn, err := dial(ctx, "tcp", address)
			failure.set(err)
			return conn, err
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGRPCMessageBytes)),
		grpc.WithMaxHeaderListSize(maxHeaderBytes),
		grpc.WithReadBufferSize(grpcBufferBytes),
		grpc.WithWriteBufferSize(grpcBufferBytes),
		grpc.WithNoProxy(),
		grpc.WithDisableRetry(),
		grpc.WithDisableServiceConfig(),
		grpc.WithDisableHealthCheck(),
	}
	if p.userAgent != "" {
		opts = append(opts, grpc.WithUserAgent(p.userAgent))
	}
	if t.Round != nil && t.Round.ServerName != "" {
		opts = append(opts, grpc.WithAuthority(t.Round.ServerName))
	}
	if keepaliveTimeout > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: streamKeepalive, Timeout: keepaliveTimeout}))
	}
	// passthrough: the address goes to the dialer as written, which resolves
	// it, so that the guard judges every address a name resolves to.
	return grpc.NewClient("passthrough:///"+t.Address, opts...)
}

// probeGRPC calls Health/Check once, on a connection of its own.
func (p *Prober) probeGRPC(ctx context.Context, t Target) Result {
	failure := &grpcFailure{}
	conn, err := p.dialGRPC(t, failure, 0)
	if err != nil {
		return Result{Reason: ReasonTLS}
	}
	defer func() { _ = conn.Close() }()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: grpcService(t)})
	if err != nil {
		return Result{Reason: classifyGRPC(ctx, err, failure)}
	}
	return judgeHealth(resp.GetStatus())
}

func grpcService(t Target) string {
	if t.GRPC == nil {
		return ""
	}
	return t.GRPC.Service
}

// endpointTarget is the single-address target for one endpoint of a gRPC round.
func endpointTarget(t Target, ep Endpoint) Target {
	return Target{Scheme: t.Scheme, Address: net.JoinHostPort(ep.Address, strconv.Itoa(int(ep.Port))),
		Timeout: t.Timeout, TLS: t.TLS, GRPC: t.GRPC, Round: t.Round, Allowed: t.Allowed, Restricted: t.Restricted}
}

// judgeHealth maps a health status to a result: SERVING is the only success.
func judgeHealth(s healthpb.HealthCheckResponse_ServingStatus) Result {
	switch s {
	case healthpb.HealthCheckResponse_SERVING:
		return Result{Success: true, Reason: ReasonOK}
	case healthpb.HealthCheckResponse_NOT_SERVING:
		return Result{Reason: ReasonGRPCNotServing}
	case healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
		return Result{Reason: ReasonGRPCServiceUnknown}
	}
	return Result{Reason: ReasonGRPCUnknown}
}

// classifyGRPC maps a failed health call to a reason. An UNAVAILABLE call is
// judged by why its connection failed (refused, DNS, TLS, the guard), when it
// did, and is tls when a server that asked for a client certificate broke
// the connection; other codes are grpc_status.
func classifyGRPC(ctx context.Context, err error, failure *grpcFailure) circuitv1alpha1.ProbeReason {
	certAsked, connFailure := failure.get()
	code := status.Code(err)
	switch {
	case code == codes.DeadlineExceeded, ctx.Err() != nil:
		return ReasonTimeout
	case code == codes.NotFound:
		// Check's answer for a service the server does not know.
		return ReasonGRPCServiceUnknown
	case code == codes.Unavailable && connFailure != nil:
		if reason := Classify(ctx, connFailure); reason != ReasonOther {
			return reason
		}
	case code == codes.Unavailable && certAsked:
		return ReasonTLS
	}
	return ReasonGRPCStatus
}

// Watch holds one Health/Watch stream to t (a single address, not a round) and
// calls seen with the result of each status the target sends, until the
// stream ends or ctx is done. It returns the reason the stream ended (or could
// not be opened); the first status must come within t.Timeout. unimplemented
// is true when the target does not implement Watch.
func (p *Prober) Watch(ctx context.Context, t Target, seen func(Result)) (ended circuitv1alpha1.ProbeReason, unimplemented bool) {
	failure := &grpcFailure{}
	conn, err := p.dialGRPC(t, failure, t.Timeout)
	if err != nil {
		return ReasonTLS, false
	}
	defer func() { _ = conn.Close() }()
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var late atomic.Bool
	first := time.AfterFunc(t.Timeout, func() { late.Store(true); cancel() })
	defer first.Stop()
	stream, err := healthpb.NewHealthClient(conn).Watch(streamCtx, &healthpb.HealthCheckRequest{Service: grpcService(t)})
	for err == nil {
		var resp *healthpb.HealthCheckResponse
		if resp, err = stream.Recv(); err == nil {
			if !late.Load() {
				first.Stop()
				seen(judgeHealth(resp.GetStatus()))
			}
		}
	}
	if status.Code(err) == codes.Unimplemented {
		return ReasonGRPCStatus, true
	}
	if late.Load() {
		return ReasonTimeout, false
	}
	return classifyGRPC(ctx, err, failure), false
}

// StreamKey names everything a stream depends on: a change of any (the
// endpoints, the TLS settings and client certificate, the allowed ranges)
// re-establishes the streams.
func StreamKey(t Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s|%t|%s", t.Scheme, t.Address, t.Timeout, grpcService(t), t.Restricted, prefixesKey(t.Allowed))
	if settings := effectiveTLS(t); settings != nil {
		b.WriteString("|" + settings.key())
	}
	if t.Round != nil {
		fmt.Fprintf(&b, "|%d", t.Round.FailurePercent)
		for _, ep := range t.Round.Endpoints {
			fmt.Fprintf(&b, "|%s:%d", ep.Address, ep.Port)
		}
	}
	return b.String()
}

// StreamTargets are the single-address targets of t's streams.
func StreamTargets(t Target) []Target {
	if t.Round == nil {
		return []Target{t}
	}
	out := make([]Target, len(t.Round.Endpoints))
	for i, ep := range t.Round.Endpoints {
		out[i] = endpointTarget(t, ep)
	}
	return out
}

// JudgeRound judges a round from its endpoints' results, as a probe round is
// judged: failed when at least failurePercent of them failed.
func JudgeRound(results []EndpointResult, failurePercent int) Result {
	return judgeRound(results, failurePercent)
}
