package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/shop"
)

// The crash test's schema, on top of the shop's: every change of an order
// bumps its version, and a deleted order leaves its last version in a table
// that is not published, so the expected stream can be read back with SQL.
const (
	crashSchemaSQL = `
		ALTER TABLE shop.orders ADD COLUMN version integer NOT NULL DEFAULT 1;
		CREATE TABLE crash_deleted_orders (id bigint PRIMARY KEY, version integer NOT NULL);
		INSERT INTO shop.customers (email, name) VALUES ('crash@example.com', 'Crash Test');`
	crashCustomerSQL = `SELECT id FROM shop.customers WHERE email = 'crash@example.com'`
	// crashCreateSQL inserts $2 orders of customer $1 in one statement.
	crashCreateSQL = `INSERT INTO shop.orders (customer_id, total)
		SELECT $1, 10 + g FROM generate_series(1, $2::int) AS g RETURNING id`
	// crashAdvanceSQL moves each order $1[i] to status $2[i], one version up.
	crashAdvanceSQL = `UPDATE shop.orders AS o SET status = v.status, version = o.version + 1, updated_at = now()
		FROM unnest($1::bigint[], $2::text[]) AS v(id, status) WHERE o.id = v.id`
	// crashRepriceSQL changes an order's total without changing its status.
	crashRepriceSQL = `UPDATE shop.orders SET total = total + 1, version = version + 1, updated_at = now() WHERE id = $1`
	// crashDeleteSQL deletes the orders $1 and notes their last versions.
	crashDeleteSQL = `WITH d AS (DELETE FROM shop.orders WHERE id = ANY($1::bigint[]) RETURNING id, version)
		INSERT INTO crash_deleted_orders (id, version) SELECT id, version FROM d`
	crashLiveSQL    = `SELECT id, version FROM shop.orders`
	crashDeletedSQL = `SELECT id, version FROM crash_deleted_orders`
)

// crashKills is how many times the test kills `ficus cdc run`.
const crashKills = 10

