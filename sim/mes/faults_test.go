package mes_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/sim/mes"
)

func TestFaultDropAnswersButDoesNotStore(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	setFaults(t, base, `{"drop_rate": 1}`)

	r := mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-lost"), http.StatusCreated)
	lost := decode[mes.Order](t, r)
	if lost.ID < 1 || lost.ClientRef != "PO-lost" || lost.Status != "new" || len(lost.Items) != 1 {
		t.Fatalf("dropped order answered as %+v, want a well-formed order", lost)
	}
	if r.header.Get("Location") == "" {
		t.Error("dropped order answered without Location")
	}

	mustSend(t, http.MethodGet, base+r.header.Get("Location"), "", http.StatusNotFound)
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusOK))
	if list.Total != 0 || len(list.Orders) != 0 {
		t.Errorf("list after a dropped order: %+v, want empty", list)
	}
	if st := stats(t, base); st.OrdersDropped != 1 || st.OrdersCreated != 0 {
		t.Errorf("stats: dropped %d created %d, want 1 and 0", st.OrdersDropped, st.OrdersCreated)
	}

	setFaults(t, base, `{"drop_rate": 0}`)
	kept := decode[mes.Order](t, mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-kept"), http.StatusCreated))
	if kept.ID == lost.ID {
		t.Errorf("kept order reuses the lost order's id %d", kept.ID)
	}
	mustSend(t, http.MethodGet, base+fmt.Sprintf("/api/v1/orders/%d", kept.ID), "", http.StatusOK)
}

func TestFaultDropRateUsesRand(t *testing.T) {
	t.Parallel()
	rolls := []float64{0.29, 0.31} // below the rate drops, at or above stores
	_, base := start(t, mes.Config{Rand: func() float64 {
		v := rolls[0]
		rolls = rolls[1:]
		return v
	}})
	setFaults(t, base, `{"drop_rate": 0.3}`)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-2"), http.StatusCreated)
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusOK))
	if list.Total != 1 || list.Orders[0].ClientRef != "PO-2" {
		t.Errorf("with rolls 0.29, 0.31 and drop_rate 0.3: %+v, want only PO-2 stored", list)
	}
}

func TestFaultErrorAnswers500AndDoesNothing(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	_, base := start(t, mes.Config{Sleep: g.Sleep})
	setFaults(t, base, `{"error_rate": 1}`)

	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusInternalServerError)
	mustSend(t, http.MethodPost, base+"/api/v1/quotes", quoteBody, http.StatusInternalServerError)
	mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusInternalServerError)
	if n := len(g.calls); n != 0 {
		t.Errorf("a failed quote started %d calculations, want none", n)
	}
	st := stats(t, base)
	if st.OrdersCreated != 0 || st.OrdersDropped != 0 || st.QuotesComputed != 0 || st.RequestsSeen != 3 {
		t.Errorf("stats after three failed requests: %+v, want 3 seen and nothing done", st)
	}

	setFaults(t, base, `{"error_rate": 0}`)
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusOK))
	if list.Total != 0 {
		t.Errorf("a 500 stored %d orders", list.Total)
	}
}

