package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
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
	"github.com/ficuslabs/ficus/outbox"
)

// outboxReceiver is the webhook the relays deliver to: every id goes to
// the checker, in arrival order.
type outboxReceiver struct {
	check     *queuecheck.Checker
	delivered atomic.Int64
	// mu serializes deliveries, so that the checker sees them in the
	// order the receiver acknowledged them.
	mu sync.Mutex
}

func (o *outboxReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	o.mu.Lock()
	for _, e := range events {
		o.check.Deliver(e.ID)
	}
	o.mu.Unlock()
	o.delivered.Add(int64(len(events)))
	w.WriteHeader(http.StatusOK)
}

// outboxProducer enqueues events of aggregates in small transactions,
// recording each in the checker as attempted, then acknowledged once its
// transaction committed.
func outboxProducer(ctx context.Context, pool *pgxpool.Pool, w *outbox.Writer, check *queuecheck.Checker, rng *rand.Rand, total, aggregates int, committed *[]string) (int, error) {
	seq := make([]int, aggregates)
	n := 0
	for n < total {
		size := 1 + rng.IntN(5)
		type pending struct {
			key, id string
			seq     int
		}
		var batch []pending
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			batch = batch[:0]
			for range size {
				agg := rng.IntN(aggregates)
				seq[agg]++
				e := outbox.Event{AggregateType: "order", AggregateID: fmt.Sprint(agg), Type: "order.changed",
					Payload: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq[agg]))}
				id, err := w.Enqueue(ctx, tx, e)
				if err != nil {
					return err
				}
				key := "order/" + fmt.Sprint(agg)
				check.Attempt(key, id, seq[agg])
				batch = append(batch, pending{key, id, seq[agg]})
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, p := range batch {
			check.Ack(p.key, p.id, p.seq)
			*committed = append(*committed, p.id)
		}
		n += size
	}
	return n, nil
}

// outboxCrashEventsEnv overrides how many events a crash test enqueues,
// e.g. FICUS_OUTBOX_CRASH_EVENTS=50000 for the 50k-event run.
const outboxCrashEventsEnv = "FICUS_OUTBOX_CRASH_EVENTS"

// outboxCrashSize is how many events a crash test enqueues: the
// environment's FICUS_OUTBOX_CRASH_EVENTS, else 10,000 (3,000 with
// -short).
func outboxCrashSize(t *testing.T) int {
	if v := os.Getenv(outboxCrashEventsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 10_000_000 {
			t.Fatalf("%s=%q: want a number of events from 100 to 10000000", outboxCrashEventsEnv, v)
		}
		return n
	}
	if testing.Short() {
		return 3000
	}
	return 10_000
}

// The table-mode relay, SIGKILLed at random moments at least ten times
// while events stream in: nothing acknowledged is lost, each aggregate's
// events come in order, and duplicates are only the same ids again.
func TestOutboxRelaySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	runOutboxCrash(t, outbox.ModeTable, 1, 10)
}

// Message mode with a standby: the active relay is SIGKILLed three times
// under load; the standby takes the slot over each time, and nothing is
// lost or reordered.
func TestOutboxStandbyTakesOver(t *testing.T) {
	t.Parallel()
	runOutboxCrash(t, outbox.ModeMessage, 2, 3)
}