// TestCDCRunSurvivesSIGKILL kills `ficus cdc run` with SIGKILL at random
// points of its progress while a workload of 100,000 row changes runs, and
// restarts it every time, as a process supervisor would. The receiving CRM
// must end up with every change the database committed, every order's
// changes in order, and duplicates only as redeliveries of an event id it
// already has, with the same payload.
//
// "In order" means: the first delivery of each change of an order (a new
// event id) comes after the first deliveries of all the order's earlier
// changes. Redeliveries of events already received may come at any time
// (after a restart the reader replays what the slot had not confirmed), but
// a change never arrives before an older change of the same order that has
// not arrived yet.
//
// With -short the workload is 10,000 changes.
func TestCDCRunSurvivesSIGKILL(t *testing.T) {
	started := time.Now()
	changes, rng := crashWorkloadSize(t)

	ctx := t.Context()
	bin := buildFicus(t)
	built := time.Now()
	// The workload and the stream must be done by this deadline; on a
	// machine where they are not, the checks below still say what arrived.
	deadline, cancel := context.WithDeadline(ctx, built.Add(160*time.Second))
	defer cancel()

	db := pgtest.New(t)
	if err := shop.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, crashSchemaSQL); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "FICUS_DATABASE_URL="+db.URL)
	slotArgs := []string{"--slot", "crash", "--publication", "crash"}
	setup := exec.CommandContext(ctx, bin, append([]string{"cdc", "setup", "--tables", "shop.orders", "--snapshot=false"}, slotArgs...)...)
	setup.Env = env
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("ficus cdc setup: %v\n%s", err, out)
	}

	plan := newKillPlan(rng, crashKills, changes)
	crmSim, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
	if err != nil {
		t.Fatal(err)
	}
	recv := newCrashReceiver(crmSim.Handler(), plan)
	srv := httptest.NewServer(recv)
	defer srv.Close()

	sup := &crashSupervisor{
		bin: bin, env: env,
		// Parts of 16 changes: the transactions of 10 to 50 changes go to
		// the CRM in parts, and kills land between the parts of one.
		args:    append([]string{"cdc", "run", "--sink", srv.URL + "/events", "--metrics-listen", "127.0.0.1:0", "--part-size", "16"}, slotArgs...),
		onStart: recv.arm,
	}
	recv.kill = sup.kill

	runCtx, stopRun := context.WithCancel(ctx)
	supDone := make(chan error, 1)
	go func() { supDone <- sup.run(runCtx) }()
	stopSupervisor := sync.OnceValue(func() error {
		stopRun()
		return <-supDone
	})
	defer stopSupervisor() // on an early return

	w := &crashWorkload{pool: db.Pool, rng: rng, target: changes, recv: recv, maxAhead: max(changes/10, 1000)}
	workErr := w.run(deadline)
	wrote := time.Now()
	killsDuringWorkload := recv.killCount()

	want, err := readExpected(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case workErr != nil:
		t.Errorf("workload: %v (after %d changes; receiver: %s)", workErr, w.changes, recv.summary())
	case want.total != w.changes:
		t.Errorf("the database holds %d changes (sum of versions and deletes), the workload made %d", want.total, w.changes)
	default:
		if err := recv.waitUntil(deadline, func(r *crashReceiver) bool { return r.unique >= want.total }); err != nil {
			t.Errorf("not all %d changes arrived: %v; receiver: %s", want.total, err, recv.summary())
		}
	}
	caughtUp := time.Now()

	// A SIGTERM after all the crashes still stops ficus cleanly.
	if err := stopSupervisor(); err != nil {
		t.Errorf("ficus cdc run did not stop cleanly on SIGTERM: %v", err)
	}
	srv.Close() // waits for the handlers, so the counts below are final

	recv.mu.Lock()
	defer recv.mu.Unlock()
	recv.check(t, want)
	if sup.killErr != nil {
		t.Error(sup.killErr)
	}
	if sup.kills < crashKills {
		t.Errorf("ficus was killed %d times, want at least %d", sup.kills, crashKills)
	}
	for _, e := range sup.unexpected {
		t.Logf("ficus exited on its own and was restarted: %s", e)
	}

	st := crmSim.Stats()
	if st.Unique != want.total {
		t.Errorf("CRM recorded %d unique events, the database committed %d changes", st.Unique, want.total)
	}
	if st.Duplicates != recv.redeliveries {
		t.Errorf("CRM counted %d duplicates, the receiver %d redeliveries", st.Duplicates, recv.redeliveries)
	}
	if st.OutOfOrder != 0 || st.Gaps != 0 {
		t.Errorf("CRM saw %d out-of-order transitions and %d gaps, want none", st.OutOfOrder, st.Gaps)
	}
	if st.OrdersTracked != want.orders() {
		t.Errorf("CRM tracks %d orders, the workload created %d", st.OrdersTracked, want.orders())
	}

	t.Logf("%d changes in %d orders (%d deleted), %d transactions (%d with several rows)",
		want.total, want.orders(), len(want.deleted), w.txs, w.multiRowTxs)
	t.Logf("%d SIGKILLs (%d before answering a batch, %d right after answering; %d while the workload ran), %d other exits",
		sup.kills, recv.killsBefore, recv.killsAfter, killsDuringWorkload, len(sup.unexpected))
	t.Logf("%d deliveries in %d requests: %d distinct events (%d of them after another in the same transaction), %d redeliveries (same id, same payload)",
		recv.deliveries, recv.requests, recv.unique, recv.laterInTx, recv.redeliveries)
	t.Logf("timing: build %s, workload %s, catch-up after it %s, total %s",
		built.Sub(started).Round(time.Millisecond), wrote.Sub(built).Round(time.Millisecond),
		caughtUp.Sub(wrote).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
}

