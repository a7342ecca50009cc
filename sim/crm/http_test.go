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
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
)

// rowEvent is a row-change event as ficus cdc sends it; id is any JSON value
// for the order id.
func rowEvent(eventID, table, op string, orderID any, status string) cloudevent.Event {
	data, err := json.Marshal(map[string]any{
		"op": op, "table": table,
		"new": map[string]any{"id": orderID, "status": status, "total": "12.50"},
	})
	if err != nil {
		panic(err)
	}
	return cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion, ID: eventID, Source: "ficus://cdc/shop",
		Type: "dev.ficus.cdc.row.v1", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		DataContentType: "application/json", Data: data,
	}
}

func newWebhook(t *testing.T) (*crm.CRM, http.Handler) {
	t.Helper()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, c.Handler()
}

// post sends body to POST /events and returns the status and the body.
func post(t *testing.T, h http.Handler, contentType string, body []byte) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

func TestWebhookDuplicateRedelivery(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	first := mustJSON(t, rowEvent("e1", "shop.orders", "insert", 7, "new"))
	for i := range 2 {
		if code, body := post(t, h, cloudevent.ContentType, first); code != http.StatusOK {
			t.Fatalf("delivery %d: status %d: %s", i, code, body)
		}
	}
	// The same id from another source is another event.
	other := rowEvent("e1", "shop.orders", "update", 7, "priced")
	other.Source = "ficus://cdc/other"
	if code, body := post(t, h, "application/json", mustJSON(t, other)); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	want := crm.Stats{Mode: crm.ModeWebhook, Received: 3, Unique: 2, Duplicates: 1, OrdersTracked: 1, Transitions: 1}
	if got := c.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	hist, _ := c.Tracker().Order(7)
	if len(hist.History) != 2 || hist.Repeats != 0 {
		t.Errorf("history = %+v, want new then priced with no repeat", hist)
	}
}

