//go:build linux

package probe

// What a connection costs the prober: keep-alive (one idle connection kept per
// target host, the default) against a fresh connection per probe
// (Options.FreshConnections, as kubelet and blackbox_exporter do), for HTTP and
// HTTPS, with net/http's 4 KiB connection buffers and with the prober's own;
// and a gRPC Health/Check, which opens a connection per probe.
//
//	go test -run '^$' -bench Connection -benchtime 2000x -p 1 ./internal/probe
//
// The targets are served by a child process (this test binary, re-executed
// by TestMain), so the benchmark's process holds only the prober: its heap,
// goroutines and CPU time are the client's alone, and the server's CPU time is
// read from the child. CPU time is user+sys from getrusage, divided by the
// number of probes. On loopback the kernel charges part of the TCP work of a
// packet to the process that sends it, so the split between client and server
// is approximate; their sum is not. ns/op is the wall time of one sequential
// probe (client, server and loopback latency together).
//
// BenchmarkConnectionProbe probes one target host repeatedly: cpu-ns/probe is
// the prober's CPU per probe, server-cpu-ns/probe the target's, and
// client-/server-timewait/probe count the sockets left in TIME_WAIT toward the
// target's port, on each side, per probe.
//
// BenchmarkConnectionIdle probes -connection-idle-hosts distinct target hosts
// (loopback ports) once each and reports the growth of the prober's heap and
// stacks (HeapInuse+StackInuse after GC) per host as bytes/idle-conn, the
// stacks' share of it, and its goroutines per host; the timed loop then probes
// those hosts in turn.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var idleHosts = flag.Int("connection-idle-hosts", 2000, "how many target hosts BenchmarkConnectionIdle keeps a connection to")

// benchServerEnv, when set to "<scheme>:<count>", makes the test binary serve
// count loopback targets instead of running tests.
const benchServerEnv = "BREAKER_PROBE_BENCH_SERVER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(benchServerEnv); spec != "" {
		os.Exit(serveBenchTargets(spec))
	}
	os.Exit(m.Run())
}

// connectionModes are the prober settings compared.
var connectionModes = []struct {
	name string
	opts Options
}{
	{name: "keep-alive/buf-4KiB", opts: Options{bufferBytes: 4 << 10}},
	{name: "keep-alive/buf-1KiB", opts: Options{bufferBytes: 1 << 10}},
	{name: "fresh/buf-4KiB", opts: Options{FreshConnections: true, bufferBytes: 4 << 10}},
	{name: "fresh/buf-1KiB", opts: Options{FreshConnections: true, bufferBytes: 1 << 10}},
}

func BenchmarkConnectionProbe(b *testing.B) {
	for _, scheme := range []Scheme{HTTP, HTTPS, GRPC} {
		modes := connectionModes
		if scheme == GRPC {
			// A gRPC Check opens a connection of its own whatever the options.
			modes = connectionModes[len(connectionModes)-1:]
		}
		for _, mode := range modes {
			b.Run(string(scheme)+"/"+mode.name, func(b *testing.B) {
				targets := startBenchTargets(b, scheme, 1)
				prober := benchProber(b, mode.opts)
				tg := targets.target(b, 0)
				prober.Retain(tg) // as the runner does; HTTPS targets with a CA use a shared client
				b.Cleanup(func() { prober.Release(tg) })
				probeOK(b, prober, tg) // a kept connection is open before the clock starts
				_, port, _ := net.SplitHostPort(targets.addrs[0])
				clientTW0, serverTW0 := timeWaits(b, port)
				client0, server0 := processCPU(), targets.cpu(b)
				b.ReportAllocs()
				for b.Loop() {
					probeOK(b, prober, tg)
				}
				client, server := processCPU()-client0, targets.cpu(b)-server0
				clientTW, serverTW := timeWaits(b, port)
				n := float64(b.N)
				b.ReportMetric(float64(client)/n, "cpu-ns/probe")
				b.ReportMetric(float64(server)/n, "server-cpu-ns/probe")
				b.ReportMetric(float64(clientTW-clientTW0)/n, "client-timewait/probe")
				b.ReportMetric(float64(serverTW-serverTW0)/n, "server-timewait/probe")
			})
		}
	}
}

func BenchmarkConnectionIdle(b *testing.B) {
	for _, scheme := range []Scheme{HTTP, HTTPS} {
		for _, mode := range connectionModes {
			b.Run(string(scheme)+"/"+mode.name, func(b *testing.B) {
				targets := startBenchTargets(b, scheme, *idleHosts+1)
				prober := benchProber(b, mode.opts)
				tgs := make([]Target, len(targets.addrs))
				for i := range tgs {
					tgs[i] = targets.target(b, i)
					prober.Retain(tgs[i])
				}
				b.Cleanup(func() {
					for _, tg := range tgs {
						prober.Release(tg)
					}
				})
				// The first host is probed before the baseline, so that the client,
				// its TLS settings and the pool's maps are not counted per host.
				probeOK(b, prober, tgs[0])
				before := measureIdle()
				for _, tg := range tgs[1:] {
					probeOK(b, prober, tg)
				}
				after := measureIdle()

				client0 := processCPU()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					probeOK(b, prober, tgs[1+i%(len(tgs)-1)])
					i++
				}
				b.ReportMetric(float64(processCPU()-client0)/float64(b.N), "cpu-ns/probe")
				// Reported after the loop, whose start deletes the metrics reported before it.
				hosts := float64(len(tgs) - 1)
				b.ReportMetric(float64(int64(after.bytes)-int64(before.bytes))/hosts, "bytes/idle-conn")
				b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/hosts, "stack-bytes/idle-conn")
				b.ReportMetric(float64(after.goroutines-before.goroutines)/hosts, "goroutines/idle-conn")
			})
		}
	}
}

