package manifests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// cp is one local control plane shared by the tests that apply manifests; the
// others only render them. It is nil in -short mode, where those tests skip.
var cp *localcp.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var err error
		if cp, err = localcp.Start(ctx, localcp.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, "manifests:", err)
			return 1
		}
		defer func() {
			if err := cp.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "manifests: stopping the control plane:", err)
			}
		}()
	}
	defer func() {
		if clone.dir != "" {
			_ = os.RemoveAll(clone.dir)
		}
	}()
	return m.Run()
}

// controlPlane returns the shared control plane, or skips in -short mode.
func controlPlane(t *testing.T) *localcp.ControlPlane {
	t.Helper()
	if cp == nil {
		t.Skip("needs a local control plane (not in -short mode)")
	}
	return cp
}

// kubectl runs kubectl against the shared control plane, with stdin if given.
func kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := controlPlane(t).Kubectl(ctx, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
