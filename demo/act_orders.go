package demo

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
)

// OrdersReport is what the order view's act showed.
type OrdersReport struct {
	// HistoricalOrders were written into the MES's table in SeedTime.
	HistoricalOrders int
	SeedTime         time.Duration
	// CopyTime is how long copying the MES's orders into the view took.
	CopyTime time.Duration
	// MESOrders is the MES's list total, ViewOrders the view's: equal once
	// the view has caught up.
	MESOrders, ViewOrders int64
	// Query is the operators' list request timed; MESTime is the median
	// of Requests answers straight from the MES, ViewTime through the
	// proxy's strangled route, from the view.
	Query              string
	Requests           int
	MESTime, ViewTime  time.Duration
	ShadowCompared     int
	ShadowMatched      int
	ShadowMismatched   int
	ShopOrders         int // placed by the shop and forwarded to the MES
	Shipped            int // of them, shipped in the shop: mirrored from the MES
	Stalled            int // of them, left stuck by the MES (stall_rate)
	StatusEventsLost   int // lost on the way back from the MES
	Overdue            int // of the shop's orders, overdue in the view
	Drifted            int // of the shop's orders, drifted in the view
	StuckOverdue       bool
	LostStatusDrifted  bool
	DetectedWithin     time.Duration
	StuckRef, DriftRef string
}

// The act's compressed time: the limits of the view's overdue and drift
// detection, standing for days and minutes.
const (
	demoStatusLimit = time.Second
	demoDriftGrace  = time.Second
	// actShopOrders is how many orders the shop places in the act.
	actShopOrders = 8
	orderSlot     = "ficus_demo_orders"
)

