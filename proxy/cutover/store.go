package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statuses of a route.
const (
	// StatusIdle: no plan runs; the weight is the config's.
	StatusIdle = "idle"
	// StatusRunning: the plan moves the route on as its gates pass.
	StatusRunning = "running"
	// StatusPaused: an operator holds the route at its weight.
	StatusPaused = "paused"
	// StatusRolledBack: a gate failed or an operator rolled back; the
	// route stays at the weight it went back to until resumed.
	StatusRolledBack = "rolled_back"
	// StatusDone: the plan completed, or the route was promoted.
	StatusDone = "done"
)

// Actions recorded in the audit log.
const (
	ActionRegister = "register"
	ActionStart    = "start"
	ActionAdvance  = "advance"
	ActionComplete = "complete"
	ActionGateFail = "gate_rollback"
	ActionShift    = "shift"
	ActionPromote  = "promote"
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionRollback = "rollback"
)

// State is a route's cutover state as the shared database holds it.
type State struct {
	Route     string `json:"route"`
	Legacy    string `json:"legacy"`
	New       string `json:"new"`
	Plan      Plan   `json:"plan"`
	ConfigBPS int    `json:"config_bps"` // the share the config gives
	Status    string `json:"status"`
	// Step is the plan step the route is at, counting from 0; -1 before
	// the first.
	Step int `json:"step"`
	// LastGood is the last step whose gates passed; -1 for none.
	LastGood    int       `json:"last_good_step"`
	BPS         int       `json:"weight_bps"` // the new target's share
	StepStarted time.Time `json:"step_started_at"`
	Version     int64     `json:"version"`
	Reason      string    `json:"reason"`
	// Gates are the results of the last evaluation of the running step.
	Gates       []GateResult `json:"gates"`
	EvaluatedAt *time.Time   `json:"evaluated_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	UpdatedBy   string       `json:"updated_by"`
}

// stepBPS returns the share of step i of the plan; 0 for -1.
func (s *State) stepBPS(i int) int {
	if i < 0 || i >= len(s.Plan.Steps) {
		return 0
	}
	return s.Plan.Steps[i].BPS
}

// Event is one change in the audit log.
type Event struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Route      string          `json:"route"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	FromStatus string          `json:"from_status"`
	ToStatus   string          `json:"to_status"`
	FromStep   int             `json:"from_step"`
	ToStep     int             `json:"to_step"`
	FromBPS    int             `json:"from_bps"`
	ToBPS      int             `json:"to_bps"`
	Reason     string          `json:"reason"`
	Figures    json.RawMessage `json:"figures"`
}

// Store reads and changes the shared cutover state in the schema
// "cutover" (created by ficus migrate up). Every change runs in one
// transaction that locks the route's row, so two changes of one route
// apply one after the other, each to the state the other left, and each
// is recorded in the audit log.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
	http *http.Client // for plans that read a Prometheus-compatible endpoint
}

// NewStore returns a Store on pool; now is its clock (time.Now when nil).
func NewStore(pool *pgxpool.Pool, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now, http: &http.Client{Timeout: prometheusTimeout}}
}

const stateColumns = `route, legacy, new_target, plan, config_bps, status, step, last_good_step, weight_bps,
	step_started_at, version, reason, gates, evaluated_at, updated_at, updated_by`

func scanState(row pgx.Row) (State, error) {
	var s State
	var plan, gates []byte
	err := row.Scan(&s.Route, &s.Legacy, &s.New, &plan, &s.ConfigBPS, &s.Status, &s.Step, &s.LastGood, &s.BPS,
		&s.StepStarted, &s.Version, &s.Reason, &gates, &s.EvaluatedAt, &s.UpdatedAt, &s.UpdatedBy)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(plan, &s.Plan); err != nil {
		return s, fmt.Errorf("route %s: decode plan: %w", s.Route, err)
	}
	if err := json.Unmarshal(gates, &s.Gates); err != nil {
		return s, fmt.Errorf("route %s: decode gates: %w", s.Route, err)
	}
	return s, nil
}

// Routes returns the state of every route, by name.
func (s *Store) Routes(ctx context.Context) ([]State, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+stateColumns+` FROM cutover.routes ORDER BY route`)
	if err != nil {
		return nil, fmt.Errorf("read cutover routes: %w", err)
	}
	defer rows.Close()
	var out []State
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			return nil, fmt.Errorf("read cutover routes: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cutover routes: %w", err)
	}
	return out, nil
}

