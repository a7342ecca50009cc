package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
)

// b2bClient is a B2B integration as it exists in the field: it posts an
// order, and when the answer does not come in time or is an error it sends
// the same order again, because it cannot tell whether the MES took it.
type b2bClient struct {
	base string
	http *http.Client
	// models receives the model file of every order before it is placed.
	models   *pricing.Store
	attempts int
	backoff  func(ctx context.Context, attempt int) error
	// prefix starts every client_ref, so the MES's counts tell clients apart.
	prefix string
	// apiKey, when set, is sent as a Bearer token, and every order carries
	// an Idempotency-Key (its client_ref) that its retries reuse.
	apiKey string

	mu      sync.Mutex
	sent    int              // distinct orders (client_refs) the client meant to place
	tries   int              // HTTP requests it sent
	acked   map[string]int64 // client_ref → order id from a 201
	nextRef int
	wg      sync.WaitGroup
}

type orderRequest struct {
	ClientRef string      `json:"client_ref"`
	Customer  string      `json:"customer"`
	Items     []orderItem `json:"items"`
}

type orderItem struct {
	ModelURL string `json:"model_url"`
	Material string `json:"material"`
	Quantity int    `json:"quantity"`
}

// order places one new order in the background; it ends with ctx.
func (c *b2bClient) order(ctx context.Context) {
	c.wg.Go(func() { c.placeOrder(ctx) })
}

// wait returns when every order has ended.
func (c *b2bClient) wait() { c.wg.Wait() }

// placeOrder places one new order, retrying as the field client does.
func (c *b2bClient) placeOrder(ctx context.Context) {
	c.mu.Lock()
	c.nextRef++
	n := c.nextRef
	ref := fmt.Sprintf("%s-%06d", c.prefix, n)
	c.sent++
	c.mu.Unlock()

	// The client uploads its model first, as a real integration does: a
	// bracket whose size varies with the order.
	stl, err := solids.LBracket(float64(40+n%60), float64(30+n%40), 20, float64(3+n%3))
	if err != nil {
		return
	}
	key := "acme/bracket-" + ref + ".stl"
	if err := c.models.Put(ctx, key, stl); err != nil {
		return
	}
	body, _ := json.Marshal(orderRequest{
		ClientRef: ref,
		Customer:  "ACME Robotics",
		Items:     []orderItem{{ModelURL: key, Material: "PETG", Quantity: 10}},
	})
	for attempt := 1; attempt <= c.attempts; attempt++ {
		c.mu.Lock()
		c.tries++
		c.mu.Unlock()
		id, err := c.post(ctx, ref, body)
		if err == nil {
			c.mu.Lock()
			c.acked[ref] = id
			c.mu.Unlock()
			return
		}
		if ctx.Err() != nil || attempt == c.attempts || c.backoff(ctx, attempt) != nil {
			return // given up: the order is neither acknowledged nor retried
		}
	}
}

func (c *b2bClient) post(ctx context.Context, ref string, body []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/orders", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
		req.Header.Set("Idempotency-Key", `"`+ref+`"`)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var order struct {
		ID int64 `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&order); err != nil {
		return 0, err
	}
	return order.ID, nil
}

// lost returns how many acknowledged orders the MES cannot find: the client
// was told 201 Created, and the order does not exist.
func (c *b2bClient) lost(ctx context.Context, mesBase string) (int, error) {
	c.mu.Lock()
	ids := make([]int64, 0, len(c.acked))
	for _, id := range c.acked {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	lost := 0
	for _, id := range ids {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/v1/orders/%d", mesBase, id), nil)
		if err != nil {
			return 0, err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return 0, fmt.Errorf("look up order %d: %w", id, err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound:
			lost++
		default:
			return 0, fmt.Errorf("look up order %d: status %d", id, resp.StatusCode)
		}
	}
	return lost, nil
}

type b2bStats struct {
	Sent, Tries, Acked int
}

func (c *b2bClient) stats() b2bStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return b2bStats{Sent: c.sent, Tries: c.tries, Acked: len(c.acked)}
}

// sleepBackoff waits 100ms × attempt, or until ctx ends.
func sleepBackoff(ctx context.Context, attempt int) error {
	return ctxsleep.Sleep(ctx, time.Duration(attempt)*100*time.Millisecond)
}
