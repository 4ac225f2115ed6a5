package probe

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/testnet"
)

// rawServer accepts connections on loopback and hands each, after the request
// head was read, to answer. Connections are closed when the test ends.
func rawServer(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	return testnet.Hold(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		answer(c)
	}).Addr().String()
}

// probeWithin probes t and fails the test unless the probe ends within its
// deadline plus a margin for a loaded machine.
func probeWithin(t *testing.T, p *Prober, tg Target) Result {
	t.Helper()
	start := time.Now()
	done := make(chan Result, 1)
	go func() { done <- p.Probe(context.Background(), tg) }()
	select {
	case r := <-done:
		if took := time.Since(start); took > tg.Timeout+2*time.Second {
			t.Fatalf("probe took %v, its deadline is %v", took, tg.Timeout)
		}
		return r
	case <-time.After(tg.Timeout + 10*time.Second):
		t.Fatalf("probe did not end within %v of its %v deadline", 10*time.Second, tg.Timeout)
		return Result{}
	}
}

func TestProbeOfASwitchingProtocolsAnswerIsJudgedAndNeverRead(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
		// ... and then silence.
	})
	g := NewWithT(t)
	p := loopbackProber(t)
	r := probeWithin(t, p, mustTarget(t, "http://"+addr+"/", time.Second, nil))
	g.Expect(r.Success).To(BeFalse())
	g.Expect(r.Reason).To(Equal(ReasonHTTPStatus))
	g.Expect(r.HTTPStatus).To(Equal(101))
	g.Expect(r.Latency).To(BeNumerically("<", time.Second), "a 101 is judged when it arrives, not at the deadline")

	r = probeWithin(t, p, mustTarget(t, "http://"+addr+"/", time.Second, []string{"101"}))
	g.Expect(r.Success).To(BeTrue(), "101 is judged by expectedStatuses like any status")
}

func TestProbeOfABare101WithoutUpgradeHeadersEndsByItsDeadline(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")) })
	r := probeWithin(t, loopbackProber(t), mustTarget(t, "http://"+addr+"/", time.Second, nil))
	NewWithT(t).Expect(r.Success).To(BeFalse())
}

func TestProbeOfAnInformationalAnswerIsJudgedAndClosed(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")) })
	g := NewWithT(t)
	r := probeWithin(t, loopbackProber(t), mustTarget(t, "http://"+addr+"/", 2*time.Second, nil))
	g.Expect(r.Reason).To(Equal(ReasonHTTPStatus))
	g.Expect(r.HTTPStatus).To(Equal(103))
	g.Expect(r.Latency).To(BeNumerically("<", 2*time.Second))
}

func TestProbeFailsOnAHeaderBlockOverTheCap(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		w := bufio.NewWriter(c)
		_, _ = w.WriteString("HTTP/1.1 200 OK\r\n")
		line := "X-Junk: " + strings.Repeat("a", 1000) + "\r\n"
		for written := 0; written < 8<<20; written += len(line) {
			if _, err := w.WriteString(line); err != nil {
				return
			}
		}
		_, _ = w.WriteString("Content-Length: 0\r\n\r\n")
		_ = w.Flush()
	})
	g := NewWithT(t)
	r := probeWithin(t, loopbackProber(t), mustTarget(t, "http://"+addr+"/", 5*time.Second, nil))
	g.Expect(r.Success).To(BeFalse())
	g.Expect(r.Reason).To(Equal(ReasonOther))
}

// The cap is on the header block, whatever the connection's read buffer: lines
// longer than the buffer are read in pieces.
func TestProbeJudgesTheHeaderBlockByTheCapNotByTheReadBuffer(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		want    bool
	}{
		{name: "one line just under the cap succeeds", headers: "X-Big: " + strings.Repeat("a", maxHeaderBytes-200) + "\r\n", want: true},
		{name: "15 KiB in lines of 1 KiB succeeds", headers: strings.Repeat("X-Line: "+strings.Repeat("a", 1014)+"\r\n", 15), want: true},
		{name: "one line just over the cap fails", headers: "X-Big: " + strings.Repeat("a", maxHeaderBytes+100) + "\r\n", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(len(tt.headers)).To(BeNumerically(">", transportBufferBytes), "the header block must not fit the read buffer")
			addr := rawServer(t, func(c net.Conn) {
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n%sContent-Length: 0\r\n\r\n", tt.headers)
			})
			r := probeWithin(t, loopbackProber(t), mustTarget(t, "http://"+addr+"/", 2*time.Second, nil))
			g.Expect(r.Success).To(Equal(tt.want))
			if !tt.want {
				g.Expect(r.Reason).To(Equal(ReasonOther))
			}
		})
	}
}

