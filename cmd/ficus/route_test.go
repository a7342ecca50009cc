package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy/cutover"
)

// routeDB is a migrated database with the weighted route "quotes", as a
// proxy would have registered it.
func routeDB(t *testing.T) *pgtest.DB {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	spec := cutover.RouteSpec{Route: "quotes", Legacy: "mes", New: "pricing",
		Plan: cutover.Plan{Steps: []cutover.Step{{BPS: 100}, {BPS: 1000}, {BPS: 10000}}}}
	if err := cutover.NewStore(db.Pool, nil).Register(ctx, []cutover.RouteSpec{spec}, "proxy@test"); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestRouteCommands(t *testing.T) {
	t.Parallel()
	db := routeDB(t)
	url := "--database-url=" + db.URL

	code, out, errOut := ficus(t, "route", "status", url)
	if code != 0 || !strings.Contains(out, "quotes") || !strings.Contains(out, "idle") || !strings.Contains(out, "mes 100%") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = ficus(t, "route", "shift", "quotes", "12.5", url, "--actor", "alice", "--reason", "try a little")
	if code != 0 || !strings.Contains(out, "pricing 12.5%") || !strings.Contains(out, "paused") {
		t.Fatalf("shift: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"resume", "quotes"}, {"pause", "quotes"}, {"promote", "quotes"}, {"rollback", "quotes"}} {
		if code, out, errOut := ficus(t, append(append([]string{"route"}, args...), url, "--actor", "bob")...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	code, out, errOut = ficus(t, "route", "status", "quotes", url, "--json")
	var sts []cutover.State
	if code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 || sts[0].Status != cutover.StatusRolledBack || sts[0].BPS != 0 ||
		sts[0].Plan.Steps[1].BPS != 1000 || !strings.Contains(out, `"min_duration": "5m0s"`) {
		t.Fatalf("status --json: exit %d, %+v\n%s%s", code, sts, out, errOut)
	}
	code, out, errOut = ficus(t, "route", "history", "quotes", url, "--json")
	var events []cutover.Event
	if code != 0 || json.Unmarshal([]byte(out), &events) != nil || len(events) != 6 {
		t.Fatalf("history --json: exit %d, %d events\n%s%s", code, len(events), out, errOut)
	}
	wantActions := []string{"rollback", "promote", "pause", "resume", "shift", "register"}
	for i, e := range events {
		if e.Action != wantActions[i] {
			t.Errorf("event %d is %s, want %s", i, e.Action, wantActions[i])
		}
	}
	if events[4].Actor != "alice" || events[4].Reason != "try a little" || events[4].ToBPS != 1250 {
		t.Errorf("the shift's audit entry: %+v", events[4])
	}
	code, out, _ = ficus(t, "route", "history", url)
	if code != 0 || !strings.Contains(out, "paused -> running") || !strings.Contains(out, "0% -> 12.5%") || !strings.Contains(out, "try a little") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
}

func TestRouteCommandErrors(t *testing.T) {
	t.Parallel()
	db := routeDB(t)
	url := "--database-url=" + db.URL
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"route", "shift", "quotes", "150", url}, 2, `"150" is not a share from 0 to 100`},
		{[]string{"route", "shift", "quotes", "ten", url}, 2, "is not a share"},
		{[]string{"route", "shift", "quotes", url}, 2, "usage: ficus route shift ROUTE PERCENT"},
		{[]string{"route", "promote", url}, 2, "usage: ficus route promote ROUTE"},
		{[]string{"route", "history", "--limit", "0", url}, 2, "--limit 0"},
		{[]string{"route", "status"}, 2, "--database-url (or FICUS_DATABASE_URL) is required"},
		{[]string{"route", "shift", "nope", "10", url}, 1, `unknown route "nope"`},
		{[]string{"route", "status", "nope", url}, 1, `unknown route "nope"`},
		{[]string{"route", "pause", "quotes", url}, 1, "only a running plan can be paused"},
	} {
		code, out, errOut := ficus(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("ficus %s: exit %d, want %d with %q\n%s%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out, errOut)
		}
	}
	st, err := cutover.NewStore(db.Pool, nil).Route(context.Background(), "quotes")
	if err != nil || st.Version != 1 || st.Status != cutover.StatusIdle {
		t.Fatalf("state after refused commands: %+v, %v; want it untouched", st, err)
	}

	bare := pgtest.New(t) // never migrated
	code, out, errOut := ficus(t, "route", "status", "--database-url", bare.URL)
	if code != 1 || !strings.Contains(errOut, `run "ficus migrate up`) {
		t.Errorf("status on a database without the schema: exit %d\n%s%s", code, out, errOut)
	}
}

// Two operators run ficus route at once on the same route: every command
// applies whole, one after the other, and the audit log tells the story.
func TestRouteCommandsRacing(t *testing.T) {
	t.Parallel()
	db := routeDB(t)
	url := "--database-url=" + db.URL
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"route", "shift", "quotes", fmt.Sprint((i + 1) * 10), url, "--actor", fmt.Sprintf("op%d", i)}
			if i%2 == 1 {
				args = []string{"route", "rollback", "quotes", url, "--actor", fmt.Sprintf("op%d", i)}
			}
			codes[i], _, _ = ficus(t, args...)
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("command %d exited %d", i, c)
		}
	}
	s := cutover.NewStore(db.Pool, nil)
	st, err := s.Route(context.Background(), "quotes")
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.History(context.Background(), "quotes", 100)
	if err != nil {
		t.Fatal(err)
	}
	changes := events[:len(events)-1]
	if int64(len(changes)) != st.Version-1 || changes[0].ToBPS != st.BPS || changes[0].ToStatus != st.Status {
		t.Fatalf("state %+v after %d recorded changes, the last %+v", st, len(changes), changes[0])
	}
	for i := 0; i+1 < len(changes); i++ {
		if changes[i].FromBPS != changes[i+1].ToBPS {
			t.Fatalf("change %d starts from %d, the one before ended at %d", changes[i].ID, changes[i].FromBPS, changes[i+1].ToBPS)
		}
	}
}

// ficus proxy with --database-url registers the weighted routes of its
// config at start, so that ficus route sees them, and sends traffic by the
// shared state.
func TestProxyRegistersWeightedRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := dir + "/proxy.yaml"
	yaml := `
upstreams:
  mes: {url: "http://127.0.0.1:1"}
  pricing: {url: "http://127.0.0.1:2"}
routes:
  - name: quotes
    upstream: mes
    split:
      new: pricing
      percent: 2.5
      plan: {steps: [{percent: 10}, {percent: 100}]}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errOut syncbuf.Buffer
	go func() {
		done <- run(runCtx, []string{"proxy", "--config", cfg, "--database-url", db.URL, "--listen", "127.0.0.1:0",
			"--metrics-listen", "127.0.0.1:0"}, &out, &errOut)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("proxy exited %d\n%s", code, errOut.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, stdout, _ := ficus(t, "route", "status", "--database-url", db.URL, "--json")
		var sts []cutover.State
		if code == 0 && json.Unmarshal([]byte(stdout), &sts) == nil && len(sts) == 1 {
			st := sts[0]
			if st.Route != "quotes" || st.Legacy != "mes" || st.New != "pricing" || st.BPS != 250 || len(st.Plan.Steps) != 2 {
				t.Fatalf("registered %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not register its weighted route\n%s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond) // polls a real process starting, not time passing
	}
}
