package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) idempotency.Store {
		return idempotency.NewMemory(idempotency.MemoryConfig{})
	})
}

// The plain Go store that BenchmarkMemoryStore measures Memory against
// passes the same suite.
func TestPlainMemory(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) idempotency.Store {
		return idempotency.NewPlainMemory(idempotency.MemoryConfig{})
	})
	t.Run("OneShard", func(t *testing.T) {
		testStore(t, func(t *testing.T) idempotency.Store {
			return idempotency.NewPlainMemoryWithHash(idempotency.MemoryConfig{}, func(idempotency.Key) uint64 { return 42 })
		})
	})
}

func TestMemoryFullDropsExpiredThenRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: 3})
	for i := range 3 {
		// Expiring at t0+ttl, +ttl+1m and +ttl+2m.
		mustClaim(t, m, key(fmt.Sprint("k", i)), "fp", t0.Add(time.Duration(i)*time.Minute))
	}
	if _, _, err := m.Claim(ctx, key("k3"), "fp", t0.Add(time.Minute), lockTTL, ttl); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("claim of a fourth key in a store of 3: %v, want ErrFull", err)
	}
	// Existing keys are still answered when full.
	if got := existing(t, m, key("k0"), t0.Add(time.Minute)); got.Fingerprint != "fp" {
		t.Fatalf("existing key when full: %+v", got)
	}
	// Once two have expired, a new key takes the room of those two.
	mustClaim(t, m, key("k3"), "fp", t0.Add(ttl+time.Minute))
	if n := m.Len(); n != 2 {
		t.Fatalf("after a full claim dropped the expired: %d records, want 2 (k2 and k3)", n)
	}
	if got := existing(t, m, key("k2"), t0.Add(ttl+time.Minute)); got.Fingerprint != "fp" {
		t.Fatalf("a live record was dropped: %+v", got)
	}
}

func TestMemoryDefaultMaxKeys(t *testing.T) {
	t.Parallel()
	for _, maxKeys := range []int{0, -1} {
		m := idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: maxKeys})
		for i := range 1000 {
			mustClaim(t, m, key(fmt.Sprint(i)), "fp", t0)
		}
	}
}

// Every key in one hash chain: the store must still tell them apart by
// tenant and key, and unlink the right one.
func TestMemoryCollidingKeys(t *testing.T) {
	t.Parallel()
	t.Run("all", func(t *testing.T) {
		testStore(t, func(t *testing.T) idempotency.Store {
			return idempotency.NewMemoryWithHash(idempotency.MemoryConfig{}, func(idempotency.Key) uint64 { return 42 })
		})
	})
	t.Run("two", func(t *testing.T) {
		testStore(t, func(t *testing.T) idempotency.Store {
			return idempotency.NewMemoryWithHash(idempotency.MemoryConfig{}, func(k idempotency.Key) uint64 { return uint64(len(k.Key) % 2) })
		})
	})
}

// Records deleted from the middle, the head and the tail of a chain leave
// the others intact.
func TestMemoryCollidingKeysUnlink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := idempotency.NewMemoryWithHash(idempotency.MemoryConfig{}, func(idempotency.Key) uint64 { return 7 })
	tokens := map[string]string{}
	for i := range 10 {
		k := fmt.Sprint("k", i)
		tokens[k] = mustClaim(t, m, key(k), "fp-"+k, t0).Token
	}
	// A key that differs only in where the tenant ends.
	other := idempotency.Key{Tenant: "acmek", Key: "1"}
	if rec := mustClaim(t, m, other, "fp-other", t0); rec.Key != other {
		t.Fatalf("claim of %v returned %v", other, rec.Key)
	}
	for _, k := range []string{"k9", "k0", "k5"} { // the newest is the head of the chain
		if err := m.Release(ctx, key(k), tokens[k]); err != nil {
			t.Fatalf("release %s: %v", k, err)
		}
		delete(tokens, k)
	}
	for k, tok := range tokens {
		if got := existing(t, m, key(k), t0); got.Fingerprint != "fp-"+k || got.State != idempotency.StateInFlight {
			t.Fatalf("%s after releases: %+v", k, got)
		}
		if err := m.Complete(ctx, key(k), tok, created201(k), t0); err != nil {
			t.Fatalf("complete %s: %v", k, err)
		}
		checkResponse(t, existing(t, m, key(k), t0).Response, created201(k))
	}
	if got := existing(t, m, other, t0); got.Fingerprint != "fp-other" {
		t.Fatalf("%v: %+v", other, got)
	}
	if n := m.Len(); n != 8 {
		t.Fatalf("%d records, want 8", n)
	}
}

