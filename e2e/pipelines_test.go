//go:build e2e

package e2e

// The data pipelines' scenarios share these pl* helpers: the CRM fed by
// cdc, the shop's status changes that feed it, the outbox relay into a
// JSONL file, and a consumer of that file that applies each event through
// ficus's inbox.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/shop"
)

// plAwait polls f until it reports done, for at most timeout, or until
// what has arrived (n) stops growing for quiet: then the checker's verdict
// says what is missing. An error of f is logged and polled again.
func plAwait(t *testing.T, timeout, quiet time.Duration, what string, f func() (n int, done bool, err error)) {
	t.Helper()
	start := time.Now()
	last, lastChange := -1, start
	for {
		n, done, err := f()
		if done {
			return
		}
		if err != nil {
			t.Logf("%s: %v", what, err)
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(start) > timeout || time.Since(lastChange) > quiet {
			t.Logf("%s: gave up after %s, nothing new for %s", what, time.Since(start).Round(time.Second), time.Since(lastChange).Round(time.Second))
			return
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(200 * time.Millisecond): // polling a condition, bounded by timeout
		}
	}
}

// plAll runs the starters at once and waits for them; when one failed
// (its t.Fatal ends only its own goroutine), t stops here.
func plAll(t *testing.T, starters ...func()) {
	t.Helper()
	var wg sync.WaitGroup
	for _, f := range starters {
		wg.Go(f)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// plRetry runs f until it succeeds, for at most a minute: a writer riding
// out a restart of its database.
func plRetry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // backoff between tries, bounded by the deadline
		}
	}
}

// plCRM starts the simulated CRM of t in webhook mode (API 8082, metrics
// 9192).
func plCRM(t *testing.T) *harness.Container {
	t.Helper()
	return env.Run(t, harness.Spec{
		Name:      harness.Host(t, "crm"),
		Cmd:       []string{"sim", "crm", "--mode", "webhook", "--listen", "0.0.0.0:8082", "--metrics-listen", "0.0.0.0:9192"},
		Env:       map[string]string{"FICUS_LOG_FORMAT": "json"},
		Ports:     []string{"8082", "9192"},
		Ready:     "/readyz",
		ReadyPort: "9192",
		Metrics:   "9192",
	})
}

// plCDC creates slot and publication slot for shop.orders of database db
// on pg (no snapshot: the table is empty) and starts "ficus cdc run" into
// sink. It is ready once it serves /healthz: its /readyz fails while the
// sink does, and a restarted reader must not wait for that.
func plCDC(t *testing.T, pg *harness.Postgres, db, slot, sink string) *harness.Container {
	t.Helper()
	dbEnv := map[string]string{"FICUS_DATABASE_URL": pg.URL(db), "FICUS_LOG_FORMAT": "json"}
	env.RunToCompletion(t, harness.Spec{
		Name: harness.Host(t, "cdc-setup"),
		Cmd:  []string{"cdc", "setup", "--slot", slot, "--publication", slot, "--tables", "shop.orders", "--snapshot=false"},
		Env:  dbEnv,
	})
	return env.Run(t, harness.Spec{
		Name:      harness.Host(t, "cdc"),
		Cmd:       []string{"cdc", "run", "--slot", slot, "--publication", slot, "--sink", sink, "--metrics-listen", "0.0.0.0:9194", "--takeover-retry-max", "1s"},
		Env:       dbEnv,
		Ports:     []string{"9194"},
		Ready:     "/healthz",
		ReadyPort: "9194",
		Metrics:   "9194",
	})
}

// plShop makes status changes of the shop's orders in its database, the
// way the shop does, each in a transaction of its own, and records each
// in the checker as "<order id>/<status>" with the order as its key: Send
// before the commit, Ack once it committed. A change whose commit failed
// is looked up and tried again, so the writer rides out a restart of the
// database.
type plShop struct {
	pool     *pgxpool.Pool
	ck       *checker.Checker
	customer int64
	window   int // orders in progress at once
	total    int // orders to create
	created  int
	active   []*plOrder
	changes  int
}

