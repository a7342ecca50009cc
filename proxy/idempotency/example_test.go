package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// A retry of a completed request gets the stored response instead of
// reaching the upstream a second time.
func Example() {
	ctx := context.Background()
	store := idempotency.NewMemory(idempotency.MemoryConfig{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	key, err := idempotency.ParseKeyHeader(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
	if err != nil {
		fmt.Println(err)
		return
	}
	k := idempotency.Key{Tenant: "acme", Key: key}
	fp := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"part":"bracket-7","qty":120}`))

	rec, claimed, _ := store.Claim(ctx, k, fp, now, 2*time.Minute, 24*time.Hour)
	fmt.Println("first request claimed the key:", claimed)
	// ... the request goes upstream and the order is created ...
	_ = store.Complete(ctx, k, rec.Token, idempotency.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Location": {"/api/v1/orders/1042"}},
		Body:   []byte(`{"id":1042}`),
	}, now.Add(time.Second))

	// The client retries the same request (members in another order).
	retry := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"qty":120, "part":"bracket-7"}`))
	rec, claimed, _ = store.Claim(ctx, k, retry, now.Add(time.Minute), 2*time.Minute, 24*time.Hour)
	fmt.Println("retry claimed the key:", claimed)
	fmt.Println("same payload:", rec.Fingerprint == retry)
	fmt.Println(rec.State, rec.Response.Status, rec.Response.Header.Get("Location"), string(rec.Response.Body))
	// Output:
	// first request claimed the key: true
	// retry claimed the key: false
	// same payload: true
	// completed 201 /api/v1/orders/1042 {"id":1042}
}

// A proxy replica that stopped while holding a key leaves the outcome
// unknown once its lock expires: the next request must not be sent again
// blindly.
func ExampleStore_lockExpired() {
	ctx := context.Background()
	store := idempotency.NewMemory(idempotency.MemoryConfig{})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	k := idempotency.Key{Tenant: "acme", Key: "order-77"}

	_, _, _ = store.Claim(ctx, k, "fp", now, 2*time.Minute, 24*time.Hour) // and the replica stops
	rec, claimed, _ := store.Claim(ctx, k, "fp", now.Add(3*time.Minute), 2*time.Minute, 24*time.Hour)
	fmt.Println(claimed, rec.State)
	fmt.Println(rec.Reason)
	// Output:
	// false unknown
	// lock expired: the proxy handling the first request stopped before it finished
}

func ExampleParseKeyHeader() {
	for _, v := range []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `order-42`, `my key`} {
		key, err := idempotency.ParseKeyHeader(v)
		fmt.Printf("%q %v\n", key, err)
	}
	// Output:
	// "8e03978e-40d5-43e8-bc93-6894a57f9324" <nil>
	// "order-42" <nil>
	// "" invalid Idempotency-Key: a space at position 3; a key with spaces must be a quoted string, e.g. Idempotency-Key: "my key"
}

func ExampleFingerprint() {
	a := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"a":1, "b":2}`))
	b := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"b":2,"a":1}`))
	c := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"a":1,"b":3}`))
	fmt.Println(a == b, a == c)
	// Output: true false
}
