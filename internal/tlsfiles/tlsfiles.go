// Package tlsfiles reads TLS material from files as operators hand it to a
// process (PEM files, often mounted secrets): a server certificate that can
// be reloaded while connections are served, and a CA bundle to trust
// instead of the system's.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// ErrNoCertificates means a CA bundle file holds no PEM certificate.
var ErrNoCertificates = errors.New("holds no PEM certificate")

// ErrVersion means a TLS version name is not one ParseVersion knows.
var ErrVersion = errors.New(`unknown TLS version: want "1.2" or "1.3"`)

// maxPEM bounds what is read from one file: certificates, not a data set.
const maxPEM = 4 << 20

// Certificate is a server certificate and key read from two PEM files.
// Reload reads them again; handshakes after it use the new pair. It is
// safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads the pair, failing when either file is unreadable
// or they do not match.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On an error the previous pair stays in use.
func (c *Certificate) Reload() error {
	certPEM, err := readFile(c.certFile)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	keyPEM, err := readFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("load key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&pair)
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// ServerConfig is a server configuration that presents c and accepts
// TLS versions from minVersion on (tls.VersionTLS12 when zero).
func ServerConfig(c *Certificate, minVersion uint16) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{GetCertificate: c.GetCertificate, MinVersion: minVersion}
}

// ParseVersion reads "1.2" or "1.3" (also "TLS1.2", "tls13" and the like).
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "1.2", "TLS1.2", "tls1.2", "TLS12", "tls12":
		return tls.VersionTLS12, nil
	case "1.3", "TLS1.3", "tls1.3", "TLS13", "tls13":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q: %w", s, ErrVersion)
}

// RootCAs reads a PEM bundle of CA certificates into a pool.
func RootCAs(file string) (*x509.CertPool, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("load CA bundle %s: %w", file, ErrNoCertificates)
	}
	return pool, nil
}

// ClientConfig is a client configuration that trusts the CA certificates
// in file instead of the system's; nil (the system's roots) when file is
// empty.
func ClientConfig(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := RootCAs(file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("%s is more than %d bytes: not a PEM file", path, maxPEM)
	}
	return b, nil
}
