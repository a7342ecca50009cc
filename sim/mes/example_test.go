package mes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/sim/mes"
)

// A B2B client retries an order it believes failed; the legacy MES creates
// it twice.
func Example() {
	models, err := pricing.OpenStore(context.Background(), "mem://", pricing.StoreConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer models.Close()
	srv, err := mes.New(mes.Config{
		Now:       func() time.Time { return time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC) },
		Models:    models,
		Estimator: volumeEstimator{},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	body := `{"client_ref": "PO-1001", "customer": "ACME GmbH",
		"items": [{"model_url": "s3://models/bracket.stl", "material": "steel", "quantity": 4}]}`
	for range 2 {
		resp, err := http.Post(ts.URL+"/api/v1/orders", "application/json", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		var order mes.Order
		err = json.NewDecoder(resp.Body).Decode(&order)
		resp.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(resp.StatusCode, resp.Header.Get("Location"), order.Status, order.CreatedAt)
	}
	st := srv.Stats()
	fmt.Println("orders:", st.OrdersCreated, "duplicates:", st.ClientRefsDuplicated)
	// Output:
	// 201 /api/v1/orders/1 new 2025-03-14T09:30:00Z
	// 201 /api/v1/orders/2 new 2025-03-14T09:30:00Z
	// orders: 2 duplicates: map[PO-1001:2]
}