func TestFaultDownAbortsConnectionsButNotAdmin(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	setFaults(t, base, `{"down": true}`)

	r := send(t.Context(), http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"))
	if r.err == nil {
		t.Fatalf("POST to a down MES got status %d, want a connection error", r.status)
	}
	if r := send(t.Context(), http.MethodGet, base+"/api/v1/orders/1", ""); r.err == nil {
		t.Fatalf("GET from a down MES got status %d, want a connection error", r.status)
	}
	if r := send(t.Context(), http.MethodGet, base+"/api/v1/no-such-route", ""); r.err == nil {
		t.Fatalf("unknown route on a down MES got status %d, want a connection error", r.status)
	}

	if f := decode[mes.Faults](t, mustSend(t, http.MethodGet, base+"/admin/faults", "", http.StatusOK)); !f.Down {
		t.Errorf("GET /admin/faults = %+v, want down", f)
	}
	if st := stats(t, base); st.OrdersCreated != 0 || st.RequestsSeen < 3 {
		t.Errorf("stats while down: %+v, want requests seen and no orders", st)
	}

	setFaults(t, base, `{"down": false}`)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
}

func TestFaultLatencyDelaysTheAnswerAfterTheWork(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	srv, base := start(t, mes.Config{Sleep: g.Sleep})
	setFaults(t, base, `{"latency_ms": 1500}`)

	// A client that gives up while the answer is delayed...
	ctx, cancel := context.WithCancel(t.Context())
	first := async(ctx, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"))
	if d := recv(t, g.calls); d != 1500*time.Millisecond {
		t.Fatalf("answer delayed by %s, want 1.5s", d)
	}
	// ...has its order stored all the same: the delay comes after the work.
	if st := stats(t, base); st.OrdersCreated != 1 {
		t.Fatalf("while the answer is delayed: orders_created %d, want 1", st.OrdersCreated)
	}
	cancel()
	if r := recv(t, first); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("timed-out client: err %v status %d, want context.Canceled", r.err, r.status)
	}
	if err := recv(t, g.returned); !errors.Is(err, context.Canceled) {
		t.Fatalf("delay of the abandoned answer ended with %v, want context.Canceled", err)
	}

	// Its retry creates a duplicate.
	retry := async(t.Context(), http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"))
	recv(t, g.calls)
	g.release <- struct{}{}
	if r := recv(t, retry); r.status != http.StatusCreated {
		t.Fatalf("retry: status %d err %v", r.status, r.err)
	}
	st := srv.Stats()
	if st.OrdersCreated != 2 || st.DuplicateOrders != 1 || st.ClientRefsDuplicated["PO-1"] != 2 {
		t.Errorf("after a timeout and a retry: %+v, want PO-1 twice", st)
	}
	if n := len(g.calls); n != 0 {
		t.Errorf("admin requests were delayed %d times, want never", n)
	}
}

func TestAdminFaults(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	url := base + "/admin/faults"

	if f := decode[mes.Faults](t, mustSend(t, http.MethodGet, url, "", http.StatusOK)); f != (mes.Faults{}) {
		t.Errorf("initial faults %+v, want none", f)
	}
	setFaults(t, base, `{"error_rate": 0.5, "latency_ms": 200}`)
	got := setFaults(t, base, `{"down": true, "latency_ms": 0}`)
	want := mes.Faults{Down: true, ErrorRate: 0.5}
	if got != want {
		t.Errorf("after two partial updates: %+v, want %+v", got, want)
	}

	for _, tt := range []struct{ body, says string }{
		{`{"error_rate": 1.5}`, "error_rate must be between 0 and 1"},
		{`{"drop_rate": -0.1}`, "drop_rate must be between 0 and 1"},
		{`{"latency_ms": -1}`, "latency_ms must be between 0 and"},
		{`{"latency_ms": 3600001}`, "latency_ms must be between 0 and"},
		{`{"latency_ms": 1.5}`, `"latency_ms" must be an integer`},
		{`{"down": "yes"}`, `"down" must be a boolean`},
		{`{"slow": true}`, `unknown field "slow"`},
		{`{"down": true, "drop_rate": 2}`, "drop_rate"},
	} {
		r := mustSend(t, http.MethodPost, url, tt.body, http.StatusBadRequest)
		if msg := errorText(t, r); !strings.Contains(msg, tt.says) {
			t.Errorf("%s: error %q does not say %q", tt.body, msg, tt.says)
		}
	}
	if f := decode[mes.Faults](t, mustSend(t, http.MethodGet, url, "", http.StatusOK)); f != want {
		t.Errorf("rejected updates changed the faults to %+v, want %+v", f, want)
	}
}

func TestSetFaultsValidates(t *testing.T) {
	t.Parallel()
	srv, err := mes.New(mes.Config{Models: newModels(t), Estimator: volumeEstimator{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetFaults(mes.Faults{DropRate: 1.01}); !errors.Is(err, mes.ErrInvalidFaults) {
		t.Errorf("SetFaults with drop_rate 1.01: err %v, want ErrInvalidFaults", err)
	}
	want := mes.Faults{LatencyMS: 10, ErrorRate: 0.1, DropRate: 1}
	if err := srv.SetFaults(want); err != nil {
		t.Fatalf("SetFaults(%+v): %v", want, err)
	}
	if got := srv.Faults(); got != want {
		t.Errorf("Faults() = %+v, want %+v", got, want)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
	mustSend(t, http.MethodPost, base+"/api/v1/quotes", quoteBody, http.StatusOK)
	setFaults(t, base, `{"drop_rate": 1, "latency_ms": 5}`)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-2"), http.StatusCreated)

	after := decode[mes.Stats](t, mustSend(t, http.MethodPost, base+"/admin/reset", "", http.StatusOK))
	want := mes.Stats{ClientRefsDuplicated: map[string]int64{}}
	if !reflect.DeepEqual(after, want) {
		t.Errorf("stats after reset: %+v, want zero", after)
	}
	if f := decode[mes.Faults](t, mustSend(t, http.MethodGet, base+"/admin/faults", "", http.StatusOK)); f != (mes.Faults{}) {
		t.Errorf("faults after reset: %+v, want none", f)
	}
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusOK))
	if list.Total != 0 {
		t.Errorf("%d orders after reset, want 0", list.Total)
	}
	if o := decode[mes.Order](t, mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)); o.ID != 1 {
		t.Errorf("first order after reset has id %d, want 1", o.ID)
	}
}
