package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
)

// orderViewKills is how many times TestOrderViewSurvivesSIGKILL kills
// ficus cdc run while the workload runs.
const orderViewKills = 8

// TestOrderViewSurvivesSIGKILL feeds the order view from the shop's and the
// MES's orders tables with ficus cdc run --sink orderview:, kills it with
// SIGKILL at random points of a randomized workload of inserts, status
// changes and deletes on both tables (restarting it each time, as a
// supervisor would), and then compares the view with the two tables row
// by row: same orders, statuses, references, creation times and items,
// per-status counts that match, and a last recorded status that is the
// current one. Redelivered changes must have no second effect.
func TestOrderViewSurvivesSIGKILL(t *testing.T) {
	changes := 4000
	if testing.Short() {
		changes = 2000
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	ctx := t.Context()
	bin := buildFicus(t)
	// The build is not counted: on a busy machine it alone may take minutes.
	deadline, cancel := context.WithTimeout(ctx, 150*time.Second)
	defer cancel()

	db := pgtest.New(t)
	if err := shop.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if err := mes.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO shop.customers (email, name) VALUES ('view@example.com', 'View Test')`); err != nil {
		t.Fatal(err)
	}
	env := ficusEnv(db.URL)
	if out, err := runFicus(ctx, bin, env, "migrate", "up"); err != nil {
		t.Fatalf("ficus migrate up: %v\n%s", err, out)
	}
	slotArgs := []string{"--slot", "view", "--publication", "view"}
	cdcSetup(t, bin, env, append([]string{"--tables", "shop.orders,mes.orders"}, slotArgs...)...)

	metricsAddr := freeAddr(t)
	life := &ficusProc{base: "http://" + metricsAddr}
	sup := &crashSupervisor{
		bin: bin, env: env, onStart: func() {},
		// Confirmations far apart: each restart delivers again many changes
		// the view already has, which it must skip.
		args: append([]string{"cdc", "run", "--sink", "orderview:", "--metrics-listen", metricsAddr, "--part-size", "16",
			"--status-interval", "20s"}, slotArgs...),
	}
	// skipped adds up the changes each life was delivered again and
	// skipped, read just before it is killed; kills counts the kills
	// (sup.kills belongs to the supervisor's goroutine until it stops).
	var skipped float64
	kills := 0
	// kill waits until the running life has applied a few changes (at
	// random, up to 40), so that every life does some work and a kill lands
	// anywhere in it, then kills it.
	kill := func() {
		want := float64(1 + rng.IntN(40))
		for wait := time.Now().Add(20 * time.Second); time.Now().Before(wait) && deadline.Err() == nil; {
			if n, ok := life.metric(`ficus_orders_events_total{outcome="applied"}`); ok && n >= want {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling another process
		}
		if n, ok := life.metric(`ficus_orders_events_total{outcome="skipped"}`); ok {
			skipped += n
		}
		<-sup.kill()
		kills++
	}
	runCtx, stopRun := context.WithCancel(ctx)
	supDone := make(chan error, 1)
	go func() { supDone <- sup.run(runCtx) }()
	stop := sync.OnceValue(func() error {
		stopRun()
		return <-supDone
	})
	defer stop()

	w := &viewWorkload{pool: db.Pool, rng: rng}
	killEvery := changes / (orderViewKills + 1)
	nextKill := killEvery/2 + rng.IntN(killEvery)
	for w.changes < changes {
		if err := w.step(deadline); err != nil {
			t.Fatalf("workload: %v", err)
		}
		if w.changes >= nextKill && kills < orderViewKills {
			kill()
			nextKill = w.changes + killEvery/2 + rng.IntN(killEvery)
		}
	}
	for kills < orderViewKills {
		kill()
	}

	var diff string
	for {
		var err error
		if diff, err = compareOrderView(deadline, db.Pool); err != nil {
			t.Fatal(err)
		}
		if diff == "" || deadline.Err() != nil {
			break
		}
		select {
		case <-deadline.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := stop(); err != nil {
		t.Errorf("ficus cdc run did not stop cleanly on SIGTERM: %v", err)
	}
	if diff != "" {
		t.Fatalf("the view differs from the tables after %d changes and %d kills:\n%s", w.changes, kills, diff)
	}
	// A change applied twice (a redelivery after a kill) would show as a
	// status recorded once more than it was taken.
	rows, err := db.Pool.Query(ctx, `SELECT source || '/' || id, count(*) FROM ficus.order_view_history GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]int{}
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			t.Fatal(err)
		}
		recorded[key] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var wrong []string
	sumRecorded, sumTaken := 0, 0
	for _, n := range recorded {
		sumRecorded += n
	}
	for _, n := range w.statuses {
		sumTaken += n
	}
	t.Logf("statuses: %d recorded, %d taken; %.0f changes delivered again and skipped", sumRecorded, sumTaken, skipped)
	if skipped == 0 {
		t.Error("no restart delivered a change again: the test did not try exactly-once")
	}
	for key, n := range w.statuses {
		if recorded[key] != n {
			wrong = append(wrong, fmt.Sprintf("%s: %d recorded, %d taken", key, recorded[key], n))
		}
	}
	if len(recorded) != len(w.statuses) || len(wrong) > 0 {
		t.Fatalf("status histories: %d orders recorded, %d in the workload; differing: %v", len(recorded), len(w.statuses), wrong[:min(len(wrong), 10)])
	}
	if sup.killErr != nil {
		t.Error(sup.killErr)
	}
	for _, e := range sup.unexpected {
		t.Logf("ficus exited on its own and was restarted: %s", e)
	}
	var held int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM ficus.order_view`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d changes in %d transactions, %d SIGKILLs; the view holds %d orders equal to the tables'", w.changes, w.txs, sup.kills, held)
}

func runFicus(ctx context.Context, bin string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	return cmd.CombinedOutput()
}

// viewWorkload makes random changes to shop.orders and mes.orders.
type viewWorkload struct {
	pool    *pgxpool.Pool
	rng     *rand.Rand
	shop    []int64
	mes     []int64
	changes int
	txs     int
	// status and statuses are each order's current status and how many
	// statuses it has had (its history's length in the view), by
	// "source/id".
	status   map[string]string
	statuses map[string]int
}

// took records that the order key took status in a committed change.
func (w *viewWorkload) took(key, status string) {
	if w.status == nil {
		w.status, w.statuses = map[string]string{}, map[string]int{}
	}
	if cur, ok := w.status[key]; !ok || cur != status {
		w.status[key] = status
		w.statuses[key]++
	}
}

// pick returns an order to change: mostly one of the newest few, so that
// the changes a restart delivers again hold several changes of one order,
// whose second application would show.
func (w *viewWorkload) pick(ids []int64) int64 {
	if w.rng.IntN(10) < 7 {
		return ids[len(ids)-1-w.rng.IntN(min(len(ids), 8))]
	}
	return ids[w.rng.IntN(len(ids))]
}

var mesStatuses = []string{"new", "scheduled", "printing", "finishing", "shipped"}

// step commits one transaction of one to five changes.
func (w *viewWorkload) step(ctx context.Context) error {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	n := 1 + w.rng.IntN(5)
	var addShop, addMES []int64
	var gone []string
	type took struct{ key, status string }
	var tookList []took
	for range n {
		switch r := w.rng.IntN(100); {
		case r < 25 || len(w.shop) == 0:
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO shop.orders (customer_id, total, promised_at)
				SELECT id, 10, now() + interval '21 days' FROM shop.customers LIMIT 1 RETURNING id`).Scan(&id); err != nil {
				return err
			}
			addShop = append(addShop, id)
			tookList = append(tookList, took{fmt.Sprint("shop/", id), "new"})
		case r < 45:
			ref := w.shop[w.rng.IntN(len(w.shop))]
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO mes.orders (client_ref, customer, items, created_at, updated_at)
				VALUES ($1, 'acme', jsonb_build_array(jsonb_build_object('model_url', 'models/' || $1 || '.stl', 'material', 'PLA', 'quantity', $2::int)),
				date_trunc('second', now()), now()) RETURNING id`, fmt.Sprint(ref), 1+w.rng.IntN(9)).Scan(&id); err != nil {
				return err
			}
			addMES = append(addMES, id)
			tookList = append(tookList, took{fmt.Sprint("mes/", id), "new"})
		case r < 70:
			id := w.pick(w.shop)
			status := shop.Statuses[w.rng.IntN(len(shop.Statuses))]
			tag, err := tx.Exec(ctx, `UPDATE shop.orders SET status = $2, updated_at = now() WHERE id = $1`, id, status)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 { // not deleted earlier in this transaction
				tookList = append(tookList, took{fmt.Sprint("shop/", id), status})
			}
		case r < 92 && len(w.mes) > 0:
			id := w.pick(w.mes)
			status := mesStatuses[w.rng.IntN(len(mesStatuses))]
			tag, err := tx.Exec(ctx, `UPDATE mes.orders SET status = $2, updated_at = now() WHERE id = $1`, id, status)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 { // not deleted earlier in this transaction
				tookList = append(tookList, took{fmt.Sprint("mes/", id), status})
			}
		default:
			if w.rng.IntN(2) == 0 && len(w.mes) > 0 {
				i := w.rng.IntN(len(w.mes))
				if _, err := tx.Exec(ctx, `DELETE FROM mes.orders WHERE id = $1`, w.mes[i]); err != nil {
					return err
				}
				gone = append(gone, fmt.Sprint("mes", w.mes[i]))
			} else {
				i := w.rng.IntN(len(w.shop))
				if _, err := tx.Exec(ctx, `DELETE FROM shop.orders WHERE id = $1`, w.shop[i]); err != nil {
					return err
				}
				gone = append(gone, fmt.Sprint("shop", w.shop[i]))
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.shop = append(w.shop, addShop...)
	w.mes = append(w.mes, addMES...)
	for _, x := range tookList {
		w.took(x.key, x.status)
	}
	for _, g := range gone {
		w.shop = slices.DeleteFunc(w.shop, func(id int64) bool { return fmt.Sprint("shop", id) == g })
		w.mes = slices.DeleteFunc(w.mes, func(id int64) bool { return fmt.Sprint("mes", id) == g })
	}
	w.changes += n
	w.txs++
	return nil
}

// compareOrderView returns what differs between the view and the two
// tables, "" when nothing does.
func compareOrderView(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var b strings.Builder
	queries := []struct{ what, sql string }{
		{"orders in a table and not in the view, or different there", `
			SELECT 'shop', id, status FROM shop.orders o WHERE NOT EXISTS (SELECT 1 FROM ficus.order_view v
				WHERE v.source = 'shop' AND v.id = o.id AND v.status = o.status AND v.ref = o.id::text
				AND v.created_at = o.created_at AND v.promised_at = o.promised_at)
			UNION ALL
			SELECT 'mes', id, status FROM mes.orders o WHERE NOT EXISTS (SELECT 1 FROM ficus.order_view v
				WHERE v.source = 'mes' AND v.id = o.id AND v.status = o.status AND v.ref = o.client_ref
				AND v.created_at = o.created_at AND v.doc->'items' = o.items AND v.doc->>'customer' = o.customer)`},
		{"orders in the view and not in the tables", `
			SELECT source, id, status FROM ficus.order_view v WHERE
				(source = 'shop' AND NOT EXISTS (SELECT 1 FROM shop.orders o WHERE o.id = v.id)) OR
				(source = 'mes' AND NOT EXISTS (SELECT 1 FROM mes.orders o WHERE o.id = v.id))`},
		{"counts that differ", `
			WITH actual AS (
				SELECT 'shop' AS source, status, count(*) AS n FROM shop.orders GROUP BY status
				UNION ALL SELECT 'mes', status, count(*) FROM mes.orders GROUP BY status)
			SELECT coalesce(a.source, c.source), coalesce(a.n, 0), coalesce(a.status, c.status) || ' counted ' || coalesce(c.n, 0)
			FROM actual a FULL JOIN (SELECT * FROM ficus.order_view_counts WHERE n <> 0) c ON a.source = c.source AND a.status = c.status
			WHERE a.n IS DISTINCT FROM c.n`},
		{"orders whose last recorded status is not the current one", `
			SELECT v.source, v.id, v.status FROM ficus.order_view v
			WHERE v.status <> (SELECT h.status FROM ficus.order_view_history h WHERE h.source = v.source AND h.id = v.id ORDER BY seq DESC LIMIT 1)`},
	}
	for _, q := range queries {
		rows, err := pool.Query(ctx, q.sql)
		if err != nil {
			return "", fmt.Errorf("%s: %w", q.what, err)
		}
		var found []string
		for rows.Next() {
			var source, status string
			var id int64
			if err := rows.Scan(&source, &id, &status); err != nil {
				rows.Close()
				return "", err
			}
			if len(found) < 10 {
				found = append(found, fmt.Sprintf("%s %d %s", source, id, status))
			}
		}
		if err := rows.Err(); err != nil {
			return "", err
		}
		if len(found) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", q.what, strings.Join(found, ", "))
		}
	}
	return b.String(), nil
}
