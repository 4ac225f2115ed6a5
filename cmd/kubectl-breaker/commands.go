package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/pkg/breakerclient"
)

func (p *plugin) listCommand() *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List CircuitBreakers with their state and time left until the next retry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := p.client()
			if err != nil {
				return err
			}
			var opts []client.ListOption
			if !all {
				opts = append(opts, client.InNamespace(ns))
			}
			list := &circuitv1alpha1.CircuitBreakerList{}
			if err := c.List(cmd.Context(), list, opts...); err != nil {
				return fmt.Errorf("listing CircuitBreakers: %w", err)
			}
			if output != "" {
				return p.printObject(list, output)
			}
			if len(list.Items) == 0 {
				_, err := fmt.Fprintln(p.streams.ErrOut, "No CircuitBreakers found.")
				return err
			}
			return writeList(p.streams.Out, list.Items, all, p.now())
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the breakers of every namespace")
	addOutputFlag(cmd, &output)
	return cmd
}

func (p *plugin) statusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a CircuitBreaker: state, counters, time left until nextRetryTime, endpoints and recent transitions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := p.client()
			if err != nil {
				return err
			}
			cb := &circuitv1alpha1.CircuitBreaker{}
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, cb); err != nil {
				return fmt.Errorf("getting CircuitBreaker %s/%s: %w", ns, args[0], err)
			}
			if output != "" {
				return p.printObject(cb, output)
			}
			events, err := transitions(cmd.Context(), c, cb)
			if err != nil {
				return err
			}
			return writeStatus(p.streams.Out, cb, events, p.now())
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func (p *plugin) resetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reset NAME",
		Short: "Close a CircuitBreaker by setting its reset annotation to a new value",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.act(cmd.Context(), args[0], func(ctx context.Context, bc *breakerclient.Client) (string, error) {
				return "reset requested", bc.Reset(ctx, args[0])
			})
		},
	}
}

func (p *plugin) tripCommand() *cobra.Command {
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "trip NAME --for DURATION",
		Short: "Hold a CircuitBreaker Open for a while (sets circuit.resilience.dev/trip-until)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.act(cmd.Context(), args[0], func(ctx context.Context, bc *breakerclient.Client) (string, error) {
				return "tripped until " + p.now().Add(d).UTC().Format(time.RFC3339), bc.Trip(ctx, args[0], d)
			})
		},
	}
	cmd.Flags().DurationVar(&d, "for", 0, "How long to hold the circuit Open, such as 10m")
	utilRuntimeMust(cmd.MarkFlagRequired("for"))
	return cmd
}

// act runs one breakerclient write on the named breaker and prints what it did.
func (p *plugin) act(ctx context.Context, name string, write func(context.Context, *breakerclient.Client) (string, error)) error {
	bc, err := p.breakerClient()
	if err != nil {
		return err
	}
	done, err := write(ctx, bc)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.streams.Out, "circuitbreaker/%s %s\n", name, done)
	return err
}

// modes are the values `mode` accepts.
var modes = []circuitv1alpha1.Mode{circuitv1alpha1.ModeAuto, circuitv1alpha1.ModeForcedOpen, circuitv1alpha1.ModeForcedClosed}

// errModeUnsupported says that the installed CRD has no spec.mode field.
var errModeUnsupported = errors.New("the installed CircuitBreaker CRD does not support spec.mode yet; upgrade the operator's CRDs")

func (p *plugin) modeCommand() *cobra.Command {
	return &cobra.Command{
		Use:       "mode NAME Auto|ForcedOpen|ForcedClosed",
		Short:     "Let the probes drive a CircuitBreaker (Auto) or force it Open or Closed (sets spec.mode)",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"Auto", "ForcedOpen", "ForcedClosed"},
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := parseMode(args[1])
			if err != nil {
				return err
			}
			c, ns, err := p.client()
			if err != nil {
				return err
			}
			if err := setMode(cmd.Context(), c, client.ObjectKey{Namespace: ns, Name: args[0]}, mode); err != nil {
				return err
			}
			_, err = fmt.Fprintf(p.streams.Out, "circuitbreaker/%s mode set to %s\n", args[0], mode)
			return err
		},
	}
}

func parseMode(s string) (circuitv1alpha1.Mode, error) {
	for _, m := range modes {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q: use Auto, ForcedOpen or ForcedClosed", s)
}

// setMode merge-patches spec.mode with strict field validation, so that an API
// server whose CRD lacks the field refuses it instead of dropping it silently.
func setMode(ctx context.Context, c client.Client, k client.ObjectKey, mode circuitv1alpha1.Mode) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"mode": mode}})
	if err != nil {
		return fmt.Errorf("encoding the patch: %w", err)
	}
	cb := &circuitv1alpha1.CircuitBreaker{}
	cb.Namespace, cb.Name = k.Namespace, k.Name
	err = c.Patch(ctx, cb, client.RawPatch(types.MergePatchType, patch), client.FieldValidation("Strict"))
	// The API server answers 422 (or 400) with the whole patched object in the
	// message; only the verdict is worth showing.
	if (apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) && strings.Contains(err.Error(), `unknown field "spec.mode"`) {
		return fmt.Errorf("setting the mode of circuitbreaker %s: %w", k, errModeUnsupported)
	}
	if err != nil {
		return fmt.Errorf("setting the mode of circuitbreaker %s: %w", k, err)
	}
	return nil
}
