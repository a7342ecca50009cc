package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Helpers for the tests that drive one `ficus cdc run` process through
// outages of Postgres and of the sink.

// ficusProc is one `ficus cdc run` the test started; t.Cleanup stops it
// with SIGTERM.
type ficusProc struct {
	cmd     *exec.Cmd
	out     *tailBuffer
	base    string // http://addr of /metrics and /readyz
	exited  chan struct{}
	waitErr error
}

// startFicus starts bin with args and --metrics-listen on a free port.
func startFicus(t *testing.T, bin string, env []string, args ...string) *ficusProc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append(args, "--metrics-listen", addr)...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &ficusProc{cmd: cmd, out: &tailBuffer{max: 16 << 10}, base: "http://" + addr, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ficus: %v", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("ficus cdc run did not stop cleanly on SIGTERM: %v\n%s", err, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits; it kills the process group after 45s.
func (p *ficusProc) stop() error {
	select {
	case <-p.exited:
		return nil // reported by whoever saw it exit
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("still running 45s after SIGTERM")
	}
}

// checkAlive fails the test when the process has exited.
func (p *ficusProc) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("ficus cdc run exited on its own (%v):\n%s", p.waitErr, p.out.String())
	default:
	}
}

// metric reads one sample of /metrics; ok is false when it is absent or
// the endpoint does not answer.
func (p *ficusProc) metric(name string) (v float64, ok bool) {
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, found := strings.CutPrefix(sc.Text(), name+" "); found {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// readiness returns the status of /readyz and the names of its failed
// checks.
func (p *ficusProc) readiness() (int, map[string]string) {
	resp, err := http.Get(p.base + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body struct {
		Failed map[string]string `json:"failed"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body.Failed
}

// waitFor polls cond every 50ms until it holds, failing the test after
// limit or as soon as the process exits.
func (p *ficusProc) waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		p.checkAlive(t)
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; ficus output:\n%s", limit, what, p.out.String())
		}
		<-tick.C
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// slotConfirmed returns the slot's confirmed flush LSN.
func slotConfirmed(ctx context.Context, pool *pgxpool.Pool, slot string) (pglogrepl.LSN, error) {
	var lsn string
	if err := pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn); err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(lsn)
}

// cdcSetup runs ficus cdc setup.
func cdcSetup(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	setup := exec.CommandContext(t.Context(), bin, append([]string{"cdc", "setup", "--snapshot=false"}, args...)...)
	setup.Env = env
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("ficus cdc setup: %v\n%s", err, out)
	}
}

// eventRecorder is a webhook endpoint that records the ids of the rows of
// the events it accepts, and answers failStatus instead while that is set.
type eventRecorder struct {
	mu         sync.Mutex
	ids        map[string]bool // event ids
	keys       map[int64]bool  // the rows' "id" keys
	failStatus int
	requests   int
}

func newEventRecorder() *eventRecorder {
	return &eventRecorder{ids: map[string]bool{}, keys: map[int64]bool{}}
}

func (e *eventRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if e.failStatus != 0 {
		w.WriteHeader(e.failStatus)
		return
	}
	var events []crashEvent
	if err := json.Unmarshal(body, &events); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ev := range events {
		e.ids[ev.ID] = true
		e.keys[ev.Data.Key.ID] = true
	}
	w.WriteHeader(http.StatusOK)
}

func (e *eventRecorder) setFail(status int) {
	e.mu.Lock()
	e.failStatus = status
	e.mu.Unlock()
}

// has reports whether the rows with these ids arrived.
func (e *eventRecorder) has(ids ...int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if !e.keys[id] {
			return false
		}
	}
	return true
}

func (e *eventRecorder) requestCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

func ficusEnv(url string) []string {
	return append(os.Environ(), "FICUS_DATABASE_URL="+url)
}
