// Package e2e drives the built manager binary and kubectl against a local
// control plane (internal/localcp), the way users do: kubectl apply, get,
// describe, annotate and explain. It imports none of the controller's code.
//
// It uses bin/manager when present (`make test-e2e` builds it), else builds
// the manager itself, and the kubectl from the envtest assets directory
// ($KUBEBUILDER_ASSETS, or where hack/envtest-assets.sh puts it).
package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// env is the shared set-up: one control plane with the CRDs installed.
var env struct {
	cp *localcp.ControlPlane
	// manager is a private copy of the manager binary, so that a rebuild of
	// bin/manager during the run cannot swap it under the tests.
	manager string
	// root is the repository root.
	root string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// `go test -short ./...` skips the e2e tests: they need the envtest binaries.
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	tmp, err := os.MkdirTemp("", "breaker-e2e-")
	if err != nil {
		return fail(err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	env.root, err = filepath.Abs("../..")
	if err != nil {
		return fail(err)
	}
	if env.manager, err = managerBinary(ctx, tmp); err != nil {
		return fail(err)
	}

	start := time.Now()
	env.cp, err = localcp.Start(ctx, localcp.Options{})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := env.cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the control plane:", err)
		}
	}()
	fmt.Printf("e2e: control plane up in %s at %s\n", time.Since(start).Round(time.Millisecond), env.cp.APIServerURL)

	if err := env.cp.InstallCRDs(ctx, filepath.Join(env.root, "config", "crd", "bases")); err != nil {
		return fail(err)
	}
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "e2e:", err)
	return 1
}

// managerBinary copies bin/manager, or builds the manager if it is missing.
func managerBinary(ctx context.Context, dir string) (string, error) {
	dst := filepath.Join(dir, "manager")
	if src, err := os.Open(filepath.Join(env.root, "bin", "manager")); err == nil {
		defer func() { _ = src.Close() }()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, src); err != nil {
			_ = out.Close()
			return "", err
		}
		return dst, out.Close()
	}
	fmt.Println("e2e: bin/manager not found; building the manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, "./cmd/manager")
	cmd.Dir = env.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager: %w\n%s", err, out)
	}
	return dst, nil
}
