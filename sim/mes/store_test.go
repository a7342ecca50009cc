package mes_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/mes"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgMES starts an MES whose orders live in a fresh Postgres database.
func pgMES(t *testing.T, cfg mes.Config) (*mes.Server, string) {
	t.Helper()
	db := pgtest.New(t)
	if err := mes.EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	cfg.DB = db.Pool
	return start(t, cfg)
}

// The MES answers the same whether its orders are in memory or in
// Postgres: creation, reads, every list filter and page, duplicates and
// dropped orders.
func TestPostgresOrdersAnswerAsInMemory(t *testing.T) {
	rates := []float64{0.9, 0.1, 0.5, 0.95, 0.2, 0.7, 0.05, 0.6, 0.3, 0.99}
	randFor := func() func() float64 {
		i := 0
		return func() float64 { i++; return rates[i%len(rates)] }
	}
	memSrv, mem := start(t, mes.Config{Rand: randFor()})
	pgSrv, pg := pgMES(t, mes.Config{Rand: randFor()})
	for _, base := range []string{mem, pg} {
		setFaults(t, base, `{"drop_rate": 0.25}`)
		for i := range 40 {
			mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody(fmt.Sprintf("ref-%d", i%30)), http.StatusCreated)
		}
	}
	for _, path := range []string{
		"/api/v1/orders", "/api/v1/orders?per_page=7&page=3", "/api/v1/orders?status=new&per_page=5&page=2",
		"/api/v1/orders?status=shipped", "/api/v1/orders?client_ref=ref-3", "/api/v1/orders?page=100",
		"/api/v1/orders/1", "/api/v1/orders/2", "/api/v1/orders/40", "/api/v1/orders/41",
	} {
		a := send(t.Context(), http.MethodGet, mem+path, "")
		b := send(t.Context(), http.MethodGet, pg+path, "")
		if a.status != b.status || string(a.body) != string(b.body) {
			t.Errorf("GET %s: memory %d %s\npostgres %d %s", path, a.status, a.body, b.status, b.body)
		}
	}
	if a, b := memSrv.Stats(), pgSrv.Stats(); !reflect.DeepEqual(a, b) {
		t.Errorf("stats: memory %+v, postgres %+v", a, b)
	}
	pgSrv.Reset()
	if st := pgSrv.Stats(); st.OrdersCreated != 0 {
		t.Errorf("after reset %d orders are stored", st.OrdersCreated)
	}
	if r := mustSend(t, http.MethodPost, pg+"/api/v1/orders", orderBody("again"), http.StatusCreated); !strings.Contains(string(r.body), `"id":1,`) {
		t.Errorf("after reset the first order is %s, want id 1", r.body)
	}
}

// Production moves each order one status per StageTime, in both stores;
// stalled orders stay; announcements go to OnStatus unless lost.
func TestProductionMovesOrdersThroughTheirStatuses(t *testing.T) {
	for _, store := range []string{"memory", "postgres"} {
		t.Run(store, func(t *testing.T) {
			clock := newClock()
			var mu sync.Mutex
			heard := map[int64][]string{}
			cfg := mes.Config{Now: clock.Now, StageTime: time.Hour, Rand: func() float64 { return 0.5 },
				OnStatus: func(_ context.Context, o mes.Order) {
					mu.Lock()
					heard[o.ID] = append(heard[o.ID], o.Status)
					mu.Unlock()
				}}
			var srv *mes.Server
			var base string
			if store == "memory" {
				srv, base = start(t, cfg)
			} else {
				srv, base = pgMES(t, cfg)
			}
			for i := range 20 {
				mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody(fmt.Sprint("p", i)), http.StatusCreated)
			}
			if moved, err := srv.AdvanceOnce(t.Context()); err != nil || len(moved) != 0 {
				t.Fatalf("before a stage passed: moved %d, %v", len(moved), err)
			}
			setFaults(t, base, `{"stall_rate": 0.3}`)
			for range 4 {
				clock.Advance(time.Hour)
				if _, err := srv.AdvanceOnce(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders?per_page=50", "", http.StatusOK))
			shipped, stuck := 0, 0
			for _, o := range list.Orders {
				switch o.Status {
				case mes.StatusShipped:
					shipped++
					if got := heard[o.ID]; !reflect.DeepEqual(got, mes.Statuses[1:]) {
						t.Errorf("order %d announced %v, want %v", o.ID, got, mes.Statuses[1:])
					}
				case mes.StatusNew:
					stuck++
				default:
					t.Errorf("order %d is %s: neither shipped nor stalled", o.ID, o.Status)
				}
			}
			if stuck == 0 || shipped == 0 || stuck+shipped != 20 {
				t.Errorf("%d shipped, %d stalled of 20; want some of each", shipped, stuck)
			}
			// Every update announced is lost once lose_status_rate is 1.
			setFaults(t, base, `{"stall_rate": 0, "lose_status_rate": 1}`)
			mu.Lock()
			clear(heard)
			mu.Unlock()
			clock.Advance(time.Hour)
			moved, err := srv.AdvanceOnce(t.Context())
			if err != nil || len(moved) != stuck {
				t.Fatalf("after the stall ended: moved %d, %v; want the %d stalled", len(moved), err, stuck)
			}
			if len(heard) != 0 {
				t.Errorf("lost updates were announced: %v", heard)
			}
		})
	}
}
