package orders

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// View answers questions about the orders in the view.
type View struct {
	pool   *pgxpool.Pool
	cfg    Config
	byName map[string]*Source
	now    func() time.Time
}

// NewView returns a view over pool's database. now defaults to time.Now.
func NewView(pool *pgxpool.Pool, cfg Config, now func() time.Time) (*View, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	v := &View{pool: pool, cfg: cfg, now: now, byName: map[string]*Source{}}
	for i := range cfg.Sources {
		v.byName[cfg.Sources[i].Name] = &cfg.Sources[i]
	}
	return v, nil
}

// Order is one order of one source as the view has it.
type Order struct {
	Source string `json:"source"`
	ID     int64  `json:"id"`
	// Ref is the shop order it belongs to.
	Ref         string     `json:"ref"`
	Status      string     `json:"status"`
	StatusSince time.Time  `json:"status_since"`
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	PromisedAt  *time.Time `json:"promised_at,omitempty"`
	// Row is the row as last captured.
	Row json.RawMessage `json:"row"`
}

// ListQuery selects a page of one source's orders, newest (highest id)
// first.
type ListQuery struct {
	Source    string
	Status    string // "" for every status
	ClientRef string // "" for every reference
	// PerPage is the page size, 1 to 500.
	PerPage int
	// Page (from 1) pages by OFFSET, as the MES does; ignored with Cursor.
	Page int
	// Cursor continues after the last order of a page (Page.Next).
	Cursor string
}

// Page is one page of a list.
type Page struct {
	Orders []Order
	// Total counts every order that matches, on every page.
	Total int64
	// Next is the cursor of the following page; empty on the last one.
	Next string
}

// encodeCursor and decodeCursor keep the cursor opaque: the last id seen.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && len(b) > 3 && string(b[:3]) == "id:" {
		if id, err := strconv.ParseInt(string(b[3:]), 10, 64); err == nil {
			return id, nil
		}
	}
	return 0, fmt.Errorf("cursor %q is not one this view gave", c)
}

const orderColumns = `source, id, ref, status, status_since, created_at, promised_at, doc`

func scanOrder(row pgx.Row) (Order, error) {
	var o Order
	err := row.Scan(&o.Source, &o.ID, &o.Ref, &o.Status, &o.StatusSince, &o.CreatedAt, &o.PromisedAt, &o.Row)
	return o, err
}

