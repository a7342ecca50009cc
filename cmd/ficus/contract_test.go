package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ficusEnv runs the command line with env as its whole environment (for
// flags), so that tests run in parallel without t.Setenv.
func ficusWithEnv(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, lookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}}
	code = a.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// commands lists every command of the tree but cobra's own.
func commands(root *cobra.Command) []*cobra.Command {
	var all []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" && sub.Name() != "completion" {
				walk(sub)
			}
		}
	}
	walk(root)
	return all
}

// wantEnvName spells the rule out independently of envName: FICUS_, the
// path of the command that declares the flag (without "ficus"), the flag,
// upper case, "-" and " " as "_"; the shared flags without the path.
func wantEnvName(c *cobra.Command, flag string) string {
	switch flag {
	case "database-url", "database-url-file", "log-format", "log-level", "listen-host":
		return "FICUS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	}
	owner := c
	for p := c; p != nil; p = p.Parent() {
		if p.PersistentFlags().Lookup(flag) != nil {
			owner = p
			break
		}
	}
	path := strings.TrimPrefix(owner.CommandPath(), "ficus")
	name := "FICUS" + strings.ReplaceAll(path, " ", "_") + "_" + flag
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// The CLI contract, for every command in the tree (also those added
// later): --help runs and names every flag's environment variable by the
// rule; names are unique per command; every secret flag has a "-file"
// form; an unknown flag, too many arguments, and an environment value a
// flag cannot take are usage errors (exit 2) reported on one line, with
// nothing logged or printed before.
func TestCLIContract(t *testing.T) {
	t.Parallel()
	root := (&app{}).rootCommand()
	envRe := regexp.MustCompile(`^FICUS_[A-Z0-9_]+$`)
	for _, c := range commands(root) {
		path := strings.Fields(c.CommandPath())[1:]
		t.Run(strings.Join(append([]string{"ficus"}, path...), "_"), func(t *testing.T) {
			t.Parallel()
			// A tree of its own: cobra merges inherited flags lazily, so
			// parallel subtests must not share one.
			c, _, err := (&app{}).rootCommand().Find(path)
			if err != nil {
				t.Fatal(err)
			}
			usage := func(env map[string]string, want string, args ...string) {
				t.Helper()
				code, out, errOut := ficusWithEnv(env, append(append([]string{}, path...), args...)...)
				lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
				if code != 2 || out != "" || len(lines) != 1 || !strings.HasPrefix(errOut, "ficus: ") || !strings.Contains(errOut, want) {
					t.Errorf("ficus %s (env %v): exit %d, stdout %q, stderr %q; want exit 2 and one line naming %q",
						strings.Join(append(path, args...), " "), env, code, out, errOut, want)
				}
			}

			code, help, errOut := ficusWithEnv(nil, append(append([]string{}, path...), "--help")...)
			if code != 0 || !strings.Contains(help, "Usage:") {
				t.Fatalf("--help: exit %d\n%s%s", code, help, errOut)
			}
			if c.Short == "" {
				t.Errorf("no short description")
			}
			seen := map[string]string{}
			c.Flags().VisitAll(func(f *pflag.Flag) { check(t, c, f, help, envRe, seen) })
			c.InheritedFlags().VisitAll(func(f *pflag.Flag) { check(t, c, f, help, envRe, seen) })

			usage(nil, "--no-such-flag", "--no-such-flag")
			usage(nil, "", "a", "b", "c", "d", "e") // more arguments than any command takes
			if !c.Runnable() {
				return
			}
			// Every flag that is not a plain string refuses a bad value
			// from the environment, naming the variable and the flag.
			c.Flags().VisitAll(func(f *pflag.Flag) {
				switch f.Value.Type() {
				case "string", "stringSlice", "stringArray":
					return
				}
				if f.Name == "help" {
					return
				}
				name := envName(c, f.Name)
				usage(map[string]string{name: "no-such-value"}, name+`="no-such-value" (--`+f.Name+")")
			})
		})
	}
}

func check(t *testing.T, c *cobra.Command, f *pflag.Flag, help string, envRe *regexp.Regexp, seen map[string]string) {
	t.Helper()
	if f.Name == "help" {
		return
	}
	name := envName(c, f.Name)
	if want := wantEnvName(c, f.Name); name != want || !envRe.MatchString(name) {
		t.Errorf("--%s: environment variable %s, want %s", f.Name, name, want)
	}
	if !strings.Contains(help, "(env "+name+")") {
		t.Errorf("--help does not name %s for --%s", name, f.Name)
	}
	if other, dup := seen[name]; dup && other != f.Name {
		t.Errorf("--%s and --%s both read %s", other, f.Name, name)
	}
	seen[name] = f.Name
	if isSecretFlag(f) && c.Flags().Lookup(f.Name+"-file") == nil && c.InheritedFlags().Lookup(f.Name+"-file") == nil {
		t.Errorf("secret flag --%s has no --%s-file", f.Name, f.Name)
	}
}

// The names the documentation promises.
func TestEnvNames(t *testing.T) {
	t.Parallel()
	root := (&app{}).rootCommand()
	for _, tc := range []struct{ cmd, flag, want string }{
		{"proxy", "listen", "FICUS_PROXY_LISTEN"},
		{"proxy", "metrics-listen", "FICUS_PROXY_METRICS_LISTEN"},
		{"cdc run", "sink", "FICUS_CDC_RUN_SINK"},
		{"cdc run", "slot", "FICUS_CDC_SLOT"},
		{"cdc run", "database-url", "FICUS_DATABASE_URL"},
		{"sim mes", "listen", "FICUS_SIM_MES_LISTEN"},
		{"pricing worker", "lane", "FICUS_PRICING_WORKER_LANE"},
		{"pricing api", "operator-password-file", "FICUS_PRICING_API_OPERATOR_PASSWORD_FILE"},
		{"route status", "json", "FICUS_ROUTE_JSON"},
		{"version", "log-level", "FICUS_LOG_LEVEL"},
	} {
		c, _, err := root.Find(strings.Fields(tc.cmd))
		if err != nil {
			t.Fatal(err)
		}
		if c.Flags().Lookup(tc.flag) == nil && c.InheritedFlags().Lookup(tc.flag) == nil {
			t.Errorf("ficus %s has no --%s", tc.cmd, tc.flag)
		}
		if got := envName(c, tc.flag); got != tc.want {
			t.Errorf("ficus %s --%s: %s, want %s", tc.cmd, tc.flag, got, tc.want)
		}
	}
}

// Usage errors name the flag to fix and come before anything is logged
// or started.
func TestUsageErrorsNameFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badURL := filepath.Join(dir, "url")
	if err := os.WriteFile(badURL, []byte("postgres://u@h:notaport/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"proxy"}, "--upstream"},
		{nil, []string{"sim", "crm", "--mode", "pol"}, `--mode "pol"`},
		{nil, []string{"sim", "crm", "--mode", "webhook", "--interval", "-1s"}, "--interval -1s"},
		{nil, []string{"proxy", "--upstream", "http://127.0.0.1:1", "--tls-cert-file", "c.pem"}, "--tls-key-file"},
		{nil, []string{"proxy", "--upstream", "http://127.0.0.1:1", "--tls-min-version", "1.1"}, "--tls-min-version"},
		{nil, []string{"proxy", "--upstream", "http://127.0.0.1:1", "--ca-file", filepath.Join(dir, "none.pem")}, "--ca-file"},
		{nil, []string{"cdc", "run", "--sink", "null:", "--ca-file", badURL}, "--ca-file"},
		{nil, []string{"outbox", "relay", "--sink", "null:", "--mode", "wal"}, "--mode"},
		// Checked before the database, which does not answer here.
		{nil, []string{"sim", "shop", "--rate", "-1", "--database-url", "postgres://127.0.0.1:1/x"}, "--rate -1"},
		{nil, []string{"healthcheck", "ftp://127.0.0.1/"}, `URL "ftp://127.0.0.1/"`},
		{nil, []string{"healthcheck", "--timeout", "0s"}, "--timeout"},
		{nil, []string{"migrate", "status", "--database-url-file", badURL}, "--database-url"},
		{map[string]string{"FICUS_DATABASE_URL": "postgres://x"}, []string{"migrate", "status", "--database-url-file", badURL}, "--database-url and --database-url-file are both given"},
		{nil, []string{"migrate", "status", "--database-url-file", filepath.Join(dir, "none")}, "--database-url-file"},
		{map[string]string{"FICUS_PROXY_UPSTREAM": ""}, []string{"proxy"}, "--upstream"},
	} {
		code, out, errOut := ficusWithEnv(tc.env, tc.args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ficus %s: exit %d, stdout %q, stderr %q; want exit 2 and one line naming %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
}

// An environment variable sets the flag of its own command only, and the
// command line wins over it.
func TestEnvironmentIsPerCommand(t *testing.T) {
	t.Parallel()
	env := map[string]string{"FICUS_SIM_CRM_MODE": "pol"}
	if code, _, errOut := ficusWithEnv(env, "sim", "crm"); code != 2 || !strings.Contains(errOut, `--mode "pol"`) {
		t.Fatalf("FICUS_SIM_CRM_MODE=pol: exit %d, %q; want it applied and refused", code, errOut)
	}
	// The outbox relay's --mode is another variable.
	if code, _, errOut := ficusWithEnv(env, "outbox", "relay", "--sink", "null:", "--mode", "wal"); code != 2 || strings.Contains(errOut, "pol") {
		t.Fatalf("outbox relay read FICUS_SIM_CRM_MODE: exit %d, %q", code, errOut)
	}
	env = map[string]string{"FICUS_HEALTHCHECK_TIMEOUT": "0s"}
	if code, _, errOut := ficusWithEnv(env, "healthcheck", "--timeout", "-1s"); code != 2 || !strings.Contains(errOut, "--timeout -1s") {
		t.Fatalf("the command line did not win: exit %d, %q", code, errOut)
	}
}

// healthcheck: 0 for 2xx, 3 for another answer, 1 for no answer.
func TestHealthcheckExitCodes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok"))
			return
		}
		http.Error(w, "postgres: down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/healthz"
	closed.Close()
	for _, tc := range []struct {
		env  map[string]string
		args []string
		code int
		want string
	}{
		{nil, []string{"healthcheck", srv.URL + "/healthz"}, 0, "200 OK"},
		{nil, []string{"healthcheck", srv.URL + "/readyz"}, 3, "503 Service Unavailable: postgres: down"},
		{map[string]string{"FICUS_HEALTHCHECK_URL": srv.URL + "/readyz"}, []string{"healthcheck"}, 3, "503"},
		{nil, []string{"healthcheck", closedURL}, 1, "healthcheck http://"},
	} {
		code, out, errOut := ficusWithEnv(tc.env, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ficus %v: exit %d, %q %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

// The proxy binds both of its ports before it says it listens: a taken
// metrics port fails the start with nothing announced.
func TestProxyBindsBeforeLogging(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	code, _, errOut := ficusWithEnv(nil, "proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0",
		"--metrics-listen", taken.Addr().String())
	if code != 1 || strings.Contains(errOut, "listening") || !strings.Contains(errOut, "--metrics-listen") {
		t.Fatalf("exit %d, stderr %q; want 1, --metrics-listen named, nothing announced", code, errOut)
	}
}

// --listen-host moves the default listen addresses, not the ones given.
func TestListenHost(t *testing.T) {
	t.Parallel()
	c := &cobra.Command{Use: "x"}
	var listen, metricsAddr, other string
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "")
	c.Flags().StringVar(&metricsAddr, "metrics-listen", "127.0.0.1:9189", "")
	c.Flags().StringVar(&other, "upstream", "127.0.0.1:80", "")
	if err := c.Flags().Parse([]string{"--metrics-listen", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := applyListenHost(c, "0.0.0.0"); err != nil {
		t.Fatal(err)
	}
	if listen != "0.0.0.0:8080" || metricsAddr != "127.0.0.1:1" || other != "127.0.0.1:80" {
		t.Fatalf("listen %q, metrics %q, upstream %q", listen, metricsAddr, other)
	}
}