type plOrder struct {
	id     int64
	ref    string
	status string
}

func plShopMessage(order int64, status string) string { return fmt.Sprintf("%d/%s", order, status) }

// newPLShop creates the shop's schema and a customer in pool's database.
func newPLShop(t *testing.T, pool *pgxpool.Pool, ck *checker.Checker, orders int) *plShop {
	t.Helper()
	if err := shop.EnsureSchema(t.Context(), pool); err != nil {
		t.Fatalf("shop schema: %v", err)
	}
	s := &plShop{pool: pool, ck: ck, window: 6, total: orders}
	err := pool.QueryRow(t.Context(), `INSERT INTO shop.customers (email, name) VALUES ('e2e@example.com', 'e2e') RETURNING id`).Scan(&s.customer)
	if err != nil {
		t.Fatalf("shop customer: %v", err)
	}
	return s
}

// Changes is how many changes the writer will make in all: each order is
// created and moves through every status.
func (s *plShop) Changes() int { return s.total * len(shop.Statuses) }

// Step makes the next change: a new order while fewer than window are in
// progress, else the next status of one of them, in turn.
func (s *plShop) Step(ctx context.Context) error {
	if len(s.active) < s.window && s.created < s.total {
		return s.create(ctx)
	}
	if len(s.active) == 0 {
		return errors.New("shop: every order is shipped")
	}
	o := s.active[s.changes%len(s.active)]
	if err := s.advance(ctx, o); err != nil {
		return err
	}
	if _, more := shop.Next(o.status); !more {
		s.active = slices.DeleteFunc(s.active, func(x *plOrder) bool { return x == o })
	}
	return nil
}

// Run makes n changes (fewer when every order is shipped), calling
// progress after each.
func (s *plShop) Run(ctx context.Context, n int, progress func(done int)) error {
	for i := range n {
		if len(s.active) == 0 && s.created == s.total {
			return nil
		}
		if err := s.Step(ctx); err != nil {
			return err
		}
		if progress != nil {
			progress(i + 1)
		}
	}
	return nil
}

func (s *plShop) create(ctx context.Context) error {
	ref := fmt.Sprintf("e2e-%d", s.created)
	var id int64
	err := plRetry(ctx, func() error {
		// A commit that failed may have happened all the same: look first.
		err := s.pool.QueryRow(ctx, `SELECT id FROM shop.orders WHERE note = $1`, ref).Scan(&id)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err // nil: it exists
		}
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `INSERT INTO shop.orders (customer_id, note) VALUES ($1, $2) RETURNING id`, s.customer, ref).Scan(&id); err != nil {
				return err
			}
			s.ck.Send(plShopMessage(id, "new"), fmt.Sprint(id))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("create order %s: %w", ref, err)
	}
	s.ck.Ack(plShopMessage(id, "new"))
	s.active = append(s.active, &plOrder{id: id, ref: ref, status: "new"})
	s.created++
	s.changes++
	return nil
}

