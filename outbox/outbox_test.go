package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/metricstest"
	"github.com/ficuslabs/ficus/internal/queuecheck"
	"github.com/ficuslabs/ficus/outbox"
)

func TestEventValidation(t *testing.T) {
	t.Parallel()
	w, err := outbox.NewWriter(outbox.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]outbox.Event{
		"no aggregate":   {Type: "t", AggregateType: "order", Payload: json.RawMessage(`{}`)},
		"bad payload":    {Type: "t", AggregateType: "order", AggregateID: "1", Payload: json.RawMessage(`{`)},
		"no payload":     {Type: "t", AggregateType: "order", AggregateID: "1"},
		"bad header":     {Type: "t", AggregateType: "order", AggregateID: "1", Payload: json.RawMessage(`1`), Headers: map[string]string{"Trace-Parent": "x"}},
		"reserved name":  {Type: "t", AggregateType: "order", AggregateID: "1", Payload: json.RawMessage(`1`), Headers: map[string]string{"id": "x"}},
		"partition key":  {Type: "t", AggregateType: "order", AggregateID: "1", Payload: json.RawMessage(`1`), Headers: map[string]string{"partitionkey": "x"}},
		"long aggregate": {Type: "t", AggregateType: "order", AggregateID: strings.Repeat("x", 300), Payload: json.RawMessage(`1`)},
	} {
		if _, err := w.Enqueue(t.Context(), nil, e); !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", name, err)
		}
	}
	if _, err := outbox.NewWriter(outbox.WriterConfig{Mode: "queue"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("mode queue: %v", err)
	}
	if _, err := outbox.NewWriter(outbox.WriterConfig{Prefix: "other"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("prefix other: %v", err)
	}
}

// Both modes, from Go and from the SQL functions, reach the sink as
// CloudEvents with the id, type, subject and trace context enqueued.
func TestModesAndSQLFunctions(t *testing.T) {
	t.Parallel()
	for _, mode := range []outbox.Mode{outbox.ModeTable, outbox.ModeMessage} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			db := migrated(t)
			rec := &recorder{}
			startRelay(t, outbox.RelayConfig{Mode: mode, ConnString: db.URL, Sink: rec})
			w, err := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			e := ev("order", "42", 1)
			e.Headers = map[string]string{outbox.HeaderTraceparent: tp, outbox.HeaderTracestate: "congo=t61rcWkgMzE"}
			goID := enqueue(t, db.Pool, w, e)[0]
			fn := "ficus.outbox_enqueue"
			if mode == outbox.ModeMessage {
				fn = "ficus.outbox_emit"
			}
			var sqlID string
			if err := db.Pool.QueryRow(t.Context(), `SELECT `+fn+`('order', '42', 'order.paid', '{"total":"12.50"}', '{"traceparent":"`+tp+`","n":1,"Bad Name":"x"}')`).Scan(&sqlID); err != nil {
				t.Fatal(err)
			}
			// A rolled-back enqueue is never delivered.
			tx, err := db.Pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rolledBack, err := w.Enqueue(t.Context(), tx, ev("order", "42", 9))
			if err != nil {
				t.Fatal(err)
			}
			tx.Rollback(t.Context())
			last := enqueue(t, db.Pool, w, ev("order", "42", 3))[0]
			waitFor(t, 30*time.Second, "the events", func() bool { return rec.has(last) })
			got := rec.ids()
			if want := []string{goID, sqlID, last}; !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v (rolled back: %s)", got, want, rolledBack)
			}
			first, second := rec.events[0], rec.events[1]
			if first.Type != "order.changed" || first.Subject != "order/42" || first.Extensions["partitionkey"] != "order/42" ||
				first.Extensions["traceparent"] != tp || first.Extensions["tracestate"] != "congo=t61rcWkgMzE" ||
				string(first.Data) != `{"n":1}` || first.Source != outbox.Source(db.Name) || first.Time.IsZero() {
				t.Errorf("Go event: %+v", first)
			}
			if second.Type != "order.paid" || second.Extensions["traceparent"] != tp || second.Extensions["n"] != "1" ||
				second.Extensions["Bad Name"] != nil || !strings.Contains(string(second.Data), `"12.50"`) {
				t.Errorf("SQL event: %+v", second)
			}
			if err := first.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// Transactions that commit out of the order of their ids: a row whose
// transaction commits late is delivered, and before the rows of later
// transactions; the hold-back shows meanwhile.
func TestTableLateCommitNeverSkipped(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	set := metrics.NewSet()
	rec := &recorder{}
	startRelay(t, outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL, Sink: rec, Metrics: set})
	w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})

	early, err := db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	earlyID, err := w.Enqueue(t.Context(), early, ev("order", "1", 1))
	if err != nil {
		t.Fatal(err)
	}
	lateIDs := enqueue(t, db.Pool, w, ev("order", "2", 1), ev("order", "1", 2))
	waitFor(t, 10*time.Second, "the hold-back metric", func() bool {
		v, _ := metricstest.Value(t, set, "ficus_outbox_xmin_holdback_events")
		return v == 2
	})
	if got := rec.ids(); len(got) != 0 {
		t.Fatalf("delivered %v while an earlier transaction runs", got)
	}
	if err := early.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "all events", func() bool { return len(rec.ids()) == 3 })
	if got, want := rec.ids(), []string{earlyID, lateIDs[0], lateIDs[1]}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// Many producers whose transactions commit in random order: nothing is
