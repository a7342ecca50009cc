package cdc

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// feedParts decodes msgs as the reader does with PartSize size: after each
// message that completes no transaction it takes a part if one is ready.
func feedParts(t *testing.T, d *Decoder, size int, msgs ...[]byte) []Tx {
	t.Helper()
	var out []Tx
	for i, m := range msgs {
		tx, ok, err := d.Decode(pglogrepl.LSN(100*(i+1)), m)
		if err != nil {
			t.Fatalf("message %d (%q): %v", i, m[0], err)
		}
		if ok {
			out = append(out, tx)
		} else if part, ok := d.TakePart(size); ok {
			out = append(out, part)
		}
	}
	return out
}

// ordersTx is a regular transaction of n inserts into shop.orders, with a
// ficus message after the first change.
func ordersTx(n int) [][]byte {
	msgs := [][]byte{mBegin(0x5000, 700), mRelation(0, relOrders, "shop", "orders", ordersCols...)}
	for i := range n {
		msgs = append(msgs, mInsert(0, relOrders, text(string(rune('0'+i%10))), text("new"), null, text("1.00")))
		if i == 0 {
			msgs = append(msgs, mMessage(0, true, 0x4F00, HeartbeatPrefix, "now"))
		}
	}
	return append(msgs, mCommit(0x5000, 0x5030))
}

func TestDecoderTakePartMatchesWholeTransaction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		changes   int
		size      int
		wantSizes []int
	}{
		{"smaller than a part", 3, 4, []int{3}},
		{"exactly one part", 4, 4, []int{4}},
		{"one more than a part", 5, 4, []int{4, 1}},
		{"a multiple of the part size keeps a change for the commit", 8, 4, []int{4, 4}},
		{"several parts", 11, 3, []int{3, 3, 3, 2}},
		{"parts of one", 3, 1, []int{1, 1, 1}},
		{"parts off", 5, 0, []int{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			whole := feed(t, NewDecoder(), ordersTx(tc.changes)...)
			parts := feedParts(t, NewDecoder(), tc.size, ordersTx(tc.changes)...)
			var sizes []int
			var changes []Change
			var messages []Message
			for i, p := range parts {
				sizes = append(sizes, len(p.Changes))
				changes = append(changes, p.Changes...)
				messages = append(messages, p.Messages...)
				last := i == len(parts)-1
				if p.More == last {
					t.Errorf("part %d of %d: More = %v", i, len(parts), p.More)
				}
				if wantEnd := pglogrepl.LSN(0x5030); (p.EndLSN == wantEnd) != last {
					t.Errorf("part %d of %d: EndLSN %s; only the last part carries %s", i, len(parts), p.EndLSN, wantEnd)
				}
				if p.XID != 700 || p.CommitLSN != 0x5000 || !p.CommitTime.Equal(testCommitTime) || p.BeginLSN != 100 {
					t.Errorf("part %d: %+v", i, p)
				}
			}
			if !reflect.DeepEqual(sizes, tc.wantSizes) {
				t.Errorf("part sizes %v, want %v", sizes, tc.wantSizes)
			}
			if !reflect.DeepEqual(changes, whole[0].Changes) {
				t.Errorf("the parts' changes differ from the whole transaction's:\n got %+v\nwant %+v", changes, whole[0].Changes)
			}
			if !reflect.DeepEqual(messages, whole[0].Messages) {
				t.Errorf("the parts' messages %+v, want %+v once", messages, whole[0].Messages)
			}
			var ids, wholeIDs []string
			for _, p := range parts {
				events, err := p.Events("ficus-cdc://db/slot")
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range events {
					ids = append(ids, e.ID)
				}
			}
			events, err := whole[0].Events("ficus-cdc://db/slot")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events {
				wholeIDs = append(wholeIDs, e.ID)
			}
			if !reflect.DeepEqual(ids, wholeIDs) {
				t.Errorf("event ids in parts %v, whole %v", ids, wholeIDs)
			}
		})
	}
}

func TestDecoderTakePartLeavesStreamsWhole(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	msgs := [][]byte{
		mStreamStart(900, true),
		mRelation(900, relOrders, "shop", "orders", ordersCols...),
	}
	for range 5 {
		msgs = append(msgs, mInsert(900, relOrders, text("1"), text("x"), null, null))
	}
	msgs = append(msgs, mStreamStop())
	if got := feedParts(t, d, 2, msgs...); len(got) != 0 {
		t.Fatalf("a streamed transaction that has not committed gave %d parts", len(got))
	}
	got := feedParts(t, d, 2, mStreamCommit(900, 0x50, 0x58))
	if len(got) != 1 || len(got[0].Changes) != 5 || got[0].More {
		t.Fatalf("streamed transaction: %+v, want it whole with 5 changes", got)
	}
}

func TestDecoderTakePartChecksCommitTime(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	msgs := ordersTx(3)
	feedParts(t, d, 1, msgs[:len(msgs)-1]...)
	other := wire{msgCommit}.u8(0).u64(0x5000).u64(0x5030).ts(testCommitTime.Add(time.Second))
	if _, _, err := d.Decode(1, other); !errors.Is(err, ErrMalformed) {
		t.Errorf("commit time other than Begin's after parts went out: err = %v, want ErrMalformed", err)
	}
}
