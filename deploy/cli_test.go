package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// ficusBin is the ficus binary built once for the package's tests.
var ficusBin struct {
	once sync.Once
	path string
	err  error
	dir  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ficusBin.dir != "" {
		os.RemoveAll(ficusBin.dir)
	}
	os.Exit(code)
}

// buildFicus builds ./cmd/ficus once and returns the binary's path.
func buildFicus(t *testing.T) string {
	t.Helper()
	ficusBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ficus-deploy-test")
		if err != nil {
			ficusBin.err = err
			return
		}
		ficusBin.dir = dir
		ficusBin.path = filepath.Join(dir, "ficus")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", ficusBin.path, "github.com/ficuslabs/ficus/cmd/ficus")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ficusBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if ficusBin.err != nil {
		t.Fatal(ficusBin.err)
	}
	return ficusBin.path
}

// command is one command of the ficus tree, as its --help tells it.
type command struct {
	path  []string
	flags map[string]bool // name → takes no value (a bool flag)
}

// ficusCLI knows the ficus binary's command tree, asking it command by command.
type ficusCLI struct {
	bin string
	env []string // the environment commands run in: no FICUS_ variables

	mu       sync.Mutex
	commands map[string]*command
	errs     map[string]error
	parsed   map[string]error // a whole command line → the binary's verdict
}

// sharedCLI is the one ficusCLI of the package's tests, so that every
// command is asked once.
var sharedCLI struct {
	once sync.Once
	cli  *ficusCLI
}

func newCLI(t *testing.T) *ficusCLI {
	bin := buildFicus(t)
	sharedCLI.once.Do(func() {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "FICUS_") {
				env = append(env, kv)
			}
		}
		sharedCLI.cli = &ficusCLI{bin: bin, env: env, commands: map[string]*command{}, errs: map[string]error{}, parsed: map[string]error{}}
	})
	return sharedCLI.cli
}

// sharedEnv are the environment variables every command reads by the
// same name.
var sharedEnv = map[string]bool{"FICUS_DATABASE_URL": true, "FICUS_LOG_FORMAT": true, "FICUS_LOG_LEVEL": true}

