package probe

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/testnet"
	"github.com/resilience-dev/breaker-operator/test/grpctarget"
	"github.com/resilience-dev/breaker-operator/test/pki"
)

// grpcServerOptions and startGRPCServer name the shared test server here.
type grpcServerOptions = grpctarget.Options

func startGRPCServer(t *testing.T, o grpcServerOptions) *grpctarget.Server {
	t.Helper()
	return grpctarget.Start(t, o)
}

func grpcTarget(scheme Scheme, addr, service string) Target {
	return Target{Scheme: scheme, Address: addr, Timeout: 2 * time.Second, GRPC: &GRPCSettings{Service: service}}
}

func TestProbeGRPCJudgesTheHealthStatus(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	srv.Health.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	srv.Health.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	srv.Health.SetServingStatus("unsure", healthpb.HealthCheckResponse_UNKNOWN)
	p := loopbackProber(t)
	for _, tc := range []struct {
		service string
		ok      bool
		reason  circuitv1alpha1.ProbeReason
	}{
		{"", true, ReasonOK}, // the server as a whole
		{"up", true, ReasonOK},
		{"down", false, ReasonGRPCNotServing},
		{"unsure", false, ReasonGRPCUnknown},
		{"never.registered", false, ReasonGRPCServiceUnknown},
	} {
		got := p.Probe(context.Background(), grpcTarget(GRPC, srv.Addr, tc.service))
		if got.Success != tc.ok || got.Reason != tc.reason {
			t.Errorf("service %q: got success=%t reason=%q, want %t %q", tc.service, got.Success, got.Reason, tc.ok, tc.reason)
		}
	}
}

func TestProbeGRPCURLIsParsedWithItsDefaults(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	tg, err := ParseURL("grpc://"+srv.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := loopbackProber(t).Probe(context.Background(), tg); !got.Success {
		t.Fatalf("probe of %s: %+v", tg.Address, got)
	}
	for _, bad := range []string{"grpc://host", "grpcs://host:443/path", "grpc://host:9090?x=1"} {
		if _, err := ParseURL(bad, time.Second); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}

func TestProbeGRPCConnectionFailuresKeepTheirReasons(t *testing.T) {
	hanging := testnet.Hanging(t)
	p := loopbackProber(t)
	for name, tc := range map[string]struct {
		p      *Prober
		target Target
		reason circuitv1alpha1.ProbeReason
	}{
		"hanging server":  {p, withTimeout(grpcTarget(GRPC, hanging.Addr().String(), ""), 300*time.Millisecond), ReasonTimeout},
		"closed port":     {p, grpcTarget(GRPC, testnet.ClosedPort(t), ""), ReasonConnectionRefused},
		"unresolvable":    {p, grpcTarget(GRPC, "no-such-host.invalid:9090", ""), ReasonDNS},
		"guarded address": {New(Options{Guard: mustGuard(t, nil, nil, false)}), grpcTarget(GRPC, testnet.ClosedPort(t), ""), ReasonDenied},
	} {
		start := time.Now()
		got := tc.p.Probe(context.Background(), tc.target)
		if got.Success || got.Reason != tc.reason {
			t.Errorf("%s: got %+v, want reason %q", name, got, tc.reason)
		}
		if took := time.Since(start); took > tc.target.Timeout+time.Second {
			t.Errorf("%s: took %v, deadline %v", name, took, tc.target.Timeout)
		}
	}
}

func withTimeout(t Target, d time.Duration) Target {
	t.Timeout = d
	return t
}

func TestProbeGRPCSVerifiesTheServerAndPresentsTheClientCertificate(t *testing.T) {
	certs := pki.New(t)
	tlsSrv := startGRPCServer(t, grpcServerOptions{TLS: certs.ServerTLS(false)})
	mtlsSrv := startGRPCServer(t, grpcServerOptions{TLS: certs.ServerTLS(true)})
	plainSrv := startGRPCServer(t, grpcServerOptions{})
	p := loopbackProber(t)
	trusted := &TLS{CAPEM: certs.CAPEM}
	withClient := &TLS{CAPEM: certs.CAPEM, ClientCertPEM: certs.Client.Cert, ClientKeyPEM: certs.Client.Key}
	withStranger := &TLS{CAPEM: certs.CAPEM, ClientCertPEM: certs.Stranger.Cert, ClientKeyPEM: certs.Stranger.Key}
	for name, tc := range map[string]struct {
		scheme Scheme
		addr   string
		tls    *TLS
		ok     bool
		reason circuitv1alpha1.ProbeReason
	}{
		"TLS, trusted CA":                   {GRPCS, tlsSrv.Addr, trusted, true, ReasonOK},
		"TLS, system roots":                 {GRPCS, tlsSrv.Addr, nil, false, ReasonTLS},
		"grpcs to a plaintext server":       {GRPCS, plainSrv.Addr, trusted, false, ReasonTLS},
		"mutual TLS with the client cert":   {GRPCS, mtlsSrv.Addr, withClient, true, ReasonOK},
		"mutual TLS without a client cert":  {GRPCS, mtlsSrv.Addr, trusted, false, ReasonTLS},
		"mutual TLS with an unknown issuer": {GRPCS, mtlsSrv.Addr, withStranger, false, ReasonTLS},
	} {
		tg := grpcTarget(tc.scheme, tc.addr, "")
		tg.TLS = tc.tls
		got := p.Probe(context.Background(), tg)
		if got.Success != tc.ok || got.Reason != tc.reason {
			t.Errorf("%s: got success=%t reason=%q, want %t %q", name, got.Success, got.Reason, tc.ok, tc.reason)
		}
	}
}

// rawCodec sends []byte messages as they are, whatever the method expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// hostileHealth answers every health call with what answer sends.
func hostileHealth(answer func(grpc.ServerStream) error) grpcServerOptions {
	return grpcServerOptions{
		Register: func(*grpc.Server, *health.Server) {},
		Extra: []grpc.ServerOption{
			grpc.ForceServerCodec(rawCodec{}), //nolint:staticcheck // the raw codec is the point
			grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
				var req []byte
				if err := stream.RecvMsg(&req); err != nil {
					return err
				}
				return answer(stream)
			}),
		},
	}
}

