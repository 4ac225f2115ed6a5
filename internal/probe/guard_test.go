package probe

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func mustGuard(t *testing.T, deny, allow []string, allowLoopback bool) *Guard {
	t.Helper()
	g, err := NewGuard(deny, allow, allowLoopback)
	if err != nil {
		t.Fatalf("NewGuard(%v, %v, %v): %v", deny, allow, allowLoopback, err)
	}
	return g
}

func TestGuardAllowed(t *testing.T) {
	strict := mustGuard(t, nil, nil, false)
	withLoopback := mustGuard(t, nil, nil, true)
	allowList := mustGuard(t, nil, []string{"10.0.0.0/8", "fd00::/8", "127.0.0.0/8"}, false)
	denyInsideAllow := mustGuard(t, []string{"10.0.0.0/24"}, []string{"10.0.0.0/8"}, true)
	unmasked := mustGuard(t, []string{"10.1.2.3/8"}, nil, true)
	mappedPrefixes := mustGuard(t, []string{"::ffff:192.0.2.0/120"}, []string{"::ffff:192.0.2.0/120", "::ffff:198.51.100.0/120"}, true)
	tests := []struct {
		name  string
		guard *Guard
		addr  string
		want  bool
	}{
		{name: "default deny refuses the cloud metadata address", guard: withLoopback, addr: "169.254.169.254"},
		{name: "default deny refuses all of IPv4 link-local", guard: withLoopback, addr: "169.254.0.1"},
		{name: "default deny refuses IPv6 link-local", guard: withLoopback, addr: "fe80::1"},
		{name: "default deny refuses IPv6 link-local with a zone", guard: withLoopback, addr: "fe80::1%eth0"},
		{name: "default deny refuses the IPv4 unspecified address", guard: withLoopback, addr: "0.0.0.0"},
		{name: "default deny refuses the IPv6 unspecified address", guard: withLoopback, addr: "::"},
		{name: "IPv4-mapped metadata address is refused", guard: withLoopback, addr: "::ffff:169.254.169.254"},
		{name: "default deny allows a cluster address", guard: strict, addr: "10.96.0.10", want: true},
		{name: "default deny allows a public address", guard: strict, addr: "203.0.113.7", want: true},
		{name: "default deny allows a global IPv6 address", guard: strict, addr: "2001:db8::1", want: true},
		{name: "default deny allows a unique-local IPv6 address", guard: strict, addr: "fd12::1", want: true},
		{name: "loopback is refused by default", guard: strict, addr: "127.0.0.1"},
		{name: "all of 127/8 is loopback", guard: strict, addr: "127.8.9.10"},
		{name: "IPv6 loopback is refused by default", guard: strict, addr: "::1"},
		{name: "IPv4-mapped loopback is refused by default", guard: strict, addr: "::ffff:127.0.0.1"},
		{name: "loopback is allowed when asked", guard: withLoopback, addr: "127.0.0.1", want: true},
		{name: "IPv6 loopback is allowed when asked", guard: withLoopback, addr: "::1", want: true},
		{name: "IPv4-mapped loopback is allowed when asked", guard: withLoopback, addr: "::ffff:127.0.0.1", want: true},
		{name: "allow list admits an address inside it", guard: allowList, addr: "10.1.2.3", want: true},
		{name: "allow list admits an IPv6 address inside it", guard: allowList, addr: "fd00::1", want: true},
		{name: "allow list admits an IPv4-mapped address inside it", guard: allowList, addr: "::ffff:10.1.2.3", want: true},
		{name: "allow list refuses an address outside it", guard: allowList, addr: "192.168.1.1"},
		{name: "allow list refuses an IPv6 address outside it", guard: allowList, addr: "2001:db8::1"},
		{name: "allow list does not admit loopback without allowLoopback", guard: allowList, addr: "127.0.0.1"},
		{name: "deny wins over allow", guard: denyInsideAllow, addr: "10.0.0.5"},
		{name: "allow still admits outside the denied part", guard: denyInsideAllow, addr: "10.0.1.5", want: true},
		{name: "deny CIDR with host bits set denies the whole network", guard: unmasked, addr: "10.200.0.1"},
		{name: "deny CIDR with host bits set leaves other networks", guard: unmasked, addr: "11.0.0.1", want: true},
		{name: "IPv4-mapped address in a denied network is refused", guard: denyInsideAllow, addr: "::ffff:10.0.0.5"},
		{name: "a custom deny list adds to the built-in one", guard: unmasked, addr: "169.254.169.254"},
		{name: "AWS IPv6 metadata is always refused", guard: withLoopback, addr: "fd00:ec2::254"},
		{name: "AWS IPv6 time sync is always refused", guard: withLoopback, addr: "fd00:ec2::23"},
		{name: "Alibaba Cloud metadata is always refused", guard: withLoopback, addr: "100.100.100.200"},
		{name: "Azure wire server is always refused", guard: withLoopback, addr: "168.63.129.16"},
		{name: "Oracle Cloud metadata is always refused", guard: withLoopback, addr: "192.0.0.192"},
		{name: "metadata is refused even inside an allow list", guard: mustGuard(t, nil, []string{"0.0.0.0/0", "::/0"}, true), addr: "100.100.100.200"},
		{name: "a neighbour of Alibaba's metadata address is allowed", guard: strict, addr: "100.100.100.201", want: true},
		{name: "NAT64 form of the metadata address is refused", guard: withLoopback, addr: "64:ff9b::a9fe:a9fe"},
		{name: "IPv4-compatible form of the metadata address is refused", guard: withLoopback, addr: "::169.254.169.254"},
		{name: "6to4 form of the metadata address is refused", guard: withLoopback, addr: "2002:a9fe:a9fe::1"},
		{name: "NAT64 form of loopback is refused by default", guard: strict, addr: "64:ff9b::7f00:1"},
		{name: "6to4 form of a denied network is refused", guard: denyInsideAllow, addr: "2002:0a00:0005::1"},
		{name: "NAT64 form of a public address is allowed", guard: strict, addr: "64:ff9b::cb00:7107", want: true},
		{name: "NAT64 form outside an allow list is refused", guard: allowList, addr: "64:ff9b::c0a8:101"},
		{name: "IPv4-mapped deny prefix refuses the IPv4 address", guard: mappedPrefixes, addr: "192.0.2.1"},
		{name: "IPv4-mapped deny prefix refuses the mapped address", guard: mappedPrefixes, addr: "::ffff:192.0.2.1"},
		{name: "IPv4-mapped allow prefix admits the IPv4 address", guard: mappedPrefixes, addr: "198.51.100.1", want: true},
		{name: "IPv4-mapped allow prefix refuses an IPv4 address outside it", guard: mappedPrefixes, addr: "203.0.113.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(tt.guard.Allowed(netip.MustParseAddr(tt.addr))).To(Equal(tt.want))
		})
	}
}

