package live

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// Alert states as vmalert reports them.
const (
	StateFiring  = "firing"
	StatePending = "pending"
)

// Alert is one active alert of vmalert: pending (its expression holds, for
// less than its for:) or firing.
type Alert struct {
	// Name is the rule's name (the alertname label).
	Name string
	// State is StateFiring or StatePending.
	State string
	// Labels are the alert's labels, alertname included.
	Labels map[string]string
	// ActiveAt is when the expression started to hold.
	ActiveAt time.Time
	// Value is the expression's value at the last evaluation.
	Value string
}

func (a Alert) String() string {
	return fmt.Sprintf("%s %s since %s", a.key(), a.State, a.ActiveAt.UTC().Format(time.RFC3339))
}

// key is the alert's name and labels, which identify it.
func (a Alert) key() string {
	keys := slices.Sorted(maps.Keys(a.Labels))
	var b strings.Builder
	for _, k := range keys {
		if k == "alertname" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, a.Labels[k])
	}
	return a.Name + "{" + b.String() + "}"
}

// Alerts returns vmalert's active alerts (pending and firing), from its
// /api/v1/alerts, sorted by name and labels.
func (c *Client) Alerts(ctx context.Context) ([]Alert, error) {
	res, err := c.api.Alerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	out := make([]Alert, 0, len(res.Alerts))
	for _, a := range res.Alerts {
		labels := make(map[string]string, len(a.Labels))
		for k, v := range a.Labels {
			labels[string(k)] = string(v)
		}
		out = append(out, Alert{
			Name:     labels["alertname"],
			State:    string(a.State),
			Labels:   labels,
			ActiveAt: a.ActiveAt,
			Value:    a.Value,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// Rule is one alerting rule as vmalert evaluates it.
type Rule struct {
	Group string
	File  string
	Name  string
	// Health is "ok", "err" or "unknown" (not evaluated yet).
	Health string
	// LastError is the last evaluation's error, if any.
	LastError string
	// State is "inactive", "pending" or "firing".
	State string
	// LastEvaluation is when the rule last ran.
	LastEvaluation time.Time
}

// Rules returns vmalert's alerting rules, from its /api/v1/rules. A rule
// whose Health is "err" has an expression VictoriaMetrics cannot run.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	res, err := c.api.Rules(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	var out []Rule
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			ar, ok := r.(v1.AlertingRule)
			if !ok {
				continue
			}
			out = append(out, Rule{
				Group: g.Name, File: g.File, Name: ar.Name,
				Health: string(ar.Health), LastError: ar.LastError,
				State: ar.State, LastEvaluation: ar.LastEvaluation,
			})
		}
	}
	return out, nil
}

// AlertLister lists active alerts; *Client is one.
type AlertLister interface {
	Alerts(ctx context.Context) ([]Alert, error)
}

// ExpectedAlert is an alert a scenario should fire.
type ExpectedAlert struct {
	// Name is the alert's name. Required.
	Name string
	// Labels must all be present with these values (a subset match); nil
	// matches any alert of that name.
	Labels map[string]string
}

func (e ExpectedAlert) matches(a Alert) bool {
	if a.Name != e.Name {
		return false
	}
	for k, v := range e.Labels {
		if a.Labels[k] != v {
			return false
		}
	}
	return true
}

func (e ExpectedAlert) String() string {
	if len(e.Labels) == 0 {
		return e.Name
	}
	return Alert{Name: e.Name, Labels: e.Labels}.key()
}

// AlertWait is a bounded wait for expected alerts.
type AlertWait struct {
	// Source lists the alerts (a *Client on vmalert). Required.
	Source AlertLister
	// Expected are the alerts that must fire.
	Expected []ExpectedAlert
	// Within bounds the wait; the scenario's window is [start, start+Within]
	// where start is when Wait begins. Defaults to 2m. The context's own
	// deadline also ends the wait.
	Within time.Duration
	// Poll is how often Source is asked. Defaults to 1s.
	Poll time.Duration
	// Settle keeps polling this long after the last expected alert fired,
	// so an unexpected alert that fires with it is seen. Defaults to 0.
	Settle time.Duration
	// Ignore, when set, leaves alerts out of Unexpected (for example the
	// ones still firing from an earlier scenario).
	Ignore func(Alert) bool
	// Now reads the clock. Defaults to time.Now.
	Now func() time.Time
}

// AlertReport is what an AlertWait saw.
type AlertReport struct {
	// Fired maps each expected alert that fired (String form) to the first
	// poll that saw it firing.
	Fired map[string]time.Time
	// NotFired are the expected alerts that never fired in the window.
	NotFired []ExpectedAlert
	// Unexpected are the alerts seen firing that no expectation matches
	// (each label set once, as first seen).
	Unexpected []Alert
	// Polls is how many times Source answered.
	Polls int
}

// WaitForAlerts waits, with the defaults of AlertWait, until every
// expected alert has fired or within has passed.
func WaitForAlerts(ctx context.Context, src AlertLister, expected []ExpectedAlert, within time.Duration) (AlertReport, error) {
	return AlertWait{Source: src, Expected: expected, Within: within}.Wait(ctx)
}

// Wait polls Source until every expected alert was seen firing (then,
// if Settle is set, for Settle more), or until Within passes. The report
// lists what fired and when, what did not, and firing alerts that nothing
// expected. Its error wraps ErrAlertsNotFired when an expected alert did not
// fire in time, or the last listing error when Source never answered.
func (w AlertWait) Wait(ctx context.Context) (AlertReport, error) {
	if w.Source == nil {
		return AlertReport{}, fmt.Errorf("%w: AlertWait has no Source", ErrConfig)
	}
	now := w.Now
	if now == nil {
		now = time.Now
	}
	within := cmp.Or(w.Within, 2*time.Minute)
	poll := cmp.Or(w.Poll, time.Second)
	ctx, cancel := context.WithDeadline(ctx, now().Add(within))
	defer cancel()

	rep := AlertReport{Fired: map[string]time.Time{}}
	seen := map[string]bool{}
	var lastErr error
	var allAt time.Time
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		alerts, err := w.Source.Alerts(ctx)
		t := now()
		if err != nil {
			lastErr = err
		} else {
			rep.Polls++
			w.observe(&rep, seen, alerts, t)
		}
		if len(rep.Fired) == len(w.uniqueExpected()) {
			if allAt.IsZero() {
				allAt = t
			}
			if t.Sub(allAt) >= w.Settle {
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
			continue
		}
		break
	}
	for _, e := range w.uniqueExpected() {
		if _, ok := rep.Fired[e.String()]; !ok {
			rep.NotFired = append(rep.NotFired, e)
		}
	}
	switch {
	case len(rep.NotFired) == 0:
		return rep, nil
	case rep.Polls == 0 && lastErr != nil:
		return rep, fmt.Errorf("wait for alerts: %w", lastErr)
	default:
		names := make([]string, len(rep.NotFired))
		for i, e := range rep.NotFired {
			names[i] = e.String()
		}
		return rep, fmt.Errorf("wait for alerts within %s: %w: %s", within, ErrAlertsNotFired, strings.Join(names, "; "))
	}
}

// uniqueExpected drops repeated expectations, keeping the first.
func (w AlertWait) uniqueExpected() []ExpectedAlert {
	var out []ExpectedAlert
	keys := map[string]bool{}
	for _, e := range w.Expected {
		if k := e.String(); !keys[k] {
			keys[k] = true
			out = append(out, e)
		}
	}
	return out
}

func (w AlertWait) observe(rep *AlertReport, seen map[string]bool, alerts []Alert, t time.Time) {
	for _, a := range alerts {
		if a.State != StateFiring {
			continue
		}
		expected := false
		for _, e := range w.Expected {
			if e.matches(a) {
				expected = true
				if _, ok := rep.Fired[e.String()]; !ok {
					rep.Fired[e.String()] = t
				}
			}
		}
		if expected || (w.Ignore != nil && w.Ignore(a)) {
			continue
		}
		if k := a.key(); !seen[k] {
			seen[k] = true
			rep.Unexpected = append(rep.Unexpected, a)
		}
	}
}
