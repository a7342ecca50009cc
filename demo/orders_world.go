package demo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/sim/mes"
)

// orderStage is the demo MES's stage time: production (the act's shifts,
// mes.Server.AdvanceOnce) moves every order on by one status per shift,
// standing in for the days each stage takes.
const orderStage = time.Millisecond

// statusHook is the way back from the MES to the shop: the legacy queue.
// Until the order act connects it, status events go nowhere.
type statusHook struct {
	mu   sync.Mutex
	send func(context.Context, mes.Order)
}

func (h *statusHook) announce(ctx context.Context, o mes.Order) {
	h.mu.Lock()
	send := h.send
	h.mu.Unlock()
	if send != nil {
		send(ctx, o)
	}
}

func (h *statusHook) set(send func(context.Context, mes.Order)) {
	h.mu.Lock()
	h.send = send
	h.mu.Unlock()
}

// seedHistorySQL writes $1 past MES orders, all shipped, ending a day
// before $2, one every minute: the years of orders the legacy MES's
// table holds, written in one statement (the 977 kinds of items are
// built once: 40% faster than building each row's).
const seedHistorySQL = `
WITH kinds AS (
	SELECT array_agg(jsonb_build_array(jsonb_build_object('model_url', 'archive/part-' || k || '.stl',
	           'material', (ARRAY['PLA','PETG','ASA','PA12'])[1 + k % 4], 'quantity', 1 + k % 20)) ORDER BY k) AS items
	FROM generate_series(0, 976) AS k
)
INSERT INTO mes.orders (client_ref, customer, items, status, created_at, updated_at)
SELECT 'H-' || g, 'customer ' || (g % 4999), kinds.items[1 + g % 977], 'shipped', t, t + interval '5 days'
FROM kinds, generate_series(1, $1::int) AS g,
     LATERAL (SELECT date_trunc('second', $2::timestamptz) - interval '1 day' - make_interval(mins => $1::int - g)) AS c(t)`

// seedHistory makes the MES's table hold n past orders (fewer when it
// holds some from an earlier run) and reports how many it wrote.
func seedHistory(ctx context.Context, pool *pgxpool.Pool, n int, now time.Time) (int, error) {
	var have int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mes.orders WHERE client_ref LIKE 'H-%'`).Scan(&have); err != nil {
		return 0, fmt.Errorf("count the MES's past orders: %w", err)
	}
	if have >= n {
		return 0, nil
	}
	if _, err := pool.Exec(ctx, seedHistorySQL, n-have, now); err != nil {
		return 0, fmt.Errorf("write the MES's past orders: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE mes.orders`); err != nil {
		return 0, fmt.Errorf("analyze mes.orders: %w", err)
	}
	return n - have, nil
}

// backfillSQL puts the MES's orders as they are into the view, as ficus
// cdc's snapshot of mes.orders would, in one statement instead of a
// stream of row events: the view's feed starts after it. $1 is the
// source, $2 and $3 map statuses to the common vocabulary, $4 lists the
// final ones.
const backfillSQL = `
WITH rows AS (
	INSERT INTO ficus.order_view (source, id, ref, status, common, status_since, created_at, promised_at, final, doc)
	SELECT $1, o.id, o.client_ref, o.status, coalesce(m.common, o.status), o.updated_at, o.created_at, NULL,
	       o.status = ANY($4::text[]), to_jsonb(o)
	FROM mes.orders o LEFT JOIN unnest($2::text[], $3::text[]) AS m(status, common) ON m.status = o.status
	ON CONFLICT (source, id) DO NOTHING
	RETURNING status
)
INSERT INTO ficus.order_view_counts AS c (source, status, n)
SELECT $1, status, count(*) FROM rows GROUP BY status
ON CONFLICT (source, status) DO UPDATE SET n = c.n + excluded.n`

// backfillView copies mes.orders into the view (rows it has already are
// left as they are) and returns how many MES orders the view then holds.
func backfillView(ctx context.Context, pool *pgxpool.Pool, src orders.Source) (int64, error) {
	from := slices.Sorted(maps.Keys(src.Common))
	to := make([]string, len(from))
	for i, s := range from {
		to[i] = src.Common[s]
	}
	if _, err := pool.Exec(ctx, backfillSQL, src.Name, from, to, src.Final); err != nil {
		return 0, fmt.Errorf("backfill the order view: %w", err)
	}
	var n int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(n), 0)::bigint FROM ficus.order_view_counts WHERE source = $1`, src.Name).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the order view: %w", err)
	}
	return n, nil
}

// strangleConfig is the demo proxy's configuration with the operators'
// order list and order reads moved to the order view at viewURL, each
// mirrored to the MES and compared (docs/orders.md, Strangling the MES's
// list).
func strangleConfig(base *proxy.Config, mesURL, viewURL string) (*proxy.Config, error) {
	routes, err := proxy.ParseConfig([]byte(fmt.Sprintf(`
upstreams:
  mes: {url: %s, timeout: 30s}
  orderview: {url: %s, timeout: 5s}
routes:
  - name: orders-list
    match: {methods: [GET], path: /api/v1/orders}
    upstream: orderview
    shadow: {upstream: mes, percent: 100, ignore: ["orders.*.status"]}
  - name: order
    match: {methods: [GET], path: /api/v1/orders/*}
    upstream: orderview
    shadow: {upstream: mes, percent: 100, ignore: [status]}
  - name: mes
    upstream: mes
`, mesURL, viewURL)), "")
	if err != nil {
		return nil, err
	}
	cfg := *base
	cfg.Upstreams = maps.Clone(base.Upstreams)
	cfg.Upstreams["orderview"] = routes.Upstreams["orderview"]
	if _, ok := cfg.Upstreams["mes"]; !ok {
		return nil, fmt.Errorf("the demo proxy has no upstream named mes")
	}
	cfg.Routes = append(routes.Routes[:2:2], base.Routes...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// median returns the middle of ds.
func median(ds []time.Duration) time.Duration {
	return slices.Sorted(slices.Values(ds))[len(ds)/2]
}

// ms prints a duration in milliseconds, to a tenth below 10 ms.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " ms"
	}
	return fmt.Sprintf("%.0f ms", v)
}