var (
	usageLine = regexp.MustCompile(`(?m)^Usage:\n  (ficus(?: [a-z0-9-]+)*)`)
	flagLine  = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z0-9], )?--([a-z0-9][a-z0-9-]*)( [a-zA-Z0-9]+)?\s`)
)

// errUsage marks a command line the ficus command tree rejects.
var errUsage = errors.New("not a valid ficus command line")

// lookup returns the command at path, from its --help.
func (c *ficusCLI) lookup(path []string) (*command, error) {
	key := strings.Join(path, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd, ok := c.commands[key]; ok {
		return cmd, nil
	}
	if err, ok := c.errs[key]; ok {
		return nil, err
	}
	cmd, err := c.help(path)
	if err != nil {
		c.errs[key] = err
		return nil, err
	}
	c.commands[key] = cmd
	return cmd, nil
}

func (c *ficusCLI) help(path []string) (*command, error) {
	out, err := c.run(append(append([]string(nil), path...), "--help"))
	if err != nil {
		return nil, fmt.Errorf("%w: ficus %s: %v\n%s", errUsage, strings.Join(path, " "), err, out)
	}
	m := usageLine.FindStringSubmatch(out)
	want := strings.TrimSpace("ficus " + strings.Join(path, " "))
	if m == nil || m[1] != want {
		return nil, fmt.Errorf("%w: no command %q in the ficus command tree", errUsage, want)
	}
	cmd := &command{path: path, flags: map[string]bool{}}
	for _, f := range flagLine.FindAllStringSubmatch(out, -1) {
		cmd.flags[f[1]] = f[2] == ""
	}
	if len(cmd.flags) == 0 {
		return nil, fmt.Errorf("ficus %s --help lists no flags; the help format changed?", want)
	}
	return cmd, nil
}

func (c *ficusCLI) run(args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// check checks a ficus command line (the arguments after the binary's
// name) and the FICUS_ environment variables it runs with: the command
// exists, every flag exists for it and has a value where it needs one,
// every FICUS_ variable names one of its flags (or a shared one), and the
// binary itself parses the line (so every value has its flag's type).
func (c *ficusCLI) check(args []string, env []string) error {
	var path []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		path = append(path, a)
	}
	if len(path) == 0 {
		return fmt.Errorf("%w: %q names no command", errUsage, args)
	}
	cmd, err := c.lookup(path)
	if err != nil {
		return err
	}
	where := "ficus " + strings.Join(path, " ")
	var errs []error
	for i := len(path); i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			errs = append(errs, fmt.Errorf("%w: %s: %q is not a --flag (positional arguments and short flags are not used in manifests)", errUsage, where, a))
			continue
		}
		name, _, hasValue := strings.Cut(a[2:], "=")
		isBool, ok := cmd.flags[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: %s has no flag --%s", errUsage, where, name))
		case !isBool && !hasValue:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				errs = append(errs, fmt.Errorf("%w: %s: --%s needs a value", errUsage, where, name))
				continue
			}
			i++
		}
	}
	prefix := "FICUS_" + strings.ToUpper(strings.Join(path, "_")) + "_"
	for _, name := range env {
		if !strings.HasPrefix(name, "FICUS_") || sharedEnv[name] {
			continue
		}
		flag, ok := strings.CutPrefix(name, prefix)
		if _, exists := cmd.flags[strings.ToLower(strings.ReplaceAll(flag, "_", "-"))]; !ok || !exists {
			errs = append(errs, fmt.Errorf("%w: %s: the environment variable %s names no flag of it (%s<FLAG>, or one of FICUS_DATABASE_URL, FICUS_LOG_FORMAT, FICUS_LOG_LEVEL)", errUsage, where, name, prefix))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return c.parse(args)
}

// parse has the binary parse a whole command line (--help stops it
// before anything runs), once per distinct line.
func (c *ficusCLI) parse(args []string) error {
	key := strings.Join(args, "\x00")
	c.mu.Lock()
	err, ok := c.parsed[key]
	c.mu.Unlock()
	if ok {
		return err
	}
	if out, runErr := c.run(append(append([]string(nil), args...), "--help")); runErr != nil {
		err = fmt.Errorf("%w: %s: %v\n%s", errUsage, strings.Join(args, " "), runErr, out)
	}
	c.mu.Lock()
	c.parsed[key] = err
	c.mu.Unlock()
	return err
}

// The checker rejects what it must: a test that cannot fail is worse than
// none.
func TestCLICheckerRejectsMistakes(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	good := []string{"proxy", "--listen", "0.0.0.0:8080", "--upstream", "http://mes:8081"}
	if err := c.check(good, []string{"FICUS_DATABASE_URL", "FICUS_PROXY_UPSTREAM", "OTHER"}); err != nil {
		t.Fatalf("a good command line: %v", err)
	}
	for _, tc := range []struct {
		args []string
		env  []string
	}{
		{args: []string{"proxy", "--listn", "0.0.0.0:8080"}},
		{args: []string{"pricing", "wroker", "--lane", "b2b"}},
		{args: []string{"pricng", "worker"}},
		{args: []string{"cdc", "run", "--sink"}},
		{args: []string{"cdc", "run", "--status-interval", "soon"}},
		{args: []string{"pricing", "worker", "--concurrency", "four"}},
		{args: []string{"orders", "serve", "8090"}},
		{args: good, env: []string{"FICUS_PROXY_LISTN"}},
		{args: good, env: []string{"FICUS_CDC_RUN_SINK"}},
	} {
		if err := c.check(tc.args, tc.env); !errors.Is(err, errUsage) {
			t.Errorf("%q (env %q): %v, want a usage error", tc.args, tc.env, err)
		}
	}
}
