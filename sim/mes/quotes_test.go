package mes_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/sim/mes"
)

const quoteBody = `{"model_url": "bracket.stl", "material": "PETG", "quantity": 3}`

func TestQuote(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	_, base := start(t, mes.Config{Sleep: g.Sleep, CalcTime: 150 * time.Second})

	var prices []string
	for range 2 {
		res := async(t.Context(), http.MethodPost, base+"/api/v1/quotes", quoteBody)
		if d := recv(t, g.calls); d != 150*time.Second {
			t.Errorf("calculation slept %s, want CalcTime 150s", d)
		}
		g.release <- struct{}{}
		r := recv(t, res)
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("quote: status %d err %v body %s", r.status, r.err, r.body)
		}
		q := decode[mes.Quote](t, r)
		if q.Currency != "EUR" || q.Price == "" {
			t.Errorf("quote = %+v, want a price in EUR", q)
		}
		prices = append(prices, q.Price)
	}
	if prices[0] != prices[1] {
		t.Errorf("same request priced %s then %s, want a deterministic price", prices[0], prices[1])
	}
	if st := stats(t, base); st.QuotesComputed != 2 {
		t.Errorf("quotes_computed = %d, want 2", st.QuotesComputed)
	}
}

func TestQuoteDefaultCalcTime(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	_, base := start(t, mes.Config{Sleep: g.Sleep})
	res := async(t.Context(), http.MethodPost, base+"/api/v1/quotes", quoteBody)
	if d := recv(t, g.calls); d != mes.DefaultCalcTime {
		t.Errorf("calculation slept %s, want the default %s", d, mes.DefaultCalcTime)
	}
	g.release <- struct{}{}
	recv(t, res)
}

func TestQuotesAreComputedOneAtATime(t *testing.T) {
	t.Parallel()
	clk, g := newClock(), newGate(t)
	srv, base := start(t, mes.Config{Sleep: g.Sleep, Now: clk.Now, CalcTime: 3 * time.Second})
	url := base + "/api/v1/quotes"

	first := async(t.Context(), http.MethodPost, url, quoteBody)
	recv(t, g.calls) // the first holds the calculator
	second := async(t.Context(), http.MethodPost, url, quoteBody)
	eventually(t, "second quote queued", func() bool { return srv.Stats().QuotesWaiting == 1 })
	if st := stats(t, base); st.QuotesInProgress != 1 || st.QuotesWaiting != 1 {
		t.Errorf("while the first computes: in progress %d waiting %d, want 1 and 1", st.QuotesInProgress, st.QuotesWaiting)
	}
	select {
	case <-g.calls:
		t.Fatal("the second quote started calculating while the first was still calculating")
	default:
	}

	clk.Advance(3 * time.Second)
	g.release <- struct{}{}
	q1 := decode[mes.Quote](t, recv(t, first))
	if q1.QueuedMS != 0 || q1.CalcMS != 3000 {
		t.Errorf("first quote queued %dms calc %dms, want 0 and 3000", q1.QueuedMS, q1.CalcMS)
	}

	recv(t, g.calls) // only now does the second start
	clk.Advance(3 * time.Second)
	g.release <- struct{}{}
	q2 := decode[mes.Quote](t, recv(t, second))
	if q2.QueuedMS != 3000 || q2.CalcMS != 3000 {
		t.Errorf("second quote queued %dms calc %dms, want 3000 and 3000", q2.QueuedMS, q2.CalcMS)
	}
	if st := stats(t, base); st.QuotesComputed != 2 || st.QuotesWaiting != 0 || st.QuotesInProgress != 0 {
		t.Errorf("after both: %+v, want 2 computed, none waiting or in progress", st)
	}
}

func TestQuoteCancelledWhileQueuedLeavesTheQueue(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	set := metrics.NewSet()
	srv, base := start(t, mes.Config{Sleep: g.Sleep, Metrics: set})
	url := base + "/api/v1/quotes"
	depth := func() string {
		var buf bytes.Buffer
		set.WritePrometheus(&buf)
		for line := range strings.Lines(buf.String()) {
			if v, ok := strings.CutPrefix(line, "ficus_sim_mes_quote_queue_depth "); ok {
				return strings.TrimSpace(v)
			}
		}
		return "missing"
	}

	first := async(t.Context(), http.MethodPost, url, quoteBody)
	recv(t, g.calls)
	ctx, cancel := context.WithCancel(t.Context())
	second := async(ctx, http.MethodPost, url, quoteBody)
	eventually(t, "second quote queued", func() bool { return srv.Stats().QuotesWaiting == 1 })
	if d := depth(); d != "1" {
		t.Errorf("queue depth gauge = %s while one quote waits, want 1", d)
	}

	cancel()
	if r := recv(t, second); r.err == nil {
		t.Fatalf("cancelled quote got status %d, want a client error", r.status)
	}
	eventually(t, "cancelled quote left the queue", func() bool { return srv.Stats().QuotesWaiting == 0 })
	if d := depth(); d != "0" {
		t.Errorf("queue depth gauge = %s after the cancel, want 0", d)
	}

	third := async(t.Context(), http.MethodPost, url, quoteBody)
	eventually(t, "third quote queued", func() bool { return srv.Stats().QuotesWaiting == 1 })
	g.release <- struct{}{}
	if r := recv(t, first); r.status != http.StatusOK {
		t.Fatalf("first quote: status %d err %v", r.status, r.err)
	}
	recv(t, g.calls) // the third, not the cancelled second, computes next
	g.release <- struct{}{}
	if r := recv(t, third); r.status != http.StatusOK {
		t.Fatalf("third quote: status %d err %v", r.status, r.err)
	}
	if n := len(g.calls); n != 0 {
		t.Errorf("%d extra calculations started; the cancelled quote must not compute", n)
	}
	if st := stats(t, base); st.QuotesComputed != 2 {
		t.Errorf("quotes_computed = %d, want 2", st.QuotesComputed)
	}
}

func TestQuoteRejectsInvalidBodies(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	_, base := start(t, mes.Config{Sleep: g.Sleep})
	tests := []struct {
		body string
		says string
	}{
		{"", "empty"},
		{`{"model_url": "m", "material": "pla"`, "ends in the middle"},
		{`{"model_url": "m", "material": "pla", "quantity": "3"}`, `"quantity" must be an integer`},
		{`{"model_url": "m", "material": "pla", "quantity": 3, "rush": true}`, `unknown field "rush"`},
		{`{"material": "pla", "quantity": 3}`, "model_url is required"},
		{`{"model_url": "m", "quantity": 3}`, "material is required"},
		{`{"model_url": "m", "material": "pla"}`, "quantity must be between 1 and"},
		{`{"model_url": "m", "material": "pla", "quantity": -2}`, "quantity must be between 1 and"},
		{`null`, "model_url is required"},
	}
	for _, tt := range tests {
		r := mustSend(t, http.MethodPost, base+"/api/v1/quotes", tt.body, http.StatusBadRequest)
		if msg := errorText(t, r); !strings.Contains(msg, tt.says) {
			t.Errorf("body %s: error %q does not say %q", tt.body, msg, tt.says)
		}
	}
	if n := len(g.calls); n != 0 {
		t.Errorf("invalid quotes started %d calculations, want none", n)
	}
}
