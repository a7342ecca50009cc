package tlsfiles_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ficuslabs/ficus/internal/tlsfiles"
	"github.com/ficuslabs/ficus/internal/tlsfiles/tlstest"
)

// Reload swaps the certificate handshakes get; a broken pair keeps the
// old one.
func TestCertificateReload(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Issue(t, "first")
	c, err := tlsfiles.LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func() string {
		got, _ := c.GetCertificate(nil)
		return got.Leaf.Subject.CommonName
	}
	if leaf() != "first" {
		t.Fatalf("serving %q", leaf())
	}
	second, secondKey := ca.Issue(t, "second")
	for _, p := range [][2]string{{second, certFile}, {secondKey, keyFile}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Reload(); err != nil || leaf() != "second" {
		t.Fatalf("after reload: %v, serving %q", err, leaf())
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err == nil || leaf() != "second" {
		t.Fatalf("broken key: %v, serving %q; want an error and the old pair", err, leaf())
	}
}

func TestRootCAs(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	if cfg, err := tlsfiles.ClientConfig(ca.File); err != nil || cfg.RootCAs == nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	if cfg, err := tlsfiles.ClientConfig(""); cfg != nil || err != nil {
		t.Fatalf("no file: %v %v; want nil, nil", cfg, err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("no certificates here\n"), 0o600)
	if _, err := tlsfiles.RootCAs(empty); !errors.Is(err, tlsfiles.ErrNoCertificates) {
		t.Fatalf("empty bundle: %v", err)
	}
	if _, err := tlsfiles.RootCAs(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13, "tls13": tls.VersionTLS13} {
		if got, err := tlsfiles.ParseVersion(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1.1", "1.0", "ssl3"} {
		if _, err := tlsfiles.ParseVersion(in); !errors.Is(err, tlsfiles.ErrVersion) {
			t.Errorf("%q: %v; want ErrVersion", in, err)
		}
	}
}
