//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/dashboards/live"
	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// ovConfig is the order view's configuration of the scenario: the default
// sources, and the shop's "paid" limited to 8 s, so that a shop order the
// MES never takes on (its forward failed, or its status was set back by
// hand) is overdue within the scenario.
const ovConfig = `status_limits:
  shop: {new: 1d, priced: 7d, paid: 8s}
  mes: {new: 2d, scheduled: 7d, printing: 7d, finishing: 7d}
`

// TestOperatorsSeeEveryOrderAndItsDrift guards against the operators'
// order view missing an order, showing a status the MES no longer has, or
// keeping quiet about orders that are overdue or that the shop and the MES
// disagree about. The legacy world runs as deploy/compose.yaml wires it:
// the simulated shop forwards each new order to the simulated MES (in
// Postgres, production moving each order on every second) and mirrors
// the MES's status events; ficus cdc feeds both orders tables into the
// view and ficus orders serve answers from it. Faults on purpose: the MES
// down for a moment (the shop's forwards fail: orders the MES never gets),
// the shop's database cut off for a moment (its steps fail), one shop
// order's status set back by hand in the shop's database. At the end the
// view must list every MES order with the MES's status, and report as
// drifted and overdue exactly the shop orders the two databases say are.
//
// Parallel: everything it breaks is its own.
func TestOperatorsSeeEveryOrderAndItsDrift(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Faults on purpose: the MES down (aborted requests, a fault injected),
	// the shop's database away (step errors), orders overdue and drifted;
	// the shop stopped at the end.
	env.AllowAlerts(t, "LegacyMESFaultsInjected", "LegacyShopStepErrors", "LegacyShopNotTakingOrders",
		"FicusOrdersOverdue", "FicusOrdersDrift")
	ctx := t.Context()
	shopDB := env.PG.Database(t, "shop")
	mesDB := env.PG.Database(t, "mes")
	viewDB := env.PG.Database(t, "view")
	shopPool := env.PG.Pool(t, shopDB)
	mesPool := env.PG.Pool(t, mesDB)
	migrate(t, viewDB)

	shopHost := harness.Host(t, "shop")
	m := mes(t, mesDB, "--stage-time", "1s", "--status-webhook", "http://"+shopHost+":8086/api/v1/mes-events")
	x := env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "pg", Port: "20000", Upstream: env.PG.Inside("5432")})
	shopURL := strings.Replace(env.PG.URL(shopDB), env.PG.Inside("5432"), x.Via("pg"), 1)
	shop := env.Run(t, harness.Spec{
		Name:      shopHost,
		Cmd:       []string{"sim", "shop", "--rate", "4", "--mes", "http://" + m.Inside("8081"), "--listen", "0.0.0.0:8086", "--metrics-listen", "0.0.0.0:9193"},
		Env:       map[string]string{"FICUS_DATABASE_URL": shopURL, "FICUS_LOG_FORMAT": "json"},
		Ports:     []string{"9193"},
		Ready:     "/readyz",
		ReadyPort: "9193",
		Metrics:   "9193",
	})
	files := map[string][]byte{"/etc/ficus/orders.yaml": []byte(ovConfig)}
	sink := "orderview:" + env.PG.URL(viewDB)
	for _, src := range []struct{ part, db, table string }{{"shop", shopDB, "shop.orders"}, {"mes", mesDB, "mes.orders"}} {
		slot := harness.Name(t, "orders_"+src.part)
		dbEnv := map[string]string{"FICUS_DATABASE_URL": env.PG.URL(src.db), "FICUS_LOG_FORMAT": "json"}
		env.RunToCompletion(t, harness.Spec{
			Name: harness.Host(t, "cdc-setup-"+src.part),
			Cmd:  []string{"cdc", "setup", "--slot", slot, "--publication", slot, "--tables", src.table},
			Env:  dbEnv,
		})
		env.Run(t, harness.Spec{
			Name:      harness.Host(t, "cdc-"+src.part),
			Cmd:       []string{"cdc", "run", "--slot", slot, "--publication", slot, "--sink", sink, "--orders-config", "/etc/ficus/orders.yaml", "--metrics-listen", "0.0.0.0:9194"},
			Env:       dbEnv,
			Files:     files,
			Ports:     []string{"9194"},
			Ready:     "/healthz",
			ReadyPort: "9194",
			Metrics:   "9194",
		})
	}
	view := env.Run(t, harness.Spec{
		Name:      harness.Host(t, "orders"),
		Cmd:       []string{"orders", "serve", "--listen", "0.0.0.0:8090", "--metrics-listen", "0.0.0.0:9198", "--config", "/etc/ficus/orders.yaml", "--drift-grace", "2s", "--refresh-every", "1s"},
		Env:       map[string]string{"FICUS_DATABASE_URL": env.PG.URL(viewDB), "FICUS_LOG_FORMAT": "json"},
		Files:     files,
		Ports:     []string{"8090", "9198"},
		Ready:     "/readyz",
		ReadyPort: "9198",
		Metrics:   "9198",
	})
	shopMetrics := shop.URL(t, "9193") + "/metrics"
	viewAPI := view.URL(t, "8090")
	mesAPI := m.URL(t, "8081")

	// 1. Orders flow: the shop's reach the MES and both reach the view.
	harness.Eventually(t, 30*time.Second, "the first shop orders are in the view", func() error {
		l, err := ovList(t.Context(), viewAPI)
		if err != nil {
			return err
		}
		if len(l) < 8 {
			return fmt.Errorf("%d MES orders in the view", len(l))
		}
		return nil
	})

	// 2. The MES down for a few seconds: the shop's forwards are aborted.
	// Ten of them take longer than two scrapes, so that the MES's count of
	// aborted requests is seen to grow, not only to appear.
	ovFaults(t, mesAPI, `{"down":true}`)
	harness.Eventually(t, 20*time.Second, "the shop fails to forward orders to the MES while it is down", func() error {
		if n := ovMetric(shopMetrics, "ficus_sim_shop_forward_failures_total"); n < 10 {
			return fmt.Errorf("%v forward failures", n)
		}
		return nil
	})
	ovFaults(t, mesAPI, `{"down":false}`)

	// 3. The shop's database cut off for a moment: its steps fail.
	if err := x.Proxy(t, "pg").Disable(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 15*time.Second, "the shop's steps fail while its database is away", func() error {
		if n := ovMetric(shopMetrics, "ficus_sim_shop_step_errors_total"); n < 1 {
			return fmt.Errorf("%v step errors", n)
		}
		return nil
	})
	if err := x.Proxy(t, "pg").Enable(); err != nil {
		t.Fatal(err)
	}
	before := ovMetric(shopMetrics, "ficus_sim_shop_orders_created_total")
	harness.Eventually(t, 15*time.Second, "the shop takes orders again once its database is back", func() error {
		if n := ovMetric(shopMetrics, "ficus_sim_shop_orders_created_total"); n < before+4 {
			return fmt.Errorf("%v orders created, %v before the database came back", n, before)
		}
		return nil
	})

	// 4. A status drift by hand: a shop order shipped in both systems is
	// set back to paid in the shop's database (no MES event will move it
	// again).
	var drifted int64
	harness.Eventually(t, 30*time.Second, "a shop order is shipped", func() error {
		return shopPool.QueryRow(ctx, `UPDATE shop.orders SET status = 'paid', updated_at = now()
			WHERE id = (SELECT id FROM shop.orders WHERE status = 'shipped' ORDER BY id LIMIT 1) RETURNING id`).Scan(&drifted)
	})
	env.Report.Figure(t, "shop order set back to paid by hand", strconv.FormatInt(drifted, 10))

	// 5. The shop stops taking orders; the MES ships all it has.
	harness.Eventually(t, 20*time.Second, "the shop has created 40 orders", func() error {
		if n := ovMetric(shopMetrics, "ficus_sim_shop_orders_created_total"); n < 40 {
			return fmt.Errorf("%v orders created", n)
		}
		return nil
	})
	shop.Stop(t, 10*time.Second)
	harness.Eventually(t, 30*time.Second, "the MES ships every order", func() error {
		var open int
		if err := mesPool.QueryRow(ctx, `SELECT count(*) FROM mes.orders WHERE status <> 'shipped'`).Scan(&open); err != nil {
			return err
		}
		if open > 0 {
			return fmt.Errorf("%d MES orders not shipped", open)
		}
		return nil
	})
	// The MES aborted the shop's forwards: the alert "LegacyMESDown" says so.
	env.ExpectAlerts(t, 60*time.Second, live.ExpectedAlert{Name: "LegacyMESDown"})

	// 6. The view against both databases.
	shopOrders := ovShopOrders(t, shopPool)
	mesOrders := ovMESOrders(t, mesPool)
	ck := checker.New(checker.Config{Name: "shop orders into the operators' view"})
	var missing, missingStatus, statusDrift, overdue []string
	for _, o := range shopOrders {
		ref := strconv.FormatInt(o.id, 10)
		ck.Send(ref, "")
		ms, ok := mesOrders[ref]
		switch {
		case !ok:
			ck.Fail(ref) // never reached the MES: the view must not list it
			missing = append(missing, ref)
			missingStatus = append(missingStatus, ref+":"+o.status)
		default:
			ck.Ack(ref)
			if ovCommon(o.status) != ovCommon(ms) {
				statusDrift = append(statusDrift, ref)
			}
		}
		if o.status == "paid" {
			overdue = append(overdue, ref)
		}
	}
	if !slices.Contains(statusDrift, strconv.FormatInt(drifted, 10)) {
		t.Fatalf("shop order %d set back to paid is not drifted in the databases", drifted)
	}
	if len(missing) == 0 {
		t.Fatal("no shop order is missing from the MES although forwards failed")
	}
	env.Report.Figure(t, "shop orders / MES orders", fmt.Sprintf("%d / %d", len(shopOrders), len(mesOrders)))
	env.Report.Figure(t, "drift expected from the databases (status / missing)", fmt.Sprintf("%d / %d", len(statusDrift), len(missing)))
	env.Report.Figure(t, "shop orders the MES never got, with their shop status", strings.Join(missingStatus, " "))
	env.Report.Figure(t, "overdue expected (shop orders paid longer than 8 s)", strconv.Itoa(len(overdue)))

	var got ovState
	harness.Eventually(t, 40*time.Second, "the view reports what the databases say", func() error {
		s, err := ovRead(t.Context(), viewAPI, view.URL(t, "9198")+"/metrics")
		if err != nil {
			return err
		}
		got = s
		var errs []string
		for ref, st := range mesOrders {
			if g, ok := s.list[ref]; !ok || g != st {
				errs = append(errs, fmt.Sprintf("MES order of %s: view %q, MES %q", ref, g, st))
				break
			}
		}
		if len(s.list) != len(mesOrders) {
			errs = append(errs, fmt.Sprintf("view lists %d MES orders, MES has %d", len(s.list), len(mesOrders)))
		}
		if d := ovDiff(s.drift["status"], statusDrift); d != "" {
			errs = append(errs, "status drift: "+d)
		}
		if d := ovDiff(s.drift["missing"], missing); d != "" {
			errs = append(errs, "missing: "+d)
		}
		if d := ovDiff(s.overdue, overdue); d != "" {
			errs = append(errs, "overdue: "+d)
		}
		if s.metricDrift["status"] != float64(len(statusDrift)) || s.metricDrift["missing"] != float64(len(missing)) {
			errs = append(errs, fmt.Sprintf("ficus_orders_drifted %v", s.metricDrift))
		}
		if s.metricOverdue != float64(len(overdue)) {
			errs = append(errs, fmt.Sprintf("ficus_orders_overdue %v, want %d", s.metricOverdue, len(overdue)))
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	})
	for ref := range got.list {
		ck.Receive(ref)
	}
	v := ck.Verdict()
	env.Report.Verdict(t, "shop orders into the operators' view", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}

type ovShopOrder struct {
	id     int64
	status string
}

func ovShopOrders(t *testing.T, pool *pgxpool.Pool) []ovShopOrder {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT id, status FROM shop.orders ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []ovShopOrder
	for rows.Next() {
		var o ovShopOrder
		if err := rows.Scan(&o.id, &o.status); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ovMESOrders maps client_ref to the MES's status.
func ovMESOrders(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT client_ref, status FROM mes.orders`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var ref, st string
		if err := rows.Scan(&ref, &st); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[ref]; dup {
			t.Fatalf("the MES has two orders for shop order %s", ref)
		}
		out[ref] = st
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ovCommon is a status in the shared vocabulary of docs/orders.md.
func ovCommon(s string) string {
	switch s {
	case "new", "priced", "paid":
		return "open"
	case "scheduled", "printing", "finishing":
		return "in_production"
	}
	return s
}

func ovFaults(t *testing.T, mesAPI, body string) {
	t.Helper()
	resp, err := http.Post(mesAPI+"/admin/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("MES faults %s: %s", body, resp.Status)
	}
}

// ovMetric sums the samples of metric name at a /metrics URL; -1 when it
// cannot be read.
func ovMetric(url, name string) float64 {
	m, err := ovMetrics(url, name)
	if err != nil {
		return -1
	}
	var sum float64
	for _, v := range m {
		sum += v
	}
	return sum
}

// ovMetrics reads the samples of metric name, by their label text.
func ovMetrics(url, name string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest == "" || (rest[0] != ' ' && rest[0] != '{')) {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", url, line, err)
		}
		out[strings.TrimSpace(rest[:i])] = v
	}
	return out, sc.Err()
}

// ovList is the view's MES orders by client_ref, with their status, read
// page by page by cursor.
func ovList(ctx context.Context, api string) (map[string]string, error) {
	out := map[string]string{}
	cursor := ""
	for range 100 {
		var page struct {
			Orders []struct {
				ClientRef string `json:"client_ref"`
				Status    string `json:"status"`
			} `json:"orders"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := plGet(ctx, api+"/api/v1/orders?per_page=500&cursor="+cursor, &page); err != nil {
			return nil, err
		}
		for _, o := range page.Orders {
			out[o.ClientRef] = o.Status
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return out, nil
		}
		cursor = *page.NextCursor
	}
	return nil, fmt.Errorf("more than 100 pages of orders")
}

type ovState struct {
	list          map[string]string   // client_ref → status
	drift         map[string][]string // kind → shop order ids
	overdue       []string            // shop order ids
	metricDrift   map[string]float64  // kind → ficus_orders_drifted
	metricOverdue float64             // sum of ficus_orders_overdue
}

func ovRead(ctx context.Context, api, metrics string) (ovState, error) {
	s := ovState{drift: map[string][]string{}, metricDrift: map[string]float64{}}
	var err error
	if s.list, err = ovList(ctx, api); err != nil {
		return s, err
	}
	var d struct {
		Drift []struct {
			Ref  string `json:"ref"`
			Kind string `json:"kind"`
		} `json:"drift"`
	}
	if err := plGet(ctx, api+"/api/v1/drift?limit=500", &d); err != nil {
		return s, err
	}
	for _, x := range d.Drift {
		s.drift[x.Kind] = append(s.drift[x.Kind], x.Ref)
	}
	var o struct {
		Overdue []struct {
			Source string `json:"source"`
			ID     int64  `json:"id"`
		} `json:"overdue"`
	}
	if err := plGet(ctx, api+"/api/v1/overdue?limit=500", &o); err != nil {
		return s, err
	}
	for _, x := range o.Overdue {
		s.overdue = append(s.overdue, x.Source+":"+strconv.FormatInt(x.ID, 10))
	}
	dm, err := ovMetrics(metrics, "ficus_orders_drifted")
	if err != nil {
		return s, err
	}
	for labels, v := range dm {
		for _, kind := range []string{"status", "missing"} {
			if strings.Contains(labels, `kind="`+kind+`"`) {
				s.metricDrift[kind] += v
			}
		}
	}
	s.metricOverdue = ovMetric(metrics, "ficus_orders_overdue")
	return s, nil
}

// ovDiff says how got differs from want as sets; empty when equal. Overdue
// entries are "source:id"; want holds shop order ids.
func ovDiff(got, want []string) string {
	w := map[string]bool{}
	for _, x := range want {
		w[x] = true
	}
	g := map[string]bool{}
	for _, x := range got {
		g[strings.TrimPrefix(x, "shop:")] = true
	}
	var extra, lacking []string
	for x := range g {
		if !w[x] {
			extra = append(extra, x)
		}
	}
	for x := range w {
		if !g[x] {
			lacking = append(lacking, x)
		}
	}
	if len(extra) == 0 && len(lacking) == 0 {
		return ""
	}
	slices.Sort(extra)
	slices.Sort(lacking)
	return fmt.Sprintf("%d listed that should not be %v, %d not listed %v", len(extra), first5(extra), len(lacking), first5(lacking))
}

func first5(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
