package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sink"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// event returns a valid event of ordering key key, numbered seq.
func event(key string, seq int) cloudevent.Event {
	return cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion,
		ID:          fmt.Sprintf("%s-%06d", key, seq),
		Source:      "ficus-cdc://shop/test",
		Type:        "dev.ficus.cdc.update",
		Subject:     key,
		Extensions:  map[string]any{"partitionkey": key, "seq": seq},
		Data:        json.RawMessage(fmt.Sprintf(`{"key":%q,"seq":%d}`, key, seq)),
	}
}

// events returns n events per key, interleaved: k0/0, k1/0, ..., k0/1, ...
func events(keys, n int) []cloudevent.Event {
	var out []cloudevent.Event
	for seq := range n {
		for k := range keys {
			out = append(out, event(fmt.Sprintf("shop.orders/%d", k), seq))
		}
	}
	return out
}

// recorder is an endpoint that records the events of every request it
// accepts and answers with the statuses its respond function picks.
type recorder struct {
	t       *testing.T
	respond func(n int, batch []cloudevent.Event, w http.ResponseWriter) bool // n counts requests from 1; true = accept

	mu       sync.Mutex
	requests int
	accepted [][]cloudevent.Event
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != cloudevent.BatchContentType {
		r.t.Errorf("Content-Type %q, want %s", req.Header.Get("Content-Type"), cloudevent.BatchContentType)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("read body: %v", err)
		return
	}
	batch, err := cloudevent.ParseBatch(body)
	if err != nil {
		r.t.Errorf("body is not a CloudEvents batch: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests++
	n := r.requests
	r.mu.Unlock()
	if r.respond != nil && !r.respond(n, batch, w) {
		return
	}
	r.mu.Lock()
	r.accepted = append(r.accepted, batch)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// ids returns the ids of the accepted events, in arrival order.
func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, b := range r.accepted {
		for _, e := range b {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func ids(batch []cloudevent.Event) []string {
	out := make([]string, len(batch))
	for i, e := range batch {
		out[i] = e.ID
	}
	return out
}

// sleeper is an injected Sleep that records the waits and never sleeps.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func newSink(t *testing.T, cfg webhook.Config) *webhook.Sink {
	t.Helper()
	if cfg.Sleep == nil {
		cfg.Sleep = (&sleeper{}).sleep
	}
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func counter(t *testing.T, set *metrics.Set, name string) int {
	t.Helper()
	var b strings.Builder
	set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

func TestSendSplitsIntoRequestsWithinLimits(t *testing.T) {
	t.Parallel()
	const maxBytes = 4000
	var sizes []int
	var mu sync.Mutex
	rec := &recorder{t: t, respond: func(_ int, batch []cloudevent.Event, _ http.ResponseWriter) bool {
		body, _ := json.Marshal(batch)
		mu.Lock()
		sizes = append(sizes, len(body))
		mu.Unlock()
		if len(batch) > 30 {
			t.Errorf("request of %d events, want at most 30", len(batch))
		}
		return true
	}}
	srv := newServer(t, rec)
	set := metrics.NewSet()
	s := newSink(t, webhook.Config{URL: srv.URL, Lanes: 1, MaxBatchEvents: 30, MaxBatchBytes: maxBytes, Metrics: set})

	batch := events(5, 50)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got, want := rec.ids(), ids(batch); !slices.Equal(got, want) {
		t.Fatalf("one lane must deliver the batch in order:\ngot  %v\nwant %v", got, want)
	}
	for _, n := range sizes {
		if n > maxBytes {
			t.Errorf("request body of %d bytes, want at most %d", n, maxBytes)
		}
	}
	if rec.count() < len(batch)/30+1 {
		t.Errorf("%d requests for %d events, want several", rec.count(), len(batch))
	}
	if got := counter(t, set, `ficus_sink_events_total{sink="webhook",result="delivered"}`); got != len(batch) {
		t.Errorf("delivered counter = %d, want %d", got, len(batch))
	}
}

func TestOrderPerKeyWithParallelLanes(t *testing.T) {
	t.Parallel()
	// The first request holds until a second one arrives: Send must run
	// lanes in parallel for it to finish.
	parallel := make(chan struct{})
	var inflight, peak atomic.Int32
	var once sync.Once
	rec := &recorder{t: t, respond: func(n int, _ []cloudevent.Event, _ http.ResponseWriter) bool {
		cur := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		if cur >= 2 {
			once.Do(func() { close(parallel) })
		}
		if n == 1 {
			select {
			case <-parallel:
			case <-time.After(10 * time.Second):
				t.Error("no second request arrived while the first was in flight: lanes do not run in parallel")
			}
		}
		return true
	}}
	srv := newServer(t, rec)
	s := newSink(t, webhook.Config{URL: srv.URL, Lanes: 4, MaxBatchEvents: 3})

	batch := events(13, 20) // 13 keys: no pattern lines them up with the lanes
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if peak.Load() < 2 {
		t.Errorf("at most %d request in flight, want parallel lanes", peak.Load())
	}
	// Per key, the arrival order must be the batch order.
	last := map[string]int{}
	got := 0
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.accepted {
		for _, e := range b {
			got++
			key := sink.OrderingKey(e)
			seq := int(e.Extensions["seq"].(int32))
			want := 0
			if prev, ok := last[key]; ok {
				want = prev + 1
			}
			if seq != want {
				t.Errorf("key %s: event %d arrived where event %d was due", key, seq, want)
			}
			last[key] = seq
		}
	}
	if got != len(batch) {
		t.Errorf("endpoint got %d events, want %d", got, len(batch))
	}
}

func TestRetryOn503ThenSuccess(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(n int, _ []cloudevent.Event, w http.ResponseWriter) bool {
		if n <= 3 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return false
		}
		return true
	}}
	srv := newServer(t, rec)
	set := metrics.NewSet()
	sl := &sleeper{}
	s := newSink(t, webhook.Config{
		URL: srv.URL, Lanes: 1, Metrics: set, Sleep: sl.sleep,
		InitialBackoff: time.Second, MaxBackoff: 3 * time.Second,
		Rand: func() float64 { return 0.5 },
	})
	batch := events(2, 3)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// Full jitter, Rand 0.5: half of 1s, 2s, then the 3s cap.
	want := []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond}
	if got := sl.got(); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
	if got := rec.ids(); !slices.Equal(got, ids(batch)) {
		t.Errorf("delivered %v, want %v once", got, ids(batch))
	}
	if got := counter(t, set, `ficus_sink_events_total{sink="webhook",result="retried"}`); got != 3*len(batch) {
		t.Errorf("retried counter = %d, want %d", got, 3*len(batch))
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration
	}{
		{"429 seconds", http.StatusTooManyRequests, "7", 7 * time.Second},
		{"503 seconds", http.StatusServiceUnavailable, "120", 2 * time.Minute},
		{"429 HTTP date", http.StatusTooManyRequests, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"503 date in the past", http.StatusServiceUnavailable, now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"capped by MaxRetryAfter", http.StatusTooManyRequests, "86400", 10 * time.Minute},
		{"ignored on 500", http.StatusInternalServerError, "7", 250 * time.Millisecond},
		{"garbage falls back to backoff", http.StatusTooManyRequests, "soon", 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{t: t, respond: func(n int, _ []cloudevent.Event, w http.ResponseWriter) bool {
				if n == 1 {
					w.Header().Set("Retry-After", tt.retryAfter)
					w.WriteHeader(tt.status)
					return false
				}
				return true
			}}
			srv := newServer(t, rec)
			sl := &sleeper{}
			s := newSink(t, webhook.Config{
				URL: srv.URL, Sleep: sl.sleep, MaxRetryAfter: 10 * time.Minute,
				InitialBackoff: 500 * time.Millisecond, Rand: func() float64 { return 0.5 },
				Now: func() time.Time { return now },
			})
			if err := s.Send(t.Context(), events(1, 2)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := sl.got(); !slices.Equal(got, []time.Duration{tt.want}) {
				t.Errorf("waits = %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestRejectedEventsGoToDeadLettersAndReplay(t *testing.T) {
	t.Parallel()
	var fixed atomic.Bool
	rec := &recorder{t: t, respond: func(_ int, batch []cloudevent.Event, w http.ResponseWriter) bool {
		if !fixed.Load() && slices.ContainsFunc(batch, func(e cloudevent.Event) bool { return e.Subject == "shop.orders/1" }) {
			http.Error(w, `{"detail":"unknown field seq"}`, http.StatusBadRequest)
			return false
		}
		return true
	}}
	srv := newServer(t, rec)
	store, err := sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: filepath.Join(t.TempDir(), "dead.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	set := metrics.NewSet()
	s := newSink(t, webhook.Config{URL: srv.URL, Lanes: 4, MaxBatchEvents: 2, DeadLetter: store, Metrics: set})

	batch := events(4, 3) // keys 0..3, 3 events each
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send with a dead-letter store must go on past a rejection: %v", err)
	}
	var rejected []string
	for _, e := range batch {
		if e.Subject == "shop.orders/1" {
			rejected = append(rejected, e.ID)
		}
	}
	dead, err := store.List(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var deadIDs []string
	for _, dl := range dead {
		deadIDs = append(deadIDs, dl.Event.ID)
		if !strings.Contains(dl.Reason, "400") || !strings.Contains(dl.Reason, "unknown field seq") {
			t.Errorf("reason %q should give the status and the endpoint's answer", dl.Reason)
		}
	}
	// Events that shared a request with key 1 were rejected with it; every
	// event is either delivered or dead-lettered, none lost.
	delivered := rec.ids()
	for _, id := range rejected {
		if !slices.Contains(deadIDs, id) {
			t.Errorf("rejected event %s is not in the dead-letter store", id)
		}
	}
	if len(delivered)+len(deadIDs) != len(batch) {
		t.Errorf("%d delivered + %d dead letters, want %d events accounted for", len(delivered), len(deadIDs), len(batch))
	}
	if got := counter(t, set, `ficus_sink_events_total{sink="webhook",result="dead_lettered"}`); got != len(deadIDs) {
		t.Errorf("dead_lettered counter = %d, want %d", got, len(deadIDs))
	}
	if got := counter(t, set, `ficus_sink_dead_letters_total{sink="webhook"}`); got < 1 {
		t.Errorf("dead_letters_total = %d, want at least 1", got)
	}

	fixed.Store(true)
	n, err := sink.Replay(t.Context(), store, s)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if n != len(deadIDs) {
		t.Errorf("Replay sent %d, want %d", n, len(deadIDs))
	}
	if left, _ := store.List(t.Context(), 0); len(left) != 0 {
		t.Errorf("%d dead letters left after a successful replay", len(left))
	}
	if got := rec.ids(); len(got) != len(batch) {
		t.Errorf("endpoint has %d events after replay, want %d", len(got), len(batch))
	}
}

func TestRejectionWithoutDeadLetterStoreFails(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(_ int, _ []cloudevent.Event, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusUnprocessableEntity)
		return false
	}}
	srv := newServer(t, rec)
	set := metrics.NewSet()
	s := newSink(t, webhook.Config{URL: srv.URL, Metrics: set})
	batch := events(1, 3)
	err := s.Send(t.Context(), batch)
	if !errors.Is(err, webhook.ErrNoDeadLetterStore) {
		t.Fatalf("Send = %v, want ErrNoDeadLetterStore", err)
	}
	if rec.count() != 1 {
		t.Errorf("%d requests, want 1: a 422 is not retried", rec.count())
	}
	if got := counter(t, set, `ficus_sink_events_total{sink="webhook",result="failed"}`); got != len(batch) {
		t.Errorf("failed counter = %d, want %d", got, len(batch))
	}
}

func TestStatusesRetriedOrRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		retry  bool
	}{
		{http.StatusBadRequest, false},
		{http.StatusUnauthorized, false},
		{http.StatusNotFound, false},
		{http.StatusRequestTimeout, true},
		{http.StatusConflict, true},
		{http.StatusTooEarly, true},
		{http.StatusTooManyRequests, true},
		{http.StatusInternalServerError, true},
		{http.StatusBadGateway, true},
		{http.StatusPermanentRedirect + 2, true}, // an unknown 3xx, not followed
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			rec := &recorder{t: t, respond: func(n int, _ []cloudevent.Event, w http.ResponseWriter) bool {
				if n == 1 {
					w.WriteHeader(tt.status)
					return false
				}
				return true
			}}
			srv := newServer(t, rec)
			store := &memStore{}
			s := newSink(t, webhook.Config{URL: srv.URL, DeadLetter: store})
			if err := s.Send(t.Context(), events(1, 1)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if tt.retry && (rec.count() != 2 || len(store.events) != 0) {
				t.Errorf("%d requests, %d dead letters: want a retry that delivers", rec.count(), len(store.events))
			}
			if !tt.retry && (rec.count() != 1 || len(store.events) != 1) {
				t.Errorf("%d requests, %d dead letters: want one request and a dead letter", rec.count(), len(store.events))
			}
		})
	}
}

// memStore is a DeadLetterWriter in memory.
type memStore struct {
	mu     sync.Mutex
	events []cloudevent.Event
}

func (m *memStore) Put(_ context.Context, events []cloudevent.Event, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, events...)
	return nil
}

func TestTooLargeRequestIsSplit(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(_ int, batch []cloudevent.Event, w http.ResponseWriter) bool {
		if len(batch) > 2 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return false
		}
		return true
	}}
	srv := newServer(t, rec)
	store := &memStore{}
	s := newSink(t, webhook.Config{URL: srv.URL, DeadLetter: store})
	batch := events(1, 7)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := rec.ids(); !slices.Equal(got, ids(batch)) {
		t.Errorf("delivered %v, want %v in order", got, ids(batch))
	}
	if len(store.events) != 0 {
		t.Errorf("%d dead letters, want none: splitting fits the endpoint's limit", len(store.events))
	}
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(_ int, _ []cloudevent.Event, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return false
	}}
	srv := newServer(t, rec)
	set := metrics.NewSet()
	s := newSink(t, webhook.Config{URL: srv.URL, Lanes: 1, BreakerFailures: 3, MaxAttempts: 50, Metrics: set})

	if err := s.Send(t.Context(), events(1, 2)); !errors.Is(err, webhook.ErrBreakerOpen) {
		t.Fatalf("Send = %v, want ErrBreakerOpen after 3 failures", err)
	}
	if rec.count() != 3 {
		t.Errorf("%d requests, want 3: the breaker must stop the retries", rec.count())
	}
	if err := s.Send(t.Context(), events(1, 2)); !errors.Is(err, webhook.ErrBreakerOpen) {
		t.Fatalf("second Send = %v, want ErrBreakerOpen", err)
	}
	if rec.count() != 3 {
		t.Errorf("%d requests, want still 3: an open breaker sends nothing", rec.count())
	}
	if got := counter(t, set, `ficus_sink_events_total{sink="webhook",result="failed"}`); got != 4 {
		t.Errorf("failed counter = %d, want 4", got)
	}
}

