package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// Times of the conformance suite: whole seconds, which every store keeps
// exactly (Postgres keeps microseconds).
var (
	t0      = time.Date(2030, 3, 30, 23, 0, 0, 0, time.UTC) // a daylight saving change follows in Europe
	lockTTL = 2 * time.Minute
	ttl     = 24 * time.Hour
)

// newStoreFunc gives each test a fresh, empty store.
type newStoreFunc func(t *testing.T) idempotency.Store

// testStore is the conformance suite every Store must pass.
func testStore(t *testing.T, newStore newStoreFunc) {
	tests := []struct {
		name string
		run  func(t *testing.T, s idempotency.Store)
	}{
		{"ClaimCompleteReplay", testClaimCompleteReplay},
		{"TenantsAreIndependent", testTenantsAreIndependent},
		{"FingerprintOfFirstRequestIsReturned", testFingerprintReturned},
		{"ConcurrentClaimsOneWins", testConcurrentClaims},
		{"LockExpiryReadsAsUnknown", testLockExpiry},
		{"ConcurrentLockExpiryAllSeeUnknown", testConcurrentLockExpiry},
		{"OwnerMayFinishAfterLockExpired", testOwnerAfterLockExpiry},
		{"StaleTokenChangesNothing", testStaleToken},
		{"ExpiredCompletedKeyIsClaimedAgain", testExpiredReclaim},
		{"ConcurrentReclaimOfExpiredKeyOneWins", testConcurrentReclaimExpired},
		{"ReleaseThenReclaim", testReleaseThenReclaim},
		{"MarkUnknownThenResolve", testMarkUnknownThenResolve},
		{"ReclaimUnknownOneWins", testReclaimUnknown},
		{"DeleteExpired", testDeleteExpired},
		{"DeleteExpiredRacingClaims", testDeleteExpiredRacingClaims},
		{"ReturnedRecordsAreCopies", testReturnedRecordsAreCopies},
		{"InvalidArguments", testInvalidArguments},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

func key(k string) idempotency.Key { return idempotency.Key{Tenant: "acme", Key: k} }

func created201(id string) idempotency.Response {
	return idempotency.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/api/v1/orders/" + id}},
		Body:   []byte(`{"id":"` + id + `"}`),
	}
}

func claim(t *testing.T, s idempotency.Store, k idempotency.Key, fp string, now time.Time) (idempotency.Record, bool) {
	t.Helper()
	rec, claimed, err := s.Claim(context.Background(), k, fp, now, lockTTL, ttl)
	if err != nil {
		t.Fatalf("claim %v at %s: %v", k, now, err)
	}
	return rec, claimed
}

// mustClaim claims k and fails unless the claim is new.
func mustClaim(t *testing.T, s idempotency.Store, k idempotency.Key, fp string, now time.Time) idempotency.Record {
	t.Helper()
	rec, claimed := claim(t, s, k, fp, now)
	if !claimed {
		t.Fatalf("claim %v at %s: not claimed, found %+v", k, now, rec)
	}
	return rec
}

// existing claims k and fails if that claimed it.
func existing(t *testing.T, s idempotency.Store, k idempotency.Key, now time.Time) idempotency.Record {
	t.Helper()
	rec, claimed := claim(t, s, k, "probe", now)
	if claimed {
		t.Fatalf("claim %v at %s: claimed, want the existing record", k, now)
	}
	if rec.Token != "" {
		t.Fatalf("claim %v returned the owner's token %q to a non-owner", k, rec.Token)
	}
	return rec
}

func checkResponse(t *testing.T, got *idempotency.Response, want idempotency.Response) {
	t.Helper()
	if got == nil {
		t.Fatal("no response stored")
	}
	if got.Status != want.Status || !reflect.DeepEqual(got.Header, want.Header) || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("response = %d %v %q, want %d %v %q", got.Status, got.Header, got.Body, want.Status, want.Header, want.Body)
	}
}