// buildFicus returns the ficus binary the package's tests share (see
// testBinary), building it on first use.
// crashWorkloadSize returns how many changes a crash test's workload
// makes (100,000; 10,000 with -short) and its random source, seeded from
// FICUS_CRASH_SEED when set, so that a failing run can be repeated.
func crashWorkloadSize(t *testing.T) (int, *rand.Rand) {
	t.Helper()
	changes := 100_000
	if testing.Short() {
		changes = 10_000
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FICUS_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FICUS_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (FICUS_CRASH_SEED=%d repeats this run), %d changes", seed, seed, changes)
	return changes, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func buildFicus(t *testing.T) string {
	t.Helper()
	testBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "ficus-test-bin-")
		if err != nil {
			testBinary.err = err
			return
		}
		testBinary.dir = dir
		bin := filepath.Join(dir, "ficus")
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			testBinary.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		testBinary.path = bin
	})
	if testBinary.err != nil {
		t.Fatal(testBinary.err)
	}
	return testBinary.path
}

// killPlan says after how many new events each life of `ficus cdc run`
// is killed, and how.
type killPlan struct {
	after  []int  // new events a life must deliver before its kill
	before []bool // kill before answering the request (else right after)
}

// newKillPlan draws n kills whose thresholds add up to at most 4/5 of
// changes, so that all of them happen before the stream ends.
func newKillPlan(rng *rand.Rand, n, changes int) killPlan {
	var p killPlan
	hi := 4 * changes / (5 * n)
	lo := hi / 3
	for i := range n {
		p.after = append(p.after, lo+rng.IntN(hi-lo+1))
		// Both ways at least once, then at random.
		p.before = append(p.before, i == 0 || (i > 1 && rng.IntN(2) == 0))
	}
	return p
}

// crashReceiver is the webhook endpoint ficus delivers to. It hands every
// request to the CRM simulator, checks each event against what it received
// before, and kills ficus when the kill plan says so.
type crashReceiver struct {
	crm  http.Handler
	plan killPlan
	// kill sends SIGKILL to the running ficus and returns a channel closed
	// once it has exited.
	kill func() <-chan struct{}

	mu             sync.Mutex
	changed        chan struct{} // closed and replaced when the counts change
	events         map[string][sha256.Size]byte
	orders         map[int64]*orderSeen
	requests       int
	deliveries     int
	unique         int
	laterInTx      int // distinct events that are not the first of their transaction
	redeliveries   int
	violations     []string
	violationCount int
	// The kill plan's progress: the next kill, whether the running life
	// is still to be killed, and its new events so far.
	nextKill                int
	armed                   bool
	sinceStart              int
	killsBefore, killsAfter int
}

// orderSeen is what arrived of one order: the highest version among first
// deliveries, and whether its delete arrived.
type orderSeen struct {
	version int
	deleted bool
}

func newCrashReceiver(crmHandler http.Handler, plan killPlan) *crashReceiver {
	return &crashReceiver{
		crm: crmHandler, plan: plan, changed: make(chan struct{}),
		events: make(map[string][sha256.Size]byte), orders: make(map[int64]*orderSeen),
	}
}

// crashEvent is the part of a ficus cdc event the receiver checks.
type crashEvent struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Data   struct {
		Op    string `json:"op"`
		Table string `json:"table"`
		Key   struct {
			ID int64 `json:"id"`
		} `json:"key"`
		New *struct {
			Version int `json:"version"`
		} `json:"new"`
	} `json:"data"`
}

type killWhen int

const (
	noKill killWhen = iota
	killBeforeAnswer
	killAfterAnswer
)

func (r *crashReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the sender died mid-request; it will send the batch again
	}
	// The CRM records first, so once the receiver has every change, so
	// has the CRM.
	rec := httptest.NewRecorder()
	fwd := req.Clone(req.Context())
	fwd.Body = io.NopCloser(bytes.NewReader(body))
	r.crm.ServeHTTP(rec, fwd)

	when := r.record(body, rec.Code)
	if when == killBeforeAnswer {
		select { // the batch is recorded but ficus never learns it
		case <-r.kill():
		case <-req.Context().Done():
		}
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
	if when == killAfterAnswer {
		w.(http.Flusher).Flush()
		r.kill()
	}
}