// skipped, and each aggregate's events come in the order of their
// transactions.
func TestTableConcurrentProducers(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	check := queuecheck.New()
	rec := &recorder{check: check}
	startRelay(t, outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL, Sink: rec, BatchSize: 50})
	w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	const producers, rounds = 8, 40
	rng := rand.New(rand.NewPCG(1, 2))
	conns := make([]*pgx.Conn, producers)
	for p := range conns {
		c, err := pgx.Connect(t.Context(), db.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns[p] = c
	}
	for round := range rounds {
		// Every producer begins and enqueues; they commit in a random order.
		txs := make([]pgx.Tx, producers)
		type pending struct{ key, id string }
		events := make([]pending, producers)
		for p := range producers {
			tx, err := conns[p].Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("%d", p)
			id, err := w.Enqueue(t.Context(), tx, ev("order", key, round))
			if err != nil {
				t.Fatal(err)
			}
			check.Attempt("order/"+key, id, round)
			txs[p], events[p] = tx, pending{"order/" + key, id}
		}
		for _, p := range rng.Perm(producers) {
			if err := txs[p].Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			check.Ack(events[p].key, events[p].id, round)
		}
	}
	waitFor(t, 30*time.Second, "every event", func() bool { return check.Delivered() == producers*rounds })
	if r := check.Result(); !r.Valid() || r.Acknowledged != producers*rounds {
		t.Fatal(r)
	} else {
		t.Log(r)
	}
}

