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
func BenchmarkDecodeBigTransaction(b *testing.B) {
	const rows = 1000
	msgs := [][]byte{mBegin(0x2000, 7)}
	for i := range rows {
		msgs = append(msgs, benchInsert(i+1))
	}
	msgs = append(msgs, mCommit(0x2000, 0x2100))
	benchDecode(b, msgs, rows)
}

// BenchmarkDecodeSmallTransactions decodes 1000 transactions of one insert.
func BenchmarkDecodeSmallTransactions(b *testing.B) {
	const rows = 1000
	var msgs [][]byte
	for i := range rows {
		lsn := uint64(0x2000 + 0x100*i)
		msgs = append(msgs, mBegin(lsn, uint32(7+i)), benchInsert(i+1), mCommit(lsn, lsn+0x10))
	}
	benchDecode(b, msgs, rows)
}

func benchDecode(b *testing.B, msgs [][]byte, rows int) {
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
			if ok {
				n += len(tx.Changes)
			}
		}
		if n != rows {
			b.Fatalf("decoded %d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDecodeAndEncode decodes one transaction of 1000 inserts and
// turns it into events, as ficus cdc run does before the sink.
func BenchmarkDecodeAndEncode(b *testing.B) {
	const rows = 1000
	msgs := [][]byte{mBegin(0x2000, 7)}
	for i := range rows {
		msgs = append(msgs, benchInsert(i+1))
	}
	msgs = append(msgs, mCommit(0x2000, 0x2100))
	benchDecodeAndEncode(b, msgs, rows)
}

// BenchmarkDecodeAndEncodeSmall decodes 1000 one-row transactions and
// turns each into its event.
func BenchmarkDecodeAndEncodeSmall(b *testing.B) {
	const rows = 1000
	var msgs [][]byte
	for i := range rows {
		lsn := uint64(0x2000 + 0x100*i)
		msgs = append(msgs, mBegin(lsn, uint32(7+i)), benchInsert(i+1), mCommit(lsn, lsn+0x10))
	}
	benchDecodeAndEncode(b, msgs, rows)
}

// benchDecodeAndEncode decodes msgs, after the benchmark relation, and
// turns every transaction into its events, which must number rows in all.
func benchDecodeAndEncode(b *testing.B, msgs [][]byte, rows int) {
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
			events, err := tx.Events("ficus-cdc://bench/slot")
			if err != nil {
				b.Fatal(err)
			}
			n += len(events)
		}
		if n != rows {
			b.Fatalf("%d events, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