func testClaimCompleteReplay(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("k1")
	rec := mustClaim(t, s, k, "fp1", t0)
	if rec.State != idempotency.StateInFlight || rec.Token == "" || rec.Key != k || rec.Fingerprint != "fp1" || rec.Response != nil {
		t.Fatalf("new claim = %+v", rec)
	}
	if !rec.CreatedAt.Equal(t0) || !rec.LockedUntil.Equal(t0.Add(lockTTL)) || !rec.ExpiresAt.Equal(t0.Add(ttl)) {
		t.Fatalf("new claim times = %s %s %s", rec.CreatedAt, rec.LockedUntil, rec.ExpiresAt)
	}

	again := existing(t, s, k, t0.Add(time.Second))
	if again.State != idempotency.StateInFlight || again.Response != nil {
		t.Fatalf("while in flight, claim returned %+v", again)
	}

	resp := created201("o-1")
	completedAt := t0.Add(10 * time.Second)
	if err := s.Complete(ctx, k, rec.Token, resp, completedAt); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{completedAt, completedAt.Add(ttl - time.Second)} {
		replay := existing(t, s, k, at)
		if replay.State != idempotency.StateCompleted || replay.Fingerprint != "fp1" || replay.Reason != "" {
			t.Fatalf("after complete, claim at %s returned %+v", at, replay)
		}
		checkResponse(t, replay.Response, resp)
		if !replay.ExpiresAt.Equal(completedAt.Add(ttl)) {
			t.Fatalf("completed record expires at %s, want TTL after completion %s", replay.ExpiresAt, completedAt.Add(ttl))
		}
	}
}

func testTenantsAreIndependent(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	a := idempotency.Key{Tenant: "acme", Key: "same"}
	b := idempotency.Key{Tenant: "globex", Key: "same"}
	ra := mustClaim(t, s, a, "fp-a", t0)
	rb := mustClaim(t, s, b, "fp-b", t0)
	if err := s.Complete(ctx, a, ra.Token, created201("a"), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, b, ra.Token, created201("x"), t0); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("one tenant's token completed another tenant's key: %v", err)
	}
	if got := existing(t, s, b, t0); got.State != idempotency.StateInFlight || got.Fingerprint != "fp-b" {
		t.Fatalf("tenant b's record = %+v", got)
	}
	if err := s.Complete(ctx, b, rb.Token, created201("b"), t0); err != nil {
		t.Fatal(err)
	}
	checkResponse(t, existing(t, s, a, t0).Response, created201("a"))
	checkResponse(t, existing(t, s, b, t0).Response, created201("b"))
}

func testFingerprintReturned(t *testing.T, s idempotency.Store) {
	k := key("reused")
	rec := mustClaim(t, s, k, "first-payload", t0)
	got, claimed := claim(t, s, k, "other-payload", t0.Add(time.Second))
	if claimed || got.Fingerprint != "first-payload" {
		t.Fatalf("claim with another payload: claimed=%v fingerprint=%q, want the first request's", claimed, got.Fingerprint)
	}
	if err := s.Complete(context.Background(), k, rec.Token, created201("1"), t0); err != nil {
		t.Fatal(err)
	}
	got, claimed = claim(t, s, k, "other-payload", t0.Add(time.Minute))
	if claimed || got.Fingerprint != "first-payload" || got.State != idempotency.StateCompleted {
		t.Fatalf("claim of a completed key with another payload: claimed=%v %+v", claimed, got)
	}
}

// race runs n goroutines of f at once and waits for them.
func race(n int, f func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			f(i)
		})
	}
	start.Done()
	done.Wait()
}

// claimRace has n goroutines claim k at now, spread over stores, and
// returns the records they got and how many claimed.
func claimRace(t *testing.T, stores []idempotency.Store, n int, k idempotency.Key, now time.Time) ([]idempotency.Record, int) {
	t.Helper()
	recs := make([]idempotency.Record, n)
	claimed := make([]bool, n)
	errs := make([]error, n)
	race(n, func(i int) {
		recs[i], claimed[i], errs[i] = stores[i%len(stores)].Claim(context.Background(), k, fmt.Sprint("fp", i), now, lockTTL, ttl)
	})
	wins := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claimer %d: %v", i, errs[i])
		}
		if claimed[i] {
			wins++
		}
	}
	return recs, wins
}

func testConcurrentClaims(t *testing.T, s idempotency.Store) {
	testConcurrentClaimsAcross(t, []idempotency.Store{s})
}

// testConcurrentClaimsAcross has 200 requests claim one key through stores
// (one store, or replicas sharing a database).
func testConcurrentClaimsAcross(t *testing.T, stores []idempotency.Store) {
	k := key("contended")
	recs, wins := claimRace(t, stores, 200, k, t0)
	if wins != 1 {
		t.Fatalf("%d of 200 concurrent claims won, want exactly 1", wins)
	}
	var winner idempotency.Record
	for _, r := range recs {
		if r.Token != "" {
			winner = r
		}
	}
	for i, r := range recs {
		if r.Fingerprint != winner.Fingerprint || r.State != idempotency.StateInFlight {
			t.Fatalf("claimer %d saw %+v, want the winner's in-flight record with fingerprint %q", i, r, winner.Fingerprint)
		}
	}
	if err := stores[len(stores)-1].Complete(context.Background(), k, winner.Token, created201("w"), t0); err != nil {
		t.Fatalf("the winner cannot complete: %v", err)
	}
}

