package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	circuitv1alpha1 "github.com/resilience-dev/breaker-operator/api/v1alpha1"
	"github.com/resilience-dev/breaker-operator/internal/decision"
	"github.com/resilience-dev/breaker-operator/internal/probe"
)

// maxClientCertificateBytes bounds each of tls.crt and tls.key read from a
// client certificate Secret: a chain of a few certificates and a key.
const maxClientCertificateBytes = 64 << 10

// tlsRefs lists the ConfigMap and Secret a TLSConfig references.
func tlsRefs(namespace string, t *circuitv1alpha1.TLSConfig) []ref {
	if t == nil {
		return nil
	}
	var refs []ref
	if t.CABundle != nil {
		refs = append(refs, ref{refConfigMap, namespace, t.CABundle.Name})
	}
	if t.ClientCertificateSecretRef != nil {
		refs = append(refs, ref{refSecret, namespace, t.ClientCertificateSecretRef.Name})
	}
	return refs
}

// resolveTLS fills in the target's TLS settings, reading the CA bundle and the
// client certificate from their watches. A missing or unusable reference is a
// problem: the breaker then probes nothing.
func (r *CircuitBreakerReconciler) resolveTLS(ctx context.Context, namespace string, t *circuitv1alpha1.TLSConfig,
	target *probe.Target) (*decision.Problem, error) {
	if t == nil {
		return nil, nil
	}
	target.TLS = &probe.TLS{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if sel := t.CABundle; sel != nil {
		pem, refProblem, err := r.caBundle(ctx, namespace, sel)
		if err != nil || refProblem != nil {
			return refProblem, err
		}
		target.TLS.CAPEM = pem
	}
	if sel := t.ClientCertificateSecretRef; sel != nil {
		cert, key, refProblem, err := r.clientCertificate(ctx, namespace, sel.Name)
		if err != nil || refProblem != nil {
			return refProblem, err
		}
		target.TLS.ClientCertPEM, target.TLS.ClientKeyPEM = cert, key
	}
	return nil, nil
}

// caBundle reads the PEM CA certificates of a ConfigMap key.
func (r *CircuitBreakerReconciler) caBundle(ctx context.Context, namespace string, sel *circuitv1alpha1.KeySelector) ([]byte, *decision.Problem, error) {
	obj, found, err := r.refs.get(ctx, ref{refConfigMap, namespace, sel.Name})
	if errors.Is(err, errForbidden) {
		return nil, forbidden("ConfigMap", sel.Name), nil
	}
	if err != nil {
		return nil, nil, err
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
		return nil, &decision.Problem{Reason: circuitv1alpha1.ReasonCABundleNotFound, Message: fmt.Sprintf(
			"ConfigMap %q has no CA bundle under key %q; nothing is probed until it does", sel.Name, sel.Key)}, nil
	}
	if !probe.ValidCAPEM(pem) {
		return nil, &decision.Problem{Reason: circuitv1alpha1.ReasonInvalidCABundle, Message: fmt.Sprintf(
			"ConfigMap %q key %q holds no PEM certificate; nothing is probed until it does", sel.Name, sel.Key)}, nil
	}
	return pem, nil, nil
}

// clientCertificate reads tls.crt and tls.key of a kubernetes.io/tls Secret.
// Like a header Secret, it is used only if it carries
// circuitv1alpha1.ProbeCredentialsLabel; missing, unlabelled and keyless
// Secrets get the same answer. Neither the certificate nor the key ever goes
// into a message.
func (r *CircuitBreakerReconciler) clientCertificate(ctx context.Context, namespace, name string) (cert, key []byte, _ *decision.Problem, _ error) {
	obj, found, err := r.refs.get(ctx, ref{refSecret, namespace, name})
	if errors.Is(err, errForbidden) {
		return nil, nil, forbidden("Secret", name), nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if found {
		secret := obj.(*corev1.Secret)
		if secret.Labels[circuitv1alpha1.ProbeCredentialsLabel] == "true" && secret.Type == corev1.SecretTypeTLS {
			cert, key = secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
		}
	}
	if len(cert) == 0 || len(key) == 0 {
		return nil, nil, &decision.Problem{Reason: circuitv1alpha1.ReasonSecretNotAllowed, Message: fmt.Sprintf(
			"Secret %s is missing, is not of type %s with keys %s and %s, or is not labelled %s=true; nothing is probed until it is",
			name, corev1.SecretTypeTLS, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, circuitv1alpha1.ProbeCredentialsLabel)}, nil
	}
	if len(cert) > maxClientCertificateBytes || len(key) > maxClientCertificateBytes || !probe.ValidClientCertificate(cert, key) {
		return nil, nil, &decision.Problem{Reason: circuitv1alpha1.ReasonInvalidClientCertificate, Message: fmt.Sprintf(
			"Secret %s does not hold a PEM certificate and the private key that belongs to it (at most %d bytes each); "+
				"nothing is probed until it does", name, maxClientCertificateBytes)}, nil
	}
	return cert, key, nil, nil
}

// resolveGRPC fills in the TLS settings of spec.grpc.
func (r *CircuitBreakerReconciler) resolveGRPC(ctx context.Context, cb *circuitv1alpha1.CircuitBreaker, target *probe.Target) (*decision.Problem, error) {
	if cb.Spec.GRPC == nil {
		return nil, nil
	}
	return r.resolveTLS(ctx, cb.Namespace, cb.Spec.GRPC.TLS, target)
}
