// Command demo is `make demo`: it shows the operator at work without a
// cluster. It brings up a local control plane (internal/localcp), installs the
// CRDs, starts the manager and a demo target that can be broken and healed,
// applies config/samples and watches the breakers (`kubectl get cb -w`) and
// their Events. It then plays the whole cycle by itself (break the target,
// heal it while Open), telling each step before it happens, and prints how to
// drive it by hand; --interactive skips the story. It runs until Ctrl-C (or
// --seconds), when it stops everything it started and removes its data.
// With --grpc (`make demo DEMO_GRPC=1`) the story follows the gRPC sample
// instead, whose breaker watches the target's gRPC health service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

// config holds the flags; the defaults fit a run from the repository root.
type config struct {
	seconds      int
	kubeconfig   string
	manager      string
	managerLog   string
	target       string
	targetListen string
	grpcListen   string
	grpc         bool
	crds         string
	samples      string
	interactive  bool
}

func main() {
	var c config
	flag.IntVar(&c.seconds, "seconds", 0, "Stop by itself after this many seconds; 0 runs until Ctrl-C.")
	flag.StringVar(&c.kubeconfig, "kubeconfig-out", "bin/demo.kubeconfig", "Where to write the local control plane's kubeconfig.")
	flag.StringVar(&c.manager, "manager", "bin/manager", "The manager binary.")
	flag.StringVar(&c.managerLog, "manager-log", "bin/demo-manager.log", "Where the manager's log goes.")
	flag.StringVar(&c.target, "target", "bin/demo-target", "The demo target binary.")
	flag.StringVar(&c.targetListen, "target-listen", "127.0.0.1:8090", "Where the demo target listens; config/samples probes http://127.0.0.1:8090/healthz.")
	flag.StringVar(&c.grpcListen, "target-grpc-listen", "127.0.0.1:8091",
		"Where the demo target serves the gRPC health service; config/samples watches grpc://127.0.0.1:8091.")
	flag.BoolVar(&c.grpc, "grpc", false, "Play the story on the gRPC sample breaker (a Health/Watch stream) instead of the HTTP one.")
	flag.StringVar(&c.crds, "crds", "config/crd/bases", "The CRD manifests.")
	flag.StringVar(&c.samples, "samples", "config/samples", "The kustomization of sample breakers.")
	flag.BoolVar(&c.interactive, "interactive", false, "Do not play the break-and-heal cycle; wait for you to drive it.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.seconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.seconds)*time.Second)
		defer cancel()
	}
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

// run does the demo; every deferred step undoes one that succeeded, so an
// error or Ctrl-C at any point leaves nothing behind.
func run(ctx context.Context, c config) error {
	for _, bin := range []string{c.manager, c.target} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%w (run `make demo`, which builds it)", err)
		}
	}
	for _, addr := range []string{c.targetListen, c.grpcListen} {
		if err := checkFree(addr); err != nil {
			return err
		}
	}
	kubeconfig, err := filepath.Abs(c.kubeconfig)
	if err != nil {
		return err
	}

	say("Starting a local control plane (etcd and kube-apiserver on 127.0.0.1)")
	cp, err := localcp.Start(ctx, localcp.Options{KubeconfigPath: kubeconfig})
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping the control plane and removing its data")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}()
	kubectl := func(args ...string) error {
		cmd := cp.Kubectl(ctx, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}

	say("Installing the CRDs: kubectl apply -f %s", c.crds)
	if err := cp.InstallCRDs(ctx, c.crds); err != nil {
		return err
	}

	say("Starting the demo target on http://%s/healthz and grpc://%s", c.targetListen, c.grpcListen)
	target, err := localcp.StartProcess("demo-target", c.target,
		[]string{"--listen", c.targetListen, "--grpc-listen", c.grpcListen}, os.Stdout)
	if err != nil {
		return err
	}
	defer stopProcess(target)

	say("Starting the manager (log: %s)", c.managerLog)
	manager, err := startManager(ctx, c, cp)
	if err != nil {
		return err
	}
	defer stopProcess(manager)

	say("Applying the samples: kubectl apply -k %s", c.samples)
	if err := kubectl("apply", "-k", c.samples); err != nil {
		return err
	}

	if c.interactive {
		printHelp(c, cp, target.Pid())
	}
	say("Watching the breakers (kubectl get cb -w) and their Events (kubectl get events -w)")
	watch, err := localcp.StartProcess("kubectl", cp.KubectlPath,
		cp.KubectlArgs("get", "circuitbreakers", "--all-namespaces", "--watch"), os.Stdout)
	if err != nil {
		return err
	}
	defer stopProcess(watch)
	events, err := localcp.StartProcess("kubectl-events", cp.KubectlPath, cp.KubectlArgs("get", "events", "--all-namespaces", "--watch",
		"--field-selector", "involvedObject.kind=CircuitBreaker",
		"-o", "custom-columns=EVENT:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message"), os.Stdout)
	if err != nil {
		return err
	}
	defer stopProcess(events)

	say("Starting a caller: GET http://%s/healthz through pkg/breakerclient twice a second; it prints a line when its calls change", c.targetListen)
	callerCtx, stopCaller := context.WithCancel(ctx)
	defer stopCaller()
	app, err := startCaller(callerCtx, cp.RESTConfig, "http://"+c.targetListen+"/healthz")
	if err != nil {
		return err
	}

	if !c.interactive {
		s, storyCaller := httpStory, app
		if c.grpc {
			// The caller calls the HTTP sample; the gRPC story is told without it.
			s, storyCaller = grpcStory, nil
		}
		if err := playStory(ctx, cp, "http://"+c.targetListen, s, storyCaller); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		printHelp(c, cp, target.Pid())
	}

	select {
	case <-ctx.Done():
		fmt.Println()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			say("%d seconds are up", c.seconds)
		}
		return nil
	case <-manager.Exited():
		return fmt.Errorf("the manager exited (%v); see %s", manager.Err(), c.managerLog)
	case <-target.Exited():
		return fmt.Errorf("the demo target exited (%v)", target.Err())
	case <-watch.Exited():
		return fmt.Errorf("kubectl get --watch exited (%v)", watch.Err())
	case <-events.Exited():
		return fmt.Errorf("kubectl get events --watch exited (%v)", events.Err())
	}
}

