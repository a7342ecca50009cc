package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// secretAnnotation marks a flag whose value is a secret, so that it gets a
// "-file" form, when its name does not already say so (isSecretFlag).
const secretAnnotation = "ficus_secret"

// maxSecretFile bounds what a "-file" flag reads: a secret, not a data set.
const maxSecretFile = 64 << 10

// isSecretFlag reports whether a flag carries a secret: a database URL
// (with its password), a sink URL (with its credentials), a password, an
// API key, a token, or a flag annotated with secretAnnotation.
func isSecretFlag(f *pflag.Flag) bool {
	if _, ok := f.Annotations[secretAnnotation]; ok {
		return true
	}
	n := f.Name
	if strings.HasSuffix(n, "-file") {
		return false
	}
	return n == "database-url" || strings.HasSuffix(n, "-database-url") || n == "sink" ||
		strings.HasSuffix(n, "password") || strings.HasSuffix(n, "api-key") ||
		strings.HasSuffix(n, "token") || strings.HasSuffix(n, "secret")
}

// addSecretFileFlags gives every secret flag of c a "-file" twin in the
// same flag set (persistent or not): --database-url-file reads the URL
// from a file, as Docker and Kubernetes secrets are mounted.
func addSecretFileFlags(c *cobra.Command) {
	for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.Flags()} {
		var secret []*pflag.Flag
		fs.VisitAll(func(f *pflag.Flag) {
			if isSecretFlag(f) && fs.Lookup(f.Name+"-file") == nil && c.Flags().Lookup(f.Name+"-file") == nil {
				secret = append(secret, f)
			}
		})
		for _, f := range secret {
			fs.String(f.Name+"-file", "", "file holding --"+f.Name+" (a Docker or Kubernetes secret; a final newline is ignored)")
		}
	}
}

// applySecretFiles reads the "-file" forms given into their flags.
func applySecretFiles(cmd *cobra.Command) error {
	fs := cmd.Flags()
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		base, ok := strings.CutSuffix(f.Name, "-file")
		if err != nil || !ok || !f.Changed || f.Value.String() == "" {
			return
		}
		target := fs.Lookup(base)
		if target == nil || !isSecretFlag(target) {
			return
		}
		if target.Changed {
			err = fmt.Errorf("--%s and --%s are both given (on the command line or as %s and %s); give one",
				base, f.Name, envName(cmd, base), envName(cmd, f.Name))
			return
		}
		var v string
		if v, err = readSecretFile(f.Value.String()); err != nil {
			err = fmt.Errorf("--%s: %w", f.Name, err)
			return
		}
		if err = fs.Set(base, v); err != nil {
			err = fmt.Errorf("--%s: the file's content is not a valid --%s: %w", f.Name, base, unwrapFlagErr(err))
		}
	})
	return err
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, maxSecretFile+1)
	n, err := f.Read(b)
	for err == nil && n < len(b) {
		var m int
		m, err = f.Read(b[n:])
		n += m
	}
	if n > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes; want the secret alone", path, maxSecretFile)
	}
	v := strings.TrimRight(string(b[:n]), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}
