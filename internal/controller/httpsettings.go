package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// specRefs lists the Secrets and ConfigMaps a breaker references.
func specRefs(cb *circuitv1alpha1.CircuitBreaker) []ref {
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
	if h.TLS != nil && h.TLS.CABundle != nil {
		refs = append(refs, ref{refConfigMap, cb.Namespace, h.TLS.CABundle.Name})
	}
	return refs
}

// httpSpecID describes the headers and TLS settings without any value, so that a
// change of them probes at once while secret values never enter an identifier.
func httpSpecID(h *circuitv1alpha1.HTTPProbe) string {
	if h == nil {
		return ""
	}
	var b strings.Builder
	for _, hd := range h.Headers {
		b.WriteString(hd.Name + ";")
		if hd.ValueFrom != nil {
			b.WriteString(hd.ValueFrom.SecretKeyRef.Name + "/" + hd.ValueFrom.SecretKeyRef.Key + ";")
		}
	}
	if t := h.TLS; t != nil {
		fmt.Fprintf(&b, "tls:%s;%t;", t.ServerName, t.InsecureSkipVerify)
		if t.CABundle != nil {
			b.WriteString(t.CABundle.Name + "/" + t.CABundle.Key)
		}
	}
	return b.String()
}

// resolveHTTP fills in header values and TLS settings, reading referenced
// Secrets and ConfigMaps from their watches. A missing reference is a problem:
// the breaker then probes nothing.
func (r *CircuitBreakerReconciler) resolveHTTP(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, target *probe.Target) (*problem, error) {
	h := cb.Spec.HTTP
	if h == nil {
		return nil, nil
	}
	for _, hd := range h.Headers {
		if hd.Value != nil {
			target.Headers = append(target.Headers, probe.Header{Name: hd.Name, Value: *hd.Value})
			continue
		}
		sel := hd.ValueFrom.SecretKeyRef
		obj, found, err := r.refs.get(ctx, ref{refSecret, cb.Namespace, sel.Name})
		if err != nil {
			return nil, err
		}
		if !found {
			return &problem{circuitv1alpha1.ReasonSecretNotFound, fmt.Sprintf(
				"Secret %q (header %s) does not exist; nothing is probed until it does", sel.Name, hd.Name)}, nil
		}
		value, ok := obj.(*corev1.Secret).Data[sel.Key]
		if !ok {
			return &problem{circuitv1alpha1.ReasonSecretKeyNotFound, fmt.Sprintf(
				"Secret %q has no key %q (header %s); nothing is probed until it does", sel.Name, sel.Key, hd.Name)}, nil
		}
		target.Headers = append(target.Headers, probe.Header{Name: hd.Name, Value: string(value)})
	}
	if h.TLS == nil {
		return nil, nil
	}
	target.TLS = &probe.TLS{ServerName: h.TLS.ServerName, InsecureSkipVerify: h.TLS.InsecureSkipVerify}
	if sel := h.TLS.CABundle; sel != nil {
		obj, found, err := r.refs.get(ctx, ref{refConfigMap, cb.Namespace, sel.Name})
		if err != nil {
			return nil, err
		}
		var pem []byte
		if found {
			cm := obj.(*corev1.ConfigMap)
			if v, ok := cm.Data[sel.Key]; ok {
				pem = []byte(v)
			} else {
				pem = cm.BinaryData[sel.Key]
			}
		}
		if len(pem) == 0 {
			return &problem{circuitv1alpha1.ReasonCABundleNotFound, fmt.Sprintf(
				"ConfigMap %q has no CA bundle under key %q; nothing is probed until it does", sel.Name, sel.Key)}, nil
		}
		if !probe.ValidCAPEM(pem) {
			return &problem{circuitv1alpha1.ReasonInvalidCABundle, fmt.Sprintf(
				"ConfigMap %q key %q holds no PEM certificate; nothing is probed until it does", sel.Name, sel.Key)}, nil
		}
		target.TLS.CAPEM = pem
	}
	return nil, nil
}
