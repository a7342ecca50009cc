package crm_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
)

func getEvents(t *testing.T, h http.Handler, query string) (int, crm.EventsPage) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/events"+query, nil))
	var p crm.EventsPage
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("GET /admin/events%s: %v: %s", query, err, rec.Body)
		}
	}
	return rec.Code, p
}

func TestEventLogListsArrivalsWithDuplicates(t *testing.T) {
	t.Parallel()
	_, h := newWebhook(t)
	for _, e := range []cloudevent.Event{
		rowEvent("e1", "shop.orders", "insert", 7, "new"),
		rowEvent("e2", "shop.orders", "update", "7", "priced"),
		rowEvent("e1", "shop.orders", "insert", 7, "new"), // redelivered
		rowEvent("e3", "shop.customers", "insert", 1, "x"),
	} {
		if code, body := post(t, h, cloudevent.ContentType, mustJSON(t, e)); code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", e.ID, code, body)
		}
	}
	code, p := getEvents(t, h, "")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	want := []crm.ReceivedEvent{
		{Seq: 1, Source: "ficus://cdc/shop", ID: "e1", OrderID: 7, Status: "new"},
		{Seq: 2, Source: "ficus://cdc/shop", ID: "e2", OrderID: 7, Status: "priced"},
		{Seq: 3, Source: "ficus://cdc/shop", ID: "e1", OrderID: 7, Status: "new", Duplicate: true},
		{Seq: 4, Source: "ficus://cdc/shop", ID: "e3"},
	}
	if len(p.Events) != len(want) || p.Next != 4 || p.Forgotten != 0 {
		t.Fatalf("page %+v, want %d events, next 4", p, len(want))
	}
	for i := range want {
		if p.Events[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, p.Events[i], want[i])
		}
	}
	// Paging: after and limit.
	_, p = getEvents(t, h, "?after=1&limit=2")
	if len(p.Events) != 2 || p.Events[0].Seq != 2 || p.Events[1].Seq != 3 || p.Next != 3 {
		t.Fatalf("after=1&limit=2: %+v", p)
	}
	_, p = getEvents(t, h, "?after=4")
	if len(p.Events) != 0 || p.Next != 4 {
		t.Fatalf("after=4: %+v, want nothing and next 4", p)
	}
	for _, q := range []string{"?after=-1", "?after=x", "?limit=0", "?limit=10001", "?limit=y"} {
		if code, _ := getEvents(t, h, q); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
}

func TestEventLogKeepsTheNewest(t *testing.T) {
	t.Parallel()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook, EventLogCapacity: 3})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler()
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		if code, body := post(t, h, cloudevent.ContentType, mustJSON(t, rowEvent(id, "shop.orders", "update", i+1, "paid"))); code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", id, code, body)
		}
	}
	_, p := getEvents(t, h, "")
	if p.Forgotten != 2 || len(p.Events) != 3 || p.Events[0].ID != "c" || p.Events[2].ID != "e" || p.Next != 5 {
		t.Fatalf("page %+v, want c, d, e with 2 forgotten", p)
	}
	_, p = getEvents(t, h, "?after=3&limit=1")
	if len(p.Events) != 1 || p.Events[0].ID != "d" || p.Next != 4 {
		t.Fatalf("after=3&limit=1: %+v, want d", p)
	}
	c.Reset()
	if _, p = getEvents(t, h, ""); len(p.Events) != 0 || p.Forgotten != 0 || p.Next != 0 {
		t.Fatalf("after Reset: %+v, want an empty log", p)
	}
	if _, err := crm.New(crm.Config{Mode: crm.ModeWebhook, EventLogCapacity: -1}); err == nil {
		t.Fatal("New accepted EventLogCapacity -1")
	}
}
