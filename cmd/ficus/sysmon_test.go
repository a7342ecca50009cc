package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
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
// and with what, by giving it an exec that only records. The command then
// carries on without the restart and stops at the missing --upstream.
func TestSteadySysmonRestarts(t *testing.T) {
	for _, c := range []struct {
		name    string
		godebug string // "" leaves GODEBUG unset
		args    []string
		want    bool
	}{
		{"default", "", nil, true},
		{"other settings", "madvdontneed=1", nil, true},
		{"off", "", []string{"--steady-sysmon=false"}, false},
		{"user's schedtrace", "schedtrace=0", nil, false},
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
			code := a.run(context.Background(), append([]string{"proxy"}, c.args...))
			if code != 2 || !strings.Contains(errOut.String(), "upstream") {
				t.Fatalf("exit %d, stderr %q; want the missing --upstream reported", code, errOut.String())
			}
			if !c.want {
				if len(calls) != 0 {
					t.Fatalf("restarted with %q; want no restart", calls)
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

// TestSteadySysmonBinary runs the real binary: it restarts itself in place
// (same process id) with the setting in its environment, serves, and stops
// cleanly on SIGTERM.
func TestSteadySysmonBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	bin := buildFicus(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "proxy", "--upstream", "http://127.0.0.1:1",
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log []string
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		log = append(log, lines.Text())
		if strings.Contains(lines.Text(), "proxy listening") {
			break
		}
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(environ), "\x00"), "GODEBUG="+steadySysmon) {
		t.Errorf("the serving process's environment lacks GODEBUG=%s:\n%s", steadySysmon, strings.Join(log, "\n"))
	}
	if !strings.Contains(strings.Join(log, "\n"), "monitor thread kept awake") {
		t.Errorf("no log line says the setting is on:\n%s", strings.Join(log, "\n"))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		log = append(log, lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, strings.Join(log, "\n"))
	}
}
