package intake

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDelivererChecksItsConfig(t *testing.T) {
	t.Parallel()
	if _, err := NewDeliverer(DelivererConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no store, no sender: %v", err)
	}
	if _, err := NewDeliverer(DelivererConfig{Store: &Store{}, Sender: &script{}, Lease: -time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative lease: %v", err)
	}
	d, err := NewDeliverer(DelivererConfig{Store: &Store{}, Sender: &script{}})
	if err != nil || d.cfg.Lease != DefaultLease || d.cfg.Concurrency != DefaultConcurrency || d.cfg.MaxAttempts != DefaultMaxAttempts {
		t.Fatalf("defaults: %+v, %v", d.cfg, err)
	}
}

func TestBackoffStaysWithinItsBounds(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt < 100; attempt++ {
		want := min(time.Second<<min(attempt-1, 5), 30*time.Second)
		if b := backoff(time.Second, 30*time.Second, attempt); b < want/2 || b > want {
			t.Fatalf("attempt %d: %s, want within [%s, %s]", attempt, b, want/2, want)
		}
	}
}

// script is a Sender whose answers the test sets.
type script struct {
	mu      sync.Mutex
	sends   int
	answer  func(n int) (Answer, error)
	lookups int
	lookup  func(n int) (bool, error)
}

func (s *script) Send(context.Context, *Request) (Answer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	return s.answer(s.sends)
}

func (s *script) Lookup(context.Context, *Request) (bool, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if s.lookup == nil {
		return false, nil, ErrNoLookup
	}
	found, err := s.lookup(s.lookups)
	return found, []byte(`{"id":1}`), err
}

type rig struct {
	store *Store
	d     *Deliverer
	now   time.Time
}

func newRig(t *testing.T, s *script, maxAttempts int) *rig {
	t.Helper()
	db := pgtest.New(t)
	if _, err := migrate.Up(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	r.d, err = NewDeliverer(DelivererConfig{Store: store, Sender: s, MaxAttempts: maxAttempts, Now: func() time.Time { return r.now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run accepts one request and runs rounds, an hour apart, until it is
// final or rounds run out; it returns the record.
func (r *rig) run(t *testing.T, rounds int) Record {
	t.Helper()
	rec, created, err := r.store.Accept(t.Context(), Request{Tenant: "acme", Key: "k", Fingerprint: "f", Route: "o", Method: "POST",
		Target: "/o", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{}`), RequestID: "req-1"}, r.now)
	if err != nil || !created {
		t.Fatalf("accept: %v, %v", created, err)
	}
	for range rounds {
		if _, err := r.d.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		if rec, err = r.store.Get(t.Context(), "acme", rec.ID); err != nil {
			t.Fatal(err)
		}
		if rec.State.Final() {
			break
		}
		r.now = r.now.Add(time.Hour)
	}
	return rec
}

func TestUpstreamRefusalIsFailedWithItsAnswer(t *testing.T) {
	t.Parallel()
	s := &script{answer: func(int) (Answer, error) { return Answer{Status: 422, Body: []byte(`{"error":"bad"}`)}, nil }}
	rec := newRig(t, s, 0).run(t, 5)
	if rec.State != StateFailed || rec.Answer == nil || rec.Answer.Status != 422 || s.sends != 1 || rec.RequestID != "req-1" {
		t.Fatalf("%+v, %d sends", rec, s.sends)
	}
}

func TestGivenUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	s := &script{answer: func(int) (Answer, error) { return Answer{Status: 503}, nil }}
	rec := newRig(t, s, 3).run(t, 10)
	if rec.State != StateFailed || s.sends != 3 || rec.Attempts != 3 {
		t.Fatalf("%+v, %d sends", rec, s.sends)
	}
}

// An ambiguous outcome whose lookup fails at first waits, unsent, for a
// lookup that answers.
func TestFailedLookupNeverSends(t *testing.T) {
	t.Parallel()
	s := &script{
		answer: func(int) (Answer, error) { return Answer{}, errors.New("connection reset after sending") },
		lookup: func(n int) (bool, error) {
			if n < 3 {
				return false, errors.New("lookup: 500")
			}
			return true, nil
		},
	}
	rec := newRig(t, s, 0).run(t, 10)
	if rec.State != StateDelivered || s.sends != 1 || s.lookups != 3 {
		t.Fatalf("%+v, %d sends, %d lookups", rec, s.sends, s.lookups)
	}
}

// A deliverer that lost its lease records nothing.
func TestLostLeaseRecordsNothing(t *testing.T) {
	t.Parallel()
	s := &script{answer: func(int) (Answer, error) { return Answer{Status: 201}, nil }}
	r := newRig(t, s, 0)
	if _, _, err := r.store.Accept(t.Context(), Request{Tenant: "acme", Fingerprint: "f", Route: "o", Method: "POST", Target: "/o"}, r.now); err != nil {
		t.Fatal(err)
	}
	recs, err := r.store.claim(t.Context(), r.now, time.Minute, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("claim: %d, %v", len(recs), err)
	}
	later, err := r.store.claim(t.Context(), r.now.Add(2*time.Minute), time.Minute, 10) // the lease ran out
	if err != nil || len(later) != 1 {
		t.Fatalf("takeover: %d, %v", len(later), err)
	}
	if err := r.store.record(t.Context(), &recs[0], outcome{state: StateDelivered}, r.now); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the first owner recorded: %v", err)
	}
}