func TestCancelStopsRetries(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(_ int, _ []cloudevent.Event, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return false
	}}
	srv := newServer(t, rec)
	ctx, cancel := context.WithCancel(t.Context())
	sleeps := 0
	s := newSink(t, webhook.Config{URL: srv.URL, Lanes: 1, Sleep: func(ctx context.Context, _ time.Duration) error {
		sleeps++
		cancel() // the caller gives up while Send waits to retry
		return ctx.Err()
	}})
	err := s.Send(ctx, events(1, 2))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %v, want context.Canceled", err)
	}
	if rec.count() != 1 || sleeps != 1 {
		t.Errorf("%d requests and %d waits after cancel, want 1 and 1", rec.count(), sleeps)
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t, respond: func(_ int, _ []cloudevent.Event, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusTooManyRequests)
		return false
	}}
	srv := newServer(t, rec)
	s := newSink(t, webhook.Config{URL: srv.URL, MaxAttempts: 4})
	err := s.Send(t.Context(), events(1, 1))
	if !errors.Is(err, webhook.ErrRetriesExhausted) || !strings.Contains(err.Error(), "429") {
		t.Fatalf("Send = %v, want ErrRetriesExhausted naming the last status", err)
	}
	if rec.count() != 4 {
		t.Errorf("%d requests, want 4", rec.count())
	}
}