func testLockExpiry(t *testing.T, s idempotency.Store) {
	k := key("crashed")
	mustClaim(t, s, k, "fp", t0) // and the proxy that claimed it stops

	if got := existing(t, s, k, t0.Add(lockTTL-time.Second)); got.State != idempotency.StateInFlight {
		t.Fatalf("before the lock expired: %+v, want in flight", got)
	}
	expiredAt := t0.Add(lockTTL)
	got := existing(t, s, k, expiredAt)
	if got.State != idempotency.StateUnknown || got.Reason != idempotency.ReasonLockExpired || got.Response != nil || got.Fingerprint != "fp" {
		t.Fatalf("when the lock expired: %+v, want unknown with reason %q", got, idempotency.ReasonLockExpired)
	}
	if !got.ExpiresAt.Equal(expiredAt.Add(ttl)) {
		t.Fatalf("an unknown record expires at %s, want TTL after it turned unknown: %s", got.ExpiresAt, expiredAt.Add(ttl))
	}
	// It stays unknown: the claim that noticed wrote it down.
	if again := existing(t, s, k, expiredAt.Add(time.Hour)); again.State != idempotency.StateUnknown || again.Reason != idempotency.ReasonLockExpired {
		t.Fatalf("later: %+v, want still unknown", again)
	}
}

func testConcurrentLockExpiry(t *testing.T, s idempotency.Store) {
	testConcurrentLockExpiryAcross(t, []idempotency.Store{s})
}

func testConcurrentLockExpiryAcross(t *testing.T, stores []idempotency.Store) {
	k := key("crashed-contended")
	mustClaim(t, stores[0], k, "fp", t0)
	recs, wins := claimRace(t, stores, 50, k, t0.Add(lockTTL+time.Second))
	if wins != 0 {
		t.Fatalf("%d claims won a key whose request may have reached the upstream", wins)
	}
	for i, r := range recs {
		if r.State != idempotency.StateUnknown || r.Reason != idempotency.ReasonLockExpired || r.Fingerprint != "fp" {
			t.Fatalf("claimer %d saw %+v, want unknown", i, r)
		}
	}
}

func testOwnerAfterLockExpiry(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("slow")
	rec := mustClaim(t, s, k, "fp", t0)
	existing(t, s, k, t0.Add(lockTTL)) // turns it unknown
	resp := created201("slow")
	if err := s.Complete(ctx, k, rec.Token, resp, t0.Add(lockTTL+time.Second)); err != nil {
		t.Fatalf("the owner's late outcome was refused: %v", err)
	}
	got := existing(t, s, k, t0.Add(lockTTL+2*time.Second))
	if got.State != idempotency.StateCompleted || got.Reason != "" {
		t.Fatalf("after the late owner completed: %+v", got)
	}
	checkResponse(t, got.Response, resp)
}

func testStaleToken(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("k")
	rec := mustClaim(t, s, k, "fp", t0)
	stale := rec.Token + "x"

	unchanged := func(step string, want idempotency.State) idempotency.Record {
		t.Helper()
		got := existing(t, s, k, t0.Add(time.Second))
		if got.State != want || got.Fingerprint != "fp" {
			t.Fatalf("after %s: %+v, want state %s", step, got, want)
		}
		return got
	}
	if err := s.Complete(ctx, k, stale, created201("stale"), t0); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("complete with a stale token: %v, want ErrNotOwner", err)
	}
	unchanged("complete with a stale token", idempotency.StateInFlight)
	if err := s.MarkUnknown(ctx, k, stale, "timeout", t0); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("mark unknown with a stale token: %v, want ErrNotOwner", err)
	}
	unchanged("mark unknown with a stale token", idempotency.StateInFlight)
	if err := s.Release(ctx, k, stale); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("release with a stale token: %v, want ErrNotOwner", err)
	}
	unchanged("release with a stale token", idempotency.StateInFlight)
	if err := s.Complete(ctx, key("never-claimed"), rec.Token, created201("x"), t0); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("complete of a key never claimed: %v, want ErrNotOwner", err)
	}

	// Once completed, the claim is over, even for its own token.
	resp := created201("1")
	if err := s.Complete(ctx, k, rec.Token, resp, t0); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"complete again": func() error { return s.Complete(ctx, k, rec.Token, created201("2"), t0) },
		"mark unknown":   func() error { return s.MarkUnknown(ctx, k, rec.Token, "timeout", t0) },
		"release":        func() error { return s.Release(ctx, k, rec.Token) },
	} {
		if err := op(); !errors.Is(err, idempotency.ErrNotOwner) {
			t.Fatalf("%s after complete: %v, want ErrNotOwner", name, err)
		}
		checkResponse(t, unchanged(name+" after complete", idempotency.StateCompleted).Response, resp)
	}
}

