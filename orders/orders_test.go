package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/orders"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const feed = "ficus-cdc://shop/test"

// clock is a settable now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// world is a view database with a sink and a view over it.
type world struct {
	t     *testing.T
	db    *pgtest.DB
	sink  *orders.Sink
	view  *orders.View
	clock *clock
	lsn   pglogrepl.LSN
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db := pgtest.New(t)
	if _, err := migrate.Up(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	s, err := orders.NewSink(db.Pool, orders.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	v, err := orders.NewView(db.Pool, orders.Config{}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, db: db, sink: s, view: v, clock: c, lsn: 0x1000}
}

// commit delivers one transaction of changes, committed at the clock's
// time, and returns its events.
func (w *world) commit(changes ...cdc.Change) []cloudevent.Event {
	w.t.Helper()
	w.lsn += 0x100
	tx := cdc.Tx{XID: uint32(w.lsn), CommitLSN: w.lsn, CommitTime: w.clock.t}
	for i, c := range changes {
		c.XID, c.CommitLSN, c.CommitTime, c.Position = tx.XID, tx.CommitLSN, tx.CommitTime, i
		tx.Changes = append(tx.Changes, c)
	}
	events, err := tx.Events(feed)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.sink.Send(w.t.Context(), events); err != nil {
		w.t.Fatal(err)
	}
	return events
}

func shopOrder(op string, id int64, status string, created, promised time.Time) cdc.Change {
	return cdc.Change{Op: op, Schema: "shop", Table: "orders", Key: map[string]any{"id": id},
		New: map[string]any{"id": id, "customer_id": int64(7), "status": status, "total": "10.00",
			"created_at": created, "updated_at": created, "promised_at": promised}}
}

func mesOrder(op string, id int64, ref, status string, created time.Time) cdc.Change {
	return cdc.Change{Op: op, Schema: "mes", Table: "orders", Key: map[string]any{"id": id},
		New: map[string]any{"id": id, "client_ref": ref, "customer": "acme", "status": status,
			"items":      []any{map[string]any{"model_url": "models/a.stl", "material": "PLA", "quantity": int64(2)}},
			"created_at": created.Truncate(time.Second), "updated_at": created}}
}

func TestRedeliveredEventsTakeEffectOnce(t *testing.T) {
	w := newWorld(t)
	now := w.clock.t
	first := w.commit(mesOrder("insert", 1, "s1", "new", now), mesOrder("insert", 2, "s2", "new", now))
	second := w.commit(mesOrder("update", 1, "s1", "scheduled", now))
	// A crash before the slot was confirmed: both come again, in one batch.
	if err := w.sink.Send(t.Context(), append(first, second...)); err != nil {
		t.Fatal(err)
	}
	h, err := w.view.History(t.Context(), "mes", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Status != "new" || h[1].Status != "scheduled" {
		t.Fatalf("history of order 1 = %+v, want new then scheduled once each", h)
	}
	p, err := w.view.List(t.Context(), orders.ListQuery{Source: "mes", Status: "new", PerPage: 10})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 1 || len(p.Orders) != 1 || p.Orders[0].ID != 2 {
		t.Fatalf("new orders = %+v (total %d), want order 2 alone", p.Orders, p.Total)
	}
}

func TestListPagesByOffsetAndByCursorAlike(t *testing.T) {
	w := newWorld(t)
	var changes []cdc.Change
	for id := int64(1); id <= 23; id++ {
		status := "new"
		if id%3 == 0 {
			status = "printing"
		}
		changes = append(changes, mesOrder("insert", id, fmt.Sprint(100+id), status, w.clock.t))
	}
	w.commit(changes...)
	w.commit(cdc.Change{Op: "delete", Schema: "mes", Table: "orders", Key: map[string]any{"id": int64(5)}, Old: map[string]any{"id": int64(5)}})
	for _, status := range []string{"", "new", "printing"} {
		var byOffset, byCursor []int64
		var total int64
		for page := 1; ; page++ {
			p, err := w.view.List(t.Context(), orders.ListQuery{Source: "mes", Status: status, Page: page, PerPage: 4})
			if err != nil {
				t.Fatal(err)
			}
			total = p.Total
			if len(p.Orders) == 0 {
				break
			}
			for _, o := range p.Orders {
				byOffset = append(byOffset, o.ID)
			}
		}
		cursor := ""
		for {
			p, err := w.view.List(t.Context(), orders.ListQuery{Source: "mes", Status: status, PerPage: 4, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range p.Orders {
				byCursor = append(byCursor, o.ID)
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
		want := []int64{}
		for id := int64(23); id >= 1; id-- {
			if id == 5 || (status == "new" && id%3 == 0) || (status == "printing" && id%3 != 0) {
				continue
			}
			want = append(want, id)
		}
		if fmt.Sprint(byOffset) != fmt.Sprint(want) || fmt.Sprint(byCursor) != fmt.Sprint(want) {
			t.Errorf("status %q: by offset %v, by cursor %v, want %v", status, byOffset, byCursor, want)
		}
		if total != int64(len(want)) {
			t.Errorf("status %q: total %d, want %d", status, total, len(want))
		}
	}
	if _, err := w.view.List(t.Context(), orders.ListQuery{Source: "mes", PerPage: 4, Cursor: "bogus"}); err == nil {
		t.Error("a cursor the view never gave was accepted")
	}
}

func TestOverdueFiresOnInjectedCasesOnly(t *testing.T) {
	w := newWorld(t)
	day := 24 * time.Hour
	t0 := w.clock.t
	w.commit(
		shopOrder("insert", 1, "paid", t0, t0.Add(21*day)),          // on time
		shopOrder("insert", 2, "in_production", t0, t0.Add(10*day)), // will be past its date
		shopOrder("insert", 3, "shipped", t0, t0.Add(10*day)),       // final: never overdue
		shopOrder("insert", 4, "new", t0, t0.Add(30*day)),           // will sit in "new" too long
	)
	w.clock.t = t0.Add(12 * time.Hour)
	w.commit(shopOrder("update", 4, "new", t0, t0.Add(30*day))) // same status: its clock keeps running
	list, err := w.view.Overdue(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("overdue after 12h = %+v, want none", list)
	}
	w.clock.t = t0.Add(11 * day)
	list, err = w.view.Overdue(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for _, o := range list {
		got[o.ID] = o.Reason
	}
	if len(got) != 2 || got[2] != "promised" || got[4] != "status" {
		t.Fatalf("overdue after 11 days = %v, want order 2 past its date and order 4 too long new", got)
	}
}

func TestDriftIsCaughtAfterTheGraceOnly(t *testing.T) {
	w := newWorld(t)
	t0 := w.clock.t
	promised := t0.Add(21 * 24 * time.Hour)
	w.commit(shopOrder("insert", 1, "paid", t0, promised), shopOrder("insert", 2, "paid", t0, promised),
		shopOrder("insert", 3, "new", t0, promised))
	w.commit(mesOrder("insert", 10, "1", "new", t0), mesOrder("insert", 11, "2", "new", t0))
	// The MES moves order 10 to production; the shop hears of it. Order
	// 11 ships, and the shop never hears: drift. Shop order 3 never
	// reaches the MES: missing.
	w.clock.t = t0.Add(time.Minute)
	w.commit(mesOrder("update", 10, "1", "printing", t0), mesOrder("update", 11, "2", "shipped", t0))
	w.commit(shopOrder("update", 1, "in_production", t0, promised))
	w.clock.t = t0.Add(3 * time.Minute)
	if d, err := w.view.Drift(t.Context(), 10); err != nil || len(d) != 0 {
		t.Fatalf("drift within the grace = %+v, %v; want none", d, err)
	}
	w.clock.t = t0.Add(10 * time.Minute)
	d, err := w.view.Drift(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range d {
		got[x.Ref] = x.Kind
	}
	if len(got) != 2 || got["2"] != "status" || got["3"] != "missing" {
		t.Fatalf("drift = %v, want shop order 2 (status) and 3 (missing)", got)
	}
	for _, x := range d {
		if x.Ref == "2" && (len(x.MirrorHistory) != 2 || x.MirrorHistory[1].Status != "shipped" || len(x.ReferenceHistory) != 1) {
			t.Errorf("histories of order 2: shop %+v, MES %+v", x.ReferenceHistory, x.MirrorHistory)
		}
	}
}

func TestHandlerAnswersInTheMESsShape(t *testing.T) {
	w := newWorld(t)
	created := time.Date(2026, 3, 1, 10, 14, 40, 500_000_000, time.UTC)
	w.commit(mesOrder("insert", 1, "s1", "new", created), mesOrder("insert", 2, "s2", "printing", created))
	srv := httptest.NewServer(orders.NewHandler(w.view, nil))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	code, body := get("/api/v1/orders?status=new")
	want := `{"orders":[{"id":1,"client_ref":"s1","customer":"acme","items":[{"material":"PLA","model_url":"models/a.stl","quantity":2}],"status":"new","created_at":"2026-03-01T10:14:40Z"}],"page":1,"per_page":50,"total":1}`
	var gotJSON, wantJSON any
	if err := json.Unmarshal([]byte(body), &gotJSON); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &wantJSON); err != nil {
		t.Fatal(err)
	}
	if code != 200 || !reflect.DeepEqual(gotJSON, wantJSON) {
		t.Errorf("list = %d %s\nwant %s", code, body, want)
	}
	code, body = get("/api/v1/orders?per_page=1&cursor=")
	var l orders.MESList
	if err := json.Unmarshal([]byte(body), &l); err != nil || code != 200 || len(l.Orders) != 1 || l.Orders[0].ID != 2 || l.NextCursor == nil || *l.NextCursor == "" {
		t.Fatalf("cursor list = %d %s", code, body)
	}
	code, body = get("/api/v1/orders?per_page=1&cursor=" + *l.NextCursor)
	if err := json.Unmarshal([]byte(body), &l); err != nil || len(l.Orders) != 1 || l.Orders[0].ID != 1 || *l.NextCursor != "" {
		t.Fatalf("second cursor page = %d %s", code, body)
	}
	for path, status := range map[string]int{
		"/api/v1/orders/2": 200, "/api/v1/orders/9": 404, "/api/v1/orders/x": 400,
		"/api/v1/orders?per_page=501": 400, "/api/v1/orders?page=0": 400, "/api/v1/overdue": 200,
		"/api/v1/drift?limit=0": 400, "/": 200, "/?tab=drift": 200, "/?tab=overdue": 200, "/?tab=nope": 404,
	} {
		if code, body := get(path); code != status {
			t.Errorf("GET %s = %d %s, want %d", path, code, body, status)
		}
	}
}

func TestBadEventsApplyNothing(t *testing.T) {
	w := newWorld(t)
	good := w.commit(mesOrder("insert", 1, "s1", "new", w.clock.t))
	bad := mesOrder("insert", 2, "s2", "new", w.clock.t)
	delete(bad.New, "status")
	w.lsn += 0x100
	tx := cdc.Tx{XID: 9, CommitLSN: w.lsn, CommitTime: w.clock.t, Changes: []cdc.Change{mesOrder("insert", 3, "s3", "new", w.clock.t), bad}}
	for i := range tx.Changes {
		tx.Changes[i].CommitLSN, tx.Changes[i].Position = tx.CommitLSN, i
	}
	events, err := tx.Events(feed)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.sink.Send(context.Background(), events); !errors.Is(err, orders.ErrBadEvent) {
		t.Fatalf("Send of a row without its status = %v, want ErrBadEvent", err)
	}
	p, err := w.view.List(t.Context(), orders.ListQuery{Source: "mes", PerPage: 10})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 1 || len(p.Orders) != 1 {
		t.Fatalf("after a failed batch: %d orders (total %d), want the 1 of the good one", len(p.Orders), p.Total)
	}
	_ = good
}
