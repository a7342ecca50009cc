package orders

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Limits of the list API, the MES's own.
const (
	DefaultPerPage = 50
	MaxPerPage     = 500
	// maxListed bounds the overdue and drift lists.
	maxListed = 500
)

// Handler serves the view's API and the operators' page:
//
//	GET /api/v1/orders        ?status=&client_ref=&page=&per_page= → the MES's list, answered from the view
//	                          (the mirror source's orders, in the MES's shape, newest first); with cursor=
//	                          (empty for the first page) it pages by key instead of OFFSET and adds next_cursor
//	GET /api/v1/orders/{id}   → one MES order, or 404
//	GET /api/v1/overdue       ?limit= → orders past their promised date or too long in a status
//	GET /api/v1/drift         ?limit= → orders the shop and the MES disagree on, with both histories
//	GET /                     the operators' page (HTML)
type Handler struct {
	view *View
	log  *slog.Logger
	mux  *http.ServeMux
}

// NewHandler returns the handler of view; log may be nil.
func NewHandler(view *View, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{view: view, log: log.With("component", "orders"), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /api/v1/orders", h.list)
	h.mux.HandleFunc("GET /api/v1/orders/{id}", h.get)
	h.mux.HandleFunc("GET /api/v1/overdue", h.overdue)
	h.mux.HandleFunc("GET /api/v1/drift", h.drift)
	h.mux.HandleFunc("GET /{$}", h.page)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// MESOrder is an order in the MES's shape (sim/mes Order).
type MESOrder struct {
	ID        int64           `json:"id"`
	ClientRef string          `json:"client_ref"`
	Customer  string          `json:"customer"`
	Items     json.RawMessage `json:"items"`
	Status    string          `json:"status"`
	CreatedAt string          `json:"created_at"`
}

// MESList is the MES's list answer, plus next_cursor in cursor mode.
type MESList struct {
	Orders     []MESOrder `json:"orders"`
	Page       int        `json:"page"`
	PerPage    int        `json:"per_page"`
	Total      int64      `json:"total"`
	NextCursor *string    `json:"next_cursor,omitempty"`
}

// mesOrder renders o as the MES does: created_at in UTC to the second.
func mesOrder(o Order) (MESOrder, error) {
	var row struct {
		ClientRef string          `json:"client_ref"`
		Customer  string          `json:"customer"`
		Items     json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(o.Row, &row); err != nil {
		return MESOrder{}, fmt.Errorf("order %d: %w", o.ID, err)
	}
	m := MESOrder{ID: o.ID, ClientRef: row.ClientRef, Customer: row.Customer, Items: row.Items, Status: o.Status}
	if len(m.Items) == 0 || string(m.Items) == "null" {
		m.Items = json.RawMessage("[]")
	}
	if o.CreatedAt != nil {
		m.CreatedAt = o.CreatedAt.UTC().Format(time.RFC3339)
	}
	return m, nil
}

// parseList reads the MES's query parameters, with its own messages.
func parseList(q url.Values) (ListQuery, error) {
	lq := ListQuery{Status: q.Get("status"), ClientRef: q.Get("client_ref"), Page: 1, PerPage: DefaultPerPage}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return lq, fmt.Errorf("page must be a positive integer, got %q", v)
		}
		lq.Page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			return lq, fmt.Errorf("per_page must be an integer between 1 and %d, got %q", MaxPerPage, v)
		}
		lq.PerPage = n
	}
	lq.Cursor = q.Get("cursor")
	return lq, nil
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q, err := parseList(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	q.Source = h.view.cfg.Mirror
	cursorMode := r.URL.Query().Has("cursor")
	p, err := h.view.List(r.Context(), q)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	out := MESList{Orders: make([]MESOrder, 0, len(p.Orders)), Page: q.Page, PerPage: q.PerPage, Total: p.Total}
	for _, o := range p.Orders {
		m, err := mesOrder(o)
		if err != nil {
			h.fail(w, http.StatusInternalServerError, err)
			return
		}
		out.Orders = append(out.Orders, m)
	}
	if cursorMode {
		next := p.Next
		out.NextCursor = &next
	}
	h.json(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		h.fail(w, http.StatusBadRequest, fmt.Errorf("order id must be a positive integer, got %q", r.PathValue("id")))
		return
	}
	o, err := h.view.Get(r.Context(), h.view.cfg.Mirror, id)
	if errors.Is(err, ErrNotFound) {
		h.fail(w, http.StatusNotFound, fmt.Errorf("order %d not found", id))
		return
	}
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	m, err := mesOrder(o)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	h.json(w, http.StatusOK, m)
}

func listLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListed {
		return 0, fmt.Errorf("limit must be an integer between 1 and %d, got %q", maxListed, v)
	}
	return n, nil
}

func (h *Handler) overdue(w http.ResponseWriter, r *http.Request) {
	limit, err := listLimit(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	list, err := h.view.Overdue(r.Context(), limit)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []Overdue{}
	}
	h.json(w, http.StatusOK, map[string]any{"overdue": list})
}

func (h *Handler) drift(w http.ResponseWriter, r *http.Request) {
	limit, err := listLimit(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	list, err := h.view.Drift(r.Context(), limit)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []Drift{}
	}
	h.json(w, http.StatusOK, map[string]any{"drift": list})
}

func (h *Handler) json(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (h *Handler) fail(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		h.log.Error("order view request failed", "err", err)
	}
	b, _ := json.Marshal(map[string]string{"error": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
