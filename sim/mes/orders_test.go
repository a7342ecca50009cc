package mes_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ficuslabs/ficus/sim/mes"
)

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})

	r := mustSend(t, http.MethodPost, base+"/api/v1/orders", `{"client_ref": "PO-7", "customer": "ACME GmbH",
		"items": [{"model_url": "s3://models/a.stl", "material": "pla", "quantity": 2},
		          {"model_url": "s3://models/b.stl", "material": "titanium", "quantity": 1}]}`, http.StatusCreated)
	got := decode[mes.Order](t, r)
	want := mes.Order{
		ID: 1, ClientRef: "PO-7", Customer: "ACME GmbH",
		Items: []mes.Item{
			{ModelURL: "s3://models/a.stl", Material: "pla", Quantity: 2},
			{ModelURL: "s3://models/b.stl", Material: "titanium", Quantity: 1},
		},
		Status: "new", CreatedAt: "2025-03-14T09:30:00Z",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("created order = %+v, want %+v", got, want)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/orders/1" {
		t.Errorf("Location = %q, want /api/v1/orders/1", loc)
	}

	fetched := decode[mes.Order](t, mustSend(t, http.MethodGet, base+"/api/v1/orders/1", "", http.StatusOK))
	if !reflect.DeepEqual(fetched, want) {
		t.Errorf("GET order = %+v, want %+v", fetched, want)
	}
	second := decode[mes.Order](t, mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-8"), http.StatusCreated))
	if second.ID != 2 {
		t.Errorf("second order id = %d, want 2", second.ID)
	}
}

func TestCreateOrderIsNotIdempotent(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})

	a := decode[mes.Order](t, mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated))
	b := decode[mes.Order](t, mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated))
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-2"), http.StatusCreated)
	if a.ID == b.ID {
		t.Fatalf("two identical POSTs both answered id %d, want two orders", a.ID)
	}
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders?client_ref=PO-1", "", http.StatusOK))
	if list.Total != 2 {
		t.Errorf("orders with client_ref PO-1: %d, want 2", list.Total)
	}
	st := stats(t, base)
	if st.OrdersCreated != 3 || st.DuplicateOrders != 1 {
		t.Errorf("stats: orders_created %d duplicate_orders %d, want 3 and 1", st.OrdersCreated, st.DuplicateOrders)
	}
	if want := map[string]int64{"PO-1": 2}; !reflect.DeepEqual(st.ClientRefsDuplicated, want) {
		t.Errorf("client_refs_duplicated = %v, want %v", st.ClientRefsDuplicated, want)
	}
}

func TestCreateOrderRejectsInvalidBodies(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	item := `{"model_url": "m", "material": "pla", "quantity": 1}`
	tests := []struct {
		name   string
		body   string
		status int
		says   string // part of the error message
	}{
		{"empty body", "", 400, "empty"},
		{"malformed", `{"client_ref": "x",`, 400, "ends in the middle"},
		{"syntax", `{"client_ref" "x"}`, 400, "malformed JSON at byte"},
		{"not an object", `[1, 2]`, 400, "must be a JSON object"},
		{"wrong type", `{"client_ref": 7, "customer": "c", "items": [` + item + `]}`, 400, `"client_ref" must be a string`},
		{"fractional quantity", `{"client_ref": "r", "customer": "c", "items": [{"model_url": "m", "material": "pla", "quantity": 1.5}]}`, 400, `"items.quantity" must be an integer`},
		{"unknown field", `{"client_ref": "r", "customer": "c", "items": [` + item + `], "priority": 1}`, 400, `unknown field "priority"`},
		{"unknown item field", `{"client_ref": "r", "customer": "c", "items": [{"model_url": "m", "material": "pla", "quantity": 1, "color": "red"}]}`, 400, `unknown field "color"`},
		{"trailing data", `{"client_ref": "r", "customer": "c", "items": [` + item + `]} {}`, 400, "after the JSON object"},
		{"missing client_ref", `{"customer": "c", "items": [` + item + `]}`, 400, "client_ref is required"},
		{"blank customer", `{"client_ref": "r", "customer": "  ", "items": [` + item + `]}`, 400, "customer is required"},
		{"no items", `{"client_ref": "r", "customer": "c", "items": []}`, 400, "at least one item"},
		{"null items", `{"client_ref": "r", "customer": "c", "items": null}`, 400, "at least one item"},
		{"zero quantity", `{"client_ref": "r", "customer": "c", "items": [{"model_url": "m", "material": "pla", "quantity": 0}]}`, 400, "items[0].quantity must be between 1 and"},
		{"huge quantity", `{"client_ref": "r", "customer": "c", "items": [{"model_url": "m", "material": "pla", "quantity": 1000001}]}`, 400, "items[0].quantity must be between 1 and"},
		{"missing model_url", `{"client_ref": "r", "customer": "c", "items": [` + item + `, {"material": "pla", "quantity": 1}]}`, 400, "items[1].model_url is required"},
		{"missing material", `{"client_ref": "r", "customer": "c", "items": [{"model_url": "m", "quantity": 1}]}`, 400, "items[0].material is required"},
		{"all problems at once", `{"items": []}`, 400, "client_ref is required; customer is required; items must hold at least one item"},
		{"too large", `{"client_ref": "` + strings.Repeat("x", 1<<20) + `", "customer": "c", "items": [` + item + `]}`, 413, "larger than 1048576 bytes"},
	}
	t.Run("group", func(t *testing.T) { // returns when the parallel cases are done
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := mustSend(t, http.MethodPost, base+"/api/v1/orders", tt.body, tt.status)
				if msg := errorText(t, r); !strings.Contains(msg, tt.says) {
					t.Errorf("error %q does not say %q", msg, tt.says)
				}
			})
		}
	})
	if st := stats(t, base); st.OrdersCreated != 0 || st.RequestsSeen != int64(len(tests)) {
		t.Errorf("stats after %d invalid bodies: %+v, want no orders", len(tests), st)
	}
}

