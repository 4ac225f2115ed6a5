package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// The tests of Service targets need endpoints with real, non-loopback
// addresses that the manager probes with its default dial guard. They get
// them from a network namespace joined to the host by a veth pair: the host
// side holds 10.213.<subnet>.1/24, the namespace side .2, .3, ... (see netns).

// netnsPrefix names the namespaces these tests create: netnsPrefix + the pid
// of the test binary, so that a leftover of a crashed run can be told apart.
const netnsPrefix = "bo-e2e-"

// ipTimeout bounds one ip(8) command.
const ipTimeout = 30 * time.Second

// netns is a network namespace with a veth pair to the root namespace.
type netns struct {
	name string
	// hostLink is the host side of the veth pair, in the root namespace.
	hostLink string
	// addrs are the addresses on the namespace side, each reachable from the host.
	addrs []string
}

// newNetns creates a namespace holding n addresses from a /24 of 10.213.0.0/16
// that nothing in the root namespace uses, and deletes it when the test ends.
// It skips the test when the machine cannot do this (not root, no ip(8), or
// no permission to create namespaces).
func newNetns(t *testing.T, n int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating a network namespace needs root (CI runs this test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip(8) not found; install iproute2 (.ci/run does so in CI)")
	}
	removeStaleNetns(t)

	pid := os.Getpid()
	ns := &netns{name: netnsPrefix + strconv.Itoa(pid), hostLink: hostLinkName(pid)}
	// The same pid may have run before and crashed.
	ns.remove()
	if out, err := ip("netns", "add", ns.name); err != nil {
		t.Skipf("skipping: `ip netns add %s` failed (%v), probably no CAP_SYS_ADMIN: %s", ns.name, err, out)
	}
	t.Cleanup(ns.remove)

	subnet, err := freeSubnet(pid)
	if err != nil {
		t.Fatal(err)
	}
	peer := "bo" + strconv.Itoa(pid) + "p"
	cmds := [][]string{
		{"link", "add", ns.hostLink, "type", "veth", "peer", "name", peer, "netns", ns.name},
		{"addr", "add", subnet + ".1/24", "dev", ns.hostLink},
		{"link", "set", ns.hostLink, "up"},
		{"-n", ns.name, "link", "set", "lo", "up"},
	}
	for i := range n {
		addr := subnet + "." + strconv.Itoa(i+2)
		ns.addrs = append(ns.addrs, addr)
		cmds = append(cmds, []string{"-n", ns.name, "addr", "add", addr + "/24", "dev", peer})
	}
	cmds = append(cmds, []string{"-n", ns.name, "link", "set", peer, "up"})
	for _, args := range cmds {
		if out, err := ip(args...); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Logf("network namespace %s: host %s.1 on %s, endpoints %v", ns.name, subnet, ns.hostLink, ns.addrs)
	return ns
}

func hostLinkName(pid int) string { return "bo" + strconv.Itoa(pid) + "h" }

// remove deletes the namespace and the host side of the veth pair. Deleting
// the namespace destroys the pair once the processes in it have exited; the
// host side is deleted too in case the namespace was already gone.
func (ns *netns) remove() {
	_, _ = ip("netns", "delete", ns.name)
	_, _ = ip("link", "delete", ns.hostLink)
}

// removeStaleNetns deletes the namespaces of earlier runs that crashed: those
// whose test binary is gone and that no process uses any more.
func removeStaleNetns(t *testing.T) {
	out, err := ip("netns", "list")
	if err != nil {
		return
	}
	stale := regexp.MustCompile(`^` + regexp.QuoteMeta(netnsPrefix) + `([0-9]+)\b`)
	for _, line := range strings.Split(out, "\n") {
		m := stale.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // maybe a run in progress
		}
		if pids, err := ip("netns", "pids", m[0]); err != nil || strings.TrimSpace(pids) != "" {
			continue
		}
		t.Logf("removing network namespace %s left over by a crashed run", m[0])
		(&netns{name: m[0], hostLink: hostLinkName(pid)}).remove()
	}
}

// freeSubnet picks 10.213.x (x derived from pid) that no address or route in
// the root namespace uses, so that concurrent runs do not clash.
func freeSubnet(pid int) (string, error) {
	addrs, err := ip("-4", "-o", "addr", "show")
	if err != nil {
		return "", fmt.Errorf("ip addr show: %w\n%s", err, addrs)
	}
	routes, err := ip("-4", "route", "show", "table", "all")
	if err != nil {
		return "", fmt.Errorf("ip route show: %w\n%s", err, routes)
	}
	for i := range 254 {
		subnet := "10.213." + strconv.Itoa(1+(pid+i)%254)
		if !strings.Contains(addrs, subnet+".") && !strings.Contains(routes, subnet+".") {
			return subnet, nil
		}
	}
	return "", fmt.Errorf("no free /24 in 10.213.0.0/16")
}

