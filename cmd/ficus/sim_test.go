package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

// ficus sim mes and ficus sim shop run as two processes would, connected
// only by their flags: the shop forwards its orders to the MES (--mes),
// the MES posts its status changes back (--status-webhook), and the
// shop's orders follow the MES's production to shipped.
func TestSimShopAndMESConnectedByFlags(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	mesAddr, shopAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		name string
		code int
		out  string
	}
	done := make(chan result, 2)
	start := func(name string, args ...string) {
		go func() {
			var out, errOut bytes.Buffer
			code := run(ctx, args, &out, &errOut)
			done <- result{name, code, out.String() + errOut.String()}
		}()
	}
	start("mes", "sim", "mes", "--listen", mesAddr, "--metrics-listen", "127.0.0.1:0", "--models", "mem://",
		"--stage-time", "150ms", "--status-webhook", "http://"+shopAddr+"/api/v1/mes-events")
	start("shop", "sim", "shop", "--database-url", db.URL, "--metrics-listen", "127.0.0.1:0", "--models", "mem://",
		"--rate", "10", "--mes", "http://"+mesAddr, "--listen", shopAddr)

	deadline := time.Now().Add(30 * time.Second)
	for {
		var shipped, total int
		err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE status = 'shipped'), count(*) FROM shop.orders`).Scan(&shipped, &total)
		if err == nil && shipped >= 3 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("ficus sim %s exited %d:\n%s", r.name, r.code, r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s %d of %d shop orders shipped (%v), want 3: the MES's status events do not reach the shop", shipped, total, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a real process, not passing time
	}
	cancel()
	for range 2 {
		if r := <-done; r.code != 0 {
			t.Errorf("ficus sim %s exited %d:\n%s", r.name, r.code, r.out)
		}
	}
}
