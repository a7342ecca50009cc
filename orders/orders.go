// Package orders is the order view: a read model of the orders of the
// shop and of the MES, fed by ficus cdc from their databases, that answers
// the operators' order list without touching either system, lists orders
// that are overdue, and catches orders whose status the two systems
// disagree on.
//
// The view lives in ficus's own database (tables ficus.order_view*, made by
// "ficus migrate up"). Sink applies the change events of one or more cdc
// feeds to it; each batch is applied in one transaction together with the
// feed's checkpoint (the commit LSN and position of its last event), and
// events at or before the checkpoint are skipped, so a change redelivered
// after a crash takes effect exactly once. Per-status counts are kept as
// changes arrive, so a list's total never needs count(*).
package orders

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of the package.
var (
	// ErrInvalidConfig: a Config field is unusable; the message says which.
	ErrInvalidConfig = errors.New("orders: invalid config")
	// ErrBadEvent: a change event cannot be applied (not a cdc event, or a
	// row without the configured columns). Send fails and applies nothing of
	// its batch.
	ErrBadEvent = errors.New("orders: bad change event")
	// ErrNotFound: no such order in the view.
	ErrNotFound = errors.New("orders: not found")
)

// Source names of the two systems of the default configuration.
const (
	SourceShop = "shop"
	SourceMES  = "mes"
)

// Source describes one system's order table as its change events show it.
type Source struct {
	// Name names the system in the view and its API, e.g. "shop".
	Name string
	// Table is the captured table, "schema.table".
	Table string
	// IDColumn holds the order's id, a bigint. Defaults to "id".
	IDColumn string
	// RefColumn holds the id of the shop order the row belongs to (the
	// MES's client_ref). Empty: the row's own id is its reference (the
	// shop).
	RefColumn string
	// StatusColumn holds the status. Defaults to "status".
	StatusColumn string
	// CreatedColumn holds the creation time. Defaults to "created_at".
	CreatedColumn string
	// PromisedColumn holds the date promised to the customer; empty when
	// the system has none.
	PromisedColumn string
	// Common maps the system's status names to the shared vocabulary that
	// drift detection compares; a status not in it is its own common name.
	Common map[string]string
	// Final lists statuses an order ends in: never overdue.
	Final []string
}

// Config describes the order view.
type Config struct {
	// Sources are the systems whose order tables feed the view. Defaults
	// to DefaultSources().
	Sources []Source
	// StatusLimits bounds how long an order may stay in a status of a
	// source, by source then status; longer is overdue. Defaults to
	// DefaultStatusLimits().
	StatusLimits map[string]map[string]time.Duration
	// DriftGrace is how long two systems may disagree on an order's status
	// before it counts as drift: the time a status takes to travel between
	// them. Defaults to 5m.
	DriftGrace time.Duration
	// Reference is the source whose orders the other sources' rows refer
	// to and that promises dates (the shop). Defaults to "shop".
	Reference string
	// Mirror is the source drift compares with Reference. Defaults to
	// "mes".
	Mirror string
}

// DefaultSources are the simulated shop's shop.orders and the simulated
// MES's mes.orders (see sim/shop and sim/mes). The shop forwards every
// order to the MES when it is placed, prices and takes payment itself, and
// mirrors the MES's production statuses back. Drift compares them in this
// shared vocabulary:
//
//	shop                 MES                              common
//	new, priced, paid    new                              open
//	in_production        scheduled, printing, finishing   in_production
//	shipped              shipped                          shipped
func DefaultSources() []Source {
	return []Source{
		{
			Name:           SourceShop,
			Table:          "shop.orders",
			PromisedColumn: "promised_at",
			Common:         map[string]string{"new": "open", "priced": "open", "paid": "open"},
			Final:          []string{"shipped"},
		},
		{
			Name:      SourceMES,
			Table:     "mes.orders",
			RefColumn: "client_ref",
			Common: map[string]string{
				"new":       "open",
				"scheduled": "in_production",
				"printing":  "in_production",
				"finishing": "in_production",
			},
			Final: []string{"shipped"},
		},
	}
}

// DefaultStatusLimits: a shop order is priced within a day and paid within
// a week; the MES schedules an order within two days and prints and
// finishes it within a week each.
func DefaultStatusLimits() map[string]map[string]time.Duration {
	const day = 24 * time.Hour
	return map[string]map[string]time.Duration{
		SourceShop: {"new": day, "priced": 7 * day},
		SourceMES:  {"new": 2 * day, "scheduled": 7 * day, "printing": 7 * day, "finishing": 7 * day},
	}
}

// DefaultDriftGrace is Config.DriftGrace's default.
const DefaultDriftGrace = 5 * time.Minute

func (c Config) withDefaults() (Config, error) {
	if c.Sources == nil {
		c.Sources = DefaultSources()
	}
	if c.StatusLimits == nil {
		c.StatusLimits = DefaultStatusLimits()
	}
	if c.DriftGrace == 0 {
		c.DriftGrace = DefaultDriftGrace
	}
	if c.DriftGrace < 0 {
		return c, fmt.Errorf("%w: DriftGrace %s is negative", ErrInvalidConfig, c.DriftGrace)
	}
	if c.Reference == "" {
		c.Reference = SourceShop
	}
	if c.Mirror == "" {
		c.Mirror = SourceMES
	}
	names := map[string]bool{}
	tables := map[string]bool{}
	sources := make([]Source, len(c.Sources))
	for i, s := range c.Sources {
		if s.Name == "" || !strings.Contains(s.Table, ".") {
			return c, fmt.Errorf("%w: source %d needs a name and a schema-qualified table, got %q and %q", ErrInvalidConfig, i, s.Name, s.Table)
		}
		if names[s.Name] || tables[s.Table] {
			return c, fmt.Errorf("%w: source %q or table %q appears twice", ErrInvalidConfig, s.Name, s.Table)
		}
		names[s.Name], tables[s.Table] = true, true
		if s.IDColumn == "" {
			s.IDColumn = "id"
		}
		if s.StatusColumn == "" {
			s.StatusColumn = "status"
		}
		if s.CreatedColumn == "" {
			s.CreatedColumn = "created_at"
		}
		sources[i] = s
	}
	c.Sources = sources
	for src, limits := range c.StatusLimits {
		if !names[src] {
			return c, fmt.Errorf("%w: status limits for unknown source %q", ErrInvalidConfig, src)
		}
		for st, d := range limits {
			if d <= 0 {
				return c, fmt.Errorf("%w: the limit of %s status %q is %s; it must be positive", ErrInvalidConfig, src, st, d)
			}
		}
	}
	if !names[c.Reference] || !names[c.Mirror] || c.Reference == c.Mirror {
		return c, fmt.Errorf("%w: Reference %q and Mirror %q must be two different sources", ErrInvalidConfig, c.Reference, c.Mirror)
	}
	return c, nil
}

// common maps a status of s to the shared vocabulary.
func (s *Source) common(status string) string {
	if c, ok := s.Common[status]; ok {
		return c
	}
	return status
}

func (s *Source) final(status string) bool {
	for _, f := range s.Final {
		if f == status {
			return true
		}
	}
	return false
}
