package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

// `ficus cdc run` rides out a sink outage: first the webhook refuses
// connections (nothing listens yet), then it answers 500 for 12 seconds.
// Meanwhile the process stays up, /readyz and ficus_cdc_sink_paused say
// delivery is paused, the lag grows (which the lag alert watches), and
// once the webhook answers again every row arrives.
func TestCDCRunRidesOutSinkOutage(t *testing.T) {
	ctx := t.Context()
	bin := buildFicus(t)
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE captured (id bigint PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	env := ficusEnv(db.URL)
	slotArgs := []string{"--slot", "outage_" + db.Name, "--publication", "outage"}
	cdcSetup(t, bin, env, append([]string{"--tables", "public.captured"}, slotArgs...)...)

	// Nothing listens on the sink's address yet: connections are refused.
	addr := freeAddr(t)
	p := startFicus(t, bin, env, append([]string{"cdc", "run", "--sink", "http://" + addr + "/events"}, slotArgs...)...)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO captured VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	paused := func() bool {
		v, ok := p.metric("ficus_cdc_sink_paused")
		code, failed := p.readiness()
		_, replication := failed["replication"]
		return ok && v == 1 && code == http.StatusServiceUnavailable && replication
	}
	p.waitFor(t, time.Minute, "ficus to report delivery paused while the sink refuses connections", paused)

	// The webhook comes up, but answers 500 for 12 seconds.
	recv := newEventRecorder()
	recv.setFail(http.StatusInternalServerError)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the sink's address %s: %v", addr, err)
	}
	hook := httptest.NewUnstartedServer(recv)
	hook.Listener.Close()
	hook.Listener = ln
	hook.Start()
	defer hook.Close()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO captured VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	failingSince := time.Now()
	p.waitFor(t, time.Minute, "ficus to try the failing webhook", func() bool { return recv.requestCount() > 0 })
	tick := time.NewTicker(200 * time.Millisecond) // samples the state while the outage lasts
	defer tick.Stop()
	for ; time.Since(failingSince) < 12*time.Second; <-tick.C {
		p.checkAlive(t)
		if !paused() {
			t.Fatalf("ficus does not report delivery paused %s into the webhook's 500s", time.Since(failingSince).Round(time.Millisecond))
		}
		// The stream was due while the webhook failed: the lag shows it.
		if lag, ok := p.metric("ficus_cdc_lag_seconds"); !ok || lag <= 0 && time.Since(failingSince) > 2*time.Second {
			t.Fatalf("ficus_cdc_lag_seconds = %v (present %t) while delivery is paused, want it to grow", lag, ok)
		}
	}
	if n, _ := p.metric("ficus_cdc_delivery_retries_total"); n < 1 {
		t.Errorf("ficus_cdc_delivery_retries_total = %v during the outage, want some", n)
	}

	// The webhook recovers: everything arrives, and ficus is ready again.
	recv.setFail(0)
	p.waitFor(t, 2*time.Minute, "rows 1 and 2 to arrive and ficus to be ready after the outage", func() bool {
		v, ok := p.metric("ficus_cdc_sink_paused")
		code, _ := p.readiness()
		return recv.has(1, 2) && ok && v == 0 && code == http.StatusOK
	})
	p.checkAlive(t)
}