// record checks and records a batch and says whether to kill ficus now.
func (r *crashReceiver) record(body []byte, crmStatus int) killWhen {
	var raw []json.RawMessage
	jsonErr := json.Unmarshal(body, &raw)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.broadcast()
	r.requests++
	if crmStatus != http.StatusOK {
		r.violate("the CRM answered %d to a batch", crmStatus)
	}
	if jsonErr != nil {
		r.violate("a request body is not a JSON array of events: %v", jsonErr)
		return noKill
	}
	newEvents := 0
	for _, m := range raw {
		var e crashEvent
		if json.Unmarshal(m, &e) != nil || e.ID == "" {
			r.violate("malformed event %.200s", m)
			continue
		}
		r.deliveries++
		// A redelivery must be byte for byte the first delivery: ficus
		// builds an event from the WAL alone and encodes it the same way.
		digest := sha256.Sum256(m)
		key := e.Source + "\x00" + e.ID
		if prev, ok := r.events[key]; ok {
			r.redeliveries++
			if prev != digest {
				r.violate("event %s delivered again with a different payload: %s", e.ID, m)
			}
			continue
		}
		r.events[key] = digest
		r.unique++
		newEvents++
		if !strings.HasSuffix(e.ID, "-000000") {
			r.laterInTx++
		}
		r.checkOrder(e)
	}
	if !r.armed {
		return noKill
	}
	r.sinceStart += newEvents
	if r.sinceStart < r.plan.after[r.nextKill] {
		return noKill
	}
	r.armed = false
	before := r.plan.before[r.nextKill]
	r.nextKill++
	if before {
		r.killsBefore++
		return killBeforeAnswer
	}
	r.killsAfter++
	return killAfterAnswer
}

// checkOrder checks the first delivery of a change against the changes of
// its order that arrived before. The caller holds r.mu.
func (r *crashReceiver) checkOrder(e crashEvent) {
	if e.Data.Table != "shop.orders" {
		r.violate("event %s is for table %q, which is not captured", e.ID, e.Data.Table)
		return
	}
	id := e.Data.Key.ID
	o := r.orders[id]
	switch e.Data.Op {
	case "insert", "update":
		if e.Data.New == nil {
			r.violate("%s event %s of order %d has no new row", e.Data.Op, e.ID, id)
			return
		}
		v := e.Data.New.Version
		switch {
		case o == nil && e.Data.Op == "insert" && v == 1:
			r.orders[id] = &orderSeen{version: 1}
		case o == nil:
			r.violate("order %d: first event %s is an %s to version %d; version 1 never arrived before it", id, e.ID, e.Data.Op, v)
			r.orders[id] = &orderSeen{version: v}
		case o.deleted:
			r.violate("order %d: %s event %s (version %d) after its delete", id, e.Data.Op, e.ID, v)
		case v != o.version+1:
			r.violate("order %d: event %s with version %d arrived after version %d; want %d next (a new id for an old change, or a change ahead of an older one)",
				id, e.ID, v, o.version, o.version+1)
			o.version = max(o.version, v)
		default:
			o.version = v
		}
	case "delete":
		switch {
		case o == nil:
			r.violate("order %d: delete %s arrived before any of its changes", id, e.ID)
			r.orders[id] = &orderSeen{deleted: true}
		case o.deleted:
			r.violate("order %d: a second delete, %s", id, e.ID)
		default:
			o.deleted = true
		}
	default:
		r.violate("event %s: unexpected op %q", e.ID, e.Data.Op)
	}
}

// violate records a broken guarantee, keeping the first few messages. The
// caller holds r.mu.
// check reports, with r's lock held, the order violations r saw and every
// change of want it did not receive exactly once (missing or unexpected).
func (r *crashReceiver) check(t *testing.T, want crashExpected) {
	t.Helper()
	for _, v := range r.violations {
		t.Error(v)
	}
	if n := r.violationCount - len(r.violations); n > 0 {
		t.Errorf("... and %d more violations", n)
	}
	missing, extra := want.compare(r.orders)
	for _, m := range missing {
		t.Error(m)
	}
	for _, m := range extra {
		t.Error(m)
	}
	if r.unique != want.total {
		t.Errorf("received %d distinct changes, the database committed %d", r.unique, want.total)
	}
}

func (r *crashReceiver) violate(format string, args ...any) {
	r.violationCount++
	if len(r.violations) < 20 {
		r.violations = append(r.violations, fmt.Sprintf(format, args...))
	}
}

