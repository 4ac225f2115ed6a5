package localcp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certFiles are the files kube-apiserver is started with. They live in the
// control plane's directory and survive an API server restart, so clients that
// trust the CA and hold the admin certificate keep working across it.
type certFiles struct {
	caCert, servingCert, servingKey, saKey string
	// caPEM, adminCertPEM and adminKeyPEM go into the kubeconfig.
	caPEM, adminCertPEM, adminKeyPEM []byte
}

// writeCerts creates one CA that signs both the serving certificate (for
// 127.0.0.1 and localhost) and an admin client certificate in system:masters,
// plus the service-account signing key.
func writeCerts(dir string) (certFiles, error) {
	f := certFiles{
		caCert:      filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		saKey:       filepath.Join(dir, "sa.key"),
	}
	caKey, err := newKey()
	if err != nil {
		return f, err
	}
	caTmpl := template(pkix.Name{CommonName: "localcp-ca"})
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("creating the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	f.caPEM = pemBlock("CERTIFICATE", caDER)

	servingKey, err := newKey()
	if err != nil {
		return f, err
	}
	servingTmpl := template(pkix.Name{CommonName: "kube-apiserver"})
	servingTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	servingTmpl.DNSNames = []string{"localhost"}
	servingTmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTmpl, ca, &servingKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("creating the serving certificate: %w", err)
	}

	adminKey, err := newKey()
	if err != nil {
		return f, err
	}
	adminTmpl := template(pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}})
	adminTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	adminDER, err := x509.CreateCertificate(rand.Reader, adminTmpl, ca, &adminKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("creating the admin certificate: %w", err)
	}
	f.adminCertPEM = pemBlock("CERTIFICATE", adminDER)
	if f.adminKeyPEM, err = keyPEM(adminKey); err != nil {
		return f, err
	}

	saKey, err := newKey()
	if err != nil {
		return f, err
	}
	servingKeyPEM, err := keyPEM(servingKey)
	if err != nil {
		return f, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return f, err
	}
	for path, data := range map[string][]byte{
		f.caCert:      f.caPEM,
		f.servingCert: pemBlock("CERTIFICATE", servingDER),
		f.servingKey:  servingKeyPEM,
		f.saKey:       saKeyPEM,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func template(subject pkix.Name) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}