// actOrders: the operators' list of orders through the proxy's strangled
// route, served by the order view in milliseconds while the MES's own
// takes its time; an order the MES leaves stuck becomes overdue, and a
// status lost on its way back to the shop is caught as drift.
func actOrders(ctx context.Context, w *world, r *Report) error {
	out, pool := w.cfg.Out, w.cfg.Pool
	rep := &r.Orders
	fmt.Fprintf(out, "\n── The order view: the operators' list, overdue orders and status drift ──\n")
	if _, err := migrate.Up(ctx, pool); err != nil {
		return fmt.Errorf("demo: order view: %w", err)
	}
	n := cmp.Or(w.cfg.HistoricalOrders, 300_000)
	if n < 0 {
		return fmt.Errorf("demo: HistoricalOrders is %d; want a positive number, or 0 for 300,000", n)
	}
	start := time.Now()
	wrote, err := seedHistory(ctx, pool, n, start)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	rep.HistoricalOrders, rep.SeedTime = n, time.Since(start)
	fmt.Fprintf(out, "  the MES's database holds %d past orders (%d written in %s, one INSERT … generate_series)\n",
		n, wrote, rep.SeedTime.Round(10*time.Millisecond))

	vcfg := orders.Config{
		DriftGrace: demoDriftGrace,
		StatusLimits: map[string]map[string]time.Duration{
			orders.SourceShop: {"new": demoStatusLimit, "priced": demoStatusLimit},
			orders.SourceMES:  {"new": demoStatusLimit, "scheduled": demoStatusLimit, "printing": demoStatusLimit, "finishing": demoStatusLimit},
		},
	}
	// ficus cdc feeds the view from shop.orders and mes.orders; the
	// orders already there are copied in first, while nothing writes to
	// the MES (the slot made after the copy decodes none of its WAL).
	copyStart := time.Now()
	backfilled, err := backfillView(ctx, pool, orders.DefaultSources()[1])
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	rep.CopyTime = time.Since(copyStart)
	if _, err := cdc.Setup(ctx, pool, cdc.SetupConfig{Slot: orderSlot, Publication: orderSlot, Tables: []string{"shop.orders", "mes.orders"}}); err != nil {
		return fmt.Errorf("demo: order view: cdc setup: %w", err)
	}
	defer func() {
		if _, err := cdc.Teardown(context.WithoutCancel(ctx), pool, orderSlot, orderSlot, true); err != nil {
			w.cfg.Logger.Warn("drop the order view's replication slot", "err", err)
		}
	}()
	fmt.Fprintf(out, "  ficus cdc feeds the order view from shop.orders and mes.orders (%d MES orders copied in first, in %s)\n",
		backfilled, rep.CopyTime.Round(10*time.Millisecond))

	// The act's components count into a set of their own, not served:
	// their names are those of the timeline's shop and cdc reader.
	set := metrics.NewSet()
	sink, err := orders.NewSink(pool, vcfg, set)
	if err != nil {
		return err
	}
	view, err := orders.NewView(pool, vcfg, nil)
	if err != nil {
		return err
	}
	source := cdc.Source("demo", orderSlot)
	reader, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString: pool.Config().ConnString(), Slot: orderSlot, Publication: orderSlot, StatusInterval: time.Second,
		DeliverBatch: func(ctx context.Context, txs []cdc.Tx) error {
			events, err := cdc.BatchEvents(txs, source)
			if err != nil {
				return err
			}
			return sink.Send(ctx, events)
		},
		SnapshotChunkSize: -1, Logger: w.cfg.Logger, Metrics: set,
	})
	if err != nil {
		return fmt.Errorf("demo: order view: %w", err)
	}
	viewLn, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	shopLn, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		viewLn.Close()
		return err
	}
	viewBase, shopEvents := "http://"+viewLn.Addr().String(), "http://"+shopLn.Addr().String()+"/api/v1/mes-events"

	// The shop forwards its orders to the MES and takes their statuses
	// back from the MES's status events.
	client := &http.Client{Timeout: 30 * time.Second}
	forward, err := shop.ForwardToMES(pool, w.mesBase, client)
	if err != nil {
		viewLn.Close()
		shopLn.Close()
		return err
	}
	gen, err := shop.New(shop.Config{Pool: pool, Models: w.catalogue, Forward: forward, Metrics: set, Logger: w.cfg.Logger,
		// The shop's own steps (pricing, payment) wait; production is the story here.
		Dwell: map[string]shop.Dwell{shop.StatusNew: {Min: time.Hour}, shop.StatusPriced: {Min: time.Hour}, shop.StatusPaid: {Min: time.Hour}}})
	if err != nil {
		viewLn.Close()
		shopLn.Close()
		return err
	}
	ann, err := mes.NewAnnouncer(mes.AnnouncerConfig{URL: shopEvents, Client: client, Metrics: set, Logger: w.cfg.Logger})
	if err != nil {
		viewLn.Close()
		shopLn.Close()
		return err
	}
	q := &statusQueue{ann: ann, ours: map[string]bool{}}
	w.mesStatus.set(q.carry)
	defer w.mesStatus.set(nil)

	actCtx, stopAct := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAct()
	g, gctx := errgroup.WithContext(actCtx)
	g.Go(func() error { return ignoreEnd(reader.Run(gctx)) })
	g.Go(func() error {
		return httpserve.Run(gctx, httpserve.Config{Listener: viewLn, Handler: orders.NewHandler(view, w.cfg.Logger), DrainTimeout: time.Second})
	})
	g.Go(func() error {
		return httpserve.Run(gctx, httpserve.Config{Listener: shopLn, Handler: gen.StatusHandler(set, w.cfg.Logger), DrainTimeout: time.Second})
	})
	err = w.ordersStory(ctx, view, viewBase, gen, q, rep)
	stopAct()
	return errors.Join(err, g.Wait())
}

// statusQueue carries the MES's status events about the shop's orders
// to the shop, and loses the one it is told to.
type statusQueue struct {
	ann  *mes.Announcer
	mu   sync.Mutex
	ours map[string]bool // client_refs of the shop's orders
	lose string          // "client_ref/status" of the event to lose
	lost int
}

func (q *statusQueue) carry(ctx context.Context, o mes.Order) {
	q.mu.Lock()
	ours, lose := q.ours[o.ClientRef], q.lose == o.ClientRef+"/"+o.Status
	if lose {
		q.lost++
	}
	q.mu.Unlock()
	if ours && !lose {
		q.ann.Announce(ctx, o)
	}
}

