// Package fleet prices quote requests on a fleet of worker processes that
// share a PostgreSQL job queue (River), with one queue per lane so that B2B
// and B2C requests never wait for each other.
//
// The pieces:
//
//   - Queue takes quote requests (Submit, SubmitTx, SubmitAndWait), stores
//     each once per tenant request in ficus.pricing_quotes and inserts its
//     River job in the same transaction (shared by the submissions that
//     arrive together); it reads a quote back (Get) and waits for its
//     result (Wait) with LISTEN/NOTIFY, whose notification carries it.
//   - Worker runs one lane's River queue with a Calculator, stores each
//     result once (only the attempt that owns the job may), heartbeats its
//     process in ficus.pricing_workers and rescues the jobs of workers
//     that stopped heartbeating, long before River's own rescuer would.
//   - API serves the quote endpoints (POST and GET /api/v1/quotes) in the
//     legacy MES's shape; OperatorUI serves River's web UI behind a
//     password.
//
// The tables come from "ficus migrate up" (package migrate): River's, in
// the schema ficus, and ficus.pricing_quotes and ficus.pricing_workers.
// docs/pricing-fleet.md describes the design and its timing.
package fleet

import (
	"errors"
	"fmt"

	"github.com/ficuslabs/ficus/pricing"
)

// Schema is the PostgreSQL schema of River's tables and the fleet's own.
const Schema = "ficus"

// doneChannel is the NOTIFY channel on which a quote's result is announced
// when it is stored: the quote's id, a space and its row as JSON (see
// resultNote), or the id alone (look again: the row did not fit, or a
// rescuer failed the quote).
const doneChannel = "ficus_pricing_quote_done"

// maxNoteBody is the longest row a notification carries, in bytes: a
// NOTIFY payload must be shorter than 8000 bytes.
const maxNoteBody = "7800"

// jobKind is the River job kind of a quote request.
const jobKind = "ficus_pricing_quote"

var (
	// ErrInvalid marks a submission or configuration that is wrong as given.
	ErrInvalid = errors.New("invalid")
	// ErrKeyReused means a tenant's request key was used before for a
	// different request.
	ErrKeyReused = errors.New("request key reused with a different request")
	// ErrNotFound means no quote has the id (for the tenant).
	ErrNotFound = errors.New("quote not found")
	// ErrDeclaredDead means a rescuer declared this worker dead (its
	// heartbeat went stale) and re-queued its jobs: the worker must stop.
	ErrDeclaredDead = errors.New("pricing worker declared dead by a rescuer")
	// ErrFenced means the worker could not heartbeat for long enough that
	// a rescuer may take its jobs, so it stopped them first.
	ErrFenced = errors.New("pricing worker lost its heartbeat")
)

// Lane is a class of clients whose quotes queue apart from the others'.
type Lane string

const (
	// LaneB2B is the lane of business API clients.
	LaneB2B Lane = "b2b"
	// LaneB2C is the lane of the online shop's customers.
	LaneB2C Lane = "b2c"
)

// Lanes lists every lane.
var Lanes = []Lane{LaneB2B, LaneB2C}

// ParseLane reads a lane's name.
func ParseLane(s string) (Lane, error) {
	switch l := Lane(s); l {
	case LaneB2B, LaneB2C:
		return l, nil
	}
	return "", fmt.Errorf("%w: lane %q: want b2b or b2c", ErrInvalid, s)
}

// Queue is the name of the lane's River queue.
func (l Lane) Queue() string { return "pricing_" + string(l) }

func laneOfQueue(q string) Lane {
	for _, l := range Lanes {
		if l.Queue() == q {
			return l
		}
	}
	return Lane(q)
}

func queueNames() []string {
	out := make([]string, len(Lanes))
	for i, l := range Lanes {
		out[i] = l.Queue()
	}
	return out
}

// quoteArgs is a quote job's arguments. Tenant and RequestKey make it
// unique in River too.
type quoteArgs struct {
	QuoteID    string          `json:"quote_id"`
	Tenant     string          `json:"tenant" river:"unique"`
	RequestKey string          `json:"request_key" river:"unique"`
	Request    pricing.Request `json:"request"`
}

func (quoteArgs) Kind() string { return jobKind }
