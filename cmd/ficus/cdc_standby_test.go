package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/queuecheck"
)

// standbyReceiver is the webhook both cdc runs deliver to: every change
// of a row (key k, version seq) goes to the checker as "k/seq", in
// arrival order, and each change must always come with the same event id
// (a redelivery, never a second event for one change).
type standbyReceiver struct {
	check     *queuecheck.Checker
	delivered atomic.Int64

	mu  sync.Mutex
	ids map[string]string // "key/seq" → event id
	bad []string
}

func (s *standbyReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	events, err := cloudevent.ParseBody(r.Header.Get("Content-Type"), b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		var d struct {
			Op  string `json:"op"`
			New struct {
				K   json.Number `json:"k"`
				Seq json.Number `json:"seq"`
			} `json:"new"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil || (d.Op != "insert" && d.Op != "update") {
			s.bad = append(s.bad, fmt.Sprintf("event %s: %s", e.ID, e.Data))
			continue
		}
		id := d.New.K.String() + "/" + d.New.Seq.String()
		if prev, ok := s.ids[id]; ok && prev != e.ID {
			s.bad = append(s.bad, fmt.Sprintf("row %s came as event %s and as %s", id, prev, e.ID))
		}
		s.ids[id] = e.ID
		s.check.Deliver(id)
	}
	s.delivered.Add(int64(len(events)))
	w.WriteHeader(http.StatusOK)
}

// standbyProducer writes versions of rows (one per key) in small
// transactions, recording each in the checker as attempted, then
// acknowledged once committed.
func standbyProducer(ctx context.Context, pool *pgxpool.Pool, check *queuecheck.Checker, rng *rand.Rand, total, keys int) (int, error) {
	seq := make([]int, keys)
	n := 0
	for n < total {
		size := 1 + rng.IntN(8)
		type row struct{ k, seq int }
		var batch []row
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			batch = batch[:0]
			for range size {
				k := rng.IntN(keys)
				seq[k]++
				if _, err := tx.Exec(ctx, `INSERT INTO ha_items (k, seq) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET seq = excluded.seq`, k, seq[k]); err != nil {
					return err
				}
				check.Attempt(fmt.Sprint(k), fmt.Sprintf("%d/%d", k, seq[k]), seq[k])
				batch = append(batch, row{k, seq[k]})
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, r := range batch {
			check.Ack(fmt.Sprint(r.k), fmt.Sprintf("%d/%d", r.k, r.seq), r.seq)
		}
		n += size
	}
	return n, nil
}

// readyStatus returns the status code of addr's /readyz, 0 when it does
// not answer.
func readyStatus(addr string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Two `ficus cdc run` on one slot: one streams, the other stands by with
// /readyz at 503. The active one is SIGKILLed three times under load (and
// restarted, as a supervisor would, to become the next standby); each
// time the standby takes the slot over within seconds, and the consumer
// ends up with every committed change, per key in order, duplicates only
// as the same event again.
func TestCDCStandbyTakesOver(t *testing.T) {
	t.Parallel()
	const kills = 3
	total := 6000
	if testing.Short() {
		total = 3000
	}
	db := pgtest.New(t)
	bin := buildFicus(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d rows, %d kills", seed, total, kills)
	rng := rand.New(rand.NewPCG(seed, seed>>7))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE ha_items (k int PRIMARY KEY, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	slot := "ha_" + db.Name
	slotArgs := []string{"--slot", slot, "--publication", slot}
	setup := exec.CommandContext(ctx, bin, append([]string{"cdc", "setup", "--tables", "public.ha_items", "--snapshot=false"}, slotArgs...)...)
	setup.Env = ficusEnv(db.URL)
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("ficus cdc setup: %v\n%s", err, out)
	}

	check := queuecheck.New()
	recv := &standbyReceiver{check: check, ids: map[string]string{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	const readers = 2
	sups := make([]*crashSupervisor, readers)
	addrs := make([]string, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		sep := "?"
		if strings.Contains(db.URL, "?") {
			sep = "&"
		}
		addrs[i] = freeAddr(t)
		name := fmt.Sprintf("relay%d", i) // activeSupervisor's naming
		sups[i] = &crashSupervisor{bin: bin, env: ficusEnv(db.URL + sep + "application_name=" + name), onStart: func() {},
			args: append([]string{"cdc", "run", "--sink", srv.URL + "/events", "--metrics-listen", addrs[i],
				"--takeover-retry-max", "500ms", "--status-interval", "200ms"}, slotArgs...)}
		// A killed reader comes back only once the other reads the slot,
		// as a restarted pod would after its backoff: the standby, not the
		// killed reader restarted at once, takes over.
		sups[i].beforeRestart = func(ctx context.Context) {
			end := time.Now().Add(20 * time.Second)
			for ctx.Err() == nil && time.Now().Before(end) {
				if reader := slotReaderName(db.Pool, slot); reader != "" && reader != name {
					return
				}
				time.Sleep(20 * time.Millisecond) // polling a real condition
			}
		}
		wg.Go(func() { errs[i] = sups[i].run(ctx) })
	}

	// One reads the slot and is ready; the other stands by, not ready.
	waitFor(t, 60*time.Second, "one reader ready, the other standing by", func() bool {
		a, b := readyStatus(addrs[0]), readyStatus(addrs[1])
		return (a == 200 && b == 503) || (a == 503 && b == 200)
	})

	prodDone := make(chan error, 1)
	var produced int
	prodRng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	go func() {
		var err error
		produced, err = standbyProducer(ctx, db.Pool, check, prodRng, total, 40)
		prodDone <- err
	}()

	var takeovers []time.Duration
	for k := range kills {
		at := int64((k + 1) * 4 * total / (5 * kills))
		waitFor(t, 120*time.Second, fmt.Sprintf("%d events before kill %d", at, k+1), func() bool {
			return recv.delivered.Load() >= at
		})
		victim := activeSupervisor(t, db.Pool, "message", slot, sups, k)
		standby := addrs[0]
		if victim == sups[0] {
			standby = addrs[1]
		}
		// The reader killed last time is back, standing by.
		waitFor(t, 30*time.Second, fmt.Sprintf("kill %d: a standby answering /readyz with 503", k+1), func() bool {
			return readyStatus(standby) == http.StatusServiceUnavailable
		})
		oldPID := slotReader(db.Pool, slot)
		killedAt := time.Now()
		<-victim.kill()
		waitFor(t, 20*time.Second, fmt.Sprintf("kill %d: the standby reading the slot", k+1), func() bool {
			pid := slotReader(db.Pool, slot)
			return pid != 0 && pid != oldPID && readyStatus(standby) == http.StatusOK
		})
		took := time.Since(killedAt)
		if next := activeSupervisor(t, db.Pool, "message", slot, sups, k); next == victim {
			t.Errorf("kill %d: the killed reader, restarted, took the slot, not the standby", k+1)
		}
		takeovers = append(takeovers, took)
		t.Logf("kill %d: the standby read the slot and was ready %s later", k+1, took.Round(time.Millisecond))
	}
	if err := <-prodDone; err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(90 * time.Second)
	for check.Result().Lost > 0 && time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond) // polling a real condition
	}
	// Both are up again (one reading, one standing by) before they stop.
	waitFor(t, 30*time.Second, "both readers answering /readyz", func() bool {
		return readyStatus(addrs[0]) != 0 && readyStatus(addrs[1]) != 0
	})
	cancel()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("reader %d: %v", i, err)
		}
	}
	killed := 0
	for _, s := range sups {
		killed += s.kills
		if len(s.unexpected) > 0 {
			t.Logf("reader exited on its own %d times, first: %s", len(s.unexpected), s.unexpected[0])
		}
	}
	r := check.Result()
	t.Logf("%d SIGKILLs, takeovers %v; %s", killed, takeovers, r)
	if killed < kills {
		t.Errorf("%d kills, want %d", killed, kills)
	}
	recv.mu.Lock()
	bad := recv.bad
	recv.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d bad deliveries, first: %s", len(bad), bad[0])
	}
	if !r.Valid() || r.Acknowledged != produced {
		t.Fatalf("checker: %s", r)
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a real condition
	}
}