func runOutboxCrash(t *testing.T, mode outbox.Mode, relays, kills int) {
	db := pgtest.New(t)
	bin := buildFicus(t)
	total := outboxCrashSize(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d events, mode %s, %d relays, %d kills", seed, total, mode, relays, kills)
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	check := queuecheck.New()
	recv := &outboxReceiver{check: check}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	// The first relay creates the schema and, in message mode, the slot:
	// events enqueued before the slot exists are not in it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Slots are the server's: a name of the test's own.
	slot := "outbox_" + db.Name
	sups := make([]*crashSupervisor, relays)
	var wg sync.WaitGroup
	errs := make([]error, relays)
	for i := range relays {
		sep := "?"
		if strings.Contains(db.URL, "?") {
			sep = "&"
		}
		env := ficusEnv(db.URL + sep + fmt.Sprintf("application_name=relay%d", i))
		sups[i] = &crashSupervisor{bin: bin, env: env, onStart: func() {},
			args: []string{"outbox", "relay", "--mode", string(mode), "--sink", srv.URL + "/events",
				"--metrics-listen", "127.0.0.1:0", "--poll-interval", "100ms", "--slot", slot, "--publication", slot, "--takeover-retry-max", "500ms", "--batch-size", "200"}}
		if mode == outbox.ModeMessage {
			// A killed relay comes back only once another reads the slot,
			// as a restarted pod would after its backoff: the standby, not
			// the killed relay restarted at once, takes over.
			name := fmt.Sprintf("relay%d", i)
			sups[i].beforeRestart = func(ctx context.Context) {
				end := time.Now().Add(20 * time.Second)
				for ctx.Err() == nil && time.Now().Before(end) {
					if reader := slotReaderName(db.Pool, slot); reader != "" && reader != name {
						return
					}
					time.Sleep(20 * time.Millisecond) // polling a real condition
				}
			}
		}
		wg.Go(func() { errs[i] = sups[i].run(ctx) })
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ready bool
		q := `SELECT to_regclass('ficus.outbox') IS NOT NULL`
		if mode == outbox.ModeMessage {
			// A relay's walsender reads the slot. Not merely "active": a
			// slot being created is active (its creator holds it) before
			// it is consistent, and what commits until then is not in it.
			q = `SELECT EXISTS (SELECT 1 FROM pg_replication_slots rs JOIN pg_stat_activity a ON a.pid = rs.active_pid
				WHERE rs.slot_name = $1 AND rs.confirmed_flush_lsn IS NOT NULL AND a.backend_type = 'walsender') OR $1 = ''`
		} else {
			q = `SELECT to_regclass('ficus.outbox') IS NOT NULL OR $1 = ''`
		}
		if err := db.Pool.QueryRow(ctx, q, slot).Scan(&ready); err == nil && ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not prepare the database within 60s")
		}
		time.Sleep(50 * time.Millisecond) // polling a real condition
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	prodDone := make(chan error, 1)
	var (
		produced  int
		committed []string // ids in commit order, the producer's until prodDone
	)
	// The producer gets a random source of its own: rng stays this
	// goroutine's.
	prodRng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	go func() {
		var err error
		produced, err = outboxProducer(ctx, db.Pool, w, check, prodRng, total, 50, &committed)
		prodDone <- err
	}()

	// Kill at random thresholds of delivered events, spread over the first
	// four fifths of the stream.
	done, standbyTookOver := 0, 0
	for k := range kills {
		at := int64((k+1)*4*total/(5*kills) - rng.IntN(total/(5*kills)+1)/2)
		for recv.delivered.Load() < at {
			if time.Now().After(deadline.Add(2 * time.Minute)) {
				t.Fatalf("only %d events delivered, kill %d waits for %d; %s", recv.delivered.Load(), k+1, at, check.Result())
			}
			time.Sleep(5 * time.Millisecond) // polling a real condition
		}
		victim := activeSupervisor(t, db.Pool, mode, slot, sups, k)
		oldPID := slotReader(db.Pool, slot)
		killedAt := time.Now()
		<-victim.kill()
		done++
		if mode == outbox.ModeMessage {
			// A relay (the standby, or the killed one restarted) reads the
			// slot again within seconds.
			for slotReader(db.Pool, slot) == oldPID || slotReader(db.Pool, slot) == 0 {
				if time.Since(killedAt) > 20*time.Second {
					t.Fatalf("kill %d: no relay read the slot within 20s", k+1)
				}
				time.Sleep(10 * time.Millisecond) // polling a real condition
			}
			took := time.Since(killedAt)
			next := activeSupervisor(t, db.Pool, mode, slot, sups, k)
			if next != victim {
				standbyTookOver++
			}
			t.Logf("kill %d: a relay read the slot again %s later (the standby: %v)", k+1, took.Round(time.Millisecond), next != victim)
		}
	}
	if err := <-prodDone; err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(90 * time.Second)
	for check.Result().Lost > 0 && time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond) // polling a real condition
	}
	cancel()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("relay %d: %v", i, err)
		}
	}
	killed := 0
	for _, s := range sups {
		killed += s.kills
		if len(s.unexpected) > 0 {
			t.Logf("relay exited on its own %d times, first: %s", len(s.unexpected), s.unexpected[0])
		}
	}
	r := check.Result()
	t.Logf("%d SIGKILLs; %s", killed, r)
	if mode == outbox.ModeMessage && standbyTookOver < kills {
		t.Errorf("the standby took the slot over after %d of %d kills", standbyTookOver, kills)
	}
	if killed < kills {
		t.Errorf("%d kills, want %d", killed, kills)
	}
	if !r.Valid() || r.Acknowledged != produced {
		logLost(t, db.Pool, check.LostIDs(), committed)
		t.Fatalf("checker: %s", r)
	}
}

