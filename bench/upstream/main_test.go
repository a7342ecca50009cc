package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/orders/ord-000042")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != getSize || !json.Valid(body) {
		t.Errorf("GET: %d with %d bytes (valid JSON: %v), want 200 with %d bytes of JSON",
			resp.StatusCode, len(body), json.Valid(body), getSize)
	}

	resp, err = http.Post(srv.URL+"/api/v1/orders", "application/json", strings.NewReader(`{"client_ref":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK       bool   `json:"ok"`
		Method   string `json:"method"`
		Received int    `json:"received_bytes"`
	}
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || !got.OK || got.Method != "POST" || got.Received != 18 {
		t.Errorf("POST: %d %+v (decode error %v), want 201 echoing 18 bytes received", resp.StatusCode, got, err)
	}

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/x", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", resp.StatusCode)
	}
}

func TestPadJSON(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 10, 200, 1000} {
		got := padJSON(`{"pad":"`, n)
		if !json.Valid([]byte(got)) {
			t.Errorf("padJSON(%d) = %q, not JSON", n, got)
		}
		if want := max(n, len(`{"pad":""}`)); len(got) != want {
			t.Errorf("padJSON(%d) is %d bytes, want %d", n, len(got), want)
		}
	}
}
