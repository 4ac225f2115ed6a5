package localcp

import (
	"context"
	"fmt"
	"io"
)

// InstallCRDs installs the CustomResourceDefinitions in dir the way the README
// does, with kubectl apply, and waits until the API server serves them.
func (cp *ControlPlane) InstallCRDs(ctx context.Context, dir string) error {
	for _, args := range [][]string{
		{"apply", "-f", dir},
		{"wait", "--for=condition=Established", "--timeout=60s", "-f", dir},
	} {
		if out, err := cp.Kubectl(ctx, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
		}
	}
	return nil
}

// ManagerOptions configure StartManager.
type ManagerOptions struct {
	// Binary is the manager binary, such as bin/manager.
	Binary string
	// Name names the process in errors. Defaults to "manager".
	Name string
	// Args are passed after the flags StartManager sets itself: --kubeconfig and
	// --health-probe-bind-address.
	Args []string
	// Log receives the manager's output; nil discards it.
	Log io.Writer
	// HealthPort is the loopback port of the manager's /healthz and /readyz;
	// 0 picks a free one.
	HealthPort int
}

// StartManager starts the operator's manager against this control plane, its
// health endpoint on a free loopback port, and returns once it reports ready
// (/readyz answers 200). On error nothing is left running.
func (cp *ControlPlane) StartManager(ctx context.Context, opts ManagerOptions) (*Process, error) {
	name := opts.Name
	if name == "" {
		name = "manager"
	}
	port := opts.HealthPort
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := append([]string{
		"--kubeconfig", cp.KubeconfigPath,
		"--health-probe-bind-address", hostPort(port),
	}, opts.Args...)
	p, err := StartProcess(name, opts.Binary, args, opts.Log)
	if err != nil {
		return nil, err
	}
	if err := cp.waitFor(ctx, p, name, "http://"+hostPort(port)+"/readyz"); err != nil {
		_ = p.Stop(0)
		return nil, err
	}
	return p, nil
}
