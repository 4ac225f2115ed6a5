// Package grpctarget runs gRPC servers with the standard health service on
// loopback for tests, counting the connections they hold open.
package grpctarget

import (
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Server is a running gRPC server.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Health is the standard health service, unless Options.Register replaced it.
	Health *health.Server
	open   atomic.Int64
}

// Options configure a Server.
type Options struct {
	// TLS, when set, makes the server speak TLS.
	TLS *tls.Config
	// Register, when set, registers the services instead of the standard health service.
	Register func(*grpc.Server, *health.Server)
	// Extra are more server options.
	Extra []grpc.ServerOption
}

// Start runs a server until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), Health: health.NewServer()}
	opts := o.Extra
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	server := grpc.NewServer(opts...)
	if o.Register != nil {
		o.Register(server, s.Health)
	} else {
		healthpb.RegisterHealthServer(server, s.Health)
	}
	go func() { _ = server.Serve(countingListener{Listener: ln, open: &s.open}) }()
	t.Cleanup(server.Stop)
	return s
}

// Open is how many connections the server holds open.
func (s *Server) Open() int64 { return s.open.Load() }

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

// HostPort splits the server's address into the host and port of an endpoint.
func (s *Server) HostPort(t testing.TB) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, int32(n)
}
