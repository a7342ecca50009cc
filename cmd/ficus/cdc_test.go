package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/shop"
)

// setup, status, run into a JSONL file, teardown: the commands a user
// types, against a real database.
func TestCDCCommands(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if err := shop.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	// A customer from before capture began arrives through the snapshot.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO shop.customers (email, name) VALUES ('old@example.com', 'Old')`); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FICUS_DATABASE_URL", db.URL)
	args := []string{"--slot", "crm", "--publication", "crm"}
	if code, out, errOut := ficus(t, append([]string{"cdc", "setup", "--tables", "shop.customers,shop.orders"}, args...)...); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "status"}, args...)...); code != 0 || !strings.Contains(out, "shop.orders") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO shop.customers (email, name) VALUES ('ann@example.com', 'Ann');
		INSERT INTO shop.orders (customer_id, status, total, currency, created_at, updated_at)
		SELECT id, 'new', 10, 'RUB', now(), now() FROM shop.customers WHERE name = 'Ann';
		UPDATE shop.orders SET status = 'priced';`); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "events.jsonl")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() {
		done <- run(runCtx, append([]string{"cdc", "run", "--sink", "jsonl://" + file, "--metrics-listen", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	var events []cloudevent.Event
	deadline := time.Now().Add(time.Minute)
	for len(events) < 6 {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("only %d events arrived\n%s", len(events), errOut.String())
		}
		b, _ := os.ReadFile(file)
		events = events[:0]
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			e, err := cloudevent.Parse(line)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			events = append(events, e)
		}
		time.Sleep(20 * time.Millisecond) // poll the file for the condition
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("run: exit %d\n%s", code, errOut.String())
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	// The changes since setup stream first; then the snapshot reads the
	// rows as they are now: both customers, then the order.
	want := "dev.ficus.cdc.insert dev.ficus.cdc.insert dev.ficus.cdc.update dev.ficus.cdc.read dev.ficus.cdc.read dev.ficus.cdc.read"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("event types %q, want %q", got, want)
	}
	if !strings.Contains(string(events[3].Data), `"old@example.com"`) {
		t.Fatalf("first read event data %s", events[3].Data)
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "status"}, args...)...); code != 0 || !strings.Contains(out, "snapshot shop.orders") || !strings.Contains(out, "done, 1 rows") {
		t.Fatalf("status after the snapshot: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "snapshot", "--tables", "shop.orders"}, args...)...); code != 0 || !strings.Contains(out, "requested a snapshot of shop.orders") {
		t.Fatalf("snapshot: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(string(events[2].Data), `"priced"`) {
		t.Fatalf("update event data %s", events[2].Data)
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "teardown"}, args...)...); code != 0 {
		t.Fatalf("teardown: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := ficus(t, append([]string{"cdc", "status"}, args...)...); code != 3 {
		t.Fatalf("status of a dropped slot exits %d, want 3", code)
	}
}

// cdc status exits 0 for a healthy slot, 3 for a missing one (unhealthy),
// 1 when it cannot check, and 2 for a usage error.
func TestCDCStatusExitCodes(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE public.items (id bigint PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FICUS_DATABASE_URL", db.URL)
	args := []string{"--slot", "health", "--publication", "health"}
	if code, out, errOut := ficus(t, append([]string{"cdc", "status"}, args...)...); code != 3 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("status of a missing slot: exit %d, want 3\n%s%s", code, out, errOut)
	}
	// A pool of one connection is enough for setup, snapshot table
	// migration included.
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	if code, out, errOut := ficus(t, append([]string{"cdc", "setup", "--tables", "public.items", "--database-url", u.String()}, args...)...); code != 0 || !strings.Contains(out, "applied migration") {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "status"}, args...)...); code != 0 {
		t.Errorf("status of a healthy slot: exit %d, want 0\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"cdc", "status", "--slot", "Bad-Name"}, 2},
		{[]string{"cdc", "status", "--no-such-flag"}, 2},
		{[]string{"cdc", "status", "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5", "--slot", "health"}, 1},
	} {
		if code, out, errOut := ficus(t, c.args...); code != c.want {
			t.Errorf("ficus %v: exit %d, want %d\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
	if code, out, errOut := ficus(t, append([]string{"cdc", "teardown"}, args...)...); code != 0 {
		t.Fatalf("teardown: exit %d\n%s%s", code, out, errOut)
	}
}

// A role that may not create the schema ficus gets, from cdc setup, the
// statements that let it, and nothing is half done: no slot.
func TestCDCSetupWithoutCreatePrivilege(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	role := db.Role(t, "LOGIN REPLICATION PASSWORD 'pw'")
	if _, err := db.Pool.Exec(ctx, `
		CREATE TABLE public.items (id bigint PRIMARY KEY);
		CREATE PUBLICATION nocreate FOR TABLE public.items;
		GRANT SELECT ON public.items TO `+role+`;
		REVOKE CREATE ON DATABASE `+db.Name+` FROM PUBLIC;`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "pw")
	t.Setenv("FICUS_DATABASE_URL", u.String())
	code, out, errOut := ficus(t, "cdc", "setup", "--slot", "nocreate", "--publication", "nocreate", "--tables", "public.items")
	if code != 1 || !strings.Contains(errOut, "insufficient privilege") || !strings.Contains(errOut, "CREATE SCHEMA ficus; GRANT USAGE, CREATE ON SCHEMA ficus TO "+role) {
		t.Fatalf("setup without CREATE: exit %d, want 1 and the statements to run\n%s%s", code, out, errOut)
	}
	var slots int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'nocreate'").Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("%d slots (%v) after the failed setup, want none", slots, err)
	}
	if _, err := db.Pool.Exec(ctx, "CREATE SCHEMA ficus AUTHORIZATION "+role); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = ficus(t, "cdc", "setup", "--slot", "nocreate", "--publication", "nocreate", "--tables", "public.items")
	if code != 0 || !strings.Contains(out, "applied migration cdc/00001_cdc_snapshot.sql") {
		t.Fatalf("setup once the schema is the role's: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ficus(t, "cdc", "teardown", "--slot", "nocreate", "--keep-publication"); code != 0 {
		t.Fatalf("teardown: exit %d\n%s%s", code, out, errOut)
	}
}