func benchProber(b *testing.B, opts Options) *Prober {
	b.Helper()
	g, err := NewGuard(nil, nil, true)
	if err != nil {
		b.Fatal(err)
	}
	opts.Guard = g
	opts.UserAgent = testUserAgent
	return New(opts)
}

func probeOK(b *testing.B, p *Prober, tg Target) {
	if r := p.Probe(context.Background(), tg); !r.Success {
		b.Fatalf("probe of %s: %s (HTTP %d)", tg.URL, r.Reason, r.HTTPStatus)
	}
}

type idleMeasure struct {
	bytes, stack uint64
	goroutines   int
}

// measureIdle is the heap and stack memory in use, and the goroutines, once
// connections closed by a probe have wound down and garbage is collected.
// Each collection at most halves a goroutine's stack that uses under a quarter
// of it, so a few are run, as a long-running manager's would.
func measureIdle() idleMeasure {
	time.Sleep(200 * time.Millisecond)
	for range 5 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return idleMeasure{bytes: ms.HeapInuse + ms.StackInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeWaits counts the IPv4 sockets in TIME_WAIT toward port (a client's)
// and from it (a server's).
func timeWaits(b *testing.B, port string) (client, server int) {
	b.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		b.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		b.Fatal(err)
	}
	hexPort := fmt.Sprintf(":%04X", p)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" { // TCP_TIME_WAIT
			continue
		}
		switch {
		case strings.HasSuffix(f[2], hexPort):
			client++
		case strings.HasSuffix(f[1], hexPort):
			server++
		}
	}
	return client, server
}

// benchTargets is the child process that serves the targets.
type benchTargets struct {
	scheme Scheme
	addrs  []string
	caPEM  []byte
	in     io.Writer
	out    *bufio.Scanner
}

func startBenchTargets(b *testing.B, scheme Scheme, count int) *benchTargets {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", benchServerEnv, scheme, count))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = in.Close() // the child exits at the end of its input
		_ = cmd.Wait()
	})
	s := &benchTargets{scheme: scheme, in: in, out: bufio.NewScanner(out)}
	s.out.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.out.Scan() {
		key, value, _ := strings.Cut(s.out.Text(), " ")
		switch key {
		case "ca":
			if s.caPEM, err = base64.StdEncoding.DecodeString(value); err != nil {
				b.Fatal(err)
			}
		case "addr":
			s.addrs = append(s.addrs, value)
		case "ready":
			return s
		}
	}
	b.Fatalf("the target server stopped before it was ready: %v", s.out.Err())
	return nil
}

// target is a probe of the i-th address; an HTTPS one trusts the server's
// certificate through the TLS settings, as a breaker's CA bundle does.
func (s *benchTargets) target(b *testing.B, i int) Target {
	b.Helper()
	path := "/healthz"
	if s.scheme == GRPC {
		path = ""
	}
	tg, err := ParseURL(string(s.scheme)+"://"+s.addrs[i]+path, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	tg.Expected = DefaultStatuses
	if s.scheme == HTTPS {
		tg.TLS = &TLS{CAPEM: s.caPEM}
	}
	return tg
}

// cpu is the user and system time the child has used.
func (s *benchTargets) cpu(b *testing.B) time.Duration {
	b.Helper()
	if _, err := io.WriteString(s.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	if !s.out.Scan() {
		b.Fatalf("the target server stopped: %v", s.out.Err())
	}
	ns, err := strconv.ParseInt(strings.TrimPrefix(s.out.Text(), "cpu "), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(ns)
}

// serveBenchTargets is the child: it serves spec's count of loopback ports,
// one listener each, prints the CA and the addresses, then answers "cpu"
// lines with its CPU time until its input ends.
func serveBenchTargets(spec string) int {
	scheme, count, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(count)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	out := bufio.NewWriter(os.Stdout)
	wrap := func(ln net.Listener) net.Listener { return ln }
	serve := func(ln net.Listener) { _ = srv.Config.Serve(wrap(ln)) }
	switch Scheme(scheme) {
	case GRPC:
		health := grpc.NewServer()
		healthpb.RegisterHealthServer(health, grpchealth.NewServer())
		serve = func(ln net.Listener) { _ = health.Serve(ln) }
	case HTTPS:
		srv.StartTLS()
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		_, _ = fmt.Fprintf(out, "ca %s\n", base64.StdEncoding.EncodeToString(ca))
		wrap = func(ln net.Listener) net.Listener { return tls.NewListener(ln, srv.TLS) }
	default:
		srv.Start()
	}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go serve(ln)
		_, _ = fmt.Fprintf(out, "addr %s\n", ln.Addr())
	}
	_, _ = fmt.Fprintln(out, "ready")
	_ = out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		_, _ = fmt.Printf("cpu %d\n", processCPU().Nanoseconds())
	}
	return 0
}
