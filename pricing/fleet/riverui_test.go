package fleet_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

func TestOperatorUINeedsThePassword(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ui, err := fleet.NewOperatorUI(fleet.OperatorUIConfig{Queue: q, Password: "s3cret", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ui.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := q.Submit(context.Background(), submission("acme", "ui-1", fleet.LaneB2B)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)

	get := func(path, pw string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if pw != "" {
			req.SetBasicAuth("operator", pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/riverui/", ""); code != 401 {
		t.Fatalf("without the password: %d; want 401", code)
	}
	if code, _ := get("/riverui/api/jobs?state=available", "wrong"); code != 401 {
		t.Fatalf("with a wrong password: %d; want 401", code)
	}
	if code, body := get("/riverui/", "s3cret"); code != 200 || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("the UI: %d %.200q", code, body)
	}
	if code, body := get("/riverui/api/jobs?state=available", "s3cret"); code != 200 || !strings.Contains(body, "ficus_pricing_quote") {
		t.Fatalf("the UI's job list: %d %.300q", code, body)
	}
	if _, err := fleet.NewOperatorUI(fleet.OperatorUIConfig{Queue: q}); err == nil {
		t.Fatal("a UI without a password was built")
	}
}
