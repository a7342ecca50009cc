package mes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// orderStore keeps the MES's orders: in memory (the default) or in its
// Postgres database (Config.DB), queried the way the legacy MES does.
type orderStore interface {
	// add stores o (ID and CreatedAt unset) and returns it as stored.
	add(ctx context.Context, o Order, at time.Time) (Order, error)
	// takeID uses up an id without storing anything: an order the MES
	// answers 201 for and loses.
	takeID(ctx context.Context) (int64, error)
	get(ctx context.Context, id int64) (Order, bool, error)
	list(ctx context.Context, q listQuery) (OrderList, error)
	// counts returns how many orders are stored and, per client_ref with
	// more than one order, how many it has.
	counts(ctx context.Context) (int64, map[string]int64, error)
	// advance moves every order that has been in a production status for
	// at least stage to the next one, except those stalled says to keep,
	// and returns the orders it moved.
	advance(ctx context.Context, now time.Time, stage time.Duration, stalled func(id int64) bool) ([]Order, error)
	reset(ctx context.Context) error
}

// The statuses an MES order moves through, in order; shipped is final.
const (
	StatusScheduled = "scheduled"
	StatusPrinting  = "printing"
	StatusFinishing = "finishing"
	StatusShipped   = "shipped"
)

// Statuses lists the MES's order statuses in production order.
var Statuses = []string{StatusNew, StatusScheduled, StatusPrinting, StatusFinishing, StatusShipped}

// nextStatus returns the status after status, false for the last one.
func nextStatus(status string) (string, bool) {
	for i, s := range Statuses[:len(Statuses)-1] {
		if s == status {
			return Statuses[i+1], true
		}
	}
	return "", false
}

// memStore keeps the orders in memory.
type memStore struct {
	mu        sync.Mutex
	orders    []Order // ascending id
	byID      map[int64]int
	refCounts map[string]int64
	since     map[int64]time.Time // when each order took its status
	lastID    int64
}

func newMemStore() *memStore {
	return &memStore{byID: map[int64]int{}, refCounts: map[string]int64{}, since: map[int64]time.Time{}}
}

func (m *memStore) add(_ context.Context, o Order, at time.Time) (Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastID++
	o.ID = m.lastID
	o.CreatedAt = at.UTC().Format(time.RFC3339)
	m.byID[o.ID] = len(m.orders)
	m.orders = append(m.orders, o)
	m.refCounts[o.ClientRef]++
	m.since[o.ID] = at
	return o, nil
}

func (m *memStore) takeID(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastID++
	return m.lastID, nil
}

func (m *memStore) get(_ context.Context, id int64) (Order, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.byID[id]
	if !ok {
		return Order{}, false, nil
	}
	return m.orders[i], true, nil
}

func (m *memStore) list(_ context.Context, q listQuery) (OrderList, error) {
	list := OrderList{Orders: []Order{}, Page: q.page, PerPage: q.perPage}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.orders) - 1; i >= 0; i-- {
		o := m.orders[i]
		if (q.status != "" && o.Status != q.status) || (q.clientRef != "" && o.ClientRef != q.clientRef) {
			continue
		}
		// This match is the list.Total-th (from 0), so it is on page
		// list.Total/perPage+1; dividing rather than multiplying keeps a
		// huge page number from overflowing.
		if list.Total/q.perPage == q.page-1 {
			list.Orders = append(list.Orders, o)
		}
		list.Total++
	}
	return list, nil
}

func (m *memStore) counts(context.Context) (int64, map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dup := map[string]int64{}
	for ref, n := range m.refCounts {
		if n > 1 {
			dup[ref] = n
		}
	}
	return int64(len(m.orders)), dup, nil
}

func (m *memStore) advance(_ context.Context, now time.Time, stage time.Duration, stalled func(int64) bool) ([]Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var moved []Order
	for i := range m.orders {
		o := &m.orders[i]
		next, ok := nextStatus(o.Status)
		if !ok || now.Sub(m.since[o.ID]) < stage || stalled(o.ID) {
			continue
		}
		o.Status = next
		m.since[o.ID] = now
		moved = append(moved, *o)
	}
	return moved, nil
}

func (m *memStore) reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.orders, m.lastID = nil, 0
	m.byID, m.refCounts, m.since = map[int64]int{}, map[string]int64{}, map[int64]time.Time{}
	return nil
}

// pgStore keeps the orders in the MES's database (schema "mes", see
// schema.sql), and lists them with the legacy MES's queries (ListPageSQL,
// ListCountSQL).
type pgStore struct{ pool *pgxpool.Pool }

