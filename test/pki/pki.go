// Package pki issues throw-away certificates for tests: a CA, a server
// certificate for 127.0.0.1 and client certificates, in PEM.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a CA, a server certificate it signed for 127.0.0.1, a client
// certificate it signed and a self-signed client certificate it never saw.
type PKI struct {
	CAPEM []byte
	Pool  *x509.CertPool
	// Server is the server's certificate and key, for a tls.Config.
	Server tls.Certificate
	// Client is signed by the CA; Stranger is not.
	Client, Stranger Pair
}

// Pair is a certificate and its private key, in PEM.
type Pair struct{ Cert, Key []byte }

// New issues a PKI that lives for the test.
func New(t testing.TB) *PKI {
	t.Helper()
	ca, caKey, caPEM := issue(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	p := &PKI{CAPEM: caPEM, Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	_, serverKey, serverPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "server"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	var err error
	if p.Server, err = tls.X509KeyPair(serverPEM, keyPEM(t, serverKey)); err != nil {
		t.Fatal(err)
	}
	_, clientKey, clientPEM := issue(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "breaker-operator"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.Client = Pair{Cert: clientPEM, Key: keyPEM(t, clientKey)}
	_, strangerKey, strangerPEM := issue(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "stranger"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.Stranger = Pair{Cert: strangerPEM, Key: keyPEM(t, strangerKey)}
	return p
}

// ServerTLS is a server configuration with the server certificate; with
// mutual set it requires a client certificate signed by the CA.
func (p *PKI) ServerTLS(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.Pool
	}
	return cfg
}

var serial atomic.Int64

// issue signs tmpl with parent (itself when nil).
func issue(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}
