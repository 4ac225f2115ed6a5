package controller

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/net/http/httpguts"
	corev1 "k8s.io/api/core/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// maxHeaderValueBytes bounds a header value read from a Secret.
const maxHeaderValueBytes = 8 << 10

// specRefs lists the Secrets and ConfigMaps a breaker references.
func specRefs(cb *circuitv1alpha1.CircuitBreaker) []ref {
	if g := cb.Spec.GRPC; g != nil {
		return tlsRefs(cb.Namespace, g.TLS)
	}
	h := cb.Spec.HTTP
	if h == nil {
		return nil
	}
	var refs []ref
	for _, hd := range h.Headers {
		if hd.ValueFrom != nil {
			refs = append(refs, ref{refSecret, cb.Namespace, hd.ValueFrom.SecretKeyRef.Name})
		}
	}
	return append(refs, tlsRefs(cb.Namespace, h.TLS)...)
}

// resolveHTTP fills in header values and TLS settings, reading referenced
// Secrets and ConfigMaps from their watches. A missing reference is a problem:
// the breaker then probes nothing.
func (r *CircuitBreakerReconciler) resolveHTTP(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, target *probe.Target) (*decision.Problem, error) {
	h := cb.Spec.HTTP
	if h == nil {
		return nil, nil
	}
	for _, hd := range h.Headers {
		value, refProblem, err := r.headerValue(ctx, cb.Namespace, hd)
		if err != nil || refProblem != nil {
			return refProblem, err
		}
		if !httpguts.ValidHeaderFieldValue(value) || len(value) > maxHeaderValueBytes {
			return &decision.Problem{Reason: circuitv1alpha1.ReasonInvalidHeaderValue, Message: fmt.Sprintf(
				"The value of header %s holds bytes that cannot go into an HTTP header (such as CR or LF) "+
					"or is longer than %d bytes; nothing is probed until it is fixed", hd.Name, maxHeaderValueBytes)}, nil
		}
		target.Headers = append(target.Headers, probe.Header{Name: hd.Name, Value: value})
	}
	return r.resolveTLS(ctx, cb.Namespace, h.TLS, target)
}

// headerValue is a header's literal value or the value of its Secret key. A
// Secret is used only if it carries circuitv1alpha1.ProbeCredentialsLabel; missing, keyless and
// unlabelled Secrets get the same answer.
func (r *CircuitBreakerReconciler) headerValue(ctx context.Context, namespace string, hd circuitv1alpha1.HTTPHeader) (string, *decision.Problem, error) {
	if hd.Value != nil {
		return *hd.Value, nil, nil
	}
	sel := hd.ValueFrom.SecretKeyRef
	obj, found, err := r.refs.get(ctx, ref{refSecret, namespace, sel.Name})
	if errors.Is(err, errForbidden) {
		return "", forbidden("Secret", sel.Name), nil
	}
	if err != nil {
		return "", nil, err
	}
	var value []byte
	ok := false
	if found {
		secret := obj.(*corev1.Secret)
		if secret.Labels[circuitv1alpha1.ProbeCredentialsLabel] == "true" {
			value, ok = secret.Data[sel.Key]
		}
	}
	if !ok {
		return "", &decision.Problem{Reason: circuitv1alpha1.ReasonSecretNotAllowed, Message: fmt.Sprintf(
			"Secret %s is missing, lacks key %s, or is not labelled %s=true; nothing is probed until it is",
			sel.Name, sel.Key, circuitv1alpha1.ProbeCredentialsLabel)}, nil
	}
	return string(value), nil, nil
}

func forbidden(kind, name string) *decision.Problem {
	return &decision.Problem{Reason: circuitv1alpha1.ReasonReferenceForbidden, Message: fmt.Sprintf(
		"The operator is not allowed to read %s %s (RBAC); nothing is probed until it is", kind, name)}
}