func testExpiredReclaim(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("old")
	old := mustClaim(t, s, k, "fp-old", t0)
	if err := s.Complete(ctx, k, old.Token, created201("old"), t0); err != nil {
		t.Fatal(err)
	}
	expiry := t0.Add(ttl)
	if got := existing(t, s, k, expiry.Add(-time.Second)); got.State != idempotency.StateCompleted {
		t.Fatalf("just before expiry: %+v", got)
	}
	rec := mustClaim(t, s, k, "fp-new", expiry)
	if rec.State != idempotency.StateInFlight || rec.Fingerprint != "fp-new" || rec.Response != nil || rec.Token == old.Token ||
		!rec.CreatedAt.Equal(expiry) || !rec.ExpiresAt.Equal(expiry.Add(ttl)) {
		t.Fatalf("claim of an expired key = %+v", rec)
	}
	if err := s.Release(ctx, k, old.Token); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("the expired record's token released the new claim: %v", err)
	}
	if got := existing(t, s, k, expiry); got.State != idempotency.StateInFlight || got.Fingerprint != "fp-new" {
		t.Fatalf("after the stale release: %+v", got)
	}
}

func testConcurrentReclaimExpired(t *testing.T, s idempotency.Store) {
	testConcurrentReclaimExpiredAcross(t, []idempotency.Store{s})
}

func testConcurrentReclaimExpiredAcross(t *testing.T, stores []idempotency.Store) {
	k := key("expired-contended")
	old := mustClaim(t, stores[0], k, "fp-old", t0)
	if err := stores[0].Complete(context.Background(), k, old.Token, created201("old"), t0); err != nil {
		t.Fatal(err)
	}
	recs, wins := claimRace(t, stores, 100, k, t0.Add(ttl+time.Hour))
	if wins != 1 {
		t.Fatalf("%d of 100 claims of an expired key won, want exactly 1", wins)
	}
	for i, r := range recs {
		if r.State != idempotency.StateInFlight || r.Fingerprint == "fp-old" {
			t.Fatalf("claimer %d saw %+v, want the new in-flight claim", i, r)
		}
	}
}

func testReleaseThenReclaim(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("shed")
	rec := mustClaim(t, s, k, "fp", t0)
	if err := s.Release(ctx, k, rec.Token); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, k, rec.Token); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("second release: %v, want ErrNotOwner", err)
	}
	again := mustClaim(t, s, k, "fp2", t0.Add(time.Second))
	if again.Token == rec.Token || again.Fingerprint != "fp2" {
		t.Fatalf("re-claim after release = %+v", again)
	}
	if err := s.Complete(ctx, k, rec.Token, created201("x"), t0); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("the released token completed the new claim: %v", err)
	}
}

