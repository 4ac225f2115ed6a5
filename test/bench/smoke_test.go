package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// TestMain lets the test binary play the benchmark's other roles: the driver
// starts the target server and the reference prober by running its own
// executable with the role as first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if role, ok := roles[os.Args[1]]; ok {
			os.Exit(role(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// TestSmokeRunProbesEveryBreakerWithoutSteadyStateWrites runs the small
// benchmark (N=50, 2s interval, about a minute) end to end and checks only
// what holds on any machine, however loaded: every breaker is probed, the
// breakers opened together open and close again, healthy breakers end Closed,
// a steady state causes no status write, and the report is written. Timing
// figures are reported, not asserted.
func TestSmokeRunProbesEveryBreakerWithoutSteadyStateWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and the manager")
	}
	assets := localcp.AssetsDir("")
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Skipf("envtest assets missing (%s not in %s): run `make envtest-assets` or set KUBEBUILDER_ASSETS", bin, assets)
		}
	}
	g := NewWithT(t)
	dir := t.TempDir()
	cfg := smokeConfig()
	cfg.out = filepath.Join(dir, "benchmarks.md")
	cfg.jsonOut = filepath.Join(dir, "bench.json")
	cfg.label = "smoke"

	start := time.Now()
	rep, err := run(t.Context(), cfg)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("smoke run took %s\n%s", time.Since(start).Round(time.Second), rep.markdown())

	g.Expect(rep.Results).To(HaveLen(1))
	r := rep.Results[0]
	g.Expect(r.EveryTargetProbed).To(BeTrue(), "every target probed at least once")
	g.Expect(r.GRPC).NotTo(BeNil(), "the gRPC row was measured")
	g.Expect(r.GRPC.Probes).To(BeNumerically(">", 0), "the gRPC breakers were probed in the window")
	g.Expect(r.GRPC.ManagerCPUPerProbeMs).To(BeNumerically(">", 0))
	g.Expect(r.Burst.Floor.PerSecond).To(BeNumerically(">", 0), "the API server's write rate was measured")
	g.Expect(r.Burst.Verdicts).To(Equal(r.N), "every breaker of the creation burst has a recorded verdict")
	g.Expect(r.Burst.Window.Manager.Unprobed).To(BeZero(), "every breaker probed during the creation burst")
	// One write per new breaker (its first status and first result together);
	// the margin is for a breaker whose probe a stall of the machine held past
	// retryTimeout, which then gets its first status on its own. Two writes
	// each, the design before, fail this.
	g.Expect(r.Burst.StatusWritesPerBreaker).To(BeNumerically("<=", 1.2), "one status write per new breaker")
	g.Expect(r.Steady.Manager.Unprobed).To(BeZero(), "every breaker probed in the steady window")
	g.Expect(r.Steady.Manager.Delivered).To(BeNumerically(">", 0))
	g.Expect(r.Detection.Opened).To(Equal(r.Detection.Breakers), "every breaker whose target failed opened")
	g.Expect(r.Reset.HalfOpened).To(Equal(r.Detection.Breakers), "every opened breaker went HalfOpen")
	g.Expect(r.HealthyNotClosed).To(BeZero(), "breakers with healthy targets end Closed")
	g.Expect(r.Steady.StatusPatches).To(BeZero(), "no status write in steady state (API server count)")
	g.Expect(r.Steady.WritesSeen).To(BeZero(), "no status write in steady state (watch)")
	g.Expect(r.Isolation.WritesSeen).To(BeZero(), "no status write on healthy breakers while others hang")
	g.Expect(r.AfterRestart.Manager.Unprobed).To(BeZero(), "every healthy breaker probed after the manager restarted")

	md, err := os.ReadFile(cfg.out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(md)).To(ContainSubstring("| | target | N = 50 |"))
	g.Expect(strings.Count(string(md), beginMarker)).To(Equal(1))
	g.Expect(cfg.jsonOut).To(BeAnExistingFile())
}