// List returns a page of orders. The total comes from the per-status
// counts unless a client_ref is given.
func (v *View) List(ctx context.Context, q ListQuery) (Page, error) {
	if _, ok := v.byName[q.Source]; !ok {
		return Page{}, fmt.Errorf("%w: source %q", ErrNotFound, q.Source)
	}
	if q.PerPage < 1 {
		q.PerPage = 50
	}
	args := []any{q.Source}
	where := `source = $1`
	if q.Status != "" {
		args = append(args, q.Status)
		where += ` AND status = $` + strconv.Itoa(len(args))
	}
	if q.ClientRef != "" {
		args = append(args, q.ClientRef)
		where += ` AND ref = $` + strconv.Itoa(len(args))
	}
	page := where
	var tail string
	if q.Cursor != "" {
		after, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		args = append(args, after)
		page += ` AND id < $` + strconv.Itoa(len(args))
		tail = fmt.Sprintf(` LIMIT %d`, q.PerPage+1)
	} else {
		p := max(q.Page, 1)
		tail = fmt.Sprintf(` LIMIT %d OFFSET %d`, q.PerPage+1, int64(p-1)*int64(q.PerPage))
	}
	rows, err := v.pool.Query(ctx, `SELECT `+orderColumns+` FROM ficus.order_view WHERE `+page+` ORDER BY id DESC`+tail, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list %s orders: %w", q.Source, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
	if err != nil {
		return Page{}, fmt.Errorf("list %s orders: %w", q.Source, err)
	}
	var p Page
	if len(list) > q.PerPage {
		list = list[:q.PerPage]
		p.Next = encodeCursor(list[len(list)-1].ID)
	}
	p.Orders = list
	if p.Orders == nil {
		p.Orders = []Order{}
	}
	if q.ClientRef != "" {
		err = v.pool.QueryRow(ctx, `SELECT count(*) FROM ficus.order_view WHERE `+where, args[:countArgs(q)]...).Scan(&p.Total)
	} else {
		sql := `SELECT coalesce(sum(n), 0)::bigint FROM ficus.order_view_counts WHERE source = $1`
		if q.Status != "" {
			sql += ` AND status = $2`
		}
		err = v.pool.QueryRow(ctx, sql, args[:countArgs(q)]...).Scan(&p.Total)
	}
	if err != nil {
		return Page{}, fmt.Errorf("count %s orders: %w", q.Source, err)
	}
	return p, nil
}

// countArgs is how many of List's arguments its filters use.
func countArgs(q ListQuery) int {
	n := 1
	if q.Status != "" {
		n++
	}
	if q.ClientRef != "" {
		n++
	}
	return n
}

// Get returns one order, or an error wrapping ErrNotFound.
func (v *View) Get(ctx context.Context, source string, id int64) (Order, error) {
	o, err := scanOrder(v.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM ficus.order_view WHERE source = $1 AND id = $2`, source, id))
	if err == pgx.ErrNoRows {
		return Order{}, fmt.Errorf("%w: %s order %d", ErrNotFound, source, id)
	}
	if err != nil {
		return Order{}, fmt.Errorf("read %s order %d: %w", source, id, err)
	}
	return o, nil
}

// Change is one status an order had.
type Change struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// History returns the statuses an order had in a source, oldest first.
func (v *View) History(ctx context.Context, source string, id int64) ([]Change, error) {
	rows, err := v.pool.Query(ctx, `SELECT status, at FROM ficus.order_view_history WHERE source = $1 AND id = $2 ORDER BY seq`, source, id)
	if err != nil {
		return nil, fmt.Errorf("history of %s order %d: %w", source, id, err)
	}
	h, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Change])
	if err != nil {
		return nil, fmt.Errorf("history of %s order %d: %w", source, id, err)
	}
	return h, nil
}

// Overdue is an order past its promised date or too long in a status.
type Overdue struct {
	Order
	// Reason is "promised" (past the promised date) or "status" (longer
	// in its status than the limit).
	Reason string `json:"reason"`
	// Limit is the status's limit, for Reason "status".
	Limit string `json:"limit,omitempty"`
	// Late is how far past the date or the limit it is.
	Late   string `json:"late"`
	lateBy time.Duration
}

// Overdue lists up to limit overdue orders of every source, the latest
// first: past their promised date, or longer in a status than its limit.
// Orders in a final status are never overdue.
func (v *View) Overdue(ctx context.Context, limit int) ([]Overdue, error) {
	now := v.now()
	var out []Overdue
	for _, src := range v.cfg.Sources {
		if src.PromisedColumn != "" {
			rows, err := v.pool.Query(ctx, `SELECT `+orderColumns+` FROM ficus.order_view
				WHERE source = $1 AND NOT final AND promised_at < $2 ORDER BY promised_at LIMIT $3`, src.Name, now, limit)
			if err != nil {
				return nil, fmt.Errorf("overdue %s orders: %w", src.Name, err)
			}
			list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
			if err != nil {
				return nil, fmt.Errorf("overdue %s orders: %w", src.Name, err)
			}
			for _, o := range list {
				late := now.Sub(*o.PromisedAt)
				out = append(out, Overdue{Order: o, Reason: "promised", Late: late.Round(time.Second).String(), lateBy: late})
			}
		}
		for status, d := range v.cfg.StatusLimits[src.Name] {
			rows, err := v.pool.Query(ctx, `SELECT `+orderColumns+` FROM ficus.order_view
				WHERE source = $1 AND status = $2 AND NOT final AND status_since < $3 ORDER BY status_since LIMIT $4`,
				src.Name, status, now.Add(-d), limit)
			if err != nil {
				return nil, fmt.Errorf("overdue %s orders in %q: %w", src.Name, status, err)
			}
			list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Order, error) { return scanOrder(r) })
			if err != nil {
				return nil, fmt.Errorf("overdue %s orders in %q: %w", src.Name, status, err)
			}
			for _, o := range list {
				late := now.Sub(o.StatusSince) - d
				out = append(out, Overdue{Order: o, Reason: "status", Limit: d.String(), Late: late.Round(time.Second).String(), lateBy: late})
			}
		}
	}
	sortByLate(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Drift is a shop order the MES disagrees about for longer than the grace
// period: a different status, or no MES order at all.
type Drift struct {
	Ref string `json:"ref"`
	// Kind is "status" (both have it, with statuses that differ) or
	// "missing" (the mirror never got it).
	Kind      string    `json:"kind"`
	Reference Order     `json:"reference"`
	Mirror    *Order    `json:"mirror,omitempty"`
	Since     time.Time `json:"since"`
	// ReferenceHistory and MirrorHistory are both sides' statuses over
	// time, so an operator can tell which is wrong.
	ReferenceHistory []Change `json:"reference_history"`
	MirrorHistory    []Change `json:"mirror_history"`
}

// Drift lists up to limit drifted orders, the longest-standing first.
func (v *View) Drift(ctx context.Context, limit int) ([]Drift, error) {
	cutoff := v.now().Add(-v.cfg.DriftGrace)
	rows, err := v.pool.Query(ctx, `
		SELECT r.source, r.id, r.ref, r.status, r.status_since, r.created_at, r.promised_at, r.doc,
		       m.source, m.id, m.ref, m.status, m.status_since, m.created_at, m.promised_at, m.doc,
		       greatest(r.status_since, m.status_since, r.created_at) AS since
		FROM ficus.order_view r
		LEFT JOIN ficus.order_view m ON m.source = $2 AND m.ref = r.ref
		WHERE r.source = $1
		  AND (m.id IS NULL OR m.common <> r.common)
		  AND greatest(r.status_since, m.status_since, r.created_at) < $3
		ORDER BY since, r.id
		LIMIT $4`, v.cfg.Reference, v.cfg.Mirror, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("drifted orders: %w", err)
	}
	var out []Drift
	for rows.Next() {
		var d Drift
		var m struct {
			source, ref, status *string
			id                  *int64
			since, created      *time.Time
			promised            *time.Time
			doc                 json.RawMessage
		}
		r := &d.Reference
		if err := rows.Scan(&r.Source, &r.ID, &r.Ref, &r.Status, &r.StatusSince, &r.CreatedAt, &r.PromisedAt, &r.Row,
			&m.source, &m.id, &m.ref, &m.status, &m.since, &m.created, &m.promised, &m.doc, &d.Since); err != nil {
			rows.Close()
			return nil, fmt.Errorf("drifted orders: %w", err)
		}
		d.Ref, d.Kind = r.Ref, "missing"
		if m.id != nil {
			d.Kind = "status"
			d.Mirror = &Order{Source: *m.source, ID: *m.id, Ref: *m.ref, Status: *m.status, StatusSince: *m.since,
				CreatedAt: m.created, PromisedAt: m.promised, Row: m.doc}
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("drifted orders: %w", err)
	}
	for i := range out {
		d := &out[i]
		if d.ReferenceHistory, err = v.History(ctx, d.Reference.Source, d.Reference.ID); err != nil {
			return nil, err
		}
		d.MirrorHistory = []Change{}
		if d.Mirror != nil {
			if d.MirrorHistory, err = v.History(ctx, d.Mirror.Source, d.Mirror.ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// sortByLate puts the latest first.
func sortByLate(list []Overdue) {
	slices.SortStableFunc(list, func(a, b Overdue) int { return cmp.Compare(b.lateBy, a.lateBy) })
}

// Statuses lists the statuses source's orders are in, by name.
func (v *View) Statuses(ctx context.Context, source string) ([]string, error) {
	rows, err := v.pool.Query(ctx, `SELECT status FROM ficus.order_view_counts WHERE source = $1 AND n > 0 ORDER BY status`, source)
	if err != nil {
		return nil, fmt.Errorf("statuses of %s: %w", source, err)
	}
	s, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("statuses of %s: %w", source, err)
	}
	return s, nil
}
