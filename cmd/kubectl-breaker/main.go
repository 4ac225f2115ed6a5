// Command kubectl-breaker is the kubectl plugin for CircuitBreakers:
// `kubectl breaker list|status|reset|trip|mode`. It takes the usual kubectl
// flags (-n, --context, --kubeconfig, ...).
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := newRootCommand(streams).Execute(); err != nil {
		os.Exit(1)
	}
}