func ip(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return string(out), err
}

// nsTarget is a demo-target process serving /healthz on one address of a netns.
type nsTarget struct {
	addr string
	proc *localcp.Process
	log  string
}

// noProxy talks to the targets directly, whatever the environment says.
var noProxy = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

// startTarget runs demo-target inside the namespace on addr:8080 and waits
// until the host reaches it over the veth pair.
func (ns *netns) startTarget(t *testing.T, binary, addr string) *nsTarget {
	t.Helper()
	tg := &nsTarget{addr: addr, log: filepath.Join(t.TempDir(), "demo-target-"+addr+".log")}
	logFile, err := os.Create(tg.log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	// ip netns exec execs the program in place, so the process is demo-target
	// itself and dies with the test binary (localcp sets Pdeathsig).
	tg.proc, err = localcp.StartProcess("demo-target "+addr, "ip",
		[]string{"netns", "exec", ns.name, binary, "--listen", addr + ":8080"}, logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tg.proc.Stop(10 * time.Second); err != nil {
			t.Errorf("stopping %s: %v", tg.proc.Name, err)
		}
		if t.Failed() {
			data, _ := os.ReadFile(tg.log)
			t.Logf("log of %s (last lines):\n%s", tg.proc.Name, tail(string(data), 20))
		}
	})
	NewWithT(t).Eventually(func(g Gomega) {
		if !tg.proc.Running() {
			data, _ := os.ReadFile(tg.log)
			StopTrying(fmt.Sprintf("%s exited (%v): %s", tg.proc.Name, tg.proc.Err(), data)).Now()
		}
		_, err := tg.checks()
		g.Expect(err).NotTo(HaveOccurred())
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "%s did not answer", tg.proc.Name)
	return tg
}

func (tg *nsTarget) url(path string) string { return "http://" + tg.addr + ":8080" + path }

// set breaks or heals the target through its control endpoints.
func (tg *nsTarget) set(t testing.TB, healthy bool) {
	t.Helper()
	path := "/break"
	if healthy {
		path = "/heal"
	}
	resp, err := noProxy.Post(tg.url(path), "text/plain", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", tg.url(path), err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", tg.url(path), resp.Status)
	}
}

// checks returns how many health checks the target has answered.
func (tg *nsTarget) checks() (int, error) {
	resp, err := noProxy.Get(tg.url("/state"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var state string
	var n int
	if _, err := fmt.Sscanf(string(body), "%s %d health checks answered", &state, &n); err != nil {
		return 0, fmt.Errorf("parsing /state %q: %w", body, err)
	}
	return n, nil
}

func (tg *nsTarget) mustChecks(t testing.TB) int {
	t.Helper()
	n, err := tg.checks()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// freeze stops the process with SIGSTOP until the test ends: the kernel still
// accepts connections for it, but no request is answered, so probes of it hang
// until their deadline.
func (tg *nsTarget) freeze(t testing.TB) {
	t.Helper()
	if err := tg.proc.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Registered after startTarget's cleanup, so it runs before it: a stopped
	// process would ignore the SIGTERM that stops it.
	t.Cleanup(func() { _ = tg.proc.Cmd.Process.Signal(syscall.SIGCONT) })
}

// demoTargetBinary copies bin/demo-target, or builds it if it is missing, into
// a directory of the test.
func demoTargetBinary(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "demo-target")
	if data, err := os.ReadFile(filepath.Join(env.root, "bin", "demo-target")); err == nil {
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	t.Log("bin/demo-target not found; building it")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, "./cmd/demo-target")
	cmd.Dir = env.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building demo-target: %v\n%s", err, out)
	}
	return dst
}

// netnsTargets runs n demo targets, each on its own address in a network
// namespace the test creates, and a manager with the default dial guard that
// reaches them. The namespace, the targets and the manager go with the test.
func netnsTargets(t *testing.T, n int) (*netns, []*nsTarget) {
	t.Helper()
	network := newNetns(t, n)
	binary := demoTargetBinary(t)
	targets := make([]*nsTarget, len(network.addrs))
	for i, addr := range network.addrs {
		targets[i] = network.startTarget(t, binary, addr)
	}
	startGuardedManager(t, "manager")
	return network, targets
}
