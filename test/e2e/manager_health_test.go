package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The kubelet restarts a wedged manager through /healthz: the manager's
// health endpoint carries the runner's `probes` check, and it passes while
// probes end by their deadlines.
func TestManagerHealthzCarriesTheProbesCheck(t *testing.T) {
	g := NewWithT(t)
	m := startManager(t, "healthz")
	body, code := httpGet(t, m.health+"/healthz?verbose")
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(body).To(ContainSubstring("[+]probes ok"))
	body, code = httpGet(t, m.health+"/healthz/probes")
	g.Expect(code).To(Equal(http.StatusOK), body)
}

func httpGet(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), resp.StatusCode
}

// hostileHeaders bounds what 24 concurrent probes of a target that answers
// with 8 MiB of headers may add to the manager's peak resident set (VmHWM):
// the probe's 16 KiB header cap keeps it to a few MiB, where net/http's
// default 10 MiB limit read every block whole (+63 MiB measured).
const (
	hostileBreakers      = 24
	hostileHeaderBytes   = 8 << 20
	hostilePeakGrowthMiB = 40
)

// TestManagerPeakRSSStaysSmallUnderHostileHeaders measures the manager
// process itself (bin/manager), not a program that drives internal/probe, and
// logs the figure docs/tenancy.md quotes.
func TestManagerPeakRSSStaysSmallUnderHostileHeaders(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, "hostile-headers")
	addr, answered := headerBombServer(t)
	m := startManager(t, "hostile-headers")
	idle := peakRSS(t, m.Pid())

	for i := range hostileBreakers {
		applyBreaker(t, ns, fmt.Sprintf("bomb-%02d", i), breakerSpec{
			URL: "http://" + addr + "/", Threshold: 100, Timeout: "1h", Interval: "1s",
		})
	}
	// About ten probes of each breaker, whatever they came to.
	g.Eventually(answered.Load).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).
		Should(BeNumerically(">=", 10*hostileBreakers))

	peak := peakRSS(t, m.Pid())
	growth := float64(peak-idle) / (1 << 20)
	t.Logf("manager peak RSS (VmHWM): %.1f MiB idle, %.1f MiB after %d probes of %d breakers against %d MiB of headers: +%.1f MiB",
		float64(idle)/(1<<20), float64(peak)/(1<<20), answered.Load(), hostileBreakers, hostileHeaderBytes>>20, growth)
	g.Expect(growth).To(BeNumerically("<", hostilePeakGrowthMiB))

	// And each failed on the oversized block (reason other).
	g.Eventually(func(g Gomega) {
		out, err := kubectl("get", "cb", "-n", ns, "-o", `jsonpath={range .items[*]}{.status.lastProbe.reason}{"\n"}{end}`)
		g.Expect(err).NotTo(HaveOccurred(), out)
		reasons := strings.Fields(out)
		g.Expect(reasons).To(HaveLen(hostileBreakers))
		g.Expect(reasons).To(HaveEach("other"))
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// headerBombServer answers every request with a status line and then
// hostileHeaderBytes of header lines, and counts the answers it began.
func headerBombServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var answered atomic.Int64
	line := []byte("X-Pad: " + strings.Repeat("a", 1015) + "\r\n") // 1 KiB
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				answered.Add(1)
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n"); err != nil {
					return
				}
				for sent := 0; sent < hostileHeaderBytes; sent += len(line) {
					if _, err := c.Write(line); err != nil {
						return // the prober gave up at its cap
					}
				}
				_, _ = io.WriteString(c, "Content-Length: 0\r\n\r\n")
			}()
		}
	}()
	return ln.Addr().String(), &answered
}

// peakRSS is the peak resident set size (VmHWM) of a process, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the manager's peak RSS: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