func (w *world) ordersStory(ctx context.Context, view *orders.View, viewBase string, gen *shop.Generator, q *statusQueue, rep *OrdersReport) error {
	out, pool := w.cfg.Out, w.cfg.Pool
	// The shop takes orders and forwards each to the MES.
	var ids []int64
	for range actShopOrders {
		if err := gen.Step(ctx); err != nil {
			return fmt.Errorf("demo: shop: %w", err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT o.id FROM shop.orders o WHERE o.id > (SELECT coalesce(max(id), 0) FROM shop.orders) - $1 ORDER BY o.id`, actShopOrders)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	mesIDs := map[string]int64{}
	for _, id := range ids {
		ref := strconv.FormatInt(id, 10)
		var mesID int64
		if err := pool.QueryRow(ctx, `SELECT id FROM mes.orders WHERE client_ref = $1`, ref).Scan(&mesID); err != nil {
			return fmt.Errorf("demo: shop order %d was not forwarded to the MES: %w", id, err)
		}
		mesIDs[ref] = mesID
	}
	rep.ShopOrders = len(ids)
	// One order stalls on the shop floor: the stall_rate that catches the
	// first of the shop's orders in the MES's stall order and no other.
	stuck, lostRef := "", ""
	for _, id := range ids {
		ref := strconv.FormatInt(id, 10)
		if stuck == "" || mes.StallScore(mesIDs[ref]) < mes.StallScore(mesIDs[stuck]) {
			stuck = ref
		}
	}
	rate := mes.StallScore(mesIDs[stuck]) + 0.00005
	for _, id := range ids {
		if ref := strconv.FormatInt(id, 10); mes.StallScore(mesIDs[ref]) >= rate {
			lostRef = ref // the last of those that do not stall
		}
	}
	if lostRef == "" {
		return fmt.Errorf("demo: every one of the shop's orders stalls at stall_rate %v", rate)
	}
	mine := map[string]bool{}
	q.mu.Lock()
	for _, id := range ids {
		q.ours[strconv.FormatInt(id, 10)] = true
		mine[strconv.FormatInt(id, 10)] = true
	}
	q.lose = lostRef + "/" + mes.StatusShipped
	q.mu.Unlock()
	if err := w.mes.SetFaults(mes.Faults{StallRate: rate}); err != nil {
		return err
	}
	defer w.mes.SetFaults(mes.Faults{}) //nolint:errcheck // valid faults
	fmt.Fprintf(out, "  the shop placed %d orders (%d…%d), each forwarded to the MES with its id as client_ref\n", len(ids), ids[0], ids[len(ids)-1])
	// Production: four shifts take every order from new to shipped, but
	// the stuck one; the queue back to the shop loses one order's
	// "shipped".
	moved := 0
	for range 4 {
		time.Sleep(2 * orderStage) // a shift is a stage long
		m, err := w.mes.AdvanceOnce(ctx)
		if err != nil {
			return fmt.Errorf("demo: MES production: %w", err)
		}
		moved += len(m)
	}
	stuckSince := time.Now()
	q.mu.Lock()
	rep.StatusEventsLost = q.lost
	q.mu.Unlock()
	fmt.Fprintf(out, "  MES production, 4 shifts: %d status changes; shop order %s stuck in \"new\" (stall_rate %.4f); the queue lost %d event (order %s: shipped)\n",
		moved, stuck, rate, rep.StatusEventsLost, lostRef)

	// The view catches up, then overdue and drift show after their
	// (compressed) limits.
	mesList := func(path string) (time.Duration, []byte, error) { return timedGet(ctx, w.admin, w.mesBase+path) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, bm, err1 := mesList("/api/v1/orders?per_page=5")
		_, bv, err2 := timedGet(ctx, w.admin, viewBase+"/api/v1/orders?per_page=5")
		if err1 == nil && err2 == nil && jsonEqual(bm, bv) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the order view did not catch up with the MES in 30s (%v): the MES has %.300s, the view %.300s", errors.Join(err1, err2), bm, bv)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		over, err := view.Overdue(ctx, 500)
		if err != nil {
			return err
		}
		drift, err := view.Drift(ctx, 500)
		if err != nil {
			return err
		}
		rep.Overdue, rep.Drifted, rep.StuckOverdue, rep.LostStatusDrifted = 0, 0, false, false
		seen := map[string]bool{}
		for _, o := range over {
			if mine[o.Ref] && !seen[o.Ref] {
				seen[o.Ref] = true
				rep.Overdue++
				rep.StuckOverdue = rep.StuckOverdue || o.Ref == stuck
			}
		}
		for _, d := range drift {
			if mine[d.Ref] {
				rep.Drifted++
				rep.LostStatusDrifted = rep.LostStatusDrifted || (d.Ref == lostRef && d.Kind == "status")
			}
		}
		if rep.StuckOverdue && rep.LostStatusDrifted {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the order view did not show the stuck order %s as overdue (%v) or order %s as drifted (%v)", stuck, rep.StuckOverdue, lostRef, rep.LostStatusDrifted)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep.DetectedWithin = time.Since(stuckSince)
	rep.StuckRef, rep.DriftRef = stuck, lostRef
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'shipped') FROM shop.orders WHERE id = ANY($1)`, ids).Scan(&rep.Shipped); err != nil {
		return err
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mes.orders WHERE client_ref = ANY($1) AND status = 'new'`, refs(ids)).Scan(&rep.Stalled); err != nil {
		return err
	}
	fmt.Fprintf(out, "  the view, %s after the last shift: overdue, shop order %s (in \"new\" past its limit of %s, standing for days);\n", rep.DetectedWithin.Round(100*time.Millisecond), stuck, demoStatusLimit)
	fmt.Fprintf(out, "    drifted, order %s (shipped in the MES, in_production in the shop past the %s grace; both histories at GET /api/v1/drift)\n", lostRef, demoDriftGrace)

	return w.ordersSpeed(ctx, viewBase, rep)
}

// ordersSpeed times the operators' list straight from the MES and
// through the proxy's strangled route, and counts the shadow comparisons.
func (w *world) ordersSpeed(ctx context.Context, viewBase string, rep *OrdersReport) error {
	out := w.cfg.Out
	cfg, err := strangleConfig(w.proxyCfg, w.mesBase, viewBase)
	if err != nil {
		return fmt.Errorf("demo: strangle the order list: %w", err)
	}
	if err := w.proxy.Reload(cfg); err != nil {
		return fmt.Errorf("demo: strangle the order list: %w", err)
	}
	defer w.proxy.Reload(w.proxyCfg) //nolint:errcheck // the config it started with
	rep.Query, rep.Requests = "/api/v1/orders?status=new&page=1&per_page=50", 5
	var mesT, viewT []time.Duration
	var mesBody, viewBody []byte
	for range rep.Requests {
		d, b, err := timedGet(ctx, w.admin, w.mesBase+rep.Query)
		if err != nil {
			return fmt.Errorf("demo: the MES's list: %w", err)
		}
		mesT, mesBody = append(mesT, d), b
	}
	shadow := func(result string) int {
		n := 0
		for _, route := range []string{"orders-list", "order"} {
			n += int(w.proxySet.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result=%q}`, route, result)).Get())
		}
		return n
	}
	before := shadow("match") + shadow("mismatch") + shadow("error") + shadow("skipped")
	matchedBefore, mismatchedBefore := shadow("match"), shadow("mismatch")
	compared := func() int { return shadow("match") + shadow("mismatch") + shadow("error") + shadow("skipped") - before }
	for i := range rep.Requests {
		d, b, err := timedGet(ctx, w.admin, w.proxyBase+rep.Query)
		if err != nil {
			return fmt.Errorf("demo: the list through ficus: %w", err)
		}
		viewT, viewBody = append(viewT, d), b
		// One operator at a time: the next request waits for this one's
		// comparison, so that the MES's query behind it does not slow it.
		for deadline := time.Now().Add(time.Minute); compared() <= i && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var ml, vl orders.MESList
	if json.Unmarshal(mesBody, &ml) != nil || json.Unmarshal(viewBody, &vl) != nil {
		return fmt.Errorf("demo: the lists are not the MES's JSON: %s / %s", mesBody, viewBody)
	}
	if _, b, err := timedGet(ctx, w.admin, w.proxyBase+"/api/v1/orders?per_page=1"); err == nil {
		_ = json.Unmarshal(b, &vl)
	}
	rep.ViewOrders = vl.Total
	if _, b, err := timedGet(ctx, w.admin, w.mesBase+"/api/v1/orders?per_page=1"); err == nil {
		_ = json.Unmarshal(b, &ml)
	}
	rep.MESOrders = int64(ml.Total)
	rep.MESTime, rep.ViewTime = median(mesT), median(viewT)
	// The shadow compares in the background: wait for its answers.
	want := rep.Requests + 1
	deadline := time.Now().Add(time.Minute)
	for compared() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rep.ShadowCompared = compared()
	rep.ShadowMatched, rep.ShadowMismatched = shadow("match")-matchedBefore, shadow("mismatch")-mismatchedBefore
	fmt.Fprintf(out, "  the operators' list, GET %s (%d orders in all, %d requests each):\n", rep.Query, rep.MESOrders, rep.Requests)
	fmt.Fprintf(out, "    the MES's own:                     median %s\n", ms(rep.MESTime))
	fmt.Fprintf(out, "    through ficus proxy, from the view: median %s (%.0f× faster); shadow: %d of %d answers match the MES's\n",
		ms(rep.ViewTime), float64(rep.MESTime)/float64(max(rep.ViewTime, time.Microsecond)), rep.ShadowMatched, rep.ShadowCompared)
	return nil
}

func timedGet(ctx context.Context, c *http.Client, url string) (time.Duration, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return took, b, err
}

func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

func refs(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(id, 10)
	}
	return out
}