func (s *plShop) advance(ctx context.Context, o *plOrder) error {
	next, _ := shop.Next(o.status)
	msg := plShopMessage(o.id, next)
	err := plRetry(ctx, func() error {
		var status string
		if err := s.pool.QueryRow(ctx, `SELECT status FROM shop.orders WHERE id = $1`, o.id).Scan(&status); err != nil {
			return err
		}
		if status == next {
			return nil // an earlier try committed
		}
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			s.ck.Send(msg, fmt.Sprint(o.id))
			_, err := tx.Exec(ctx, `UPDATE shop.orders SET status = $2, updated_at = now() WHERE id = $1 AND status = $3`, o.id, next, o.status)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("order %d to %s: %w", o.id, next, err)
	}
	s.ck.Ack(msg)
	o.status = next
	s.changes++
	return nil
}

// plCRMReader reads GET /admin/events of the CRM into a checker: every
// arrival of an order change, redeliveries included. It also counts, per
// change, the arrivals the CRM took (not recognised as duplicates by their
// event id): more than one is a duplicate in effect.
type plCRMReader struct {
	url      string
	ck       *checker.Checker
	after    int64
	taken    map[string]int
	dropped  int // redeliveries the CRM recognised by (source, id)
	received int
}

func newPLCRMReader(url string, ck *checker.Checker) *plCRMReader {
	return &plCRMReader{url: url, ck: ck, taken: map[string]int{}}
}

// Poll reads every event that arrived since the last Poll.
func (r *plCRMReader) Poll(ctx context.Context) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/admin/events?after=%d&limit=%d", r.url, r.after, crm.MaxEventsPageSize), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("CRM events: %w", err)
		}
		var page crm.EventsPage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("CRM events: %s: %v", resp.Status, err)
		}
		if page.Forgotten > 0 && r.after < page.Forgotten {
			return fmt.Errorf("CRM events: %d were forgotten before they were read", page.Forgotten)
		}
		for _, e := range page.Events {
			if e.OrderID == 0 {
				continue
			}
			msg := plShopMessage(e.OrderID, e.Status)
			r.received++
			r.ck.Receive(msg)
			if e.Duplicate {
				r.dropped++
			} else {
				r.taken[msg]++
			}
		}
		if len(page.Events) == 0 {
			return nil
		}
		r.after = page.Next
	}
}

// DuplicatesInEffect is an error naming the changes the CRM took more than
// once, that is under more than one event id.
func (r *plCRMReader) DuplicatesInEffect() error {
	var twice []string
	for msg, n := range r.taken {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", msg, n))
		}
	}
	if len(twice) == 0 {
		return nil
	}
	slices.Sort(twice)
	return fmt.Errorf("%d status changes reached the CRM under more than one event id, so its deduplication by (source, id) took them twice (duplicates in effect): %s",
		len(twice), strings.Join(twice[:min(len(twice), 10)], ", "))
}

// plLost is an error while the checker has acknowledged messages that did
// not arrive.
func plLost(ck *checker.Checker) error {
	if v := ck.Verdict(); len(v.Lost) > 0 {
		return fmt.Errorf("%d acknowledged, not arrived yet (first %s)", len(v.Lost), v.Lost[0])
	}
	return nil
}

// plRelayFile is where plRelay's JSONL sink writes.
const plRelayFile = "/tmp/outbox.jsonl"

// plRelay starts "ficus outbox relay" of database db on pg, message mode,
// with slot and publication slot, into the JSONL file plRelayFile in its
// container. It is ready once it reads the slot (its /readyz), so events
// emitted after it are delivered.
func plRelay(t *testing.T, pg *harness.Postgres, db, slot string) *harness.Container {
	t.Helper()
	return env.Run(t, harness.Spec{
		Name: harness.Host(t, "relay"),
		Cmd: []string{"outbox", "relay", "--mode", "message", "--slot", slot, "--publication", slot,
			"--sink", "jsonl://" + plRelayFile, "--metrics-listen", "0.0.0.0:9197", "--takeover-retry-max", "1s"},
		Env:       map[string]string{"FICUS_DATABASE_URL": pg.URL(db), "FICUS_LOG_FORMAT": "json"},
		Ports:     []string{"9197"},
		Ready:     "/readyz",
		ReadyPort: "9197",
		Metrics:   "9197",
	})
}

// plEmitter enqueues outbox events the way a service not written in Go
// does (ficus.outbox_emit in its own transaction), over aggregates in
// turn, and records each in the checker with its aggregate as key. A
// failed emit is tried again with the same id: if the first one committed
// after all, the relay delivers that id twice, which the inbox absorbs.
type plEmitter struct {
	pool       *pgxpool.Pool
	ck         *checker.Checker
	aggregates int
	n          int
}

