package mes

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StatusNew is the status of every order the MES creates.
const StatusNew = "new"

// Limits of the order list and of quantities.
const (
	// DefaultPerPage is the page size of GET /api/v1/orders without per_page.
	DefaultPerPage = 50
	// MaxPerPage is the largest per_page GET /api/v1/orders accepts.
	MaxPerPage = 500
	// MaxQuantity is the largest quantity an order item or quote accepts.
	MaxQuantity = 1_000_000
)

// Item is one line of an order: a model to make, in a material, so many
// times.
type Item struct {
	ModelURL string `json:"model_url"`
	Material string `json:"material"`
	Quantity int    `json:"quantity"`
}

// Order is an order as the MES answers it.
type Order struct {
	// ID is assigned in sequence from 1.
	ID        int64  `json:"id"`
	ClientRef string `json:"client_ref"`
	Customer  string `json:"customer"`
	Items     []Item `json:"items"`
	// Status is one of Statuses: StatusNew when created, then the
	// production statuses as Config.StageTime passes.
	Status string `json:"status"`
	// CreatedAt is RFC 3339 in UTC, to the second.
	CreatedAt string `json:"created_at"`
}

// OrderList is the answer of GET /api/v1/orders.
type OrderList struct {
	// Orders is one page of the matching orders, newest first.
	Orders  []Order `json:"orders"`
	Page    int     `json:"page"`
	PerPage int     `json:"per_page"`
	// Total counts all matching orders, on every page.
	Total int `json:"total"`
}

// orderRequest is the body of POST /api/v1/orders.
type orderRequest struct {
	ClientRef string `json:"client_ref"`
	Customer  string `json:"customer"`
	Items     []Item `json:"items"`
}

// parseOrder reads and validates the body of POST /api/v1/orders.
func parseOrder(body io.Reader) (orderRequest, error) {
	var req orderRequest
	if err := decodeJSON(body, &req); err != nil {
		return orderRequest{}, err
	}
	var problems []string
	if strings.TrimSpace(req.ClientRef) == "" {
		problems = append(problems, "client_ref is required")
	}
	if strings.TrimSpace(req.Customer) == "" {
		problems = append(problems, "customer is required")
	}
	if len(req.Items) == 0 {
		problems = append(problems, "items must hold at least one item")
	}
	for i, it := range req.Items {
		problems = append(problems, validateItem(fmt.Sprintf("items[%d].", i), it)...)
	}
	if len(problems) > 0 {
		return orderRequest{}, fmt.Errorf("%w: %s", errInvalidRequest, strings.Join(problems, "; "))
	}
	return req, nil
}

// validateItem lists what is wrong with one item; prefix names its place in
// the body.
func validateItem(prefix string, it Item) []string {
	var problems []string
	if strings.TrimSpace(it.ModelURL) == "" {
		problems = append(problems, prefix+"model_url is required")
	}
	if strings.TrimSpace(it.Material) == "" {
		problems = append(problems, prefix+"material is required")
	}
	if it.Quantity < 1 || it.Quantity > MaxQuantity {
		problems = append(problems, fmt.Sprintf("%squantity must be between 1 and %d, got %d", prefix, MaxQuantity, it.Quantity))
	}
	return problems
}

// listQuery is the parsed query of GET /api/v1/orders.
type listQuery struct {
	status    string
	clientRef string
	page      int
	perPage   int
}

// parseListQuery reads status, client_ref, page and per_page; other
// parameters are ignored, as the legacy MES does.
func parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{status: q.Get("status"), clientRef: q.Get("client_ref"), page: 1, perPage: DefaultPerPage}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return listQuery{}, fmt.Errorf("%w: page must be a positive integer, got %q", errInvalidRequest, v)
		}
		lq.page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			return listQuery{}, fmt.Errorf("%w: per_page must be an integer between 1 and %d, got %q", errInvalidRequest, MaxPerPage, v)
		}
		lq.perPage = n
	}
	return lq, nil
}

func (s *Server) createOrder(r *http.Request) reply {
	req, err := parseOrder(r.Body)
	if err != nil {
		return badBody(err)
	}
	order := Order{
		ClientRef: req.ClientRef,
		Customer:  req.Customer,
		Items:     req.Items,
		Status:    StatusNew,
	}
	s.mu.Lock()
	drop := s.faults.DropRate > 0 && s.rand() < s.faults.DropRate
	if drop {
		s.ordersDropped++
	}
	s.mu.Unlock()

	ctx := r.Context()
	if drop {
		// The order gets an id and an answer, and is never stored.
		if order.ID, err = s.store.takeID(ctx); err != nil {
			return errorReply(http.StatusInternalServerError, "create order: %v", err)
		}
		order.CreatedAt = s.now().UTC().Format(time.RFC3339)
		s.countFault("drop")
		s.met.ordersDropped.Inc()
		s.log.Debug("order dropped", "id", order.ID, "client_ref", order.ClientRef)
	} else {
		if order, err = s.store.add(ctx, order, s.now()); err != nil {
			return errorReply(http.StatusInternalServerError, "create order: %v", err)
		}
		s.met.ordersCreated.Inc()
		s.log.DebugContext(r.Context(), "order created", "id", order.ID, "client_ref", order.ClientRef)
	}
	return reply{
		status: http.StatusCreated,
		header: http.Header{"Location": {fmt.Sprintf("/api/v1/orders/%d", order.ID)}},
		body:   order,
	}
}

func (s *Server) getOrder(r *http.Request) reply {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		return errorReply(http.StatusBadRequest, "order id must be a positive integer, got %q", raw)
	}
	order, ok, err := s.store.get(r.Context(), id)
	if err != nil {
		return errorReply(http.StatusInternalServerError, "read order: %v", err)
	}
	if !ok {
		return errorReply(http.StatusNotFound, "order %d not found", id)
	}
	return reply{status: http.StatusOK, body: order}
}

func (s *Server) listOrders(r *http.Request) reply {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		return errorReply(http.StatusBadRequest, "%v", err)
	}
	list, err := s.store.list(r.Context(), q)
	if err != nil {
		return errorReply(http.StatusInternalServerError, "list orders: %v", err)
	}
	return reply{status: http.StatusOK, body: list}
}