func TestUnreachableEndpointDoesNotLeakCredentials(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there any more
	s := newSink(t, webhook.Config{URL: "http://ficus:s3cret@" + addr + "/events", MaxAttempts: 2})
	err := s.Send(t.Context(), events(1, 1))
	if !errors.Is(err, webhook.ErrRetriesExhausted) {
		t.Fatalf("Send = %v, want ErrRetriesExhausted", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestInvalidEventIsRefused(t *testing.T) {
	t.Parallel()
	rec := &recorder{t: t}
	srv := newServer(t, rec)
	s := newSink(t, webhook.Config{URL: srv.URL})
	batch := events(1, 2)
	batch[1].Source = ""
	if err := s.Send(t.Context(), batch); !errors.Is(err, sink.ErrInvalidEvent) {
		t.Fatalf("Send = %v, want ErrInvalidEvent", err)
	}
	if rec.count() != 0 {
		t.Errorf("%d requests, want none", rec.count())
	}
}

func TestSendAfterClose(t *testing.T) {
	t.Parallel()
	s := newSink(t, webhook.Config{URL: "http://127.0.0.1:1/"})
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), events(1, 1)); !errors.Is(err, sink.ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  webhook.Config
	}{
		{"no URL", webhook.Config{}},
		{"not http", webhook.Config{URL: "ftp://host/x"}},
		{"no host", webhook.Config{URL: "http:///x"}},
		{"negative lanes", webhook.Config{URL: "http://h/", Lanes: -1}},
		{"negative backoff", webhook.Config{URL: "http://h/", MaxBackoff: -time.Second}},
		{"initial above max", webhook.Config{URL: "http://h/", InitialBackoff: time.Minute, MaxBackoff: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := webhook.New(tt.cfg); !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// The simulated CRM is a real peer: it parses the batch, tracks shop.orders
// and recognises redelivered events.
func TestDeliversToCRM(t *testing.T) {
	t.Parallel()
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c.Handler())
	store := &memStore{}
	s := newSink(t, webhook.Config{URL: srv.URL + "/events", DeadLetter: store})

	var batch []cloudevent.Event
	for i, status := range []string{"new", "priced", "paid", "in_production"} {
		for order := 1; order <= 3; order++ {
			subject := fmt.Sprintf("shop.orders/%d", order)
			batch = append(batch, cloudevent.Event{
				SpecVersion: cloudevent.SpecVersion, Source: "ficus-cdc://shop/ficus_cdc", Type: "dev.ficus.cdc.update",
				ID:              fmt.Sprintf("%016X-%06d", 0x16B3748+i, order),
				Subject:         subject,
				DataContentType: "application/json",
				Extensions:      map[string]any{"partitionkey": subject},
				Data:            json.RawMessage(fmt.Sprintf(`{"op":"update","table":"shop.orders","new":{"id":%d,"status":%q}}`, order, status)),
			})
		}
	}
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := s.Send(t.Context(), batch); err != nil { // redelivery after a restart
		t.Fatalf("Send again: %v", err)
	}
	st := c.Stats()
	if st.Unique != len(batch) || st.Duplicates != len(batch) {
		t.Errorf("CRM saw %d unique and %d duplicates, want %d of each", st.Unique, st.Duplicates, len(batch))
	}
	if st.Transitions != 9 || st.Gaps != 0 || st.OutOfOrder != 0 {
		t.Errorf("CRM recorded %d transitions, %d gaps, %d out of order; want 9, 0, 0 (every status, in order)",
			st.Transitions, st.Gaps, st.OutOfOrder)
	}

	// An event the CRM cannot read (shop.orders without a status) is
	// rejected with 400 and kept as a dead letter.
	bad := batch[0]
	bad.ID = "bad-1"
	bad.Data = json.RawMessage(`{"op":"update","table":"shop.orders","new":{"id":1}}`)
	if err := s.Send(t.Context(), []cloudevent.Event{bad}); err != nil {
		t.Fatalf("Send of a bad event: %v", err)
	}
	if len(store.events) != 1 || store.events[0].ID != "bad-1" {
		t.Errorf("dead letters %v, want the bad event", ids(store.events))
	}
}

// Closing a sink closes its own idle connections only: another sink in
// the process (here one without a Client either) keeps reusing its
// connection, where a shared transport would have broken it.
func TestCloseLeavesOtherSinksConnections(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var peers []string // the client address of each request
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		peers = append(peers, r.RemoteAddr)
		mu.Unlock()
	}))
	other := newServer(t, &recorder{t: t})
	a := newSink(t, webhook.Config{URL: other.URL, Lanes: 1})
	b := newSink(t, webhook.Config{URL: srv.URL, Lanes: 1})
	if err := a.Send(t.Context(), events(1, 1)); err != nil {
		t.Fatalf("Send through a: %v", err)
	}
	if err := b.Send(t.Context(), events(1, 1)); err != nil {
		t.Fatalf("Send through b: %v", err)
	}
	a.Close(context.Background())
	if err := b.Send(t.Context(), events(1, 1)); err != nil {
		t.Fatalf("Send through b after a closed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 2 || peers[0] != peers[1] {
		t.Errorf("b's requests came from %v, want both on one connection", peers)
	}
}
