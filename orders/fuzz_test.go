package orders

import (
	"net/url"
	"testing"
)

// A cursor comes from clients: decodeCursor accepts only what
// encodeCursor made, and gives back the id it holds.
func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{encodeCursor(1), encodeCursor(-5), "", "aWQ6", "aWQ6eA", "%%%", "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			return
		}
		if again, err := decodeCursor(encodeCursor(id)); err != nil || again != id {
			t.Fatalf("cursor %q gave id %d, which does not round-trip (%d, %v)", s, id, again, err)
		}
	})
}

// Event ids come from the feed: parseEventID reads cdc's ids and refuses
// anything else without panicking.
func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"00000000016B3748-000003", "0000000000000000-000000", "FFFFFFFFFFFFFFFF-1234567", "16B3748-3", "-", "x-y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseEventID(s)
		if err != nil {
			return
		}
		if p.pos < 0 || len(s) < 18 {
			t.Fatalf("%q parsed as %+v", s, p)
		}
	})
}

// The list's query parameters come from clients: parseList refuses what
// the MES refuses and never yields a page or size out of range.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"status=new&page=2&per_page=10", "page=0", "per_page=501", "page=-1", "page=99999999999999999999", "cursor=&per_page=5", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		lq, err := parseList(q)
		if err != nil {
			return
		}
		if lq.Page < 1 || lq.PerPage < 1 || lq.PerPage > MaxPerPage {
			t.Fatalf("%q gave page %d, per_page %d", raw, lq.Page, lq.PerPage)
		}
	})
}
