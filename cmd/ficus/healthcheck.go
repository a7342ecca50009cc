package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthcheckURL is what "ficus healthcheck" checks without a URL:
// the liveness endpoint of "ficus proxy" on its default metrics port.
const defaultHealthcheckURL = "http://127.0.0.1:9189/healthz"

func (a *app) healthcheckCommand() *cobra.Command {
	var target, caFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [URL]",
		Short: "Check that an endpoint answers 2xx (for images without a shell)",
		Long: `healthcheck sends GET URL and exits 0 when the answer is 2xx, 3 when it is
anything else (the endpoint says it is unhealthy), and 1 when no answer came
within --timeout. It is the HEALTHCHECK of the ficus image, which has no
shell or curl:

  HEALTHCHECK CMD ["/ficus", "healthcheck"]

Without URL it checks --url (FICUS_HEALTHCHECK_URL), by default the proxy's
/healthz on 127.0.0.1:9189; a container running another command sets
FICUS_HEALTHCHECK_URL to that command's --metrics-listen, e.g.
http://127.0.0.1:9194/readyz for "ficus cdc run".`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				target = args[0]
			}
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError{fmt.Errorf("URL %q: want http://host:port/path or https://…", target)}
			}
			if timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %s: want a positive duration", timeout)}
			}
			tlsCfg, err := clientTLS(caFile)
			if err != nil {
				return usageError{err}
			}
			tr := &http.Transport{Proxy: nil, TLSClientConfig: tlsCfg, DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u.String(), nil)
			if err != nil {
				return usageError{err}
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", u.Redacted(), err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return unhealthyError{fmt.Errorf("healthcheck %s: %s: %s", u.Redacted(), resp.Status, oneLine(body))}
			}
			fmt.Fprintf(a.stdout, "%s: %s\n", u.Redacted(), resp.Status)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "url", defaultHealthcheckURL, "URL to check when none is given as an argument")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the whole answer")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the CA certificates to trust for an https URL, instead of the system's")
	return cmd
}

// oneLine shortens an answer body for an error message.
func oneLine(b []byte) string {
	s := []rune(string(b))
	for i, r := range s {
		if r == '\n' || r == '\r' {
			s[i] = ' '
		}
	}
	if len(s) > 200 {
		s = append(s[:200], '…')
	}
	return string(s)
}
