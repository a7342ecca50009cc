package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// quoteClients stand for everyone who needs a price from the MES: operators
// for shop orders and B2B clients for theirs. Each request waits for the
// MES's single calculator.
type quoteClients struct {
	base string
	http *http.Client
	// models are the keys of the models quotes ask for, in turn.
	models []string

	mu sync.Mutex
	// requested = priced + failed + ended + the requests still waiting
	// for their answer.
	requested int
	priced    int
	failed    int // an error answer or a broken connection (the MES down)
	ended     int // still waiting when the run ended
	maxQueued time.Duration
	wg        sync.WaitGroup
}

// request sends one quote request in the background; it ends with ctx.
func (q *quoteClients) request(ctx context.Context, n int) {
	q.mu.Lock()
	q.requested++
	q.mu.Unlock()
	q.wg.Go(func() {
		queued, err := q.post(ctx, n)
		q.mu.Lock()
		defer q.mu.Unlock()
		switch {
		case err == nil:
			q.priced++
			q.maxQueued = max(q.maxQueued, queued)
		case ctx.Err() != nil:
			q.ended++ // the demo ended while it waited
		default:
			q.failed++
		}
	})
}

func (q *quoteClients) post(ctx context.Context, n int) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{
		"model_url": q.models[n%len(q.models)],
		"material":  quoteMaterials[n%len(quoteMaterials)],
		"quantity":  1 + n%5,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.base+"/api/v1/quotes", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := q.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("quote: status %d", resp.StatusCode)
	}
	var quote struct {
		QueuedMS int64 `json:"queued_ms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&quote); err != nil {
		return 0, err
	}
	return time.Duration(quote.QueuedMS) * time.Millisecond, nil
}

// quoteMaterials are materials of the default price list.
var quoteMaterials = [...]string{"PLA", "PETG", "ASA", "PA12"}

// quoteStats counts the quote requests: Requested = Priced + Failed +
// Waiting, where Waiting are the requests without an answer yet (at the
// end of the run: those the run's end cut short).
type quoteStats struct {
	Requested, Priced, Failed, Waiting int
	MaxQueued                          time.Duration
}

func (q *quoteClients) stats() quoteStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return quoteStats{Requested: q.requested, Priced: q.priced, Failed: q.failed,
		Waiting: q.requested - q.priced - q.failed, MaxQueued: q.maxQueued}
}

// wait returns when every request has ended.
func (q *quoteClients) wait() { q.wg.Wait() }