func TestCreateOrderConcurrently(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	const n = 50
	ids := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := send(t.Context(), http.MethodPost, base+"/api/v1/orders", orderBody(fmt.Sprintf("PO-%d", i%10)))
			if r.err != nil || r.status != http.StatusCreated {
				t.Errorf("POST %d: status %d err %v", i, r.status, r.err)
				return
			}
			var o mes.Order
			if err := json.Unmarshal(r.body, &o); err != nil {
				t.Errorf("POST %d: %v", i, err)
			}
			ids[i] = o.ID
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("ids %v are not 1..%d, each once", ids, n)
		}
	}
	list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders?per_page=500", "", http.StatusOK))
	if list.Total != n || len(list.Orders) != n {
		t.Errorf("list: total %d with %d orders, want %d", list.Total, len(list.Orders), n)
	}
	if st := stats(t, base); st.DuplicateOrders != n-10 {
		t.Errorf("duplicate_orders = %d, want %d", st.DuplicateOrders, n-10)
	}
}

func TestGetOrderErrors(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)

	if msg := errorText(t, mustSend(t, http.MethodGet, base+"/api/v1/orders/2", "", http.StatusNotFound)); !strings.Contains(msg, "order 2 not found") {
		t.Errorf("404 error = %q", msg)
	}
	for _, id := range []string{"abc", "0", "-1", "99999999999999999999"} {
		r := mustSend(t, http.MethodGet, base+"/api/v1/orders/"+id, "", http.StatusBadRequest)
		if msg := errorText(t, r); !strings.Contains(msg, "positive integer") {
			t.Errorf("GET order %s: error %q", id, msg)
		}
	}
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	for _, ref := range []string{"A", "B", "A", "C", "A"} { // ids 1..5
		mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody(ref), http.StatusCreated)
	}
	tests := []struct {
		query   string
		ids     []int64
		total   int
		page    int
		perPage int
	}{
		{"", []int64{5, 4, 3, 2, 1}, 5, 1, 50},
		{"?client_ref=A", []int64{5, 3, 1}, 3, 1, 50},
		{"?client_ref=Z", []int64{}, 0, 1, 50},
		{"?status=new", []int64{5, 4, 3, 2, 1}, 5, 1, 50},
		{"?status=shipped", []int64{}, 0, 1, 50},
		{"?status=new&client_ref=B", []int64{2}, 1, 1, 50},
		{"?per_page=2", []int64{5, 4}, 5, 1, 2},
		{"?per_page=2&page=2", []int64{3, 2}, 5, 2, 2},
		{"?per_page=2&page=3", []int64{1}, 5, 3, 2},
		{"?per_page=2&page=4", []int64{}, 5, 4, 2},
		{"?client_ref=A&per_page=2&page=2", []int64{1}, 3, 2, 2},
		{"?page=9223372036854775807&per_page=500", []int64{}, 5, 9223372036854775807, 500},
		{"?page=&per_page=&unknown=1", []int64{5, 4, 3, 2, 1}, 5, 1, 50},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			list := decode[mes.OrderList](t, mustSend(t, http.MethodGet, base+"/api/v1/orders"+tt.query, "", http.StatusOK))
			ids := []int64{}
			for _, o := range list.Orders {
				ids = append(ids, o.ID)
			}
			if !slices.Equal(ids, tt.ids) || list.Total != tt.total || list.Page != tt.page || list.PerPage != tt.perPage {
				t.Errorf("got ids %v total %d page %d per_page %d; want ids %v total %d page %d per_page %d",
					ids, list.Total, list.Page, list.PerPage, tt.ids, tt.total, tt.page, tt.perPage)
			}
		})
	}
}

func TestListOrdersEmptyIsAnArray(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	r := mustSend(t, http.MethodGet, base+"/api/v1/orders", "", http.StatusOK)
	if !strings.Contains(string(r.body), `"orders":[]`) {
		t.Errorf("empty list body %s, want \"orders\":[]", r.body)
	}
}

func TestListOrdersRejectsBadQuery(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})
	for _, q := range []string{
		"page=0", "page=-1", "page=x", "page=1.5", "page=99999999999999999999",
		"per_page=0", "per_page=501", "per_page=abc", "per_page=-5",
	} {
		r := mustSend(t, http.MethodGet, base+"/api/v1/orders?"+q, "", http.StatusBadRequest)
		name, _, _ := strings.Cut(q, "=")
		if msg := errorText(t, r); !strings.Contains(msg, name+" must be") {
			t.Errorf("?%s: error %q does not explain %s", q, msg, name)
		}
	}
}
