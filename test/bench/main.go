// Command bench is `make bench`, the scale and isolation benchmark: it brings
// up a local control plane (internal/localcp), runs the real manager, creates N
// breakers against loopback targets served by one target process, and
// measures probe cadence, detection, timed reset, API economy, cost against a
// reference prober run side by side, and isolation from hanging targets. It
// prints a markdown table and, with -out, writes it with a description of the
// machine into docs/benchmarks.md.
//
// The same binary plays the target server (`bench target ...`) and the
// reference prober (`bench refprober ...`), each a separate process so that
// its CPU time is measured on its own.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// roles are the other programs this binary can be; the first argument picks one.
var roles = map[string]func([]string) int{
	"target":      runTarget,
	"refprober":   runRefProber,
	"grpc-target": runGRPCTarget,
}

func main() {
	if len(os.Args) > 1 {
		if role, ok := roles[os.Args[1]]; ok {
			os.Exit(role(os.Args[2:]))
		}
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if rep != nil {
		fmt.Print(rep.markdown())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config holds the flags.
type config struct {
	sizes        []int
	interval     time.Duration
	retryTimeout time.Duration
	steady       time.Duration
	isolation    time.Duration
	// restartWindow is measured one interval after the manager restarted.
	restartWindow time.Duration
	// openCount is K, the breakers opened together; 0 means min(1000, N/5).
	openCount   int
	hangPercent int
	// resetThreshold and resetTimeout are the spec of the K breakers opened together.
	resetThreshold int32
	resetTimeout   time.Duration
	out            string
	jsonOut        string
	// profiles, when set, is a directory for the manager's heap profiles.
	profiles    string
	manager     string
	managerArgs []string
	label       string
	keep        bool
	smoke       bool
	// failureRateWindow, when positive, gives every breaker a failureRate of
	// that window at 50 percent.
	failureRateWindow int32
	// grpcN is the N whose run ends with the gRPC row; 0: none.
	grpcN int
}

func defaultConfig() config {
	return config{
		sizes:          []int{100, 1000, 5000, 10000},
		interval:       10 * time.Second,
		retryTimeout:   10 * time.Second,
		steady:         50 * time.Second,
		isolation:      40 * time.Second,
		restartWindow:  30 * time.Second,
		hangPercent:    10,
		resetThreshold: 3,
		resetTimeout:   20 * time.Second,
		label:          "current",
		grpcN:          1000,
	}
}

// smokeConfig is the small run of `make bench-smoke` and the smoke test: about a minute.
func smokeConfig() config {
	c := defaultConfig()
	c.sizes = []int{50}
	c.interval = 2 * time.Second
	c.retryTimeout = 2 * time.Second
	c.steady = 10 * time.Second
	c.isolation = 8 * time.Second
	c.restartWindow = 6 * time.Second
	c.openCount = 10
	c.resetTimeout = 5 * time.Second
	c.smoke = true
	c.grpcN = 50
	return c
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	smoke := fs.Bool("smoke", false, "The small run: N=50, 2s interval, about a minute. Other flags given explicitly still apply.")
	d := defaultConfig()
	sizes := fs.String("n", "100,1000,5000,10000", "Comma-separated numbers of breakers; one run each.")
	fs.DurationVar(&d.interval, "interval", d.interval, "spec.interval of every breaker.")
	fs.DurationVar(&d.retryTimeout, "retry-timeout", d.retryTimeout, "spec.retryTimeout of every breaker (how long a hanging probe is held).")
	fs.DurationVar(&d.steady, "steady", d.steady, "Length of the steady-state window.")
	fs.DurationVar(&d.isolation, "isolation", d.isolation, "Length of the window with hanging targets.")
	fs.DurationVar(&d.restartWindow, "restart-window", d.restartWindow, "Length of the window measured after the manager restarted.")
	fs.IntVar(&d.openCount, "open", 0, "Breakers opened together for the detection and timed-reset figures (0: min(1000, N/5)).")
	fs.IntVar(&d.hangPercent, "hang-percent", d.hangPercent, "Percentage of targets that hang in the isolation window.")
	fs.StringVar(&d.out, "out", "", "Write the report into this markdown file (e.g. docs/benchmarks.md), between its bench markers.")
	fs.StringVar(&d.jsonOut, "json", "", "Write the raw results as JSON to this file.")
	fs.StringVar(&d.profiles, "profiles", "", "Save the manager's heap profile at the end of the steady window, and a 20 s CPU profile after it, into this directory as heap-n<N>.pb.gz and cpu-n<N>.pb.gz (read them with `go tool pprof`).")
	fs.StringVar(&d.manager, "manager", "", "A manager binary to run instead of building ./cmd/manager.")
	managerArgs := fs.String("manager-args", "", "Extra flags for the manager, space-separated (e.g. --max-concurrent-reconciles=8).")
	fs.StringVar(&d.label, "label", d.label, "Name of the design measured, shown in the report.")
	fs.BoolVar(&d.keep, "keep", false, "Keep the work directory (logs of the manager, target and control plane).")
	fs.IntVar(&d.grpcN, "grpc-n", d.grpcN, "The N whose run ends by measuring as many gRPC breakers (Health/Check) for the gRPC row; 0: none.")
	failureRate := fs.Int("failure-rate", 0, "Give every breaker spec.failureRate with this window (2 to 100) at 50 percent; 0: none.")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg := d
	if *smoke {
		// Start from the smoke preset and apply only the flags given explicitly.
		cfg = smokeConfig()
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "interval":
				cfg.interval = d.interval
			case "retry-timeout":
				cfg.retryTimeout = d.retryTimeout
			case "steady":
				cfg.steady = d.steady
			case "isolation":
				cfg.isolation = d.isolation
			case "restart-window":
				cfg.restartWindow = d.restartWindow
			case "open":
				cfg.openCount = d.openCount
			case "hang-percent":
				cfg.hangPercent = d.hangPercent
			case "grpc-n":
				cfg.grpcN = d.grpcN
			}
		})
		cfg.out, cfg.jsonOut, cfg.manager, cfg.label, cfg.keep, cfg.profiles = d.out, d.jsonOut, d.manager, d.label, d.keep, d.profiles
	}
	cfg.failureRateWindow = int32(*failureRate)
	if !*smoke || isSet(fs, "n") {
		cfg.sizes = nil
		for s := range strings.SplitSeq(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 10 || n > 50000 {
				return config{}, fmt.Errorf("-n: %q is not a number of breakers from 10 to 50000", s)
			}
			cfg.sizes = append(cfg.sizes, n)
		}
	}
	cfg.managerArgs = strings.Fields(*managerArgs)
	if cfg.interval < 100*time.Millisecond || cfg.retryTimeout < 100*time.Millisecond {
		return config{}, errors.New("-interval and -retry-timeout must be at least 100ms")
	}
	return cfg, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// run builds the manager, runs one benchmark per size and writes the report.
func run(ctx context.Context, cfg config) (*report, error) {
	env, err := newRunEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer env.close()
	rep := &report{Label: cfg.label, Machine: describeMachine(), Config: describeConfig(cfg), Started: time.Now()}
	for _, n := range cfg.sizes {
		res, err := runSize(ctx, env, n)
		if res != nil {
			rep.Results = append(rep.Results, *res)
		}
		if err != nil {
			env.failed = true
			return rep, fmt.Errorf("run with %d breakers: %w (work directory kept: %s)", n, err, env.work)
		}
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.Took = time.Since(rep.Started).Round(time.Second).String()
	if cfg.jsonOut != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(cfg.jsonOut, data, 0o644); err != nil {
			return rep, err
		}
	}
	if cfg.out != "" {
		if err := writeReport(cfg.out, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func describeConfig(cfg config) string {
	open := "min(1000, N/5)"
	if cfg.openCount > 0 {
		open = strconv.Itoa(cfg.openCount)
	}
	s := fmt.Sprintf("interval %s, retryTimeout %s; steady window %s, isolation window %s, window after restart %s; "+
		"K=%s breakers opened together (threshold %d, timeout %s), the others threshold 5, timeout 60s; "+
		"%d%% of targets hanging from the isolation window on",
		cfg.interval, cfg.retryTimeout, cfg.steady, cfg.isolation, cfg.restartWindow, open, cfg.resetThreshold, cfg.resetTimeout, cfg.hangPercent)
	if cfg.failureRateWindow > 0 {
		s += fmt.Sprintf("; every breaker with failureRate window %d at 50%%", cfg.failureRateWindow)
	}
	if len(cfg.managerArgs) > 0 {
		s += "; manager flags: " + strings.Join(cfg.managerArgs, " ")
	}
	return s
}

// say reports progress on stderr.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
