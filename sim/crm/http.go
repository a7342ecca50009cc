package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/ficuslabs/ficus/cloudevent"
)

// ErrBadRowChange means an event for shop.orders does not carry the row
// change the CRM needs (see the package documentation for the shape).
var ErrBadRowChange = errors.New("crm: malformed shop.orders row change")

// OrdersTable is the table whose row changes the CRM tracks.
const OrdersTable = "shop.orders"

// Handler serves the CRM's HTTP API:
//
//	POST /events              CloudEvents from ficus cdc (webhook mode)
//	GET  /admin/stats         Stats as JSON
//	GET  /admin/orders/{id}   the OrderHistory of one order as JSON
//	GET  /admin/events        an EventsPage of the accepted events (?after=SEQ&limit=N)
//	POST /admin/reset         Reset
//
// Errors are application/problem+json documents.
func (c *CRM) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", c.serveEvents)
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, c.Stats())
	})
	mux.HandleFunc("GET /admin/orders/{id}", c.serveOrder)
	mux.HandleFunc("GET /admin/events", c.serveEventLog)
	mux.HandleFunc("POST /admin/reset", func(w http.ResponseWriter, _ *http.Request) {
		c.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// receipt is the answer to an accepted POST /events.
type receipt struct {
	Received   int `json:"received"`
	Duplicates int `json:"duplicates"`
	Tracked    int `json:"tracked"`
}

func (c *CRM) serveEvents(w http.ResponseWriter, r *http.Request) {
	if c.mode != ModeWebhook {
		writeProblem(w, http.StatusNotFound, "this CRM runs in poll mode and reads shop.orders itself; start it in webhook mode to receive events")
		return
	}
	batch, err := eventsContentType(r.Header)
	if err != nil {
		c.m.rejected.Inc()
		writeProblem(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.maxBodyBytes))
	if err != nil {
		c.m.rejected.Inc()
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			writeProblem(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("body exceeds %d bytes: send fewer events per batch", tooLarge.Limit))
			return
		}
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("read body: %v", err))
		return
	}
	rc, err := c.receive(r.Context(), body, batch)
	if err != nil {
		c.m.rejected.Inc()
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rc)
}

// eventsContentType reports whether the request carries a batch, or why its
// Content-Type is not accepted.
func eventsContentType(h http.Header) (batch bool, err error) {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	switch mt {
	case cloudevent.ContentType, "application/json":
		return false, nil
	case cloudevent.BatchContentType:
		return true, nil
	}
	msg := fmt.Sprintf("Content-Type %q is not accepted: send one structured event as %s (or application/json), or a JSON array of events as %s",
		h.Get("Content-Type"), cloudevent.ContentType, cloudevent.BatchContentType)
	if h.Get("Ce-Specversion") != "" {
		msg += "; binary content mode (ce-* headers) is not supported"
	}
	return false, errors.New(msg)
}

// receive parses a body of one event or a batch and records it. It checks
// every event before recording any, so a rejected body changes nothing.
func (c *CRM) receive(ctx context.Context, body []byte, batch bool) (receipt, error) {
	var events []cloudevent.Event
	if batch {
		var err error
		if events, err = cloudevent.ParseBatch(body); err != nil {
			return receipt{}, err
		}
	} else {
		e, err := cloudevent.Parse(body)
		if err != nil {
			return receipt{}, err
		}
		events = []cloudevent.Event{e}
	}
	changes := make([]*Change, len(events))
	for i, e := range events {
		ch, err := orderChange(e)
		if err != nil {
			if batch {
				err = fmt.Errorf("batch event %d: %w", i, err)
			}
			return receipt{}, err
		}
		changes[i] = ch
	}

	observedAt := c.now()
	var rc receipt
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range events {
		rc.Received++
		c.received++
		c.m.received.Inc()
		dup := !c.seen.add(e.Source + "\x00" + e.ID)
		logged := ReceivedEvent{Source: e.Source, ID: e.ID, Duplicate: dup}
		if ch := changes[i]; ch != nil {
			logged.OrderID, logged.Status = ch.OrderID, ch.Status
		}
		c.events.add(logged)
		c.traceEvent(ctx, e, dup, changes[i], observedAt)
		if dup {
			rc.Duplicates++
			c.duplicates++
			c.m.duplicates.Inc()
			continue
		}
		c.unique++
		c.m.unique.Inc()
		if ch := changes[i]; ch != nil {
			ch.ObservedAt = observedAt
			c.record(*ch)
			rc.Tracked++
		}
	}
	return rc, nil
}

// orderChange extracts the status change of a shop.orders row from an
// event. It returns nil for an event that is not an insert, update or
// snapshot read of shop.orders, and ErrBadRowChange for one that claims to be but lacks the
// order's id or status.
func orderChange(e cloudevent.Event) (*Change, error) {
	if e.Data == nil || !isJSONContentType(e.DataContentType) {
		return nil, nil
	}
	var data map[string]json.RawMessage
	if json.Unmarshal(e.Data, &data) != nil {
		return nil, nil // not an object, so not a row change
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w in event (source %q, id %q): %s", ErrBadRowChange, e.Source, e.ID, fmt.Sprintf(format, args...))
	}
	rawTable, ok := data["table"]
	if !ok || isNull(rawTable) {
		return nil, nil
	}
	var table string
	if json.Unmarshal(rawTable, &table) != nil {
		return nil, bad("data.table must be a string, got %s", truncate(rawTable))
	}
	if table != OrdersTable {
		return nil, nil
	}
	var op string
	if json.Unmarshal(data["op"], &op) != nil {
		return nil, bad("data.op must be one of insert, update, read, delete, truncate")
	}
	switch op {
	case "insert", "update", "read": // read: a row delivered by a snapshot
	case "delete", "truncate":
		return nil, nil
	default:
		return nil, bad("data.op %q must be one of insert, update, read, delete, truncate", op)
	}
	var row map[string]json.RawMessage
	if json.Unmarshal(data["new"], &row) != nil || row == nil {
		return nil, bad("data.new must be the row as a JSON object for an %s", op)
	}
	id, err := parseID(row["id"])
	if err != nil {
		return nil, bad("data.new.id: %v", err)
	}
	var status string
	if json.Unmarshal(row["status"], &status) != nil || status == "" {
		return nil, bad("data.new.status must be a non-empty string")
	}
	return &Change{OrderID: id, Status: status, ChangedAt: e.Time}, nil
}

// parseID reads an order id given as a JSON number or a numeric string, as
// pgoutput's text form of a bigint arrives.
func parseID(raw json.RawMessage) (int64, error) {
	s := string(bytes.TrimSpace(raw))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer or a numeric string, got %s", truncate(raw))
	}
	return id, nil
}

// isJSONContentType reports whether data of this datacontenttype is JSON;
// an absent one means JSON.
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func (c *CRM) serveOrder(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("order id %q is not an integer", r.PathValue("id")))
		return
	}
	h, ok := c.tracker.Order(id)
	if !ok {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("order %d has not been seen (since the last reset)", id))
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do then
}

// writeProblem answers with an RFC 9457 problem document.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// truncate shortens a JSON value for an error message.
func truncate(raw json.RawMessage) string {
	const limit = 40
	if len(raw) == 0 {
		return "nothing"
	}
	if len(raw) <= limit {
		return string(raw)
	}
	return string(raw[:limit]) + "..."
}