func TestGuardRestrictNarrowsButNeverWidens(t *testing.T) {
	g := NewWithT(t)
	base := mustGuard(t, []string{"10.20.5.0/24"}, nil, false)
	allowed, err := ParsePrefixes([]string{"10.20.0.0/16", " 192.168.5.0/24"})
	g.Expect(err).NotTo(HaveOccurred())
	ns := base.Restrict(allowed)
	g.Expect(ns.Allowed(netip.MustParseAddr("10.20.1.1"))).To(BeTrue())
	g.Expect(ns.Allowed(netip.MustParseAddr("192.168.5.9"))).To(BeTrue())
	g.Expect(ns.Allowed(netip.MustParseAddr("10.21.0.1"))).To(BeFalse(), "outside the namespace's ranges")
	g.Expect(ns.Allowed(netip.MustParseAddr("10.20.5.1"))).To(BeFalse(), "deny still wins")
	g.Expect(ns.Allowed(netip.MustParseAddr("127.0.0.1"))).To(BeFalse(), "loopback stays refused")
	g.Expect(base.Restrict(nil).Allowed(netip.MustParseAddr("10.20.1.1"))).To(BeFalse(), "an empty restriction allows nothing")
	g.Expect(base.Allowed(netip.MustParseAddr("10.21.0.1"))).To(BeTrue(), "Restrict leaves the base guard alone")
	open := (*Guard)(nil).Restrict(allowed)
	g.Expect(open.Allowed(netip.MustParseAddr("10.21.0.1"))).To(BeFalse(), "a nil guard restricted still restricts")
}