func TestWebhookBatch(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	batch := []cloudevent.Event{
		rowEvent("1", "shop.orders", "insert", 1, "new"),
		rowEvent("2", "shop.orders", "update", "1", "priced"), // id as pgoutput text
		rowEvent("3", "shop.customers", "insert", 5, "whatever"),
		rowEvent("4", "shop.orders", "update", 1, "shipped"),
		rowEvent("2", "shop.orders", "update", 1, "priced"), // redelivered inside the batch
		rowEvent("5", "shop.orders", "delete", 1, "shipped"),
	}
	code, body := post(t, h, cloudevent.BatchContentType, mustJSON(t, batch))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var rc struct{ Received, Duplicates, Tracked int }
	if err := json.Unmarshal([]byte(body), &rc); err != nil {
		t.Fatalf("receipt %q: %v", body, err)
	}
	if rc.Received != 6 || rc.Duplicates != 1 || rc.Tracked != 3 {
		t.Errorf("receipt = %+v, want 6 received, 1 duplicate, 3 tracked", rc)
	}
	want := crm.Stats{
		Mode: crm.ModeWebhook, Received: 6, Unique: 5, Duplicates: 1, OrdersTracked: 1,
		Transitions: 2, Gaps: 1, MissedStatuses: 2,
	}
	if got := c.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// A row a snapshot delivered (op read) is tracked like an insert.
func TestWebhookTracksSnapshotReads(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	code, body := post(t, h, cloudevent.BatchContentType, mustJSON(t, []cloudevent.Event{
		rowEvent("1", "shop.orders", "read", 9, "paid"),
		rowEvent("2", "shop.orders", "update", 9, "shipped"),
	}))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if st := c.Stats(); st.OrdersTracked != 1 || st.Unique != 2 {
		t.Errorf("Stats = %+v, want one order tracked from its read event", st)
	}
}

func TestWebhookRejects(t *testing.T) {
	t.Parallel()
	valid := mustJSON(t, rowEvent("1", "shop.orders", "insert", 1, "new"))
	event := func(data string) []byte {
		return []byte(`{"specversion":"1.0","id":"x","source":"/s","type":"t","data":` + data + `}`)
	}
	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantCode    int
		wantDetail  string
	}{
		{"not JSON", cloudevent.ContentType, []byte(`{"specversion":`), http.StatusBadRequest, "malformed JSON"},
		{"missing id", cloudevent.ContentType, []byte(`{"specversion":"1.0","source":"/s","type":"t"}`), http.StatusBadRequest, "missing required attribute id"},
		{"array sent as one event", cloudevent.ContentType, []byte(`[` + string(valid) + `]`), http.StatusBadRequest, "JSON object"},
		{"object sent as a batch", cloudevent.BatchContentType, valid, http.StatusBadRequest, "JSON array"},
		{"bad event in a batch", cloudevent.BatchContentType, []byte(`[` + string(valid) + `,{}]`), http.StatusBadRequest, "batch event 1"},
		{"order without id", cloudevent.ContentType, event(`{"op":"insert","table":"shop.orders","new":{"status":"new"}}`), http.StatusBadRequest, "data.new.id"},
		{"order with fractional id", cloudevent.ContentType, event(`{"op":"insert","table":"shop.orders","new":{"id":1.5,"status":"new"}}`), http.StatusBadRequest, "data.new.id"},
		{"order without status", cloudevent.ContentType, event(`{"op":"update","table":"shop.orders","new":{"id":1}}`), http.StatusBadRequest, "data.new.status"},
		{"order without new", cloudevent.ContentType, event(`{"op":"update","table":"shop.orders"}`), http.StatusBadRequest, "data.new must be"},
		{"unknown op", cloudevent.ContentType, event(`{"op":"upsert","table":"shop.orders","new":{"id":1,"status":"new"}}`), http.StatusBadRequest, "data.op"},
		{"numeric table", cloudevent.ContentType, event(`{"op":"insert","table":1}`), http.StatusBadRequest, "data.table"},
		{"text/plain", "text/plain", valid, http.StatusUnsupportedMediaType, "application/cloudevents+json"},
		{"no content type", "", valid, http.StatusUnsupportedMediaType, "Content-Type"},
		{"oversized", cloudevent.ContentType, append(bytes.Repeat([]byte(" "), 64<<10), valid...), http.StatusRequestEntityTooLarge, "exceeds 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, h := newWebhook(t)
			code, body := post(t, h, tt.contentType, tt.body)
			if code != tt.wantCode {
				t.Fatalf("status = %d, want %d; body %s", code, tt.wantCode, body)
			}
			var problem struct {
				Status int
				Detail string
			}
			if err := json.Unmarshal([]byte(body), &problem); err != nil || problem.Status != code {
				t.Fatalf("body %q is not a problem document for %d: %v", body, code, err)
			}
			if !strings.Contains(problem.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to mention %q", problem.Detail, tt.wantDetail)
			}
			if got := c.Stats(); got != (crm.Stats{Mode: crm.ModeWebhook}) {
				t.Errorf("a rejected body changed Stats: %+v", got)
			}
		})
	}
}

func TestWebhookRejectedBatchRecordsNothing(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	good := rowEvent("1", "shop.orders", "insert", 1, "new")
	bad := rowEvent("2", "shop.orders", "update", "one", "priced")
	if code, body := post(t, h, cloudevent.BatchContentType, mustJSON(t, []cloudevent.Event{good, bad})); code != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400: %s", code, body)
	}
	// The sender retries the corrected batch: the good event must not count
	// as a duplicate of the rejected delivery.
	bad = rowEvent("2", "shop.orders", "update", 1, "priced")
	if code, body := post(t, h, cloudevent.BatchContentType, mustJSON(t, []cloudevent.Event{good, bad})); code != http.StatusOK {
		t.Fatalf("status = %d: %s", code, body)
	}
	if got := c.Stats(); got.Unique != 2 || got.Duplicates != 0 || got.Transitions != 1 {
		t.Errorf("Stats = %+v, want 2 unique, no duplicate, 1 transition", got)
	}
}

