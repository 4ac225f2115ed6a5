//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// TestGuardedServiceRoutesWhereTheBreakerAllows shows spec.enforce with real
// routing: kube-proxy (nftables mode) runs in a network namespace that plays
// the node, the targets run in their own namespace, and a client in the node
// namespace calls the guarded Service's ClusterIP. While Closed the healthy
// endpoints answer and never an ejected one; while Open the fallback answers,
// or, without a fallback, the connection is refused at once.
//
// Without kube-proxy's prerequisites (nft), or with KUBE_PROXY=none, it proves
// the same with the guarded Service's EndpointSlices and a client that dials
// what they hold.
func TestGuardedServiceRoutesWhereTheBreakerAllows(t *testing.T) {
	network, targets := netnsTargets(t, 4)
	a, b, c, fb := targets[0], targets[1], targets[2], targets[3]

	ns := newNamespace(t, "e2e-enforce")
	ports := []servicePort{{"http", 80, 8080}}
	applyService(t, ns, "api", ports...)
	applySlice(t, ns, "api", "api-1", ports, endpoint{a.addr, "api-a", true}, endpoint{b.addr, "api-b", true}, endpoint{c.addr, "api-c", true})
	applyService(t, ns, "api-degraded", ports...)
	applySlice(t, ns, "api-degraded", "api-degraded-1", ports, endpoint{fb.addr, "degraded-a", true})
	breakerFile := applyManifest(t, "breaker-guard.yaml", fmt.Sprintf(`apiVersion: circuit.resilience.dev/v1alpha1
kind: CircuitBreaker
metadata:
  name: guard
  namespace: %s
spec:
  target:
    service: {name: api, port: http, path: /healthz}
  threshold: 2
  timeout: 2s
  retryTimeout: 300ms
  interval: 300ms
  enforce:
    serviceName: api-guarded
    ejection: {consecutiveFailures: 2, maxEjectionPercent: 50}
    fallback: {serviceName: api-degraded}
`, ns))
	t.Cleanup(func() { _, _ = kubectl("delete", "-f", breakerFile, "--wait=false") })

	var clusterIP string
	NewWithT(t).Eventually(func(g Gomega) {
		out, err := kubectl("-n", ns, "get", "service", "api-guarded", "-o", "jsonpath={.spec.clusterIP}")
		g.Expect(err).NotTo(HaveOccurred(), out)
		g.Expect(net.ParseIP(out)).NotTo(BeNil())
		clusterIP = out
	}).WithTimeout(60 * time.Second).Should(Succeed())

	client := newGuardedClient(t, network, ns, clusterIP)
	t.Logf("calling the guarded Service through %s", client.how)
	whoami := func(tg *nsTarget) string { return net.JoinHostPort(tg.addr, "8080") }
	all := []string{whoami(a), whoami(b), whoami(c)}

	t.Run("Closed: the target's endpoints answer", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			g.Expect(client.answers(g, 40)).To(ConsistOf(all))
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})

	t.Run("an ejected endpoint gets no traffic, and gets it back after one good round", func(t *testing.T) {
		g := NewWithT(t)
		b.set(t, false)
		eventuallyGuard(t, ns, 30*time.Second, func(g Gomega, s guardStatus) {
			g.Expect(s.State).To(Equal("Closed"))
			g.Expect(s.ejected()).To(Equal([]string{b.addr}))
			g.Expect(s.Enforcement.Routing).To(Equal("Target"))
		})
		// kube-proxy applies the slices on its own schedule: once a batch shows
		// it has, no call reaches the ejected endpoint.
		g.Eventually(func(g Gomega) {
			g.Expect(client.answers(g, 20)).NotTo(ContainElement(whoami(b)))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		g.Expect(client.answers(g, 40)).To(ConsistOf(whoami(a), whoami(c)))

		b.set(t, true)
		eventuallyGuard(t, ns, 30*time.Second, func(g Gomega, s guardStatus) {
			g.Expect(s.ejected()).To(BeEmpty())
		})
		g.Eventually(func(g Gomega) {
			g.Expect(client.answers(g, 40)).To(ConsistOf(all))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	t.Run("Open: the fallback answers", func(t *testing.T) {
		g := NewWithT(t)
		for _, tg := range []*nsTarget{a, b, c} {
			tg.set(t, false)
		}
		eventuallyGuard(t, ns, 30*time.Second, func(g Gomega, s guardStatus) {
			g.Expect(s.State).To(BeElementOf("Open", "HalfOpen"))
			g.Expect(s.Enforcement.Routing).To(Equal("Fallback"))
		})
		g.Eventually(func(g Gomega) {
			g.Expect(client.answers(g, 20)).To(ConsistOf(whoami(fb)))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		g.Expect(client.answers(g, 40)).To(ConsistOf(whoami(fb)))
	})

	t.Run("Open without a fallback: connections are refused at once", func(t *testing.T) {
		g := NewWithT(t)
		mustKubectl(t, "-n", ns, "patch", "circuitbreaker", "guard", "--type=json",
			"-p", `[{"op":"remove","path":"/spec/enforce/fallback"}]`)
		eventuallyGuard(t, ns, 30*time.Second, func(g Gomega, s guardStatus) {
			g.Expect(s.Enforcement.Routing).To(Equal("None"))
			g.Expect(s.Enforcement.EndpointsServed).To(BeZero())
		})
		g.Eventually(func(g Gomega) {
			g.Expect(client.refusedAtOnce(g)).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for range 10 {
			g.Expect(client.refusedAtOnce(g)).To(BeTrue())
		}
	})

	t.Run("Closed again: the target's endpoints answer, the fallback no more", func(t *testing.T) {
		g := NewWithT(t)
		mustKubectl(t, "-n", ns, "patch", "circuitbreaker", "guard", "--type=merge",
			"-p", `{"spec":{"enforce":{"fallback":{"serviceName":"api-degraded"}}}}`)
		for _, tg := range []*nsTarget{a, b, c} {
			tg.set(t, true)
		}
		eventuallyGuard(t, ns, 30*time.Second, func(g Gomega, s guardStatus) {
			g.Expect(s.State).To(Equal("Closed"))
			g.Expect(s.Enforcement.Routing).To(Equal("Target"))
		})
		g.Eventually(func(g Gomega) {
			g.Expect(client.answers(g, 40)).To(ConsistOf(all))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
}

// guardStatus is what the test reads of the breaker's status.
type guardStatus struct {
	State       string `json:"state"`
	Enforcement struct {
		Routing          string `json:"routing"`
		EndpointsServed  int32  `json:"endpointsServed"`
		EndpointsEjected int32  `json:"endpointsEjected"`
	} `json:"enforcement"`
	Endpoints []struct {
		Address string `json:"address"`
		Ejected bool   `json:"ejected"`
	} `json:"endpoints"`
}

func (s guardStatus) ejected() []string {
	out := []string{}
	for _, e := range s.Endpoints {
		if e.Ejected {
			out = append(out, e.Address)
		}
	}
	return out
}

func eventuallyGuard(t testing.TB, ns string, within time.Duration, check func(Gomega, guardStatus)) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		out, err := kubectl("-n", ns, "get", "circuitbreaker", "guard", "-o", "jsonpath={.status}")
		g.Expect(err).NotTo(HaveOccurred(), out)
		var s guardStatus
		g.Expect(json.Unmarshal([]byte(out), &s)).To(Succeed())
		check(g, s)
	}).WithTimeout(within).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// guardedClient calls the guarded Service: through its ClusterIP from the
// node namespace when kube-proxy runs there, else by dialing an endpoint that
// its EndpointSlices hold.
type guardedClient struct {
	how string
	// dial opens one connection to the guarded Service's port 80.
	dial func() (net.Conn, error)
}

func newGuardedClient(t *testing.T, network *netns, ns, clusterIP string) *guardedClient {
	if os.Getenv("KUBE_PROXY") == "none" {
		t.Logf("KUBE_PROXY=none: the client dials what the slices hold")
		return sliceClient(ns)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Logf("nft not found (install nftables): kube-proxy cannot program the node, so the client dials what the slices hold")
		return sliceClient(ns)
	}
	node := newNodeNetns(t, network)
	startKubeProxy(t, node)
	return &guardedClient{
		how: fmt.Sprintf("kube-proxy (nftables mode) in network namespace %s, ClusterIP %s", node.name, clusterIP),
		dial: func() (net.Conn, error) {
			var conn net.Conn
			err := node.do(func() error {
				var err error
				conn, err = net.DialTimeout("tcp", net.JoinHostPort(clusterIP, "80"), 2*time.Second)
				return err
			})
			return conn, err
		},
	}
}

// errNoEndpoints is what dialing a Service without endpoints gives in the
// slice client: kube-proxy would refuse the connection.
var errNoEndpoints = fmt.Errorf("the guarded Service has no endpoints: %w", syscall.ECONNREFUSED)

func sliceClient(ns string) *guardedClient {
	return &guardedClient{how: "a client that dials what the guarded Service's EndpointSlices hold", dial: func() (net.Conn, error) {
		out, err := kubectl("-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=api-guarded",
			"-o", `jsonpath={range .items[*]}{range .endpoints[*]}{.addresses[0]}{"\n"}{end}{end}`)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, out)
		}
		addrs := strings.Fields(out)
		if len(addrs) == 0 {
			return nil, errNoEndpoints
		}
		return net.DialTimeout("tcp", net.JoinHostPort(addrs[rand.IntN(len(addrs))], "8080"), 2*time.Second)
	}}
}

// answers makes n calls of GET /whoami, each on a new connection, and returns
// the distinct endpoints that answered.
func (c *guardedClient) answers(g Gomega, n int) []string {
	seen := map[string]bool{}
	for range n {
		conn, err := c.dial()
		g.Expect(err).NotTo(HaveOccurred())
		who, err := whoamiOver(conn)
		g.Expect(err).NotTo(HaveOccurred())
		seen[who] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	return out
}

// refusedAtOnce reports whether a connection is refused within 500ms.
func (c *guardedClient) refusedAtOnce(g Gomega) bool {
	start := time.Now()
	conn, err := c.dial()
	if err == nil {
		_ = conn.Close()
		return false
	}
	g.Expect(time.Since(start)).To(BeNumerically("<", 500*time.Millisecond), "%v", err)
	return errors.Is(err, syscall.ECONNREFUSED)
}

func whoamiOver(conn net.Conn) (string, error) {
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /whoami HTTP/1.1\r\nHost: api-guarded\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /whoami: %s (an old bin/demo-target? rebuild it)", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// nodeNetns is a network namespace that plays the node: kube-proxy programs
// its nftables and the client calls ClusterIPs from it. A veth pair joins it
// to the targets' namespace, its only link. The Service range is routed onto
// that link (a local socket needs a route before kube-proxy's DNAT rewrites
// its packets); what kube-proxy did not rewrite ends in a blackhole route of
// the targets' namespace, which has no other way out and does not forward.
type nodeNetns struct {
	name, addr string
}

// serviceRange is the local control plane's --service-cluster-ip-range.
const serviceRange = "10.0.0.0/24"

func newNodeNetns(t *testing.T, targets *netns) *nodeNetns {
	t.Helper()
	octets := strings.Split(targets.addrs[0], ".")
	subnet := strings.Join(octets[:3], ".")
	link := "10.214." + octets[2]
	node := &nodeNetns{name: targets.name + "-node", addr: link + ".1"}
	_, _ = ip("netns", "delete", node.name)
	if out, err := ip("netns", "add", node.name); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", node.name, err, out)
	}
	t.Cleanup(func() { _, _ = ip("netns", "delete", node.name) })
	// Both ends live in the test's namespaces: nothing is added to the root one.
	for _, args := range [][]string{
		{"-n", node.name, "link", "add", "node0", "type", "veth", "peer", "name", "node1", "netns", targets.name},
		{"-n", node.name, "link", "set", "lo", "up"},
		{"-n", node.name, "addr", "add", node.addr + "/24", "dev", "node0"},
		{"-n", node.name, "link", "set", "node0", "up"},
		{"-n", targets.name, "addr", "add", link + ".2/24", "dev", "node1"},
		{"-n", targets.name, "link", "set", "node1", "up"},
		{"-n", node.name, "route", "add", subnet + ".0/24", "via", link + ".2"},
		{"-n", node.name, "route", "add", serviceRange, "dev", "node0"},
		{"-n", targets.name, "route", "add", "blackhole", serviceRange},
	} {
		if out, err := ip(args...); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return node
}

// do runs fn on an OS thread that is in the node's network namespace, so the
// sockets fn opens belong to it (and stay there once the thread is back).
func (n *nodeNetns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Unlocked only once the thread is back in its own namespace; otherwise
		// the thread ends with the goroutine and no other code runs on it.
		runtime.LockOSThread()
		errc <- func() error {
			self, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				return err
			}
			defer func() { _ = self.Close() }()
			there, err := os.Open(filepath.Join("/var/run/netns", n.name))
			if err != nil {
				return err
			}
			defer func() { _ = there.Close() }()
			if err := setns(there); err != nil {
				return err
			}
			fnErr := fn()
			if err := setns(self); err != nil {
				return err
			}
			runtime.UnlockOSThread()
			return fnErr
		}()
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// startKubeProxy runs kube-proxy in the node namespace. The API server
// listens on the root namespace's loopback, which the node cannot reach: a
// listener opened in the node namespace forwards to it.
func startKubeProxy(t *testing.T, node *nodeNetns) {
	t.Helper()
	binary := kubeProxyBinary(t)
	apiserver := strings.TrimPrefix(env.cp.APIServerURL, "https://")
	var ln net.Listener
	if err := node.do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go forward(ln, apiserver)

	kubeconfig, err := os.ReadFile(env.cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kube-proxy.kubeconfig")
	local := strings.ReplaceAll(string(kubeconfig), env.cp.APIServerURL, "https://"+ln.Addr().String())
	if err := os.WriteFile(path, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	// kube-proxy waits 30s for its Node before it gives up; there is no kubelet to create it.
	node.createNode(t)
	logPath := filepath.Join(dir, "kube-proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	proc, err := localcp.StartProcess("kube-proxy", "ip", []string{"netns", "exec", node.name, binary,
		"--kubeconfig", path, "--proxy-mode", "nftables", "--hostname-override", "e2e-node",
		"--bind-address", node.addr, "--conntrack-max-per-core", "0",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249",
		"--v", "2"}, logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = proc.Stop(10 * time.Second)
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("log of kube-proxy (last lines):\n%s", tail(string(data), 60))
		}
	})
	NewWithT(t).Eventually(func(g Gomega) {
		if !proc.Running() {
			data, _ := os.ReadFile(logPath)
			StopTrying(fmt.Sprintf("kube-proxy exited (%v): %s", proc.Err(), tail(string(data), 40))).Now()
		}
		out, err := exec.Command("ip", "netns", "exec", node.name, "nft", "list", "table", "ip", "kube-proxy").CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), string(out))
		g.Expect(string(out)).To(ContainSubstring("api-guarded"))
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "kube-proxy did not program the guarded Service")
}

func (n *nodeNetns) createNode(t *testing.T) {
	t.Helper()
	applyManifest(t, "node.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: e2e-node\n")
	t.Cleanup(func() { _, _ = kubectl("delete", "node", "e2e-node", "--wait=false") })
}

// forward copies each connection accepted on ln to and from addr, until ln is closed.
func forward(ln net.Listener, addr string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = in.Close() }()
			out, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			defer func() { _ = out.Close() }()
			go func() { _, _ = io.Copy(out, in) }()
			_, _ = io.Copy(in, out)
		}()
	}
}

// kubeProxyBinary is $KUBE_PROXY if set (a path), else kube-proxy v1.37.2 as
// hack/envtest-assets.sh builds it (next to the envtest binaries; a few
// minutes the first time).
func kubeProxyBinary(t *testing.T) string {
	t.Helper()
	if path := os.Getenv("KUBE_PROXY"); path != "" {
		return path
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.root, "hack", "envtest-assets.sh"), "kube-proxy")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building kube-proxy: %v", err)
	}
	path := strings.TrimSpace(string(out))
	if path == "" {
		t.Fatal("hack/envtest-assets.sh kube-proxy printed no path")
	}
	return path
}
