package fleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

// A Local fleet serves quotes of both lanes in one process, and stops
// when its context ends.
func TestLocalFleetPricesBothLanes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	l, err := fleet.NewLocal(fleet.LocalConfig{
		Pool: db.Pool, Calculator: &calc{}, Resolve: resolve, Wait: time.Minute, Logger: quiet,
		TenantLanes:       map[string]fleet.Lane{"shop": fleet.LaneB2C},
		HeartbeatInterval: time.Second, HeartbeatTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	<-l.Ready()
	env := &apiEnv{srv: httptestServer(t, l.API), q: l.Queue}
	for tenant, lane := range map[string]string{"shop": "b2c", "acme": "b2b"} {
		resp, body := env.do(t, "POST", "/api/v1/quotes", shopQuote, map[string]string{fleet.TenantHeader: tenant})
		if resp.StatusCode != 200 || body["price"] != "37.50" {
			t.Fatalf("%s: %d %v", tenant, resp.StatusCode, body)
		}
		_, st := env.do(t, "GET", resp.Header.Get("Content-Location"), "", map[string]string{fleet.TenantHeader: tenant})
		if st["lane"] != lane {
			t.Fatalf("%s's quote in lane %v; want %s", tenant, st["lane"], lane)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