// Deleting most records compacts the arenas, and the records left keep
// their keys, fingerprints, reasons and responses.
func TestMemoryCompactsAfterDeletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := idempotency.NewMemory(idempotency.MemoryConfig{})
	const n = 3000
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1000+i%7) }
	for i := range n {
		k := key(fmt.Sprint("key-", i))
		recTTL := ttl
		if i%3 != 0 {
			recTTL = time.Hour // these expire first
		}
		rec, _, err := m.Claim(ctx, k, fmt.Sprint("fingerprint-", i), t0, lockTTL, recTTL)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 6 {
		case 0, 1, 2:
			err = m.Complete(ctx, k, rec.Token, idempotency.Response{Status: 201, Header: http.Header{"Location": {fmt.Sprint("/o/", i)}}, Body: body(i)}, t0)
		case 3:
			err = m.MarkUnknown(ctx, k, rec.Token, fmt.Sprint("reason ", i), t0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sizeBefore, _ := m.ArenaBytes()
	deleted, err := m.DeleteExpired(ctx, t0.Add(time.Hour), n)
	if err != nil || deleted != n-n/3 {
		t.Fatalf("deleted %d, %v; want %d", deleted, err, n-n/3)
	}
	// A quarter of the bytes stay live. Which shard a key lands in, and so
	// when each shard compacts, depends on the store's random hash seed:
	// over 300 seeds the arenas kept 39% to 51% of their bytes, and at
	// most 2.03 times the live bytes.
	size, live := m.ArenaBytes()
	if size > sizeBefore*3/5 || size > 3*live {
		t.Fatalf("after deleting two thirds: arenas of %d bytes (%d before) for %d live bytes; want them compacted", size, sizeBefore, live)
	}
	if over := m.OversizedArenas(); len(over) > 0 {
		t.Fatalf("after deleting two thirds, arenas larger than compaction allows: %v", over)
	}
	for i := 0; i < n; i += 3 {
		k := key(fmt.Sprint("key-", i))
		got := existing(t, m, k, t0.Add(time.Hour))
		if got.Fingerprint != fmt.Sprint("fingerprint-", i) {
			t.Fatalf("%v: fingerprint %q", k, got.Fingerprint)
		}
		switch i % 6 {
		case 0:
			checkResponse(t, got.Response, idempotency.Response{Status: 201, Header: http.Header{"Location": {fmt.Sprint("/o/", i)}}, Body: body(i)})
		case 3:
			if got.State != idempotency.StateUnknown || got.Reason != fmt.Sprint("reason ", i) {
				t.Fatalf("%v: %+v", k, got)
			}
		}
	}
}

// Claims of new keys drop expired records as they go, so that expired
// records do not pile up between DeleteExpired calls.
func TestMemoryClaimsSweepExpired(t *testing.T) {
	t.Parallel()
	m := idempotency.NewMemory(idempotency.MemoryConfig{})
	const n = 1000
	for i := range n {
		mustClaim(t, m, key(fmt.Sprint("old-", i)), "fp", t0)
	}
	for i := range n {
		mustClaim(t, m, key(fmt.Sprint("new-", i)), "fp", t0.Add(ttl))
	}
	// Each claim drops up to two expired records of its shard; a few may
	// be left in shards that saw more old keys than new.
	if got := m.Len(); got > n+n/2 {
		t.Fatalf("%d records after %d expired and %d new, want most expired ones dropped", got, n, n)
	}
}

// A hex SHA-256 fingerprint is kept as 32 bytes; any other string as it is.
func TestMemoryFingerprintForms(t *testing.T) {
	t.Parallel()
	m := idempotency.NewMemory(idempotency.MemoryConfig{})
	for i, fp := range []string{
		idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{"a":1}`)),
		strings.Repeat("A", 64), // upper case is not what Fingerprint returns
		strings.Repeat("0", 63) + "g",
		"",
		"ünïcode",
	} {
		k := key(fmt.Sprint("fp-", i))
		mustClaim(t, m, k, fp, t0)
		if got := existing(t, m, k, t0); got.Fingerprint != fp {
			t.Fatalf("fingerprint %q came back as %q", fp, got.Fingerprint)
		}
	}
}

// FuzzMemoryResponse stores a response as an upstream sent it and replays
// it unchanged.
func FuzzMemoryResponse(f *testing.F) {
	f.Add(201, "Content-Type", "application/json", "Location", "/api/v1/orders/1", []byte(`{"id":1}`))
	f.Add(999, "", "", "X", "a\nb: c", []byte{})
	f.Add(100, "Set-Cookie", "", "Set-Cookie", "\x00\xff", bytes.Repeat([]byte{0}, 300))
	f.Fuzz(func(t *testing.T, status int, n1, v1, n2, v2 string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		ctx := context.Background()
		m := idempotency.NewMemory(idempotency.MemoryConfig{})
		h := http.Header{}
		h[n1] = append(h[n1], v1)
		h[n2] = append(h[n2], v2)
		resp := idempotency.Response{Status: status, Header: h, Body: body}
		rec := mustClaim(t, m, key("k"), "fp", t0)
		if err := m.Complete(ctx, key("k"), rec.Token, resp, t0); err != nil {
			t.Fatal(err)
		}
		got := existing(t, m, key("k"), t0).Response
		if got.Status != status || !reflect.DeepEqual(got.Header, h) || !bytes.Equal(got.Body, body) {
			t.Fatalf("stored %d %q %q, replayed %d %q %q", status, h, body, got.Status, got.Header, got.Body)
		}
	})
}

// Thousands of records in one shard span several pages of slots; freed
// slots are reused.
func TestMemoryManyRecordsInOneShard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Small hashes all fall in the first shard.
	m := idempotency.NewMemoryWithHash(idempotency.MemoryConfig{}, func(k idempotency.Key) uint64 {
		return uint64(len(k.Key))<<8 | uint64(k.Key[len(k.Key)-1])
	})
	const n = 3000
	tokens := make([]string, n)
	for i := range n {
		tokens[i] = mustClaim(t, m, key(fmt.Sprint("k-", i)), fmt.Sprint("fp-", i), t0).Token
	}
	for i := 0; i < n; i += 3 {
		if err := m.Release(ctx, key(fmt.Sprint("k-", i)), tokens[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n / 3 {
		mustClaim(t, m, key(fmt.Sprint("again-", i)), fmt.Sprint("fp-again-", i), t0)
	}
	for i := range n {
		k := key(fmt.Sprint("k-", i))
		if i%3 == 0 {
			if got := mustClaim(t, m, k, "fp-new", t0); got.Fingerprint != "fp-new" {
				t.Fatalf("%v: %+v", k, got)
			}
			continue
		}
		if err := m.Complete(ctx, k, tokens[i], created201(fmt.Sprint(i)), t0); err != nil {
			t.Fatalf("complete %v: %v", k, err)
		}
	}
	for i := range n {
		k := key(fmt.Sprint("k-", i))
		got := existing(t, m, k, t0)
		if i%3 == 0 {
			if got.Fingerprint != "fp-new" || got.State != idempotency.StateInFlight {
				t.Fatalf("%v: %+v", k, got)
			}
			continue
		}
		if got.Fingerprint != fmt.Sprint("fp-", i) {
			t.Fatalf("%v: fingerprint %q", k, got.Fingerprint)
		}
		checkResponse(t, got.Response, created201(fmt.Sprint(i)))
	}
	for i := range n / 3 {
		if got := existing(t, m, key(fmt.Sprint("again-", i)), t0); got.Fingerprint != fmt.Sprint("fp-again-", i) {
			t.Fatalf("again-%d: %+v", i, got)
		}
	}
	if got, want := m.Len(), n+n/3; got != want {
		t.Fatalf("%d records, want %d", got, want)
	}
}
