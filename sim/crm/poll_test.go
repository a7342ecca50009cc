package crm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/shop"
)

// orderRow is a shop.orders row as a statement returned it.
type orderRow struct {
	ID        int64
	Status    string
	UpdatedAt time.Time
}

// shopDB is a fresh database with the shop schema and one customer.
type shopDB struct {
	pool     *pgxpool.Pool
	customer int64
}

func newShopDB(t *testing.T) shopDB {
	t.Helper()
	db := pgtest.New(t)
	if err := shop.EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatalf("EnsureSchema: %v", err)
	}
	s := shopDB{pool: db.Pool}
	if err := db.Pool.QueryRow(t.Context(),
		`INSERT INTO shop.customers (email, name) VALUES ('ada@example.com', 'Ada') RETURNING id`).Scan(&s.customer); err != nil {
		t.Fatalf("insert customer: %v", err)
	}
	return s
}

func (s shopDB) insertOrder(t *testing.T, at time.Time) orderRow {
	t.Helper()
	var r orderRow
	if err := s.pool.QueryRow(t.Context(), `
		INSERT INTO shop.orders (customer_id, status, created_at, updated_at) VALUES ($1, 'new', $2, $2)
		RETURNING id, status, updated_at`, s.customer, at).Scan(&r.ID, &r.Status, &r.UpdatedAt); err != nil {
		t.Fatalf("insert order: %v", err)
	}
	return r
}

func (s shopDB) setStatus(t *testing.T, id int64, status string, at time.Time) orderRow {
	t.Helper()
	var r orderRow
	if err := s.pool.QueryRow(t.Context(), `
		UPDATE shop.orders SET status = $2, updated_at = $3 WHERE id = $1
		RETURNING id, status, updated_at`, id, status, at).Scan(&r.ID, &r.Status, &r.UpdatedAt); err != nil {
		t.Fatalf("update order %d to %s: %v", id, status, err)
	}
	return r
}

// deliver sends a row change to a webhook CRM the way ficus cdc does: the
// order id as pgoutput's text, the commit position as the event id.
func deliver(t *testing.T, h http.Handler, position int, op string, r orderRow) {
	t.Helper()
	data, err := json.Marshal(map[string]any{
		"op": op, "table": "shop.orders",
		"new": map[string]any{"id": fmt.Sprint(r.ID), "status": r.Status, "updated_at": r.UpdatedAt},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion, ID: fmt.Sprintf("0/%X-0", position), Source: "ficus://cdc/shop",
		Type: "dev.ficus.cdc.row.v1", Subject: "shop.orders", Time: r.UpdatedAt, Data: data,
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", cloudevent.ContentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("deliver %s of order %d: status %d: %s", op, r.ID, rec.Code, rec.Body)
	}
}

func statuses(t *testing.T, c *crm.CRM, id int64) []string {
	t.Helper()
	h, ok := c.Tracker().Order(id)
	if !ok {
		t.Fatalf("order %d was never seen", id)
	}
	var out []string
	for _, s := range h.History {
		out = append(out, s.Status)
	}
	return out
}

// TestPollMissesShortLivedStatusWebhookDoesNot is the reason ficus cdc
// exists: an order that is priced and then paid between two polls is seen by
// the polling CRM as new -> paid, while the same three changes delivered as
// events are all recorded.
func TestPollMissesShortLivedStatusWebhookDoesNot(t *testing.T) {
	t.Parallel()
	db := newShopDB(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	poller, err := crm.New(crm.Config{Mode: crm.ModePoll, Pool: db.pool, Now: clock})
	if err != nil {
		t.Fatalf("New poll: %v", err)
	}
	webhook, err := crm.New(crm.Config{Mode: crm.ModeWebhook, Now: clock})
	if err != nil {
		t.Fatalf("New webhook: %v", err)
	}
	hook := webhook.Handler()
	ctx := t.Context()

	order := db.insertOrder(t, now)
	deliver(t, hook, 1, "insert", order)
	if err := poller.PollOnce(ctx); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}

	// Priced for 300ms, then paid: both within one 2s interval.
	deliver(t, hook, 2, "update", db.setStatus(t, order.ID, shop.StatusPriced, now.Add(300*time.Millisecond)))
	deliver(t, hook, 3, "update", db.setStatus(t, order.ID, shop.StatusPaid, now.Add(600*time.Millisecond)))
	now = now.Add(2 * time.Second)
	if err := poller.PollOnce(ctx); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}

	if got, want := statuses(t, poller, order.ID), []string{"new", "paid"}; !reflect.DeepEqual(got, want) {
		t.Errorf("poll history = %v, want %v", got, want)
	}
	h, _ := poller.Tracker().Order(order.ID)
	if got := h.History[1].Missed; !reflect.DeepEqual(got, []string{"priced"}) {
		t.Errorf("poll missed = %v, want [priced]", got)
	}
	if !h.History[1].ChangedAt.Equal(now.Add(-2*time.Second + 600*time.Millisecond)) {
		t.Errorf("poll ChangedAt = %s, want the row's updated_at", h.History[1].ChangedAt)
	}
	wantPoll := crm.Stats{Mode: crm.ModePoll, Received: 2, Unique: 2, OrdersTracked: 1, Transitions: 1, Gaps: 1, MissedStatuses: 1, Polls: 2}
	if got := poller.Stats(); got != wantPoll {
		t.Errorf("poll Stats = %+v, want %+v", got, wantPoll)
	}

	if got, want := statuses(t, webhook, order.ID), []string{"new", "priced", "paid"}; !reflect.DeepEqual(got, want) {
		t.Errorf("webhook history = %v, want %v", got, want)
	}
	wantHook := crm.Stats{Mode: crm.ModeWebhook, Received: 3, Unique: 3, OrdersTracked: 1, Transitions: 2}
	if got := webhook.Stats(); got != wantHook {
		t.Errorf("webhook Stats = %+v, want %+v", got, wantHook)
	}
}

