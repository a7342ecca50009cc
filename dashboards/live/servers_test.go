package live_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// The victoria-metrics and vmalert binaries the tests run: from
// FICUS_VM_BIN_DIR when set, else built once (per version) by
// scripts/vm-build.sh into the user's cache directory, which keeps them
// for later runs.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func vmBinaries(t *testing.T) (vm, vmalert string) {
	t.Helper()
	binOnce.Do(func() {
		if d := os.Getenv("FICUS_VM_BIN_DIR"); d != "" {
			binDir = d
		} else {
			cache, err := os.UserCacheDir()
			if err != nil {
				cache = os.TempDir()
			}
			binDir = filepath.Join(cache, "ficus", "victoriametrics-"+live.VictoriaMetricsVersion)
		}
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "vm-build.sh")
		var out bytes.Buffer
		cmd := exec.Command("bash", script, binDir)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("scripts/vm-build.sh %s: %w\n%s", binDir, err, out.String())
		}
	})
	if binErr != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("victoria-metrics and vmalert are required (FICUS_REQUIRE_TOOLS=1): %v", binErr)
		}
		t.Skipf("victoria-metrics and vmalert are not available: %v", binErr)
	}
	return filepath.Join(binDir, "victoria-metrics"), filepath.Join(binDir, "vmalert")
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// syncBuffer is a bytes.Buffer a process and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs bin with args until the test ends, waits until its
// /health at addr answers 200, and logs its output if the test failed.
func startServer(t *testing.T, bin, addr string, args []string) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s %v output:\n%s", filepath.Base(bin), args, out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before it was ready: %v\n%s", filepath.Base(bin), err, out.String())
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s within 20s\n%s", filepath.Base(bin), addr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startVM starts victoria-metrics with a scrape config and returns a client.
func startVM(t *testing.T, sc live.ScrapeConfig) *live.Client {
	t.Helper()
	vmBin, _ := vmBinaries(t)
	dir := t.TempDir()
	cfg, err := sc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "scrape.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	args, err := live.VictoriaMetrics{
		Listen:           addr,
		DataPath:         filepath.Join(dir, "data"),
		ScrapeConfigPath: cfgPath,
		DockerSDInterval: time.Second,
	}.Args()
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, vmBin, addr, args)
	c, err := live.NewClient(live.Config{URL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startVMAlert starts vmalert on rules against VictoriaMetrics at vmURL.
func startVMAlert(t *testing.T, vmURL string, rules string) *live.Client {
	t.Helper()
	_, alertBin := vmBinaries(t)
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	args, err := live.VMAlert{
		Listen:             addr,
		DatasourceURL:      vmURL,
		RuleFiles:          []string{path},
		EvaluationInterval: time.Second,
	}.Args()
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, alertBin, addr, args)
	c, err := live.NewClient(live.Config{URL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond every 100ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last error: %v)", what, d, lastErr)
}