// activeSupervisor returns the supervisor of the relay to kill: in
// message mode the one whose process reads the slot (killing the standby
// would prove nothing), told by the application_name of the slot's
// walsender; else the only one.
func activeSupervisor(t *testing.T, pool *pgxpool.Pool, mode outbox.Mode, slot string, sups []*crashSupervisor, k int) *crashSupervisor {
	t.Helper()
	if mode != outbox.ModeMessage || len(sups) == 1 {
		return sups[k%len(sups)]
	}
	for range 400 {
		var name string
		err := pool.QueryRow(context.Background(), `
SELECT a.application_name FROM pg_replication_slots rs JOIN pg_stat_activity a ON a.pid = rs.active_pid
 WHERE rs.slot_name = $1`, slot).Scan(&name)
		if err == nil {
			for i, s := range sups {
				if name == fmt.Sprintf("relay%d", i) {
					return s
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a real condition
	}
	t.Fatal("no relay reads the slot")
	return nil
}

// slotReader returns the pid of the walsender reading slot, 0 when none.
func slotReader(pool *pgxpool.Pool, slot string) int {
	var pid *int
	if err := pool.QueryRow(context.Background(), `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err != nil || pid == nil {
		return 0
	}
	return *pid
}

// slotReaderName returns the application_name of the walsender reading
// slot, "" when none.
func slotReaderName(pool *pgxpool.Pool, slot string) string {
	var name string
	if err := pool.QueryRow(context.Background(), `
SELECT a.application_name FROM pg_replication_slots rs JOIN pg_stat_activity a ON a.pid = rs.active_pid
 WHERE rs.slot_name = $1`, slot).Scan(&name); err != nil {
		return ""
	}
	return name
}

// logLost tells where in the commit order the lost events are, in runs
// of consecutive positions, and what ficus.outbox holds of them: the
// shape of a loss says more than its count.
func logLost(t *testing.T, pool *pgxpool.Pool, lost, committed []string) {
	t.Helper()
	if len(lost) == 0 {
		return
	}
	pos := make(map[string]int, len(committed))
	for i, id := range committed {
		pos[id] = i
	}
	var at []int
	for _, id := range lost {
		if p, ok := pos[id]; ok {
			at = append(at, p)
		}
	}
	slices.Sort(at)
	var runs []string
	for i := 0; i < len(at); {
		j := i
		for j+1 < len(at) && at[j+1] == at[j]+1 {
			j++
		}
		runs = append(runs, fmt.Sprintf("%d-%d", at[i], at[j]))
		i = j + 1
	}
	t.Logf("lost %d of %d committed events, at commit positions %s", len(lost), len(committed), strings.Join(runs[:min(len(runs), 40)], ", "))
	var rows, pending int
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL) FROM ficus.outbox WHERE id = ANY($1)`, lost).Scan(&rows, &pending); err == nil {
		t.Logf("ficus.outbox holds %d of the lost events, %d undelivered", rows, pending)
	}
}
