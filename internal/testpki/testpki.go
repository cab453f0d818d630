// Package testpki makes throwaway certificate authorities and certificates
// for tests of TLS and client-certificate authentication. Everything it
// makes lives for a day and is meant for tests only.
package testpki

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
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a certificate with its private key: a CA from NewCA, or a leaf
// from Issue.
type Cert struct {
	X509 *x509.Certificate
	Key  *ecdsa.PrivateKey
	DER  []byte
}

// NewCA makes a self-signed certificate authority.
func NewCA(t testing.TB, name string) *Cert {
	t.Helper()
	return issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

// Issue makes a leaf certificate signed by ca, for usage (server or client
// authentication), valid for 127.0.0.1 and localhost.
func (ca *Cert) Issue(t testing.TB, name string, usage x509.ExtKeyUsage) *Cert {
	t.Helper()
	return issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca)
}

func issue(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	parentCert, signer := tmpl, key
	if parent != nil {
		parentCert, signer = parent.X509, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{X509: cert, Key: key, DER: der}
}

// TLS is the certificate as crypto/tls presents it.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.DER}, PrivateKey: c.Key, Leaf: c.X509}
}

// Pool is a pool holding this certificate, for a CA to trust.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.X509)
	return p
}

// CertPEM is the certificate in PEM.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// KeyPEM is the private key in PEM (PKCS #8).
func (c *Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFile writes data to dir/name, readable by its owner only, and
// returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Files is a throwaway CA with a server and a client certificate, the CA,
// the server's certificate and key written as PEM files into a test's
// temporary directory: what a test of --tls-cert, --tls-key and
// --tls-client-ca needs.
type Files struct {
	CAFile, CertFile, KeyFile string
	OtherKeyFile              string // a valid key that does not match CertFile
	CAPool                    *x509.CertPool
	Client                    tls.Certificate
}

// WriteFiles makes a Files in a new temporary directory of t's.
func WriteFiles(t testing.TB) *Files {
	t.Helper()
	dir := t.TempDir()
	ca := NewCA(t, "cbkgate test CA")
	srv := ca.Issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	other := ca.Issue(t, "other", x509.ExtKeyUsageServerAuth)
	return &Files{
		CAFile:       WriteFile(t, dir, "ca.pem", ca.CertPEM()),
		CertFile:     WriteFile(t, dir, "server.pem", srv.CertPEM()),
		KeyFile:      WriteFile(t, dir, "server-key.pem", srv.KeyPEM(t)),
		OtherKeyFile: WriteFile(t, dir, "other-key.pem", other.KeyPEM(t)),
		CAPool:       ca.Pool(),
		Client:       ca.Issue(t, "client", x509.ExtKeyUsageClientAuth).TLS(),
	}
}