func (e *plEmitter) Emit(ctx context.Context) error {
	agg := fmt.Sprintf("o%d", e.n%e.aggregates)
	id := fmt.Sprintf("%s-%05d", agg, e.n)
	e.ck.Send(id, agg)
	err := plRetry(ctx, func() error {
		_, err := e.pool.Exec(ctx, `SELECT ficus.outbox_emit('order', $1, 'order.step', $2::json, '{}'::jsonb, $3)`,
			agg, fmt.Sprintf(`{"n":%d}`, e.n), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("emit %s: %w", id, err)
	}
	e.ck.Ack(id)
	e.n++
	return nil
}

// plConsumer applies the events of the relay's JSONL file through ficus's
// inbox, each in a transaction of its own: its effect is a row of
// e2e_effects. Effects, not deliveries, go to the checker (Verdict), so a
// redelivery that takes effect again is a duplicate.
type plConsumer struct {
	pool  *pgxpool.Pool
	inbox *outbox.Inbox
	lines int // lines of the file applied so far
	seen  int // deliveries read, redeliveries included
	ids   map[string]int
}

func newPLConsumer(t *testing.T, pool *pgxpool.Pool) *plConsumer {
	t.Helper()
	if _, err := outbox.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("consumer: inbox schema: %v", err)
	}
	if _, err := pool.Exec(t.Context(), `CREATE TABLE e2e_effects (n bigserial PRIMARY KEY, event_id text NOT NULL, aggregate text NOT NULL)`); err != nil {
		t.Fatalf("consumer: effects table: %v", err)
	}
	// Its metrics are scraped like a service's (the outbox board's inbox
	// panel).
	in, err := outbox.NewInbox(outbox.InboxConfig{Consumer: "e2e", Pool: pool, Metrics: env.ConsumerMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	return &plConsumer{pool: pool, inbox: in, ids: map[string]int{}}
}

// Apply reads the relay's file and applies the complete lines it has not
// applied yet.
func (c *plConsumer) Apply(t *testing.T, relay *harness.Container) error {
	b, err := relay.ReadFile(t, plRelayFile)
	if errors.Is(err, harness.ErrNoFile) {
		return nil
	}
	if err != nil {
		return err
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1] // a line still being written waits for the next read
	} else {
		b = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for line := 0; sc.Scan(); line++ {
		if line < c.lines {
			continue
		}
		var e struct {
			ID      string `json:"id"`
			Subject string `json:"subject"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.ID == "" {
			return fmt.Errorf("relay file line %d: not an event: %q", line+1, sc.Text())
		}
		agg := strings.TrimPrefix(e.Subject, "order/")
		err := pgx.BeginFunc(t.Context(), c.pool, func(tx pgx.Tx) error {
			_, err := c.inbox.Process(t.Context(), tx, e.ID, func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), `INSERT INTO e2e_effects (event_id, aggregate) VALUES ($1, $2)`, e.ID, agg)
				return err
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("apply %s: %w", e.ID, err)
		}
		c.lines++
		c.seen++
		c.ids[e.ID]++
	}
	return sc.Err()
}

// Redelivered is how many deliveries repeated an id already delivered.
func (c *plConsumer) Redelivered() int { return c.seen - len(c.ids) }

// Missing is an error while an acknowledged event has not been delivered.
func (c *plConsumer) Missing(ck *checker.Checker) error {
	v := ck.Verdict() // the checker has only sends until Effects
	var missing []string
	for _, id := range v.Lost {
		if c.ids[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d acknowledged events not delivered yet (first %s)", len(missing), missing[0])
	}
	return nil
}

// Effects gives the checker every effect, in the order they were applied.
func (c *plConsumer) Effects(t *testing.T, ck *checker.Checker) {
	t.Helper()
	rows, err := c.pool.Query(t.Context(), `SELECT event_id FROM e2e_effects ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		ck.Receive(id)
	}
}

// plVerdict reports and asserts a checker's verdict.
func plVerdict(t *testing.T, what string, ck *checker.Checker) {
	t.Helper()
	v := ck.Verdict()
	env.Report.Verdict(t, what, v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}