func TestNilGuardAllowsEverything(t *testing.T) {
	g := NewWithT(t)
	var guard *Guard
	for _, a := range []string{"169.254.169.254", "127.0.0.1", "::", "fe80::1"} {
		g.Expect(guard.Allowed(netip.MustParseAddr(a))).To(BeTrue(), a)
	}
}

func TestNewGuardRefusesBadCIDRs(t *testing.T) {
	tests := []struct {
		name        string
		deny, allow []string
		wantErr     string
	}{
		{name: "deny entry that is not a CIDR", deny: []string{"not-a-cidr"}, wantErr: "deny list: "},
		{name: "deny entry without a prefix length", deny: []string{"169.254.169.254"}, wantErr: "deny list: "},
		{name: "allow entry with too long a prefix", allow: []string{"10.0.0.0/33"}, wantErr: "allow list: "},
		{name: "allow entry that is empty", allow: []string{""}, wantErr: "allow list: "},
		{name: "one bad entry among good ones", deny: append([]string{"fe80::/129"}, nil...), wantErr: "deny list: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			guard, err := NewGuard(tt.deny, tt.allow, false)
			g.Expect(err).To(MatchError(HavePrefix(tt.wantErr)))
			g.Expect(guard).To(BeNil())
		})
	}
}

func TestGuardControlJudgesTheDialledAddress(t *testing.T) {
	guard := mustGuard(t, nil, nil, false)
	tests := []struct {
		name    string
		address string
		wantErr error
	}{
		{name: "allowed IPv4 address", address: "10.0.0.1:80"},
		{name: "allowed IPv6 address", address: "[2001:db8::1]:443"},
		{name: "metadata address", address: "169.254.169.254:80", wantErr: ErrDenied},
		{name: "link-local address with a zone", address: "[fe80::1%eth0]:80", wantErr: ErrDenied},
		{name: "loopback", address: "127.0.0.1:8080", wantErr: ErrDenied},
		{name: "a name, not an IP, is refused", address: "metadata.google.internal:80", wantErr: ErrDenied},
		{name: "an address without a port is refused", address: "10.0.0.1", wantErr: ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := guard.control("tcp", tt.address, nil)
			if tt.wantErr == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tt.wantErr))
		})
	}
}

// countingServer is an HTTP server on loopback that counts the connections it
// accepts and closes and the requests it serves.
type countingServer struct {
	*httptest.Server
	conns, closed, requests atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	return startCountingServer(t, h, (*httptest.Server).Start)
}

// newCountingTLSServer is a countingServer that serves HTTPS.
func newCountingTLSServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	return startCountingServer(t, h, (*httptest.Server).StartTLS)
}

func startCountingServer(t *testing.T, h http.HandlerFunc, start func(*httptest.Server)) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.requests.Add(1)
		h(w, r)
	}))
	cs.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			cs.conns.Add(1)
		case http.StateClosed:
			cs.closed.Add(1)
		}
	}
	start(cs.Server)
	t.Cleanup(cs.Close)
	return cs
}

// caPEM is the server's certificate in PEM, for a target's CA bundle.
func (cs *countingServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cs.Certificate().Raw})
}

func TestProberWithGuardRefusesLoopbackBeforeConnecting(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	prober := New(Options{Guard: mustGuard(t, nil, nil, false)})

	for _, raw := range []string{
		srv.URL,                          // http://127.0.0.1:port
		"http://localhost:" + port + "/", // a name that resolves to loopback is judged after resolution
		"tcp://127.0.0.1:" + port,
	} {
		t.Run(raw, func(t *testing.T) {
			g := NewWithT(t)
			res := prober.Probe(context.Background(), mustTarget(t, raw, 5*time.Second, nil))
			g.Expect(res.Success).To(BeFalse())
			g.Expect(res.Reason).To(Equal(ReasonDenied))
			g.Expect(res.HTTPStatus).To(BeZero())
			g.Expect(res.Latency).To(BeNumerically("<", 5*time.Second), "a refusal does not wait for the deadline")
		})
	}
	g := NewWithT(t)
	g.Expect(srv.conns.Load()).To(BeZero(), "the server saw a connection")
	g.Expect(srv.requests.Load()).To(BeZero(), "the server saw a request")
}
