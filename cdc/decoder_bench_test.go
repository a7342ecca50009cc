package cdc

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// benchRelation is shaped like the table of the CDC benchmark
// (bench/cdcbench): a bigint key, two texts, a numeric and a timestamptz.
func benchRelation() []byte {
	return mRelation(0, 16400, "bench", "cdc_orders",
		col{"id", pgtype.Int8OID, true}, col{"customer", pgtype.TextOID, false},
		col{"status", pgtype.TextOID, false}, col{"amount", pgtype.NumericOID, false},
		col{"updated_at", pgtype.TimestamptzOID, false})
}

func benchInsert(id int) []byte {
	return mInsert(0, 16400, text(fmt.Sprint(id)), text(fmt.Sprintf("customer-%d", id%1000)), text("new"),
		text(fmt.Sprintf("%d.%02d", id%1000, id%100)), text("2026-03-04 05:06:07.890123+00"))
}

// BenchmarkDecodeBigTransaction decodes one transaction of 1000 inserts.
func BenchmarkDecodeBigTransaction(b *testing.B) { benchDecode(b, bigTxMessages(1000), 1000, false) }

// BenchmarkDecodeSmallTransactions decodes 1000 transactions of one insert.
func BenchmarkDecodeSmallTransactions(b *testing.B) {
	benchDecode(b, smallTxMessages(1000), 1000, false)
}

// BenchmarkDecodeAndEncode decodes one transaction of 1000 inserts and
// turns it into events, as ficus cdc run does before the sink.
func BenchmarkDecodeAndEncode(b *testing.B) { benchDecode(b, bigTxMessages(1000), 1000, true) }

// BenchmarkDecodeAndEncodeSmall decodes 1000 one-row transactions and
// turns each into its event.
func BenchmarkDecodeAndEncodeSmall(b *testing.B) { benchDecode(b, smallTxMessages(1000), 1000, true) }

// bigTxMessages is one transaction of rows inserts.
func bigTxMessages(rows int) [][]byte {
	msgs := [][]byte{mBegin(0x2000, 7)}
	for i := range rows {
		msgs = append(msgs, benchInsert(i+1))
	}
	return append(msgs, mCommit(0x2000, 0x2100))
}

// smallTxMessages is rows transactions of one insert.
func smallTxMessages(rows int) [][]byte {
	var msgs [][]byte
	for i := range rows {
		lsn := uint64(0x2000 + 0x100*i)
		msgs = append(msgs, mBegin(lsn, uint32(7+i)), benchInsert(i+1), mCommit(lsn, lsn+0x10))
	}
	return msgs
}

// benchDecode decodes msgs, after the benchmark relation, and checks that
// their transactions hold rows changes in all; encode also turns every
// transaction into its events, as ficus cdc run does before the sink.
func benchDecode(b *testing.B, msgs [][]byte, rows int, encode bool) {
	d := NewDecoder()
	if _, _, err := d.Decode(0x1000, benchRelation()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, m := range msgs {
			tx, ok, err := d.Decode(0x2000, m)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				continue
			}
			n += len(tx.Changes)
			if encode {
				if events, err := tx.Events("ficus-cdc://bench/slot"); err != nil || len(events) != len(tx.Changes) {
					b.Fatalf("%d events of %d changes, %v", len(events), len(tx.Changes), err)
				}
			}
		}
		if n != rows {
			b.Fatalf("decoded %d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
