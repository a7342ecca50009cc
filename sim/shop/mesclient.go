package shop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
)

// MESStatusEventType is the CloudEvents type of the MES's status events
// the shop mirrors (sim/mes StatusEventType).
const MESStatusEventType = "ficus.sim.mes.order.status"

// maxEventBytes bounds one status event's body.
const maxEventBytes = 64 << 10

// ForwardToMES returns a Config.Forward that sends a committed shop order
// to the MES at base (POST base/api/v1/orders) as the legacy shop does:
// client_ref is the shop order's id, customer the customer's name, items
// the order's items. Any answer but 201 is an error.
func ForwardToMES(pool *pgxpool.Pool, base string, client *http.Client) (func(ctx context.Context, orderID int64) error, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: MES URL %q: want http(s)://host[:port]", ErrInvalidConfig, base)
	}
	if client == nil {
		client = http.DefaultClient
	}
	endpoint := strings.TrimSuffix(u.String(), "/") + "/api/v1/orders"
	return func(ctx context.Context, orderID int64) error {
		body, err := mesOrderBody(ctx, pool, orderID)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("forward order %d: %w", orderID, err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("forward order %d: %w", orderID, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("forward order %d: the MES answered %s", orderID, resp.Status)
		}
		return nil
	}, nil
}

// mesOrderBody is the MES's order request for shop order id.
func mesOrderBody(ctx context.Context, pool *pgxpool.Pool, id int64) ([]byte, error) {
	type item struct {
		ModelURL string `json:"model_url"`
		Material string `json:"material"`
		Quantity int    `json:"quantity"`
	}
	var name string
	if err := pool.QueryRow(ctx, `SELECT c.name FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id WHERE o.id = $1`, id).Scan(&name); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("forward order %d: %w", id, ErrOrderNotFound)
		}
		return nil, fmt.Errorf("forward order %d: read it: %w", id, err)
	}
	rows, err := pool.Query(ctx, `SELECT model_url, material, quantity FROM shop.order_items WHERE order_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("forward order %d: read its items: %w", id, err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByPos[item])
	if err != nil {
		return nil, fmt.Errorf("forward order %d: read its items: %w", id, err)
	}
	return json.Marshal(map[string]any{"client_ref": strconv.FormatInt(id, 10), "customer": name, "items": items})
}

// StatusHandler returns the endpoint the MES posts its status events to
// (sim/mes Announcer): POST, one structured CloudEvent of type
// MESStatusEventType whose data holds the MES order's client_ref (the
// shop order's id) and status. The order takes the status through Mirror.
// It answers 204 when the event is applied or is not about a shop order
// (a client_ref that is not one of the shop's ids: a B2B order), 400 for
// anything that is not such an event, 413 above 64 KiB, 415 for another
// Content-Type, and 500 when the database fails (the MES does not retry).
// Its metrics go to set (a new one when nil): ficus_sim_shop_status_events_total.
func (g *Generator) StatusHandler(set *metrics.Set, log *slog.Logger) http.Handler {
	if set == nil {
		set = metrics.NewSet()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	count := func(outcome string) {
		set.GetOrCreateCounter(`ficus_sim_shop_status_events_total{outcome="` + outcome + `"}`).Inc()
	}
	for _, o := range []string{"mirrored", "unchanged", "ignored", "rejected", "failed"} {
		set.GetOrCreateCounter(`ficus_sim_shop_status_events_total{outcome="` + o + `"}`)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != cloudevent.ContentType && mt != "application/json") {
			count("rejected")
			http.Error(w, "send one structured CloudEvent as "+cloudevent.ContentType, http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
		if err != nil {
			count("rejected")
			http.Error(w, fmt.Sprintf("status event body larger than %d bytes", maxEventBytes), http.StatusRequestEntityTooLarge)
			return
		}
		ref, status, err := ParseStatusEvent(body)
		if err != nil {
			count("rejected")
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, err := strconv.ParseInt(ref, 10, 64)
		if err != nil || id < 1 {
			count("ignored") // not one of the shop's orders
			w.WriteHeader(http.StatusNoContent)
			return
		}
		changed, err := g.Mirror(r.Context(), id, status)
		switch {
		case errors.Is(err, ErrOrderNotFound):
			count("ignored")
		case err != nil:
			count("failed")
			log.Warn("mirror the MES's status", "order", id, "status", status, "err", err)
			http.Error(w, "the shop could not record the status", http.StatusInternalServerError)
			return
		case changed:
			count("mirrored")
		default:
			count("unchanged")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// ErrBadStatusEvent is returned by ParseStatusEvent for a body that is not
// an MES status event.
var ErrBadStatusEvent = errors.New("shop: not an MES status event")

// ParseStatusEvent reads an MES status event (one structured CloudEvent
// of type MESStatusEventType) and returns the client_ref and the status
// its data holds.
func ParseStatusEvent(body []byte) (clientRef, status string, err error) {
	e, err := cloudevent.Parse(body)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBadStatusEvent, err)
	}
	if e.Type != MESStatusEventType {
		return "", "", fmt.Errorf("%w: type %q, want %q", ErrBadStatusEvent, e.Type, MESStatusEventType)
	}
	var data struct {
		ClientRef *string `json:"client_ref"`
		Status    *string `json:"status"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil || data.ClientRef == nil || data.Status == nil {
		return "", "", fmt.Errorf("%w: data must be an object with string client_ref and status", ErrBadStatusEvent)
	}
	return *data.ClientRef, *data.Status, nil
}