func TestProbeOfABodySlowerThanTheDeadlineTimesOut(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n"))
		for range 6 {
			if _, err := c.Write([]byte("0123456789")); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	})
	g := NewWithT(t)
	r := probeWithin(t, loopbackProber(t), mustTarget(t, "http://"+addr+"/", 2*time.Second, nil))
	g.Expect(r.Success).To(BeFalse(), "a body of 60 bytes at 10 bytes a second is not done in 2s")
	g.Expect(r.Reason).To(Equal(ReasonTimeout))
}

func TestProbeOfATLSHandshakeThatNeverCompletesTimesOut(t *testing.T) {
	ln := testnet.Hanging(t)
	g := NewWithT(t)
	r := probeWithin(t, loopbackProber(t), mustTarget(t, "https://"+ln.Addr().String()+"/", time.Second, nil))
	g.Expect(r.Success).To(BeFalse())
	g.Expect(r.Reason).To(Equal(ReasonTimeout))
}

func TestRoundWithOneSwitchingProtocolsEndpointReturns(t *testing.T) {
	bad := rawServer(t, func(c net.Conn) {
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"))
	})
	good := rawServer(t, func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) })
	g := NewWithT(t)
	var eps []Endpoint
	for _, a := range []string{bad, good} {
		host, port, _ := net.SplitHostPort(a)
		var n int32
		_, _ = fmt.Sscan(port, &n)
		eps = append(eps, Endpoint{Address: host, Port: n})
	}
	tg := Target{Scheme: HTTP, Timeout: time.Second, Expected: DefaultStatuses,
		Round: &Round{Endpoints: eps, Path: "/", FailurePercent: 100}}
	r := probeWithin(t, loopbackProber(t), tg)
	g.Expect(r.Success).To(BeTrue(), "one of two endpoints failing is below 100%%")
	g.Expect(r.Endpoints).To(HaveLen(2))
	g.Expect(r.Endpoints[0].HTTPStatus).To(Equal(101))
}

func TestProbeSendsConfiguredHeaders(t *testing.T) {
	got := make(chan string, 4)
	srv := newCountingServer(t, func(_ http.ResponseWriter, req *http.Request) {
		got <- req.Header.Get("X-Token")
	}).URL
	g := NewWithT(t)
	tg := mustTarget(t, srv+"/", time.Second, nil)
	tg.Headers = []Header{{Name: "X-Token", Value: "s3cret"}}
	g.Expect(loopbackProber(t).Probe(context.Background(), tg).Success).To(BeTrue())
	g.Expect(<-got).To(Equal("s3cret"))
}

func TestProberSharesTLSClientsAndDropsUnusedOnes(t *testing.T) {
	g := NewWithT(t)
	p := loopbackProber(t)
	var targets []Target
	for i := range 1000 {
		tg := mustTarget(t, "https://127.0.0.1:1/", time.Second, nil)
		tg.TLS = &TLS{ServerName: fmt.Sprintf("name-%d.example", i%10)}
		targets = append(targets, tg)
		p.Retain(tg)
	}
	g.Expect(p.sharedClients()).To(Equal(10), "breakers with the same settings share one client")
	for _, tg := range targets {
		p.Release(tg)
	}
	g.Expect(p.sharedClients()).To(BeZero(), "a client no breaker uses is dropped")

	plain := mustTarget(t, "https://127.0.0.1:1/", time.Second, nil)
	p.Retain(plain)
	g.Expect(p.sharedClients()).To(BeZero(), "default settings use the one plain client")
}

func TestProberKeepsNamespacesWithDifferentRangesApart(t *testing.T) {
	g := NewWithT(t)
	p := loopbackProber(t)
	srv := newCountingServer(t, func(http.ResponseWriter, *http.Request) {}).URL
	open := mustTarget(t, srv+"/", time.Second, nil)
	g.Expect(p.Probe(context.Background(), open).Success).To(BeTrue())

	// A namespace allowed only 10.20.0.0/16 must not reuse the idle connection
	// the unrestricted probe left behind.
	restricted := open
	restricted.Restricted = true
	restricted.Allowed, _ = ParsePrefixes([]string{"10.20.0.0/16"})
	p.Retain(restricted)
	r := p.Probe(context.Background(), restricted)
	g.Expect(r.Success).To(BeFalse())
	g.Expect(r.Reason).To(Equal(ReasonDenied))

	tcp := mustTarget(t, "tcp://"+strings.TrimPrefix(srv, "http://"), time.Second, nil)
	tcp.Restricted, tcp.Allowed = true, restricted.Allowed
	g.Expect(p.Probe(context.Background(), tcp).Reason).To(Equal(ReasonDenied))

	allowed := restricted
	allowed.Allowed, _ = ParsePrefixes([]string{"127.0.0.0/8"})
	g.Expect(p.Probe(context.Background(), allowed).Success).To(BeTrue())
}
