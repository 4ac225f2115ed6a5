package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
)

// grpcServer is a gRPC server on loopback with the standard health service,
// counting the connections it holds open.
type grpcServer struct {
	addr   string
	health *health.Server
	open   atomic.Int64
	server *grpc.Server
}

type grpcServerOptions struct {
	creds credentials.TransportCredentials
	// register replaces the standard health service.
	register func(*grpc.Server, *health.Server)
	extra    []grpc.ServerOption
}

func startGRPCServer(t *testing.T, o grpcServerOptions) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcServer{addr: ln.Addr().String(), health: health.NewServer()}
	opts := o.extra
	if o.creds != nil {
		opts = append(opts, grpc.Creds(o.creds))
	}
	s.server = grpc.NewServer(opts...)
	if o.register != nil {
		o.register(s.server, s.health)
	} else {
		healthpb.RegisterHealthServer(s.server, s.health)
	}
	go func() { _ = s.server.Serve(countingListener{Listener: ln, open: &s.open}) }()
	t.Cleanup(s.server.Stop)
	return s
}

// countingListener counts the accepted connections not yet closed.
type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

func grpcTarget(scheme Scheme, addr, service string) Target {
	return Target{Scheme: scheme, Address: addr, Timeout: 2 * time.Second, GRPC: &GRPCSettings{Service: service}}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate.
type testPKI struct {
	caPEM                    []byte
	pool                     *x509.CertPool
	server                   tls.Certificate
	clientCert, clientKey    []byte
	strangerCert, strangerKy []byte
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, caKey, caPEM := issue(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	pki := &testPKI{caPEM: caPEM, pool: x509.NewCertPool()}
	pki.pool.AddCert(ca)
	_, serverKey, serverPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "server"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	var err error
	if pki.server, err = tls.X509KeyPair(serverPEM, keyPEM(t, serverKey)); err != nil {
		t.Fatal(err)
	}
	_, clientKey, clientPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "breaker-operator"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	pki.clientCert, pki.clientKey = clientPEM, keyPEM(t, clientKey)
	_, strangerKey, strangerPEM := issue(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "stranger"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	pki.strangerCert, pki.strangerKy = strangerPEM, keyPEM(t, strangerKey)
	return pki
}

var serial atomic.Int64

// issue signs tmpl with parent (itself when nil).
func issue(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func TestProbeGRPCJudgesTheHealthStatus(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	srv.health.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	srv.health.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	srv.health.SetServingStatus("unsure", healthpb.HealthCheckResponse_UNKNOWN)
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
		got := p.Probe(context.Background(), grpcTarget(GRPC, srv.addr, tc.service))
		if got.Success != tc.ok || got.Reason != tc.reason {
			t.Errorf("service %q: got success=%t reason=%q, want %t %q", tc.service, got.Success, got.Reason, tc.ok, tc.reason)
		}
	}
}

func TestProbeGRPCURLIsParsedWithItsDefaults(t *testing.T) {
	srv := startGRPCServer(t, grpcServerOptions{})
	tg, err := ParseURL("grpc://"+srv.addr, time.Second)
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
	hanging := hangingListener(t)
	p := loopbackProber(t)
	for name, tc := range map[string]struct {
		p      *Prober
		target Target
		reason circuitv1alpha1.ProbeReason
	}{
		"hanging server":  {p, withTimeout(grpcTarget(GRPC, hanging.Addr().String(), ""), 300*time.Millisecond), ReasonTimeout},
		"closed port":     {p, grpcTarget(GRPC, closedPort(t), ""), ReasonConnectionRefused},
		"unresolvable":    {p, grpcTarget(GRPC, "no-such-host.invalid:9090", ""), ReasonDNS},
		"guarded address": {New(Options{Guard: mustGuard(t, nil, nil, false)}), grpcTarget(GRPC, closedPort(t), ""), ReasonDenied},
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
	pki := newTestPKI(t)
	tlsSrv := startGRPCServer(t, grpcServerOptions{creds: credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.server}})})
	mtlsSrv := startGRPCServer(t, grpcServerOptions{creds: credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool,
	})})
	plainSrv := startGRPCServer(t, grpcServerOptions{})
	p := loopbackProber(t)
	trusted := &TLS{CAPEM: pki.caPEM}
	withClient := &TLS{CAPEM: pki.caPEM, ClientCertPEM: pki.clientCert, ClientKeyPEM: pki.clientKey}
	withStranger := &TLS{CAPEM: pki.caPEM, ClientCertPEM: pki.strangerCert, ClientKeyPEM: pki.strangerKy}
	for name, tc := range map[string]struct {
		scheme Scheme
		addr   string
		tls    *TLS
		ok     bool
		reason circuitv1alpha1.ProbeReason
	}{
		"TLS, trusted CA":                   {GRPCS, tlsSrv.addr, trusted, true, ReasonOK},
		"TLS, system roots":                 {GRPCS, tlsSrv.addr, nil, false, ReasonTLS},
		"grpcs to a plaintext server":       {GRPCS, plainSrv.addr, trusted, false, ReasonTLS},
		"mutual TLS with the client cert":   {GRPCS, mtlsSrv.addr, withClient, true, ReasonOK},
		"mutual TLS without a client cert":  {GRPCS, mtlsSrv.addr, trusted, false, ReasonTLS},
		"mutual TLS with an unknown issuer": {GRPCS, mtlsSrv.addr, withStranger, false, ReasonTLS},
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
		register: func(*grpc.Server, *health.Server) {},
		extra: []grpc.ServerOption{
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
		got := loopbackProber(t).Probe(context.Background(), grpcTarget(GRPC, srv.addr, ""))
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
	if got := loopbackProber(t).Probe(context.Background(), grpcTarget(GRPC, srv.addr, "")); !got.Success {
		t.Fatalf("got %+v", got)
	}
}

func TestProbeGRPCRoundProbesEachEndpoint(t *testing.T) {
	up := startGRPCServer(t, grpcServerOptions{})
	down := startGRPCServer(t, grpcServerOptions{})
	down.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	tg := Target{Scheme: GRPC, Timeout: 2 * time.Second, GRPC: &GRPCSettings{},
		Round: &Round{Endpoints: []Endpoint{endpointOf(t, up.addr), endpointOf(t, down.addr)}, FailurePercent: 50}}
	got := loopbackProber(t).Probe(context.Background(), tg)
	if got.Success || got.Reason != ReasonGRPCNotServing || len(got.Endpoints) != 2 || !got.Endpoints[0].Success {
		t.Fatalf("got %+v", got)
	}
}
