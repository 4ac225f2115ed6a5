package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/pkg/breakerclient"
)

// plugin holds what every command needs: the kubectl flags and the streams.
type plugin struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	scheme  *runtime.Scheme
	now     func() time.Time
}

func newRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	p := &plugin{flags: genericclioptions.NewConfigFlags(true), streams: streams, scheme: runtime.NewScheme(), now: time.Now}
	utilRuntimeMust(clientgoscheme.AddToScheme(p.scheme))
	utilRuntimeMust(circuitv1alpha1.AddToScheme(p.scheme))
	root := &cobra.Command{
		Use:           "kubectl-breaker",
		Short:         "Inspect and act on CircuitBreakers",
		Long:          "List CircuitBreakers, show one in detail, reset it, trip it open for a while or force its mode.",
		SilenceUsage:  true,
		SilenceErrors: false,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl breaker"},
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	p.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(p.listCommand(), p.statusCommand(), p.resetCommand(), p.tripCommand(), p.modeCommand())
	return root
}

func utilRuntimeMust(err error) {
	if err != nil {
		panic(err)
	}
}

// client returns an API client and the namespace the flags select.
func (p *plugin) client() (client.Client, string, error) {
	cfg, ns, err := p.config()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: p.scheme})
	if err != nil {
		return nil, "", fmt.Errorf("creating the API client: %w", err)
	}
	return c, ns, nil
}

// breakerClient returns a breakerclient for the namespace the flags select.
func (p *plugin) breakerClient() (*breakerclient.Client, error) {
	cfg, ns, err := p.config()
	if err != nil {
		return nil, err
	}
	return breakerclient.New(cfg, breakerclient.Options{Namespace: ns})
}

func (p *plugin) config() (*rest.Config, string, error) {
	cfg, err := p.flags.ToRESTConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := p.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("choosing the namespace: %w", err)
	}
	return cfg, ns, nil
}

// printObject prints obj as JSON or YAML, with its apiVersion and kind.
func (p *plugin) printObject(obj runtime.Object, output string) error {
	var printer printers.ResourcePrinter
	switch output {
	case "json":
		printer = &printers.JSONPrinter{}
	case "yaml":
		printer = &printers.YAMLPrinter{}
	default:
		return fmt.Errorf("unknown output format %q: use json or yaml", output)
	}
	if err := printers.NewTypeSetter(p.scheme).ToPrinter(printer).PrintObj(obj, p.streams.Out); err != nil {
		return fmt.Errorf("printing: %w", err)
	}
	return nil
}

// addOutputFlag adds -o json|yaml.
func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "", "Output format: json or yaml (default: a table for people)")
}