func TestWebhookUntrackedEvents(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	bodies := []string{
		`{"specversion":"1.0","id":"a","source":"/s","type":"t"}`,
		`{"specversion":"1.0","id":"b","source":"/s","type":"t","data":[1,2]}`,
		`{"specversion":"1.0","id":"c","source":"/s","type":"t","data":{"hello":"world"}}`,
		`{"specversion":"1.0","id":"d","source":"/s","type":"t","datacontenttype":"text/plain","data":"{\"table\":\"shop.orders\"}"}`,
		`{"specversion":"1.0","id":"e","source":"/s","type":"t","data":{"op":"truncate","table":"shop.orders"}}`,
	}
	for _, b := range bodies {
		if code, resp := post(t, h, cloudevent.ContentType, []byte(b)); code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", b, code, resp)
		}
	}
	if got := c.Stats(); got.Received != 5 || got.Unique != 5 || got.OrdersTracked != 0 {
		t.Errorf("Stats = %+v, want 5 received and nothing tracked", got)
	}
}

func TestPollModeRefusesEvents(t *testing.T) {
	t.Parallel()
	c, err := crm.New(crm.Config{Mode: crm.ModePoll, Pool: dummyPool(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	code, body := post(t, c.Handler(), cloudevent.ContentType, mustJSON(t, rowEvent("1", "shop.orders", "insert", 1, "new")))
	if code != http.StatusNotFound || !strings.Contains(body, "webhook mode") {
		t.Errorf("status %d, body %s; want 404 naming webhook mode", code, body)
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	c, h := newWebhook(t)
	events := []cloudevent.Event{
		rowEvent("1", "shop.orders", "insert", 42, "new"),
		rowEvent("2", "shop.orders", "update", 42, "paid"),
	}
	if code, body := post(t, h, cloudevent.BatchContentType, mustJSON(t, events)); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}

	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get("/admin/stats")
	if code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, body)
	}
	var stats map[string]any
	if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatalf("stats %s: %v", body, err)
	}
	wantStats := map[string]any{
		"mode": "webhook", "received": 2.0, "unique": 2.0, "duplicates": 0.0, "orders_tracked": 1.0,
		"transitions": 1.0, "gaps": 1.0, "missed_statuses": 1.0, "out_of_order": 0.0, "polls": 0.0,
	}
	if !reflect.DeepEqual(stats, wantStats) {
		t.Errorf("stats = %v\nwant %v", stats, wantStats)
	}

	code, body = get("/admin/orders/42")
	if code != http.StatusOK {
		t.Fatalf("order: %d %s", code, body)
	}
	var order struct {
		ID      int64
		History []struct {
			Status     string
			ChangedAt  time.Time `json:"changed_at"`
			ObservedAt time.Time `json:"observed_at"`
			Missed     []string
		}
	}
	if err := json.Unmarshal([]byte(body), &order); err != nil {
		t.Fatalf("order %s: %v", body, err)
	}
	if order.ID != 42 || len(order.History) != 2 || order.History[1].Status != "paid" ||
		!reflect.DeepEqual(order.History[1].Missed, []string{"priced"}) || order.History[1].ChangedAt.IsZero() {
		t.Errorf("order = %s", body)
	}

	if code, _ := get("/admin/orders/43"); code != http.StatusNotFound {
		t.Errorf("unknown order: status %d, want 404", code)
	}
	if code, _ := get("/admin/orders/abc"); code != http.StatusBadRequest {
		t.Errorf("bad order id: status %d, want 400", code)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/admin/reset", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("reset: status %d", rec.Code)
	}
	if got := c.Stats(); got != (crm.Stats{Mode: crm.ModeWebhook}) {
		t.Errorf("Stats after reset = %+v", got)
	}
	// After a reset the same event counts as new again.
	if code, body := post(t, h, cloudevent.ContentType, mustJSON(t, events[0])); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := c.Stats(); got.Unique != 1 || got.Duplicates != 0 {
		t.Errorf("Stats after reset and one event = %+v", got)
	}
}