func (p pgStore) add(ctx context.Context, o Order, at time.Time) (Order, error) {
	items, err := json.Marshal(o.Items)
	if err != nil {
		return Order{}, err
	}
	// The MES keeps times to the second, as it answers them.
	at = at.UTC().Truncate(time.Second)
	if err := p.pool.QueryRow(ctx, `INSERT INTO mes.orders (client_ref, customer, items, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $5) RETURNING id`, o.ClientRef, o.Customer, items, o.Status, at).Scan(&o.ID); err != nil {
		return Order{}, fmt.Errorf("store order: %w", err)
	}
	o.CreatedAt = at.Format(time.RFC3339)
	return o, nil
}

func (p pgStore) takeID(ctx context.Context) (int64, error) {
	var id int64
	err := p.pool.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('mes.orders', 'id'))`).Scan(&id)
	return id, err
}

func scanOrder(row pgx.Row) (Order, error) {
	var o Order
	var items []byte
	var created time.Time
	if err := row.Scan(&o.ID, &o.ClientRef, &o.Customer, &items, &o.Status, &created); err != nil {
		return Order{}, err
	}
	if err := json.Unmarshal(items, &o.Items); err != nil {
		return Order{}, fmt.Errorf("order %d: items: %w", o.ID, err)
	}
	o.CreatedAt = created.UTC().Format(time.RFC3339)
	return o, nil
}

func (p pgStore) get(ctx context.Context, id int64) (Order, bool, error) {
	o, err := scanOrder(p.pool.QueryRow(ctx, `SELECT id, client_ref, customer, items, status, created_at FROM mes.orders WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, false, nil
	}
	if err != nil {
		return Order{}, false, fmt.Errorf("read order %d: %w", id, err)
	}
	return o, true, nil
}

func (p pgStore) list(ctx context.Context, q listQuery) (OrderList, error) {
	list := OrderList{Orders: []Order{}, Page: q.page, PerPage: q.perPage}
	offset := int64(q.page-1) * int64(q.perPage)
	rows, err := p.pool.Query(ctx, ListPageSQL, q.status, q.clientRef, q.perPage, offset)
	if err != nil {
		return list, fmt.Errorf("list orders: %w", err)
	}
	orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return list, fmt.Errorf("list orders: %w", err)
	}
	list.Orders = append(list.Orders, orders...)
	var total int64
	if err := p.pool.QueryRow(ctx, ListCountSQL, q.status, q.clientRef).Scan(&total); err != nil {
		return list, fmt.Errorf("count orders: %w", err)
	}
	list.Total = int(total)
	return list, nil
}

func (p pgStore) counts(ctx context.Context) (int64, map[string]int64, error) {
	var n int64
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM mes.orders`).Scan(&n); err != nil {
		return 0, nil, fmt.Errorf("count orders: %w", err)
	}
	rows, err := p.pool.Query(ctx, `SELECT client_ref, count(*) FROM mes.orders GROUP BY client_ref HAVING count(*) > 1`)
	if err != nil {
		return 0, nil, fmt.Errorf("count duplicates: %w", err)
	}
	dup := map[string]int64{}
	var ref string
	var c int64
	if _, err := pgx.ForEachRow(rows, []any{&ref, &c}, func() error { dup[ref] = c; return nil }); err != nil {
		return 0, nil, fmt.Errorf("count duplicates: %w", err)
	}
	return n, dup, nil
}

func (p pgStore) advance(ctx context.Context, now time.Time, stage time.Duration, stalled func(int64) bool) ([]Order, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, client_ref, customer, items, status, created_at FROM mes.orders
		WHERE status <> $1 AND updated_at <= $2 ORDER BY id`, StatusShipped, now.Add(-stage))
	if err != nil {
		return nil, fmt.Errorf("orders due to move: %w", err)
	}
	due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("orders due to move: %w", err)
	}
	var moved []Order
	for _, o := range due {
		next, ok := nextStatus(o.Status)
		if !ok || stalled(o.ID) {
			continue
		}
		tag, err := p.pool.Exec(ctx, `UPDATE mes.orders SET status = $2, updated_at = $3 WHERE id = $1 AND status = $4`, o.ID, next, now, o.Status)
		if err != nil {
			return moved, fmt.Errorf("move order %d to %s: %w", o.ID, next, err)
		}
		if tag.RowsAffected() == 1 {
			o.Status = next
			moved = append(moved, o)
		}
	}
	return moved, nil
}

func (p pgStore) reset(ctx context.Context) error {
	_, err := p.pool.Exec(ctx, `TRUNCATE mes.orders RESTART IDENTITY`)
	return err
}