func testMarkUnknownThenResolve(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("ambiguous")
	if err := s.Resolve(ctx, k, created201("x"), t0); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("resolve of a missing key: %v, want ErrNotFound", err)
	}
	rec := mustClaim(t, s, k, "fp", t0)
	if err := s.Resolve(ctx, k, created201("x"), t0); !errors.Is(err, idempotency.ErrNotUnknown) {
		t.Fatalf("resolve of an in-flight key: %v, want ErrNotUnknown", err)
	}
	markedAt := t0.Add(30 * time.Second)
	if err := s.MarkUnknown(ctx, k, rec.Token, "upstream timeout after 30s", markedAt); err != nil {
		t.Fatal(err)
	}
	got := existing(t, s, k, markedAt)
	if got.State != idempotency.StateUnknown || got.Reason != "upstream timeout after 30s" || got.Response != nil {
		t.Fatalf("after mark unknown: %+v", got)
	}
	if !got.ExpiresAt.Equal(markedAt.Add(ttl)) {
		t.Fatalf("unknown record expires at %s, want %s", got.ExpiresAt, markedAt.Add(ttl))
	}
	// A retry does not send again: it stays unknown until resolved.
	if again := existing(t, s, k, markedAt.Add(lockTTL*10)); again.State != idempotency.StateUnknown {
		t.Fatalf("later: %+v, want unknown", again)
	}
	resp := created201("found")
	resolvedAt := markedAt.Add(time.Minute)
	if err := s.Resolve(ctx, k, resp, resolvedAt); err != nil {
		t.Fatal(err)
	}
	got = existing(t, s, k, resolvedAt)
	if got.State != idempotency.StateCompleted || got.Reason != "" || got.Fingerprint != "fp" || !got.ExpiresAt.Equal(resolvedAt.Add(ttl)) {
		t.Fatalf("after resolve: %+v", got)
	}
	checkResponse(t, got.Response, resp)
	if err := s.Resolve(ctx, k, created201("other"), resolvedAt); !errors.Is(err, idempotency.ErrNotUnknown) {
		t.Fatalf("second resolve: %v, want ErrNotUnknown", err)
	}
	checkResponse(t, existing(t, s, k, resolvedAt).Response, resp)
	if err := s.Complete(ctx, k, rec.Token, created201("late"), resolvedAt); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("the owner completed a resolved key: %v", err)
	}

	// An expired unknown record is gone.
	k2 := key("ambiguous-expired")
	rec2 := mustClaim(t, s, k2, "fp", t0)
	if err := s.MarkUnknown(ctx, k2, rec2.Token, "reset", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Resolve(ctx, k2, resp, t0.Add(ttl)); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("resolve of an expired key: %v, want ErrNotFound", err)
	}
}

