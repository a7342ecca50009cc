package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
)

func TestMain(m *testing.M) {
	pgtest.Main(m, func() {
		if testBinary.dir != "" {
			os.RemoveAll(testBinary.dir)
		}
	})
}

// testBinary is the ficus binary the tests that run it as a process
// share: built once per test run, statically and without the race
// detector, so that it starts fast and a SIGKILL leaves nothing behind.
var testBinary struct {
	once      sync.Once
	dir, path string
	err       error
}

func ficus(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRootHelpListsCommands(t *testing.T) {
	code, out, _ := ficus(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"demo", "sim", "migrate", "version", "FICUS_DATABASE_URL", "(env FICUS_LOG_FORMAT)"} {
		if !strings.Contains(out, want) {
			t.Errorf("ficus --help does not mention %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := ficus(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ficus ") {
		t.Fatalf("exit %d, %q", code, out)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"version", "--no-such-flag"},
		{"version", "--log-format", "yaml"},
		{"migrate", "up"}, // no --database-url
		{"proxy", "--upstream", "http://127.0.0.1:1", "--gc-floor-mib", "-1"},
	} {
		code, _, errOut := ficus(t, args...)
		if code != 2 || !strings.HasPrefix(errOut, "ficus: ") || strings.Count(errOut, "ficus: ") != 1 {
			t.Errorf("ficus %v: exit %d, stderr %q; want 2 and one error line", args, code, errOut)
		}
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("FICUS_LOG_FORMAT", "yaml")
	code, _, errOut := ficus(t, "version")
	if code != 2 || !strings.Contains(errOut, "yaml") {
		t.Fatalf("FICUS_LOG_FORMAT=yaml: exit %d, %q; want the bad value rejected", code, errOut)
	}
	// The command line wins over the environment.
	if code, _, errOut := ficus(t, "version", "--log-format", "json"); code != 0 {
		t.Fatalf("flag did not override env: exit %d %s", code, errOut)
	}
}

func TestMigrateUpAndStatus(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv("FICUS_DATABASE_URL", db.URL)
	code, out, errOut := ficus(t, "migrate", "status")
	if code != 0 || !strings.Contains(out, "pending") {
		t.Fatalf("status before up: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ficus(t, "migrate", "up")
	if code != 0 || !strings.Contains(out, "applied 00001") {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ficus(t, "migrate", "up")
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second up: exit %d\n%s", code, out)
	}
	code, out, _ = ficus(t, "migrate", "status")
	// " pending": the state column or the summary line, not River's
	// migration named "pending and more".
	if code != 0 || strings.Contains(out, " pending") || !strings.Contains(out, "applied") {
		t.Fatalf("status after up: exit %d\n%s", code, out)
	}
}

func TestFirstSignalCancelsSecondExits(t *testing.T) {
	signals := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	var stderr syncbuf.Buffer
	ctx, cancel := shutdownContext(signals, &stderr, func(code int) { exited <- code })
	defer cancel()

	signals <- syscall.SIGTERM
	<-ctx.Done()
	select {
	case code := <-exited:
		t.Fatalf("exited with %d on the first signal", code)
	default:
	}
	signals <- syscall.SIGINT
	if code := <-exited; code != 130 {
		t.Fatalf("second signal: exit %d, want 130", code)
	}
	if !strings.Contains(stderr.String(), "gracefully") {
		t.Fatalf("stderr %q does not explain the first signal", stderr.String())
	}
}
