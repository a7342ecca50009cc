package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// evaluateLock is the advisory lock key that lets one replica at a time
// evaluate the plans.
const evaluateLock = "ficus.cutover.evaluate"

// Decision is what one evaluation did to a running route.
type Decision struct {
	Route  string       `json:"route"`
	Action string       `json:"action"` // "" (wait), ActionStart, ActionAdvance, ActionComplete or ActionGateFail
	From   int          `json:"from_step"`
	To     int          `json:"to_step"`
	BPS    int          `json:"weight_bps"`
	Reason string       `json:"reason"`
	Gates  []GateResult `json:"gates"`
	Legacy Figures      `json:"legacy"`
	New    Figures      `json:"new"`
}

// decide judges a running route at now from the figures of its step.
func decide(st State, legacy, next Figures, now time.Time) (State, Decision) {
	d := Decision{Route: st.Route, From: st.Step, To: st.Step, BPS: st.BPS, Legacy: legacy, New: next}
	out := st
	plan := st.Plan.WithDefaults()
	if st.Step < 0 || len(plan.Steps) == 0 {
		if len(plan.Steps) == 0 {
			return st, d
		}
		out.Step, out.BPS = 0, plan.Steps[0].BPS
		d.Action, d.To, d.BPS = ActionStart, 0, out.BPS
		d.Reason = fmt.Sprintf("plan started: step 1 of %d, %s to %s", len(plan.Steps), FormatPercent(out.BPS), st.New)
		return out, d
	}
	step := min(st.Step, len(plan.Steps)-1)
	d.Gates = Judge(plan, st.BPS, legacy, next)
	failed, passed := verdict(d.Gates)
	switch {
	case failed != nil:
		out.Status = StatusRolledBack
		out.Step = st.LastGood
		out.BPS = st.stepBPS(st.LastGood)
		d.Action, d.To, d.BPS = ActionGateFail, out.Step, out.BPS
		d.Reason = fmt.Sprintf("gate %s failed at step %d (%s): %s; rolled back to %s", failed.Gate, step+1, FormatPercent(st.BPS),
			failed.Detail, FormatPercent(out.BPS))
	case !passed:
	case now.Sub(st.StepStarted) < plan.Steps[step].MinDuration:
	case step == len(plan.Steps)-1:
		out.Status, out.LastGood = StatusDone, step
		d.Action = ActionComplete
		d.Reason = fmt.Sprintf("plan complete: every gate passed at %s for %s", FormatPercent(st.BPS), plan.Steps[step].MinDuration)
	default:
		out.Step, out.LastGood = step+1, step
		out.BPS = plan.Steps[step+1].BPS
		d.Action, d.To, d.BPS = ActionAdvance, out.Step, out.BPS
		d.Reason = fmt.Sprintf("every gate passed at step %d (%s) for %s; step %d of %d: %s", step+1, FormatPercent(st.BPS),
			plan.Steps[step].MinDuration, step+2, len(plan.Steps), FormatPercent(out.BPS))
	}
	return out, d
}

// Evaluate judges every running route, unless another replica holds the
// evaluation lock (then ran is false): it moves a route whose step passed
// its gates for its minimum duration to the next step, rolls back one
// whose gate failed to its last good step (or 0), records each change in
// the audit log with the figures that decided, and stores the gate
// results. actor names who evaluates in the audit log.
func (s *Store) Evaluate(ctx context.Context, actor string) (ran bool, decisions []Decision, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("evaluate cutover plans: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext($1))`, evaluateLock).Scan(&ran); err != nil {
		return false, nil, fmt.Errorf("evaluate cutover plans: %w", err)
	}
	if !ran {
		return false, nil, nil
	}
	now := s.now()
	// Figures from a Prometheus-compatible endpoint are read before the
	// routes' rows are locked, so that a slow endpoint never holds up
	// ficus route; a route that changed meanwhile waits for the next round.
	running, err := runningRoutes(ctx, tx, "")
	if err != nil {
		return true, nil, err
	}
	type promFigures struct {
		version      int64
		legacy, next Figures
		err          error
	}
	fromProm := map[string]promFigures{}
	for _, st := range running {
		if st.Plan.PrometheusURL != "" && st.Step >= 0 {
			legacy, next, err := prometheusFigures(ctx, s.http, st, now)
			fromProm[st.Route] = promFigures{st.Version, legacy, next, err}
		}
	}
	if running, err = runningRoutes(ctx, tx, "FOR UPDATE"); err != nil {
		return true, nil, err
	}
	for _, st := range running {
		var legacy, next Figures
		if st.Plan.PrometheusURL != "" && st.Step >= 0 {
			pf, ok := fromProm[st.Route]
			if !ok || pf.version != st.Version {
				continue
			}
			legacy, next, err = pf.legacy, pf.next, pf.err
		} else {
			legacy, next, err = figures(ctx, tx, st.Route, st.Version)
		}
		var out State
		var d Decision
		switch {
		case errors.Is(err, ErrPrometheus):
			// No figures, no verdict: the gates wait for the next evaluation.
			out, d = st, Decision{Route: st.Route, From: st.Step, To: st.Step, BPS: st.BPS,
				Gates: []GateResult{{Gate: GateSource, Result: GateWait, Detail: err.Error()}}}
		case err != nil:
			return true, nil, err
		default:
			out, d = decide(st, legacy, next, now)
		}
		decisions = append(decisions, d)
		if d.Action != "" {
			if err := s.apply(ctx, tx, st, out, actor, d.Action, d.Reason, d); err != nil {
				return true, nil, fmt.Errorf("evaluate route %s: %w", st.Route, err)
			}
		}
		// The gates that decided stay visible until the next evaluation.
		gates, err := json.Marshal(d.Gates)
		if err != nil {
			return true, nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE cutover.routes SET gates = $2, evaluated_at = $3 WHERE route = $1`, st.Route, gates, now); err != nil {
			return true, nil, fmt.Errorf("evaluate route %s: %w", st.Route, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return true, nil, fmt.Errorf("evaluate cutover plans: %w", err)
	}
	return true, decisions, nil
}

// runningRoutes reads the routes whose plan runs; lock is "" or "FOR
// UPDATE".
func runningRoutes(ctx context.Context, tx pgx.Tx, lock string) ([]State, error) {
	rows, err := tx.Query(ctx, `SELECT `+stateColumns+` FROM cutover.routes WHERE status = 'running' ORDER BY route `+lock)
	if err != nil {
		return nil, fmt.Errorf("evaluate cutover plans: %w", err)
	}
	defer rows.Close()
	var out []State
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			return nil, fmt.Errorf("evaluate cutover plans: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("evaluate cutover plans: %w", err)
	}
	return out, nil
}

// Prune deletes the counters last written before cutoff.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM cutover.counters WHERE updated_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune cutover counters: %w", err)
	}
	return tag.RowsAffected(), nil
}