// An event the sink rejects blocks the later events of its aggregate,
// which never overtake it, and nothing else; once the sink takes it, the
// aggregate goes on in order.
func TestPoisonBlocksItsAggregateOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode      outbox.Mode
		retryable bool
	}{{outbox.ModeTable, false}, {outbox.ModeTable, true}, {outbox.ModeMessage, false}, {outbox.ModeMessage, true}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s/retryable=%v", mode, tc.retryable), func(t *testing.T) {
			t.Parallel()
			db := migrated(t)
			set := metrics.NewSet()
			rec := &recorder{}
			poison := func(e cloudevent.Event) bool { return strings.Contains(string(e.Data), "poison") }
			rec.setReject(poison)
			startRelay(t, outbox.RelayConfig{Mode: mode, ConnString: db.URL, Sink: rec, Metrics: set,
				Retryable: func(error) bool { return tc.retryable }})
			w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
			bad := ev("order", "A", 2)
			bad.Payload = json.RawMessage(`{"poison":true}`)
			a := enqueue(t, db.Pool, w, ev("order", "A", 1), ev("order", "B", 1), bad, ev("order", "B", 2))
			a = append(a, enqueue(t, db.Pool, w, ev("order", "A", 3), ev("order", "B", 3))...)
			// a: A1 B1 A2(poison) B2 A3 B3
			waitFor(t, 20*time.Second, "the other aggregate", func() bool { return rec.has(a[5]) && rec.has(a[0]) })
			waitFor(t, 10*time.Second, "the blocked aggregate metric", func() bool {
				v, _ := metricstest.Value(t, set, "ficus_outbox_blocked_aggregates")
				return v == 1
			})
			if rec.has(a[2]) || rec.has(a[4]) {
				t.Fatalf("the poisoned aggregate went on: %v", rec.ids())
			}
			if v, _ := metricstest.Value(t, set, "ficus_outbox_retries_total"); v < 1 {
				t.Errorf("retries %v", v)
			}
			rec.setReject(nil)
			waitFor(t, 20*time.Second, "the healed aggregate", func() bool { return rec.has(a[4]) })
			got := rec.ids()
			if i, j := slices.Index(got, a[2]), slices.Index(got, a[4]); i < 0 || j < i || slices.Index(got, a[0]) > i {
				t.Fatalf("order of A: %v (A1 %s, A2 %s, A3 %s)", got, a[0], a[2], a[4])
			}
			waitFor(t, 10*time.Second, "no blocked aggregate", func() bool {
				v, _ := metricstest.Value(t, set, "ficus_outbox_blocked_aggregates")
				return v == 0
			})
		})
	}
}