func TestPollReadsOnlyNewerRowsAndCountsRepeats(t *testing.T) {
	t.Parallel()
	db := newShopDB(t)
	set := metrics.NewSet()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	poller, err := crm.New(crm.Config{Mode: crm.ModePoll, Pool: db.pool, Metrics: set, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := t.Context()
	a := db.insertOrder(t, now)
	b := db.insertOrder(t, now.Add(time.Millisecond))
	if err := poller.PollOnce(ctx); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}
	// Nothing changed: the next poll reads no row.
	if err := poller.PollOnce(ctx); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}
	if got := poller.Stats(); got.Received != 2 || got.Polls != 2 || got.OrdersTracked != 2 {
		t.Fatalf("Stats = %+v, want 2 rows over 2 polls", got)
	}
	// A change to another column moves updated_at but not the status.
	if _, err := db.pool.Exec(ctx, `UPDATE shop.orders SET note = 'gift', updated_at = $2 WHERE id = $1`, a.ID, now.Add(time.Second)); err != nil {
		t.Fatalf("update note: %v", err)
	}
	db.setStatus(t, b.ID, shop.StatusPriced, now.Add(time.Second))
	if err := poller.PollOnce(ctx); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}
	want := crm.Stats{Mode: crm.ModePoll, Received: 4, Unique: 4, OrdersTracked: 2, Transitions: 1, Polls: 3}
	if got := poller.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if h, _ := poller.Tracker().Order(a.ID); h.Repeats != 1 || len(h.History) != 1 {
		t.Errorf("order a = %+v, want one status seen twice", h)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range []string{"ficus_sim_crm_polls_total 3\n", "ficus_sim_crm_poll_rows_sum 4\n", "ficus_sim_crm_poll_rows_count 3\n", "ficus_sim_crm_poll_duration_seconds_count 3\n"} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, buf.String())
		}
	}
}

func TestPollWithoutSchemaSaysSo(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	poller, err := crm.New(crm.Config{Mode: crm.ModePoll, Pool: db.Pool})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = poller.PollOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "schema") {
		t.Errorf("PollOnce = %v, want an error that points at the schema", err)
	}
	if got := poller.Stats().Polls; got != 0 {
		t.Errorf("Polls = %d after a failed poll, want 0", got)
	}
}

func TestRunPollsEveryInterval(t *testing.T) {
	t.Parallel()
	db := newShopDB(t)
	order := db.insertOrder(t, time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var sleeps []time.Duration
	poller, err := crm.New(crm.Config{
		Mode: crm.ModePoll, Pool: db.pool, Interval: 5 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			sleeps = append(sleeps, d)
			if len(sleeps) == 3 {
				cancel()
				return ctx.Err()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := poller.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil at context end", err)
	}
	if !reflect.DeepEqual(sleeps, []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second}) {
		t.Errorf("sleeps = %v, want three of the interval", sleeps)
	}
	if got := poller.Stats(); got.Polls != 3 || got.Received != 1 {
		t.Errorf("Stats = %+v, want 3 polls that read the one order once", got)
	}
	if _, ok := poller.Tracker().Order(order.ID); !ok {
		t.Error("Run did not record the order")
	}
}

func TestRunKeepsPollingAfterErrors(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	var sleeps atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	poller, err := crm.New(crm.Config{
		Mode: crm.ModePoll, Pool: dummyPool(t), Metrics: set,
		Sleep: func(ctx context.Context, _ time.Duration) error {
			if sleeps.Add(1) == 2 {
				cancel()
				return ctx.Err()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := poller.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil at context end", err)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "ficus_sim_crm_poll_errors_total 2\n") {
		t.Errorf("want 2 poll errors, metrics:\n%s", buf.String())
	}
	if err := poller.PollOnce(t.Context()); err == nil || errors.Is(err, crm.ErrNotPollMode) {
		t.Errorf("PollOnce against no server = %v, want a connection error", err)
	}
}
