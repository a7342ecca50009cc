package crm_test

import (
	"context"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/shop"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// The shop's legacy status events reach the CRM's webhook as the changes
// it tracks: without faults it sees every status; with the shop crashing
// between commit and publish it misses some, as many transitions short as
// events were lost.
func TestCRMFollowsTheShopsLegacyEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		crashRate float64
	}{{"no faults", 0}, {"crashes", 0.1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			ctx := t.Context()
			if err := shop.EnsureSchema(ctx, db.Pool); err != nil {
				t.Fatal(err)
			}
			c, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(c.Handler())
			defer srv.Close()
			broker, err := webhook.New(webhook.Config{URL: srv.URL + "/events"})
			if err != nil {
				t.Fatal(err)
			}
			defer broker.Close(context.Background())
			t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			faults := rand.New(rand.NewPCG(3, 4))
			g, err := shop.New(shop.Config{Pool: db.Pool, Now: func() time.Time { return t0 },
				Dwell:  map[string]shop.Dwell{shop.StatusNew: {}, shop.StatusPriced: {}, shop.StatusPaid: {}, shop.StatusInProduction: {}},
				Events: shop.EventsConfig{Mode: shop.EventsLegacy, Broker: broker, CrashRate: tc.crashRate, Rand: faults.Float64}})
			if err != nil {
				t.Fatal(err)
			}
			for range 30 {
				if err := g.Step(ctx); err != nil {
					t.Fatal(err)
				}
			}
			st, cs := g.EventStats(), c.Stats()
			t.Logf("shop %+v; CRM received %d, tracked %d orders, %d transitions, %d missed", st, cs.Received, cs.OrdersTracked, cs.Transitions, cs.MissedStatuses)
			if cs.Received != int(st.Published) || cs.Duplicates != 0 {
				t.Fatalf("the CRM received %d events (%d duplicates), the shop published %d", cs.Received, cs.Duplicates, st.Published)
			}
			switch lost := st.LostCrash + st.LostBroker; {
			case tc.crashRate == 0 && (lost != 0 || cs.MissedStatuses != 0 || cs.OrdersTracked != 30):
				t.Fatalf("without faults: %d lost, %d statuses missed, %d orders tracked; want 0, 0, 30", lost, cs.MissedStatuses, cs.OrdersTracked)
			case tc.crashRate > 0 && (lost == 0 || cs.Received+int(lost) != int(st.Committed)):
				t.Fatalf("with crashes: %d lost, %d received of %d committed", lost, cs.Received, st.Committed)
			}
		})
	}
}