// Two relays share the partitions; when one stops, the other takes them
// over; per-aggregate order holds throughout.
func TestTwoTableRelays(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	check := queuecheck.New()
	rec := &recorder{check: check}
	setA, setB := metrics.NewSet(), metrics.NewSet()
	cfg := outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL, Sink: rec, BatchSize: 20, PollInterval: 30 * time.Millisecond}
	cfg.Metrics = setA
	relayA, err := outbox.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- relayA.Run(ctxA) }()
	defer stopA()
	cfg.Metrics = setB
	startRelay(t, cfg)
	waitFor(t, 10*time.Second, "both relays to own partitions", func() bool {
		a, _ := metricstest.Value(t, setA, "ficus_outbox_partitions_owned")
		b, _ := metricstest.Value(t, setB, "ficus_outbox_partitions_owned")
		return a == 8 && b == 8
	})
	w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	const aggregates, perAggregate = 20, 30
	produce := func(from, to int) {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for n := from; n < to; n++ {
					for agg := g; agg < aggregates; agg += 4 {
						key := fmt.Sprint(agg)
						err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
							id, err := w.Enqueue(context.Background(), tx, ev("order", key, n))
							check.Attempt("order/"+key, id, n)
							if err == nil {
								defer check.Ack("order/"+key, id, n)
							}
							return err
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
	}
	produce(0, perAggregate/2)
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	produce(perAggregate/2, perAggregate)
	waitFor(t, 30*time.Second, "every event", func() bool { return check.Delivered() == aggregates*perAggregate })
	if v, _ := metricstest.Value(t, setB, "ficus_outbox_partitions_owned"); v != 16 {
		t.Errorf("the remaining relay owns %v partitions, want 16", v)
	}
	if r := check.Result(); !r.Valid() || r.Acknowledged != aggregates*perAggregate {
		t.Fatal(r)
	} else {
		t.Log(r)
	}
}

func TestInbox(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	set := metrics.NewSet()
	in, err := outbox.NewInbox(outbox.InboxConfig{Consumer: "crm", Pool: db.Pool, Retention: time.Hour, Now: func() time.Time { return now }, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(t.Context(), `CREATE TABLE effects (event_id text)`); err != nil {
		t.Fatal(err)
	}
	apply := func(id string) bool {
		var ran bool
		err := pgx.BeginFunc(t.Context(), db.Pool, func(tx pgx.Tx) error {
			var err error
			ran, err = in.Process(t.Context(), tx, id, func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), `INSERT INTO effects VALUES ($1)`, id)
				return err
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ran
	}
	if !apply("e1") || apply("e1") {
		t.Fatal("the first Process must run fn, the second not")
	}
	// A failing fn rolls the record back with the effect: the redelivery runs.
	err = pgx.BeginFunc(t.Context(), db.Pool, func(tx pgx.Tx) error {
		_, err := in.Process(t.Context(), tx, "e2", func(pgx.Tx) error { return errors.New("boom") })
		return err
	})
	if err == nil || !apply("e2") {
		t.Fatalf("after a failed fn: %v", err)
	}
	// Concurrent duplicates: one effect.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { apply("e3") })
	}
	wg.Wait()
	var effects int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM effects`).Scan(&effects); err != nil || effects != 3 {
		t.Fatalf("%d effects (%v), want 3: one per event", effects, err)
	}
	// The SQL function agrees.
	var first, again bool
	if err := db.Pool.QueryRow(t.Context(), `SELECT ficus.inbox_record('crm', 'e4'), ficus.inbox_record('crm', 'e4')`).Scan(&first, &again); err != nil || !first || again {
		t.Fatalf("inbox_record: %v %v %v", first, again, err)
	}
	if v, _ := metricstest.Value(t, set, `ficus_outbox_inbox_events_total{result="duplicate"}`); v < 8 {
		t.Errorf("duplicates counted %v, want at least 8", v)
	}
	// Expiry: ids older than the retention go; a later redelivery runs again.
	now = now.Add(2 * time.Hour)
	if n, err := in.Cleanup(t.Context()); err != nil || n != 3 {
		t.Fatalf("cleanup deleted %d (%v), want the 3 ids recorded at the old time", n, err)
	}
	if !apply("e1") {
		t.Fatal("an expired id is processed again")
	}
}

// A sink that fails everything is down, not poisoned: no aggregate is
// blocked or parked, the relay says it is not ready, and once the sink is
// back everything goes in order.
func TestSinkDownPausesWithoutBlocking(t *testing.T) {
	t.Parallel()
	for _, mode := range []outbox.Mode{outbox.ModeTable, outbox.ModeMessage} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			db := migrated(t)
			set := metrics.NewSet()
			check := queuecheck.New()
			rec := &recorder{check: check}
			relay := startRelay(t, outbox.RelayConfig{Mode: mode, ConnString: db.URL, Sink: rec, Metrics: set})
			rec.setReject(func(cloudevent.Event) bool { return true })
			w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
			for n := range 5 {
				var events []outbox.Event
				for agg := range 6 {
					events = append(events, ev("order", fmt.Sprint(agg), n))
				}
				for i, id := range enqueue(t, db.Pool, w, events...) {
					check.Ack("order/"+fmt.Sprint(i), id, n)
				}
			}
			if mode == outbox.ModeTable {
				waitFor(t, 10*time.Second, "not ready", func() bool { return relay.Ready() != nil })
			}
			waitFor(t, 10*time.Second, "retries", func() bool {
				v, _ := metricstest.Value(t, set, "ficus_outbox_retries_total")
				return v >= 2
			})
			for _, name := range []string{"ficus_outbox_blocked_aggregates", "ficus_outbox_parked_events_total"} {
				if v, _ := metricstest.Value(t, set, name); v != 0 {
					t.Errorf("%s = %v while the sink is down, want 0", name, v)
				}
			}
			rec.setReject(nil)
			waitFor(t, 30*time.Second, "every event", func() bool { return check.Delivered() == 30 })
			if r := check.Result(); !r.Valid() {
				t.Fatal(r)
			}
			waitFor(t, 10*time.Second, "ready", func() bool { return relay.Ready() == nil })
		})
	}
}

// A role with no privilege but USAGE on the schema can emit (message
// mode) through the SQL function.
func TestEmitNeedsNoPrivilege(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	role := db.Role(t, "LOGIN PASSWORD 'pw'")
	if _, err := db.Pool.Exec(t.Context(), "GRANT USAGE ON SCHEMA ficus TO "+role); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, "pw"
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var id string
	if err := conn.QueryRow(t.Context(), `SELECT ficus.outbox_emit('order', '1', 'order.created', '{}', id => 'fixed-id')`).Scan(&id); err != nil || id != "fixed-id" {
		t.Fatalf("outbox_emit as %s: %q, %v", role, id, err)
	}
	w, _ := outbox.NewWriter(outbox.WriterConfig{})
	err = pgx.BeginFunc(t.Context(), conn, func(tx pgx.Tx) error {
		_, err := w.Enqueue(t.Context(), tx, ev("order", "1", 1))
		return err
	})
	if err != nil {
		t.Fatalf("Enqueue as %s: %v", role, err)
	}
}

// Events enqueued in a savepoint that rolls back are never delivered; a
// transaction large enough for the server to stream it before it commits
// (beyond logical_decoding_work_mem, lowered here to 64kB) delivers all
// its events, in order.
func TestSavepointsAndLargeTransactions(t *testing.T) {
	t.Parallel()
	for _, mode := range []outbox.Mode{outbox.ModeTable, outbox.ModeMessage} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			db := migrated(t)
			if _, err := db.Pool.Exec(t.Context(), "ALTER DATABASE "+db.Name+" SET logical_decoding_work_mem = '64kB'"); err != nil {
				t.Fatal(err)
			}
			check := queuecheck.New()
			rec := &recorder{check: check}
			startRelay(t, outbox.RelayConfig{Mode: mode, ConnString: db.URL, Sink: rec, BatchSize: 1000})
			w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
			const large = 3000
			var rolledBack []string
			err := pgx.BeginFunc(t.Context(), db.Pool, func(tx pgx.Tx) error {
				for n := range large {
					if n%100 == 50 {
						// A savepoint rolled back: its event must not go out.
						sp, err := tx.Begin(t.Context())
						if err != nil {
							return err
						}
						id, err := w.Enqueue(t.Context(), sp, ev("order", "x", -n))
						if err != nil {
							return err
						}
						rolledBack = append(rolledBack, id)
						if err := sp.Rollback(t.Context()); err != nil {
							return err
						}
					}
					e := ev("order", fmt.Sprint(n%7), n)
					e.Payload = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("p", 200)))
					id, err := w.Enqueue(t.Context(), tx, e)
					if err != nil {
						return err
					}
					defer check.Ack("order/"+fmt.Sprint(n%7), id, n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			last := enqueue(t, db.Pool, w, ev("order", "0", large))[0]
			check.Ack("order/0", last, large)
			waitFor(t, 60*time.Second, "every event", func() bool { return check.Delivered() >= large+1 })
			r := check.Result()
			if !r.Valid() || r.Unexpected != 0 {
				t.Fatal(r)
			}
			for _, id := range rolledBack {
				if rec.has(id) {
					t.Fatalf("event %s of a rolled-back savepoint was delivered", id)
				}
			}
			t.Log(r)
		})
	}
}

// With a retention, delivered rows are marked and deleted once they are
// older than it.
func TestTableRetention(t *testing.T) {
	t.Parallel()
	db := migrated(t)
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	rec := &recorder{}
	startRelay(t, outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL, Sink: rec, Retention: time.Hour, Now: now})
	w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	ids := enqueue(t, db.Pool, w, ev("order", "1", 1), ev("order", "2", 1))
	waitFor(t, 10*time.Second, "delivery", func() bool { return rec.has(ids[1]) })
	count := func(where string) int {
		var n int
		if err := db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM ficus.outbox WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 10*time.Second, "rows marked delivered", func() bool { return count("delivered_at IS NOT NULL") == 2 })
	offset.Store(int64(2 * time.Hour))
	waitFor(t, 10*time.Second, "rows past the retention deleted", func() bool { return count("true") == 0 })
	if got := rec.ids(); len(got) != 2 {
		t.Fatalf("delivered %v, want each event once", got)
	}
}