func TestProbeGRPCRefusesHugeMessagesAndMetadata(t *testing.T) {
	huge := make([]byte, 8<<20)
	for name, answer := range map[string]func(grpc.ServerStream) error{
		"message": func(s grpc.ServerStream) error { return s.SendMsg(&huge) },
		"metadata": func(s grpc.ServerStream) error {
			if err := s.SendHeader(metadata.Pairs("x-huge", strings.Repeat("a", 1<<20))); err != nil {
				return err
			}
			serving := []byte{0x08, 0x01} // status: SERVING
			return s.SendMsg(&serving)
		},
	} {
		srv := startGRPCServer(t, hostileHealth(answer))
		start := time.Now()
		got := loopbackProber(t).Probe(context.Background(), grpcTarget(GRPC, srv.Addr, ""))
		if got.Success || got.Reason != ReasonGRPCStatus {
			t.Errorf("huge %s: got %+v, want a grpc_status failure", name, got)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("huge %s: took %v", name, took)
		}
	}
}

func TestProbeGRPCServesASmallHandMadeAnswer(t *testing.T) {
	// The hostile server above is believed only if it can answer correctly.
	srv := startGRPCServer(t, hostileHealth(func(s grpc.ServerStream) error {
		serving := []byte{0x08, 0x01}
		return s.SendMsg(&serving)
	}))
	if got := loopbackProber(t).Probe(context.Background(), grpcTarget(GRPC, srv.Addr, "")); !got.Success {
		t.Fatalf("got %+v", got)
	}
}

func TestProbeGRPCRoundProbesEachEndpoint(t *testing.T) {
	up := startGRPCServer(t, grpcServerOptions{})
	down := startGRPCServer(t, grpcServerOptions{})
	down.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	tg := Target{Scheme: GRPC, Timeout: 2 * time.Second, GRPC: &GRPCSettings{},
		Round: &Round{Endpoints: []Endpoint{endpointOf(t, up), endpointOf(t, down)}, FailurePercent: 50}}
	got := loopbackProber(t).Probe(context.Background(), tg)
	if got.Success || got.Reason != ReasonGRPCNotServing || len(got.Endpoints) != 2 || !got.Endpoints[0].Success {
		t.Fatalf("got %+v", got)
	}
}

func TestProbeHTTPSPresentsTheClientCertificateAndARotatedOneGetsANewClient(t *testing.T) {
	certs := pki.New(t)
	srv := httptest.NewUnstartedServer(statusHandler(http.StatusOK))
	srv.TLS = certs.ServerTLS(true)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p := loopbackProber(t)
	probe := func(settings *TLS) Result {
		tg := mustTarget(t, srv.URL+"/healthz", 2*time.Second, nil)
		tg.TLS = settings
		p.Retain(tg)
		defer p.Release(tg)
		return p.Probe(context.Background(), tg)
	}
	if got := probe(&TLS{CAPEM: certs.CAPEM, ClientCertPEM: certs.Client.Cert, ClientKeyPEM: certs.Client.Key}); !got.Success {
		t.Fatalf("with the client certificate: %+v", got)
	}
	if got := probe(&TLS{CAPEM: certs.CAPEM}); got.Success || got.Reason != ReasonTLS {
		t.Fatalf("without a client certificate: %+v, want tls", got)
	}
	if got := probe(&TLS{CAPEM: certs.CAPEM, ClientCertPEM: certs.Stranger.Cert, ClientKeyPEM: certs.Stranger.Key}); got.Success || got.Reason != ReasonTLS {
		t.Fatalf("with a certificate the server does not trust: %+v, want tls", got)
	}
}

func endpointOf(t *testing.T, s *grpctarget.Server) Endpoint {
	t.Helper()
	host, port := s.HostPort(t)
	return Endpoint{Address: host, Port: port}
}
