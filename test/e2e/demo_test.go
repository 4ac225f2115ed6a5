package e2e

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemoPlaysTheCycleByItself runs `make demo`'s program as a newcomer
// would, without touching it: it tells each step before it happens, the
// breaker goes Closed -> Open -> HalfOpen -> Closed with its Events shown, and
// it then prints the commands for hands-on use and keeps running.
func TestDemoPlaysTheCycleByItself(t *testing.T) {
	// config/samples probes the demo target on 127.0.0.1:8090.
	if l, err := net.Listen("tcp", "127.0.0.1:8090"); err != nil {
		t.Skipf("127.0.0.1:8090 is taken (%v); the demo needs it", err)
	} else {
		_ = l.Close()
	}
	g := NewWithT(t)
	dir := t.TempDir()
	for bin, pkg := range map[string]string{"demo": "./cmd/demo", "demo-target": "./cmd/demo-target"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = env.root
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "building %s: %s", pkg, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, filepath.Join(dir, "demo"), "--seconds=150",
		"--kubeconfig-out", filepath.Join(dir, "demo.kubeconfig"),
		"--manager", env.manager, "--manager-log", filepath.Join(dir, "manager.log"),
		"--target", filepath.Join(dir, "demo-target"),
		"--crds", filepath.Join(env.root, "config", "crd", "bases"),
		"--samples", filepath.Join(env.root, "config", "samples"))
	var out syncBuffer
	demo.Stdout, demo.Stderr = &out, &out
	g.Expect(demo.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- demo.Wait() }()
	defer func() {
		_ = demo.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the demo did not stop cleanly on Ctrl-C: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = demo.Process.Kill()
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	}()

	g.Eventually(out.String).WithTimeout(2 * time.Minute).WithPolling(time.Second).
		Should(ContainSubstring("Now it is yours to drive"))
	time.Sleep(time.Second)
	text := out.String()
	// The steps are told in order, and each before what it announces shows up
	// (the watches print on their own, so only that order is fixed).
	steps := []string{"Starting a caller", "Step 1/3", "Step 2/3", "The circuit is Open: the caller", "Step 3/3",
		"The circuit is Closed again: the caller", "The cycle is done",
		"curl -X POST http://127.0.0.1:8090/break", "Still watching"}
	for i := 1; i < len(steps); i++ {
		g.Expect(strings.Index(text, steps[i])).To(BeNumerically(">", strings.Index(text, steps[i-1])), "%q before %q", steps[i-1], steps[i])
	}
	// The columns are as wide as the longest name (config/samples also holds
	// user-api-grpc), so names and states are matched with any spacing.
	for step, shown := range map[string][]string{
		"Step 1/3": {`user-api\s+Closed`},
		"Step 2/3": {"Target is now broken", `user-api\s+Open`, "CircuitOpened"},
		"Step 3/3": {"Target is now healthy", `user-api\s+HalfOpen`, "CircuitHalfOpened", "CircuitClosed"},
	} {
		rest := text[strings.Index(text, step):]
		for _, s := range shown {
			g.Expect(rest).To(MatchRegexp(s), "after %q", step)
		}
	}
	// The caller, an application on pkg/breakerclient: its calls go through,
	// fail at the broken target, fail fast while the circuit is Open (before
	// the story says so), and go through again once it has closed.
	const get = "caller: GET http://127.0.0.1:8090/healthz "
	calls := []string{get + "through breakerclient.Call went through", get + "reached the target and failed",
		get + "failed fast, the target was not called (circuit open: breaker default/user-api is Open",
		"The circuit is Open: the caller", "Step 3/3", get + "through breakerclient.Call went through",
		"The circuit is Closed again: the caller"}
	from := strings.Index(text, "Step 2/3")
	g.Expect(strings.Index(text, calls[0])).To(BeNumerically(">=", 0), "the caller's first calls went through")
	for _, s := range calls[1:] {
		i := strings.Index(text[from:], s)
		g.Expect(i).To(BeNumerically(">=", 0), "%q after the step before it", s)
		from += i
	}
	halfOpen := regexp.MustCompile(`user-api\s+HalfOpen`).FindStringIndex(text)[0]
	g.Expect(regexp.MustCompile(`user-api\s+Closed\s+0`).MatchString(text[halfOpen:])).To(BeTrue(), "Closed again after HalfOpen")
	select {
	case err := <-done:
		t.Fatalf("the demo stopped after its story (%v); it should keep running", err)
	default:
	}
}
