package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/ficuslabs/ficus/internal/tlsfiles"
)

// serverTLS are the flags that turn a client-facing listener into HTTPS.
type serverTLS struct {
	certFile, keyFile, minVersion string
	cert                          *tlsfiles.Certificate
}

func (t *serverTLS) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.certFile, "tls-cert-file", "", "PEM certificate (chain) to serve --listen over TLS with; reloaded with --tls-key-file on SIGHUP")
	fs.StringVar(&t.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&t.minVersion, "tls-min-version", "1.2", "oldest TLS version accepted: 1.2 or 1.3")
}

// config validates the flags and loads the pair; nil without
// --tls-cert-file. Its errors are usage errors.
func (t *serverTLS) config() (*tls.Config, error) {
	minVersion, err := tlsfiles.ParseVersion(t.minVersion)
	if err != nil {
		return nil, usageError{fmt.Errorf("--tls-min-version: %w", err)}
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, usageError{errors.New("--tls-cert-file and --tls-key-file go together: give both or neither")}
	}
	if t.certFile == "" {
		return nil, nil
	}
	if t.cert, err = tlsfiles.LoadCertificate(t.certFile, t.keyFile); err != nil {
		return nil, usageError{fmt.Errorf("--tls-cert-file, --tls-key-file: %w", err)}
	}
	return tlsfiles.ServerConfig(t.cert, minVersion), nil
}

// scheme is "https" with a certificate, else "http", for logs.
func (t *serverTLS) scheme() string {
	if t.cert != nil {
		return "https"
	}
	return "http"
}

// reloadOnHangup reloads the certificate on every SIGHUP until ctx ends;
// a pair that does not load is logged and the running one kept. Without
// a certificate it returns at once.
func (t *serverTLS) reloadOnHangup(a *app) service {
	return func(ctx context.Context) error {
		if t.cert == nil {
			return nil
		}
		onHangup(ctx, func() {
			if err := t.cert.Reload(); err != nil {
				a.log.Error("TLS certificate reload failed; keeping the running one", "err", err)
				return
			}
			a.log.Info("TLS certificate reloaded", "cert", t.certFile)
		})
		return nil
	}
}

// caFileFlag adds --ca-file, the CA bundle to trust for what the command
// connects to.
func caFileFlag(fs *pflag.FlagSet, file *string, what string) {
	fs.StringVar(file, "ca-file", "", "PEM bundle of the CA certificates to trust for "+what+", instead of the system's")
}

// clientTLS reads --ca-file; nil (the system's roots) without one.
func clientTLS(caFile string) (*tls.Config, error) {
	c, err := tlsfiles.ClientConfig(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	return c, nil
}