// startManager starts the manager and waits until it is ready.
func startManager(ctx context.Context, c config, cp *localcp.ControlPlane) (*localcp.Process, error) {
	log, err := os.Create(c.managerLog)
	if err != nil {
		return nil, err
	}
	defer func() { _ = log.Close() }()
	p, err := cp.StartManager(ctx, localcp.ManagerOptions{
		Binary: c.manager,
		Args: []string{
			// The demo target listens on loopback, which probes refuse by default.
			"--probe-allow-loopback",
			"--metrics-bind-address=0",
		},
		Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w; see %s", err, c.managerLog)
	}
	return p, nil
}

func printHelp(c config, cp *localcp.ControlPlane, targetPID int) {
	base := "http://" + c.targetListen
	fmt.Printf(`
The operator is running. Try it by hand, in another shell, from this directory:

  Point kubectl at the local control plane (the kubectl %[1]s built for it):
    export KUBECONFIG=%[2]s
    alias kubectl=%[3]s

  Break the target (user-api opens after spec.threshold failed probes):
    curl -X POST %[4]s/break        or: kill -USR1 %[5]d
  Heal it (HalfOpen once spec.timeout has passed, then Closed):
    curl -X POST %[4]s/heal         or: kill -USR2 %[5]d
  Reset an Open breaker by hand:
    kubectl annotate cb user-api circuit.resilience.dev/reset="$(date +%%s)" --overwrite
  See why it changed:
    kubectl describe cb user-api

  Manager log: %[6]s

Still watching the breakers and their Events. Press Ctrl-C to stop everything.

`, localcp.K8sVersion, cp.KubeconfigPath, cp.KubectlPath, base, targetPID, c.managerLog)
}

func stopProcess(p *localcp.Process) {
	if err := p.Stop(15 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
	}
}

// checkFree fails early, with a clear message, if the target's address is taken.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("the demo target cannot listen on %s: %w (is another demo running?)", addr, err)
	}
	return l.Close()
}