func TestWebhookMetrics(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, Metrics: set})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := c.Handler()
	events := []cloudevent.Event{
		rowEvent("1", "shop.orders", "insert", 1, "new"),
		rowEvent("2", "shop.orders", "update", 1, "paid"),
		rowEvent("3", "shop.orders", "update", 1, "priced"),
		rowEvent("3", "shop.orders", "update", 1, "priced"),
	}
	post(t, h, cloudevent.BatchContentType, mustJSON(t, events))
	post(t, h, "text/plain", nil)
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, line := range []string{
		"ficus_sim_crm_events_received_total 4",
		"ficus_sim_crm_events_unique_total 3",
		"ficus_sim_crm_events_duplicate_total 1",
		"ficus_sim_crm_requests_rejected_total 1",
		"ficus_sim_crm_transitions_total 2",
		"ficus_sim_crm_gaps_total 1",
		"ficus_sim_crm_missed_statuses_total 1",
		"ficus_sim_crm_out_of_order_total 1",
	} {
		if !strings.Contains(buf.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, buf.String())
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  crm.Config
		want error
	}{
		{"poll without pool", crm.Config{}, crm.ErrNoPool},
		{"unknown mode", crm.Config{Mode: "push"}, crm.ErrInvalidConfig},
		{"negative interval", crm.Config{Mode: crm.ModeWebhook, Interval: -time.Second}, crm.ErrInvalidConfig},
		{"negative body limit", crm.Config{Mode: crm.ModeWebhook, MaxBodyBytes: -1}, crm.ErrInvalidConfig},
		{"negative dedup capacity", crm.Config{Mode: crm.ModeWebhook, DedupCapacity: -1}, crm.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := crm.New(tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("New error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDedupForgetsOldestBeyondCapacity(t *testing.T) {
	t.Parallel()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, DedupCapacity: 2})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := c.Handler()
	for _, id := range []string{"a", "b", "c", "b", "a"} {
		body := []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/s","type":"t"}`, id))
		if code, resp := post(t, h, cloudevent.ContentType, body); code != http.StatusOK {
			t.Fatalf("status %d: %s", code, resp)
		}
	}
	// a, b, c are new; b is remembered; a was forgotten when c came.
	if got := c.Stats(); got.Unique != 4 || got.Duplicates != 1 {
		t.Errorf("Stats = %+v, want 4 unique and 1 duplicate", got)
	}
}

func TestRunWebhookWaitsForContext(t *testing.T) {
	t.Parallel()
	c, _ := newWebhook(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil at context end", err)
	}
	if err := c.PollOnce(t.Context()); !errors.Is(err, crm.ErrNotPollMode) {
		t.Errorf("PollOnce in webhook mode = %v, want ErrNotPollMode", err)
	}
}

// FuzzEvents feeds arbitrary bodies to POST /events: the handler answers 200
// or 400 (never panics, never 5xx), a 200 counts exactly the events the
// body holds, and a 400 records nothing.
func FuzzEvents(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"op":"insert","table":"shop.orders","new":{"id":1,"status":"new"}}}`), false)
	f.Add([]byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"op":"update","table":"shop.orders","new":{"id":"2","status":"paid"}}},{"specversion":"1.0","id":"1","source":"/s","type":"t"}]`), true)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"op":"insert","table":"shop.orders","new":{"id":1e3}}}`), false)
	f.Add([]byte(`[]`), true)
	f.Add([]byte(`nope`), false)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, MaxBodyBytes: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		ct := cloudevent.ContentType
		if batch {
			ct = cloudevent.BatchContentType
		}
		code, resp := post(t, c.Handler(), ct, body)
		stats := c.Stats()
		switch code {
		case http.StatusOK:
			want := 1
			if batch {
				events, err := cloudevent.ParseBatch(body)
				if err != nil {
					t.Fatalf("200 for a batch ParseBatch rejects: %v", err)
				}
				want = len(events)
			} else if _, err := cloudevent.Parse(body); err != nil {
				t.Fatalf("200 for an event Parse rejects: %v", err)
			}
			if stats.Received != want || stats.Unique+stats.Duplicates != want {
				t.Fatalf("Stats = %+v after a body of %d events", stats, want)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if stats != (crm.Stats{Mode: crm.ModeWebhook}) {
				t.Fatalf("a rejected body changed Stats: %+v", stats)
			}
		default:
			t.Fatalf("status %d: %s", code, resp)
		}
	})
}
