package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGodebugHas(t *testing.T) {
	for _, c := range []struct {
		godebug string
		want    bool
	}{
		{"", false},
		{"schedtrace=0", true},
		{"madvdontneed=1,schedtrace=5", true},
		{"scheddetail=1", false},
		{"schedtrace", false}, // no value: the runtime ignores it too
		{"xschedtrace=1", false},
	} {
		if got := godebugHas(c.godebug, "schedtrace"); got != c.want {
			t.Errorf("godebugHas(%q) = %v, want %v", c.godebug, got, c.want)
		}
	}
}

func TestWithGodebug(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want []string
	}{
		{[]string{"A=1"}, []string{"A=1", "GODEBUG=" + steadySysmon}},
		{[]string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=" + steadySysmon}},
		{[]string{"GODEBUG=madvdontneed=1", "A=1"}, []string{"A=1", "GODEBUG=madvdontneed=1," + steadySysmon}},
		// The runtime reads the first GODEBUG; a later one is dropped.
		{[]string{"GODEBUG=a=1", "GODEBUG=b=2"}, []string{"GODEBUG=a=1," + steadySysmon}},
	} {
		if got := withGodebug(c.env, steadySysmon); !slices.Equal(got, c.want) {
			t.Errorf("withGodebug(%q) = %q, want %q", c.env, got, c.want)
		}
	}
}

// TestSteadySysmonRestarts checks when `ficus proxy` asks to be restarted,
// and with what, by giving it an exec that only records. A command line
// that is right then carries on without the restart and stops at once, its
// context being over; a usage error stops it before any restart.
func TestSteadySysmonRestarts(t *testing.T) {
	dir := t.TempDir()
	badConfig, pgConfig := filepath.Join(dir, "bad.yaml"), filepath.Join(dir, "postgres.yaml")
	if err := os.WriteFile(badConfig, []byte("routes:\n  - name: a\n    auht: none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pgConfig, []byte("idempotency: {store: postgres}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := []string{"--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}
	for _, c := range []struct {
		name     string
		godebug  string // "" leaves GODEBUG unset
		args     []string
		wantCode int
		want     bool
	}{
		{"default", "", serve, 0, false},
		{"on", "", append([]string{"--steady-sysmon"}, serve...), 0, true},
		{"on, other settings", "madvdontneed=1", append([]string{"--steady-sysmon"}, serve...), 0, true},
		{"on, user's schedtrace", "schedtrace=0", append([]string{"--steady-sysmon"}, serve...), 0, false},
		{"on, no --upstream", "", []string{"--steady-sysmon"}, 2, false},
		{"on, bad config", "", []string{"--steady-sysmon", "--upstream", "http://127.0.0.1:1", "--config", badConfig}, 2, false},
		{"on, postgres store without --database-url", "", []string{"--steady-sysmon", "--upstream", "http://127.0.0.1:1", "--config", pgConfig}, 2, false},
		{"on, bad --database-url", "", []string{"--steady-sysmon", "--upstream", "http://127.0.0.1:1", "--database-url", "postgres://h:port/db"}, 2, false},
		{"on, bad --gc-floor-mib", "", []string{"--steady-sysmon", "--upstream", "http://127.0.0.1:1", "--gc-floor-mib", "-1"}, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.godebug != "" {
				t.Setenv("GODEBUG", c.godebug)
			} else if old, ok := os.LookupEnv("GODEBUG"); ok {
				t.Setenv("GODEBUG", old) // restored after the test
				os.Unsetenv("GODEBUG")
			}
			var calls [][]string
			var out, errOut bytes.Buffer
			a := &app{stdout: &out, stderr: &errOut, exec: func(path string, argv, env []string) error {
				calls = append(calls, env)
				return errors.New("exec refused by the test")
			}}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			code := a.run(ctx, append([]string{"proxy"}, c.args...))
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.wantCode, errOut.String())
			}
			if code == 2 && (!strings.HasPrefix(errOut.String(), "ficus: ") || strings.Count(errOut.String(), "\n") != 1) {
				t.Errorf("stderr %q; want only the usage error, nothing logged before it", errOut.String())
			}
			if !c.want {
				if len(calls) != 0 {
					t.Fatalf("restarted %d times, with %q; want no restart", len(calls), slices.DeleteFunc(calls[0], func(kv string) bool { return !strings.HasPrefix(kv, "GODEBUG=") }))
				}
				if strings.Contains(errOut.String(), "steady-sysmon") {
					t.Errorf("logged about --steady-sysmon without restarting: %q", errOut.String())
				}
				return
			}
			if len(calls) != 1 {
				t.Fatalf("%d restarts, want 1", len(calls))
			}
			want := "GODEBUG=" + steadySysmon
			if c.godebug != "" {
				want = "GODEBUG=" + c.godebug + "," + steadySysmon
			}
			if !slices.Contains(calls[0], want) {
				t.Errorf("restart environment lacks %q", want)
			}
			if !strings.Contains(errOut.String(), "exec refused by the test") {
				t.Errorf("the failed restart is not logged: %q", errOut.String())
			}
		})
	}
}

// TestSteadySysmonBinary runs the real binary. Without --steady-sysmon it
// serves as started. With it, it restarts itself in place (same process
// id) with the setting in its environment, serves, and stops cleanly on
// SIGTERM; with it and a usage error, it reports the error and exits 2
// without restarting or logging about the setting first.
func TestSteadySysmonBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	bin := buildFicus(t)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })

	// Both runtime tweaks are off unless asked for.
	environ, log := runProxyBinary(t, bin, env)
	if slices.Contains(environ, "GODEBUG="+steadySysmon) || strings.Contains(log, "monitor thread") {
		t.Errorf("without --steady-sysmon: restarted with GODEBUG=%s or logged about it:\n%s", steadySysmon, log)
	}
	if strings.Contains(log, "heap floor") {
		t.Errorf("without --gc-floor-mib: a heap floor was set:\n%s", log)
	}

	environ, log = runProxyBinary(t, bin, env, "--steady-sysmon", "--gc-floor-mib", "16")
	if !slices.Contains(environ, "GODEBUG="+steadySysmon) {
		t.Errorf("the serving process's environment lacks GODEBUG=%s:\n%s", steadySysmon, log)
	}
	if !strings.Contains(log, "monitor thread kept awake") || !strings.Contains(log, "heap floor set") {
		t.Errorf("no log line says the settings are on:\n%s", log)
	}

	cmd := exec.CommandContext(t.Context(), bin, "proxy", "--steady-sysmon", "--listen", "127.0.0.1:0")
	cmd.Env = env
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("no --upstream: %v, want exit 2", err)
	}
	if !strings.HasPrefix(errOut.String(), "ficus: --upstream") || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("no --upstream: stderr %q; want only the usage error", errOut.String())
	}
}

// runProxyBinary starts `ficus proxy` with args, waits until it listens,
// reads its environment, stops it with SIGTERM and returns the
// environment and its log.
func runProxyBinary(t *testing.T, bin string, env []string, args ...string) (environ []string, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"proxy", "--upstream", "http://127.0.0.1:1",
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	scan := bufio.NewScanner(stderr)
	for scan.Scan() {
		lines = append(lines, scan.Text())
		if strings.Contains(scan.Text(), "proxy listening") {
			break
		}
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for scan.Scan() {
		lines = append(lines, scan.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ficus proxy %q after SIGTERM: %v\n%s", args, err, strings.Join(lines, "\n"))
	}
	return strings.Split(string(raw), "\x00"), strings.Join(lines, "\n")
}