// Route returns the state of one route, or ErrUnknownRoute.
func (s *Store) Route(ctx context.Context, route string) (State, error) {
	st, err := scanState(s.pool.QueryRow(ctx, `SELECT `+stateColumns+` FROM cutover.routes WHERE route = $1`, route))
	if errors.Is(err, pgx.ErrNoRows) {
		return st, unknownRoute(route)
	}
	if err != nil {
		return st, fmt.Errorf("read cutover route %s: %w", route, err)
	}
	return st, nil
}

func unknownRoute(route string) error {
	return fmt.Errorf("%w %q: no proxy with a weighted route of that name has started against this database (see ficus route status)", ErrUnknownRoute, route)
}

// Figures returns what the replicas recorded of a route's sides while it
// was at version, summed: legacy, then new.
func (s *Store) Figures(ctx context.Context, route string, version int64) (legacy, next Figures, err error) {
	return figures(ctx, s.pool, route, version)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func figures(ctx context.Context, q querier, route string, version int64) (legacy, next Figures, err error) {
	rows, err := q.Query(ctx, `SELECT side, sum(requests), sum(errors), sum(shadow_match), sum(shadow_mismatch), sum(breaker_opens),
		(SELECT array_agg(s ORDER BY i) FROM (
			SELECT i, sum(l) AS s FROM cutover.counters c2, unnest(c2.latency) WITH ORDINALITY AS u(l, i)
			WHERE c2.route = $1 AND c2.version = $2 AND c2.side = c.side GROUP BY i) t)
		FROM cutover.counters c WHERE route = $1 AND version = $2 GROUP BY side`, route, version)
	if err != nil {
		return legacy, next, fmt.Errorf("read counters of route %s: %w", route, err)
	}
	defer rows.Close()
	for rows.Next() {
		var side string
		var f Figures
		var lat []int64
		if err := rows.Scan(&side, &f.Requests, &f.Errors, &f.ShadowMatch, &f.ShadowMismatch, &f.BreakerOpens, &lat); err != nil {
			return legacy, next, fmt.Errorf("read counters of route %s: %w", route, err)
		}
		f.Latency = lat
		if side == SideNew {
			next = f
		} else {
			legacy = f
		}
	}
	if err := rows.Err(); err != nil {
		return legacy, next, fmt.Errorf("read counters of route %s: %w", route, err)
	}
	return legacy, next, nil
}

// History returns the audit log, newest first: of one route, or of every
// route when route is empty; at most limit events (100 when 0).
func (s *Store) History(ctx context.Context, route string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 100
	}
	if route != "" {
		if _, err := s.Route(ctx, route); err != nil {
			return nil, err
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id, at, route, actor, action, from_status, to_status, from_step, to_step,
		from_bps, to_bps, reason, figures FROM cutover.audit WHERE $1 = '' OR route = $1 ORDER BY id DESC LIMIT $2`, route, limit)
	if err != nil {
		return nil, fmt.Errorf("read cutover history: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.Route, &e.Actor, &e.Action, &e.FromStatus, &e.ToStatus, &e.FromStep, &e.ToStep,
			&e.FromBPS, &e.ToBPS, &e.Reason, &e.Figures); err != nil {
			return nil, fmt.Errorf("read cutover history: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cutover history: %w", err)
	}
	return out, nil
}

// Register records the routes a proxy's config declares. A new route
// starts idle at the config's share. For a known route the targets and
// the plan are updated; while it is idle its weight follows the config,
// otherwise its status, step and weight stay as they are (a step beyond
// a shortened plan is clamped to its last), so a config reload never
// resets a running plan. Every spec is validated first; when one is
// wrong nothing is recorded.
func (s *Store) Register(ctx context.Context, specs []RouteSpec, actor string) error {
	for _, sp := range specs {
		if err := sp.Validate(); err != nil {
			return err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("register cutover routes: %w", err)
	}
	defer tx.Rollback(ctx)
	now := s.now()
	for _, sp := range specs {
		plan, err := json.Marshal(sp.Plan.WithDefaults())
		if err != nil {
			return fmt.Errorf("register route %s: %w", sp.Route, err)
		}
		// Replicas that start at once register the same route at once: one
		// inserts it, the others find it and update it.
		tag, err := tx.Exec(ctx, `INSERT INTO cutover.routes (route, legacy, new_target, plan, config_bps, status, step, last_good_step,
			weight_bps, step_started_at, version, updated_at, updated_by, reason)
			VALUES ($1, $2, $3, $4, $5, 'idle', -1, -1, $5, $6, 1, $6, $7, 'registered from the proxy config')
			ON CONFLICT (route) DO NOTHING`,
			sp.Route, sp.Legacy, sp.New, plan, sp.BPS, now, actor)
		if err == nil && tag.RowsAffected() == 1 {
			err = audit(ctx, tx, now, sp.Route, actor, ActionRegister, State{Status: StatusIdle, Step: -1},
				State{Status: StatusIdle, Step: -1, BPS: sp.BPS}, "registered from the proxy config", nil)
			if err != nil {
				return fmt.Errorf("register route %s: %w", sp.Route, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("register route %s: %w", sp.Route, err)
		}
		st, err := scanState(tx.QueryRow(ctx, `SELECT `+stateColumns+` FROM cutover.routes WHERE route = $1 FOR UPDATE`, sp.Route))
		if err != nil {
			return fmt.Errorf("register route %s: %w", sp.Route, err)
		}
		next := st
		next.Legacy, next.New, next.Plan, next.ConfigBPS = sp.Legacy, sp.New, sp.Plan.WithDefaults(), sp.BPS
		if st.Status == StatusIdle {
			next.BPS = sp.BPS
		}
		next.Step = min(next.Step, len(next.Plan.Steps)-1)
		next.LastGood = min(next.LastGood, next.Step)
		if _, err := tx.Exec(ctx, `UPDATE cutover.routes SET legacy = $2, new_target = $3, plan = $4, config_bps = $5, step = $6,
			last_good_step = $7 WHERE route = $1`, sp.Route, next.Legacy, next.New, plan, next.ConfigBPS, next.Step, next.LastGood); err != nil {
			return fmt.Errorf("register route %s: %w", sp.Route, err)
		}
		if next.BPS != st.BPS || next.Step != st.Step {
			reason := "the proxy config changed"
			if err := s.apply(ctx, tx, st, next, actor, ActionRegister, reason, nil); err != nil {
				return fmt.Errorf("register route %s: %w", sp.Route, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("register cutover routes: %w", err)
	}
	return nil
}

// apply writes next as the route's state, with a new version, and records
// the change in the audit log.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, prev, next State, actor, action, reason string, figures any) error {
	now := s.now()
	if next.Step != prev.Step || next.BPS != prev.BPS {
		next.StepStarted = now
	}
	next.Reason = reason
	_, err := tx.Exec(ctx, `UPDATE cutover.routes SET status = $2, step = $3, last_good_step = $4, weight_bps = $5,
		step_started_at = $6, version = version + 1, reason = $7, updated_at = $8, updated_by = $9, gates = '[]', evaluated_at = NULL
		WHERE route = $1`, next.Route, next.Status, next.Step, next.LastGood, next.BPS, next.StepStarted, reason, now, actor)
	if err != nil {
		return err
	}
	return audit(ctx, tx, now, next.Route, actor, action, prev, next, reason, figures)
}

func audit(ctx context.Context, tx pgx.Tx, at time.Time, route, actor, action string, prev, next State, reason string, figures any) error {
	fig := []byte("{}")
	if figures != nil {
		var err error
		if fig, err = json.Marshal(figures); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO cutover.audit (at, route, actor, action, from_status, to_status, from_step, to_step,
		from_bps, to_bps, reason, figures) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		at, route, actor, action, prev.Status, next.Status, prev.Step, next.Step, prev.BPS, next.BPS, reason, fig)
	return err
}

// change runs fn on the route's state under its row lock and applies what
// fn returns, unless it is the same state (then nothing is recorded).
func (s *Store) change(ctx context.Context, route, actor, action string, fn func(st State) (State, string, error)) (State, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return State{}, fmt.Errorf("%s route %s: %w", action, route, err)
	}
	defer tx.Rollback(ctx)
	st, err := scanState(tx.QueryRow(ctx, `SELECT `+stateColumns+` FROM cutover.routes WHERE route = $1 FOR UPDATE`, route))
	if errors.Is(err, pgx.ErrNoRows) {
		return State{}, unknownRoute(route)
	}
	if err != nil {
		return State{}, fmt.Errorf("%s route %s: %w", action, route, err)
	}
	next, reason, err := fn(st)
	if err != nil {
		return st, fmt.Errorf("%s route %s: %w", action, route, err)
	}
	if next.Status == st.Status && next.Step == st.Step && next.BPS == st.BPS && next.LastGood == st.LastGood {
		return st, nil
	}
	if err := s.apply(ctx, tx, st, next, actor, action, reason, nil); err != nil {
		return st, fmt.Errorf("%s route %s: %w", action, route, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return st, fmt.Errorf("%s route %s: %w", action, route, err)
	}
	return s.Route(ctx, route)
}

// Shift sets the new target's share of a route by hand, in basis points,
// and pauses its plan there: the step becomes the last one at or below
// the share. reason is recorded with it.
func (s *Store) Shift(ctx context.Context, route string, bps int, actor, reason string) (State, error) {
	if bps < 0 || bps > Buckets {
		return State{}, fmt.Errorf("shift route %s: %w: %s is not from 0%% to 100%%", route, ErrInvalidChange, FormatPercent(bps))
	}
	return s.change(ctx, route, actor, ActionShift, func(st State) (State, string, error) {
		next := st
		next.BPS, next.Status, next.Step = bps, StatusPaused, -1
		for i, step := range st.Plan.Steps {
			if step.BPS <= bps {
				next.Step = i
			}
		}
		next.LastGood = min(next.LastGood, next.Step)
		return next, cmpReason(reason, fmt.Sprintf("shifted by hand to %s", FormatPercent(bps))), nil
	})
}

// Promote sends all of a route's traffic to the new target and ends its
// plan.
func (s *Store) Promote(ctx context.Context, route, actor, reason string) (State, error) {
	return s.change(ctx, route, actor, ActionPromote, func(st State) (State, string, error) {
		next := st
		next.BPS, next.Status, next.Step, next.LastGood = Buckets, StatusDone, len(st.Plan.Steps)-1, len(st.Plan.Steps)-1
		return next, cmpReason(reason, "promoted by hand: all traffic to the new target"), nil
	})
}

// Pause holds a running plan at its step.
func (s *Store) Pause(ctx context.Context, route, actor, reason string) (State, error) {
	return s.change(ctx, route, actor, ActionPause, func(st State) (State, string, error) {
		switch st.Status {
		case StatusPaused:
			return st, "", nil
		case StatusRunning:
		default:
			return st, "", fmt.Errorf("%w: the route is %s, not running; only a running plan can be paused", ErrInvalidChange, st.Status)
		}
		next := st
		next.Status = StatusPaused
		return next, cmpReason(reason, "paused by hand"), nil
	})
}

// Resume starts a route's plan, or runs it on from where it was paused or
// rolled back to.
func (s *Store) Resume(ctx context.Context, route, actor, reason string) (State, error) {
	return s.change(ctx, route, actor, ActionResume, func(st State) (State, string, error) {
		switch {
		case st.Status == StatusRunning:
			return st, "", nil
		case len(st.Plan.Steps) == 0:
			return st, "", fmt.Errorf("%w: the route has no plan steps in its config; use ficus route shift to move it", ErrInvalidChange)
		case st.Status == StatusDone:
			return st, "", fmt.Errorf("%w: the plan is done; use ficus route shift or rollback to move the route again", ErrInvalidChange)
		}
		next := st
		next.Status = StatusRunning
		return next, cmpReason(reason, "resumed by hand"), nil
	})
}

// Rollback sends all of a route's traffic back to the legacy target and
// stops its plan.
func (s *Store) Rollback(ctx context.Context, route, actor, reason string) (State, error) {
	return s.change(ctx, route, actor, ActionRollback, func(st State) (State, string, error) {
		next := st
		next.BPS, next.Status, next.Step, next.LastGood = 0, StatusRolledBack, -1, -1
		return next, cmpReason(reason, "rolled back by hand: all traffic to the legacy target"), nil
	})
}

func cmpReason(given, otherwise string) string {
	if given != "" {
		return given
	}
	return otherwise
}