// arm starts counting the progress of a new life of ficus toward its kill.
func (r *crashReceiver) arm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sinceStart = 0
	r.armed = r.nextKill < len(r.plan.after)
}

func (r *crashReceiver) killCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nextKill
}

// broadcast wakes the waiters. The caller holds r.mu.
func (r *crashReceiver) broadcast() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitUntil returns once cond, called with r.mu held, is true, or when ctx
// ends.
func (r *crashReceiver) waitUntil(ctx context.Context, cond func(*crashReceiver) bool) error {
	for {
		r.mu.Lock()
		ok, changed := cond(r), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *crashReceiver) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d distinct events, %d redeliveries, %d kills, %d violations", r.unique, r.redeliveries, r.nextKill, r.violationCount)
}

// crashExpected is what the database committed: the last version of every
// order, live or deleted.
type crashExpected struct {
	live, deleted map[int64]int
	total         int
}

func (e crashExpected) orders() int { return len(e.live) + len(e.deleted) }

func readExpected(ctx context.Context, pool *pgxpool.Pool) (crashExpected, error) {
	e := crashExpected{}
	var err error
	if e.live, err = readVersions(ctx, pool, crashLiveSQL); err != nil {
		return e, err
	}
	if e.deleted, err = readVersions(ctx, pool, crashDeletedSQL); err != nil {
		return e, err
	}
	for _, v := range e.live {
		e.total += v
	}
	for _, v := range e.deleted {
		e.total += v + 1 // and the delete
	}
	return e, nil
}

func readVersions(ctx context.Context, pool *pgxpool.Pool, query string) (map[int64]int, error) {
	rows, err := pool.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("read back versions: %w", err)
	}
	versions := make(map[int64]int)
	var id int64
	var v int
	_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error {
		versions[id] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read back versions: %w", err)
	}
	return versions, nil
}

