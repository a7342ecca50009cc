package fleet

import (
	"strings"
	"testing"
)

func TestParseNote(t *testing.T) {
	const id = "0193a5b0-7c1e-7d3a-9f00-0123456789ab"
	row := `{"id":"` + id + `","tenant":"acme","lane":"b2b","model_url":"m.stl","request":{"model_key":"m.stl","material":"PLA","quantity":2},` +
		`"state":"done","result":{"price":"15.00","currency":"EUR"},"error":"","attempt":1,` +
		`"created_at":"2026-12-06T19:00:00.1+00:00","started_at":"2026-12-06T19:00:00.2+00:00","finished_at":"2026-12-06T19:00:00.3+00:00"}`
	for _, tc := range []struct {
		name, payload string
		final         bool
	}{
		{"id alone", id, false},
		{"a stored row", id + " " + row, true},
		{"another quote's row", "00000000-0000-0000-0000-000000000000 " + row, false},
		{"not JSON", id + " {", false},
		{"not final", id + " " + strings.Replace(row, `"done"`, `"queued"`, 1), false},
		{"done without a price", id + " " + strings.Replace(row, `{"price":"15.00","currency":"EUR"}`, "null", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotID, st := parseNote(tc.payload)
			if want, _, _ := strings.Cut(tc.payload, " "); gotID != want {
				t.Fatalf("id = %q, want %q", gotID, want)
			}
			if (st != nil) != tc.final {
				t.Fatalf("status = %+v, want one: %v", st, tc.final)
			}
			if st == nil {
				return
			}
			if st.Tenant != "acme" || st.Lane != LaneB2B || st.Request.Quantity != 2 || st.Quote == nil ||
				st.Quote.Price.StringFixed(2) != "15.00" || st.Calc().Milliseconds() != 100 {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

// A notification's payload comes from the database; whatever it holds,
// parseNote answers without panicking, and a status only for a final
// quote of the payload's id.
func FuzzParseNote(f *testing.F) {
	f.Add("0193a5b0-7c1e-7d3a-9f00-0123456789ab")
	f.Add(`x {"id":"x","state":"done","result":{"price":"1"}}`)
	f.Add(`x {"id":"x","state":"done","result":null}`)
	f.Add(`x {"id":"x","state":"rejected","started_at":null}`)
	f.Add(" ")
	f.Fuzz(func(t *testing.T, payload string) {
		id, st := parseNote(payload)
		if st != nil && (st.ID != id || !st.Final() || (st.State == StateDone) != (st.Quote != nil)) {
			t.Fatalf("parseNote(%q) = %q, %+v", payload, id, st)
		}
	})
}