func testDeleteExpired(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	// Five records expire at t0+ttl, two live on (claimed an hour later).
	for i := range 5 {
		rec := mustClaim(t, s, key(fmt.Sprint("old", i)), "fp", t0)
		if i%2 == 0 {
			if err := s.Complete(ctx, key(fmt.Sprint("old", i)), rec.Token, created201("x"), t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 {
		mustClaim(t, s, key(fmt.Sprint("live", i)), "fp-live", t0.Add(time.Hour))
	}
	if n, err := s.DeleteExpired(ctx, t0.Add(ttl-time.Second), 100); err != nil || n != 0 {
		t.Fatalf("before anything expired: deleted %d, %v", n, err)
	}
	now := t0.Add(ttl)
	total := 0
	for _, want := range []int{2, 2, 1, 0} {
		n, err := s.DeleteExpired(ctx, now, 2)
		if err != nil || n != want {
			t.Fatalf("delete expired batch of 2: deleted %d, %v; want %d", n, err, want)
		}
		total += n
	}
	if total != 5 {
		t.Fatalf("deleted %d in all, want 5", total)
	}
	for i := range 2 {
		if got := existing(t, s, key(fmt.Sprint("live", i)), now); got.Fingerprint != "fp-live" {
			t.Fatalf("a live record was deleted: %+v", got)
		}
	}
	if _, err := s.DeleteExpired(ctx, now, 0); err == nil {
		t.Fatal("delete expired with limit 0 succeeded")
	}
}

func testDeleteExpiredRacingClaims(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	const keys = 20
	for i := range keys {
		rec := mustClaim(t, s, key(fmt.Sprint("k", i)), "fp-old", t0)
		if err := s.Complete(ctx, key(fmt.Sprint("k", i)), rec.Token, created201("x"), t0); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(ttl)
	wins := make([]int, keys)
	var mu sync.Mutex
	race(keys*4+2, func(i int) {
		if i >= keys*4 {
			for {
				n, err := s.DeleteExpired(ctx, now, 3)
				if err != nil {
					t.Error(err)
				}
				if n == 0 || err != nil {
					return
				}
			}
		}
		_, claimed, err := s.Claim(ctx, key(fmt.Sprint("k", i%keys)), "fp-new", now, lockTTL, ttl)
		if err != nil {
			t.Error(err)
			return
		}
		if claimed {
			mu.Lock()
			wins[i%keys]++
			mu.Unlock()
		}
	})
	for i, w := range wins {
		if w != 1 {
			t.Fatalf("key k%d was claimed %d times while expired records were deleted, want once", i, w)
		}
		if got := existing(t, s, key(fmt.Sprint("k", i)), now); got.Fingerprint != "fp-new" || got.State != idempotency.StateInFlight {
			t.Fatalf("key k%d: %+v, want the new claim", i, got)
		}
	}
}

func testReturnedRecordsAreCopies(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("copies")
	rec := mustClaim(t, s, k, "fp", t0)
	resp := created201("1")
	if err := s.Complete(ctx, k, rec.Token, resp, t0); err != nil {
		t.Fatal(err)
	}
	resp.Body[0] = 'X'
	resp.Header.Set("Location", "/changed")
	got := existing(t, s, k, t0)
	checkResponse(t, got.Response, created201("1"))
	got.Response.Body[0] = 'Y'
	got.Response.Header.Set("Location", "/changed")
	checkResponse(t, existing(t, s, k, t0).Response, created201("1"))

	k = key("copies-resolved")
	rec = mustClaim(t, s, k, "fp", t0)
	if err := s.MarkUnknown(ctx, k, rec.Token, "reset", t0); err != nil {
		t.Fatal(err)
	}
	resp = created201("2")
	if err := s.Resolve(ctx, k, resp, t0); err != nil {
		t.Fatal(err)
	}
	resp.Body[0] = 'X'
	resp.Header.Set("Location", "/changed")
	checkResponse(t, existing(t, s, k, t0).Response, created201("2"))
}

func testInvalidArguments(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	for _, c := range []struct {
		name         string
		k            idempotency.Key
		lockTTL, ttl time.Duration
	}{
		{"empty key", idempotency.Key{Tenant: "acme"}, lockTTL, ttl},
		{"zero lock TTL", key("k"), 0, ttl},
		{"zero TTL", key("k"), lockTTL, 0},
		{"lock outlives record", key("k"), 2 * time.Hour, time.Hour},
	} {
		if _, _, err := s.Claim(ctx, c.k, "fp", t0, c.lockTTL, c.ttl); err == nil {
			t.Errorf("claim with %s succeeded", c.name)
		}
	}
	rec := mustClaim(t, s, key("k"), "fp", t0)
	if err := s.Complete(ctx, key("k"), rec.Token, idempotency.Response{}, t0); err == nil || errors.Is(err, idempotency.ErrNotOwner) {
		t.Errorf("complete with status 0: %v, want a validation error", err)
	}
	if got := existing(t, s, key("k"), t0); got.State != idempotency.StateInFlight {
		t.Errorf("a refused complete changed the record: %+v", got)
	}
}

// A retry of an unknown outcome that learned the first request did not take
// effect takes the key over; of concurrent retries exactly one does, and
// the old token no longer owns it.
func testReclaimUnknown(t *testing.T, s idempotency.Store) {
	ctx := context.Background()
	k := key("lost-in-transit")
	if _, _, err := s.Reclaim(ctx, k, t0, lockTTL); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("reclaim of a missing key: %v, want ErrNotFound", err)
	}
	first := mustClaim(t, s, k, "fp", t0)
	if rec, claimed, err := s.Reclaim(ctx, k, t0, lockTTL); err != nil || claimed || rec.State != idempotency.StateInFlight || rec.Token != "" {
		t.Fatalf("reclaim of an in-flight key: %+v claimed=%v err=%v; want it returned as it is", rec, claimed, err)
	}
	if err := s.MarkUnknown(ctx, k, first.Token, "connection reset", t0); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []idempotency.Record
	for range n {
		wg.Go(func() {
			rec, claimed, err := s.Reclaim(ctx, k, at, lockTTL)
			if err != nil {
				t.Error(err)
				return
			}
			if claimed {
				mu.Lock()
				winners = append(winners, rec)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent reclaims won, want 1", len(winners), n)
	}
	w := winners[0]
	if w.State != idempotency.StateInFlight || w.Token == "" || w.Token == first.Token || w.Fingerprint != "fp" || !w.LockedUntil.Equal(at.Add(lockTTL)) {
		t.Fatalf("reclaimed record: %+v", w)
	}
	if err := s.Complete(ctx, k, first.Token, created201("old"), at); !errors.Is(err, idempotency.ErrNotOwner) {
		t.Fatalf("the old token completed a reclaimed key: %v", err)
	}
	if err := s.Complete(ctx, k, w.Token, created201("new"), at); err != nil {
		t.Fatal(err)
	}
	if got := existing(t, s, k, at); got.State != idempotency.StateCompleted || string(got.Response.Body) != `{"id":"new"}` {
		t.Fatalf("after completing the reclaim: %+v", got)
	}
}