// compare lists the orders whose changes did not all arrive, and orders
// that arrived but were never committed.
func (e crashExpected) compare(got map[int64]*orderSeen) (missing, extra []string) {
	const limit = 20
	check := func(id int64, version int, deleted bool) {
		o := got[id]
		switch {
		case o == nil:
			missing = append(missing, fmt.Sprintf("order %d: none of its changes arrived (last version %d)", id, version))
		case o.version != version:
			missing = append(missing, fmt.Sprintf("order %d: changes up to version %d arrived, the database has version %d", id, o.version, version))
		case o.deleted != deleted:
			missing = append(missing, fmt.Sprintf("order %d: delete arrived %t, deleted in the database %t", id, o.deleted, deleted))
		}
	}
	for id, v := range e.live {
		check(id, v, false)
	}
	for id, v := range e.deleted {
		check(id, v, true)
	}
	for id := range got {
		_, live := e.live[id]
		_, deleted := e.deleted[id]
		if !live && !deleted {
			extra = append(extra, fmt.Sprintf("order %d arrived but the database never committed it", id))
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if n := len(missing); n > limit {
		missing = append(missing[:limit], fmt.Sprintf("... and %d more orders with missing changes", n-limit))
	}
	if n := len(extra); n > limit {
		extra = append(extra[:limit], fmt.Sprintf("... and %d more orders never committed", n-limit))
	}
	return missing, extra
}

// crashWorkload writes row changes to shop.orders: orders created alone or
// several at a time, moved through the statuses one step at a time (alone,
// several in one statement, or one order twice in one transaction),
// repriced, and deleted, every change one version up. It stays at most
// maxAhead changes ahead of the receiver, so that the kills happen while it
// writes.
type crashWorkload struct {
	pool     *pgxpool.Pool
	rng      *rand.Rand
	recv     *crashReceiver
	target   int
	maxAhead int
	// beforeStep, when set, runs before every transaction.
	beforeStep func(ctx context.Context) error

	customer         int64
	open             orderSet      // live orders that are not shipped yet
	shipped          orderSet      // live shipped orders
	status           map[int64]int // index in shop.Statuses of each live order
	changes          int
	txs, multiRowTxs int
}

func (w *crashWorkload) run(ctx context.Context) error {
	if err := w.pool.QueryRow(ctx, crashCustomerSQL).Scan(&w.customer); err != nil {
		return fmt.Errorf("find the customer: %w", err)
	}
	w.status = make(map[int64]int)
	for w.changes < w.target {
		if err := w.recv.waitUntil(ctx, func(r *crashReceiver) bool { return w.changes-r.unique <= w.maxAhead }); err != nil {
			return fmt.Errorf("wait for the receiver to keep up: %w", err)
		}
		if w.beforeStep != nil {
			if err := w.beforeStep(ctx); err != nil {
				return err
			}
		}
		if err := w.step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// step makes one transaction of at most the remaining changes. Most
// transactions change one row; the others change many, and carry most of
// the changes.
func (w *crashWorkload) step(ctx context.Context) error {
	left := w.target - w.changes
	n := func(lo, hi int) int { return min(left, lo+w.rng.IntN(hi-lo+1)) }
	switch p := w.rng.IntN(100); {
	case p < 15 || w.open.len() < 100:
		return w.create(ctx, 1)
	case p < 25:
		return w.create(ctx, n(10, 50))
	case p < 45:
		return w.advance(ctx, w.open.pick(w.rng, 1))
	case p < 65:
		return w.advance(ctx, w.open.pick(w.rng, n(10, 50)))
	case p < 73 && left >= 2:
		return w.advanceTwice(ctx, w.open.pick(w.rng, 1)[0])
	case p < 85:
		return w.exec(ctx, 1, crashRepriceSQL, w.open.pick(w.rng, 1)[0])
	case p < 93 && w.shipped.len() > 0:
		return w.delete(ctx, w.shipped.pick(w.rng, n(2, 10)))
	default:
		return w.delete(ctx, w.open.pick(w.rng, 1))
	}
}

func (w *crashWorkload) exec(ctx context.Context, changes int, sql string, args ...any) error {
	tag, err := w.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%.40s…: %w", strings.Join(strings.Fields(sql), " "), err)
	}
	if int(tag.RowsAffected()) != changes {
		return fmt.Errorf("%.40s…: %d rows changed, want %d", strings.Join(strings.Fields(sql), " "), tag.RowsAffected(), changes)
	}
	w.count(changes)
	return nil
}

func (w *crashWorkload) count(changes int) {
	w.changes += changes
	w.txs++
	if changes > 1 {
		w.multiRowTxs++
	}
}

func (w *crashWorkload) create(ctx context.Context, n int) error {
	rows, err := w.pool.Query(ctx, crashCreateSQL, w.customer, n)
	if err != nil {
		return fmt.Errorf("create %d orders: %w", n, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("create %d orders: %w", n, err)
	}
	for _, id := range ids {
		w.open.add(id)
		w.status[id] = 0
	}
	w.count(len(ids))
	return nil
}

// advance moves each order one status on in one statement.
func (w *crashWorkload) advance(ctx context.Context, ids []int64) error {
	statuses := make([]string, len(ids))
	for i, id := range ids {
		statuses[i] = shop.Statuses[w.status[id]+1]
	}
	if err := w.exec(ctx, len(ids), crashAdvanceSQL, ids, statuses); err != nil {
		return err
	}
	for _, id := range ids {
		w.moved(id)
	}
	return nil
}

// advanceTwice moves one order two steps in one transaction: two changes
// of the same row.
func (w *crashWorkload) advanceTwice(ctx context.Context, id int64) error {
	if w.status[id]+2 >= len(shop.Statuses) {
		return w.advance(ctx, []int64{id})
	}
	b := &pgx.Batch{} // one round trip, one implicit transaction
	for step := 1; step <= 2; step++ {
		b.Queue(crashAdvanceSQL, []int64{id}, []string{shop.Statuses[w.status[id]+step]})
	}
	if err := w.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("advance order %d twice: %w", id, err)
	}
	w.count(2)
	w.moved(id)
	w.moved(id)
	return nil
}

func (w *crashWorkload) moved(id int64) {
	w.status[id]++
	if w.status[id] == len(shop.Statuses)-1 {
		w.open.remove(id)
		w.shipped.add(id)
	}
}

// delete deletes the orders in one statement.
func (w *crashWorkload) delete(ctx context.Context, ids []int64) error {
	if err := w.exec(ctx, len(ids), crashDeleteSQL, ids); err != nil {
		return err
	}
	for _, id := range ids {
		w.open.remove(id)
		w.shipped.remove(id)
		delete(w.status, id)
	}
	return nil
}

// orderSet is a set of order ids that picks members at random.
type orderSet struct {
	ids []int64
	pos map[int64]int // index of each id in ids
}

func (s *orderSet) len() int { return len(s.ids) }

func (s *orderSet) add(id int64) {
	if s.pos == nil {
		s.pos = make(map[int64]int)
	}
	s.pos[id] = len(s.ids)
	s.ids = append(s.ids, id)
}

func (s *orderSet) remove(id int64) {
	i, ok := s.pos[id]
	if !ok {
		return
	}
	last := s.ids[len(s.ids)-1]
	s.ids[i], s.pos[last] = last, i
	s.ids = s.ids[:len(s.ids)-1]
	delete(s.pos, id)
}

// pick returns up to n distinct members at random.
func (s *orderSet) pick(rng *rand.Rand, n int) []int64 {
	n = min(n, len(s.ids))
	picked := make([]int64, 0, n)
	for len(picked) < n {
		if id := s.ids[rng.IntN(len(s.ids))]; !slices.Contains(picked, id) {
			picked = append(picked, id)
		}
	}
	return picked
}

// crashSupervisor runs `ficus cdc run` and starts it again whenever it
// exits, as a process supervisor would, until its context ends; then it
// stops it with SIGTERM.
type crashSupervisor struct {
	bin     string
	args    []string
	env     []string
	onStart func()
	// beforeRestart, when set, runs before every start but the first.
	beforeRestart func(ctx context.Context)

	mu      sync.Mutex
	proc    *os.Process
	exited  chan struct{}
	killing bool // the test sent SIGKILL to proc

	killErr error

	// Owned by run until it returns.
	kills      int
	unexpected []string
}

// maxUnexpectedExits bounds how often ficus may exit on its own before
// the test gives up restarting it.
const maxUnexpectedExits = 20

// run supervises until ctx ends and returns the error of the last life,
// nil when it stopped cleanly on SIGTERM.
func (s *crashSupervisor) run(ctx context.Context) error {
	for life := 0; ; life++ {
		if ctx.Err() != nil {
			return nil
		}
		if s.beforeRestart != nil && life > 0 {
			s.beforeRestart(ctx)
		}
		cmd := exec.CommandContext(ctx, s.bin, s.args...)
		cmd.Env = s.env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 45 * time.Second // more than the reader's 30s drain
		out := &tailBuffer{max: 8 << 10}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start ficus cdc run: %w", err)
		}
		exited := make(chan struct{})
		s.mu.Lock()
		s.proc, s.exited, s.killing = cmd.Process, exited, false
		s.mu.Unlock()
		s.onStart()

		err := cmd.Wait()
		s.mu.Lock()
		killed := s.killing
		s.proc = nil
		s.mu.Unlock()
		close(exited)
		switch {
		case killed:
			s.kills++
		case ctx.Err() != nil:
			// Wait reports the context's error even after a clean exit.
			if !cmd.ProcessState.Success() {
				return fmt.Errorf("%v\n%s", cmp.Or(err, errors.New(cmd.ProcessState.String())), out.String())
			}
			return nil
		default:
			s.unexpected = append(s.unexpected, fmt.Sprintf("%v: %s", err, out.String()))
			if len(s.unexpected) > maxUnexpectedExits {
				return fmt.Errorf("ficus cdc run exited on its own %d times, last: %s", len(s.unexpected), s.unexpected[len(s.unexpected)-1])
			}
		}
	}
}

// kill sends SIGKILL to the running ficus and returns a channel closed
// once it has exited.
func (s *crashSupervisor) kill() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.killing {
		s.killing = true
		if err := syscall.Kill(-s.proc.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.killErr = cmp.Or(s.killErr, fmt.Errorf("kill ficus: %w", err))
		}
	}
	return s.exited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
