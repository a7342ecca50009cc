package cdc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
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

// mixedTxMessages is one transaction of rows changes shaped like an
// order table's day: per 10 changes, 5 inserts, 3 updates that keep the
// key (no old tuple), 1 update of a large row whose TOASTed column did not
// change, and 1 delete by key.
func mixedTxMessages(rows int) [][]byte {
	msgs := [][]byte{mBegin(0x2000, 7)}
	for i := range rows {
		id := fmt.Sprint(i/2 + 1)
		switch i % 10 {
		case 0, 2, 4, 6, 8:
			msgs = append(msgs, benchInsert(i+1))
		case 1, 3, 5:
			msgs = append(msgs, mUpdate(0, 16400, 0, nil, []val{text(id), text("customer-7"), text("paid"),
				text("1234.50"), text("2026-03-04 05:06:08.5+00")}))
		case 7:
			msgs = append(msgs, mUpdate(0, 16400, 0, nil, []val{text(id), toast, text("shipped"),
				text("99.99"), text("2026-03-04 05:06:09+00")}))
		case 9:
			msgs = append(msgs, mDelete(0, 16400, tupleKey, text(id), null, null, null, null))
		}
	}
	return append(msgs, mCommit(0x2000, 0x2100))
}

// parserWorkload is a named stream of pgoutput messages the parser
// benchmarks decode.
type parserWorkload struct {
	name string
	msgs [][]byte
}

// parserWorkloads are 1000 rows each: in one big transaction, in
// transactions of one row, and in the mixed day of mixedTxMessages.
func parserWorkloads() []parserWorkload {
	return []parserWorkload{
		{"big", bigTxMessages(1000)},
		{"small", smallTxMessages(1000)},
		{"mixed", mixedTxMessages(1000)},
	}
}

// BenchmarkParser decodes the same transactions with the hand-written
// pgoutput reader of decoder.go (Decode) and with pglogrepl.ParseV2
// feeding the same transaction assembly and value conversion (decodeV2),
// so that the difference is the parsing alone:
//
//	go test -run '^$' -bench Parser -count 6 ./cdc/
func BenchmarkParser(b *testing.B) {
	for _, w := range parserWorkloads() {
		for _, p := range []struct {
			name   string
			decode func(*Decoder, pglogrepl.LSN, []byte) (Tx, bool, error)
		}{
			{"hand", (*Decoder).Decode},
			{"ParseV2", decodeV2},
		} {
			b.Run(w.name+"/"+p.name, func(b *testing.B) {
				d := NewDecoder()
				if _, _, err := p.decode(d, 0x1000, benchRelation()); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					n := 0
					for _, m := range w.msgs {
						tx, ok, err := p.decode(d, 0x2000, m)
						if err != nil {
							b.Fatal(err)
						}
						if ok {
							n += len(tx.Changes)
						}
					}
					if n != 1000 {
						b.Fatalf("decoded %d changes, want 1000", n)
					}
				}
				b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "changes/s")
			})
		}
	}
}

// TestParseV2DecoderAgrees checks that the benchmark's ParseV2 front end
// decodes the benchmark's transactions as Decode does, so that
// BenchmarkParser compares equal work.
func TestParseV2DecoderAgrees(t *testing.T) {
	t.Parallel()
	for _, msgs := range [][][]byte{bigTxMessages(20), smallTxMessages(20), mixedTxMessages(20)} {
		hand, v2 := NewDecoder(), NewDecoder()
		msgs = append([][]byte{benchRelation()}, msgs...)
		for i, m := range msgs {
			tx1, ok1, err1 := hand.Decode(0x2000, m)
			tx2, ok2, err2 := decodeV2(v2, 0x2000, m)
			if err1 != nil || err2 != nil {
				t.Fatalf("message %d: %v, %v", i, err1, err2)
			}
			e1, err1 := tx1.Events("ficus-cdc://db/slot")
			e2, err2 := tx2.Events("ficus-cdc://db/slot")
			j1, _ := json.Marshal(e1)
			j2, _ := json.Marshal(e2)
			if err1 != nil || err2 != nil || ok1 != ok2 || !bytes.Equal(j1, j2) {
				t.Fatalf("message %d: hand %v %s %v, ParseV2 %v %s %v", i, ok1, j1, err1, ok2, j2, err2)
			}
		}
	}
}

// decodeV2 decodes the regular (not streamed) transactions of the
// benchmarks as Decode does, reading the messages with pglogrepl.ParseV2.
func decodeV2(d *Decoder, walStart pglogrepl.LSN, msg []byte) (Tx, bool, error) {
	m, err := pglogrepl.ParseV2(msg, d.inStream)
	if err != nil {
		return Tx{}, false, err
	}
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		return Tx{}, false, d.beginTx(walStart, m.FinalLSN, m.CommitTime, m.Xid)
	case *pglogrepl.CommitMessage:
		return d.commitTx(m.CommitLSN, m.TransactionEndLSN, m.CommitTime)
	case *pglogrepl.RelationMessageV2:
		rel := &relation{id: m.RelationID, schema: m.Namespace, name: m.RelationName, columns: make([]column, len(m.Columns))}
		for i, c := range m.Columns {
			if rel.columns[i], err = d.newColumn(c.Name, c.DataType, c.Flags&columnFlagKey != 0); err != nil {
				return Tx{}, false, err
			}
		}
		d.addRelation(rel, m.ReplicaIdentity == replicaIdentityFull)
	case *pglogrepl.InsertMessageV2:
		t, rel, err := d.rowTarget(m.RelationID)
		if err != nil {
			return Tx{}, false, err
		}
		row, toast, err := d.tupleV2(rel, m.Tuple, false)
		if err != nil {
			return Tx{}, false, err
		}
		d.inserted(t, m.Xid, rel, row, toast)
	case *pglogrepl.UpdateMessageV2:
		t, rel, err := d.rowTarget(m.RelationID)
		if err != nil {
			return Tx{}, false, err
		}
		var old map[string]any
		if m.OldTuple != nil {
			if old, _, err = d.tupleV2(rel, m.OldTuple, m.OldTupleType == tupleKey); err != nil {
				return Tx{}, false, err
			}
		}
		row, toast, err := d.tupleV2(rel, m.NewTuple, false)
		if err != nil {
			return Tx{}, false, err
		}
		d.updated(t, m.Xid, rel, old, row, toast)
	case *pglogrepl.DeleteMessageV2:
		t, rel, err := d.rowTarget(m.RelationID)
		if err != nil {
			return Tx{}, false, err
		}
		old, _, err := d.tupleV2(rel, m.OldTuple, m.OldTupleType == tupleKey)
		if err != nil {
			return Tx{}, false, err
		}
		d.deleted(t, m.Xid, rel, old)
	default:
		return Tx{}, false, fmt.Errorf("%T is not in the benchmarks", m)
	}
	return Tx{}, false, nil
}

// tupleV2 is Decoder.tuple for a TupleData ParseV2 read.
func (d *Decoder) tupleV2(rel *relation, data *pglogrepl.TupleData, keyOnly bool) (map[string]any, []string, error) {
	if len(data.Columns) != len(rel.columns) {
		return nil, nil, fmt.Errorf("tuple has %d columns, the relation has %d", len(data.Columns), len(rel.columns))
	}
	row := d.newRow(len(data.Columns))
	var toast []string
	for i, v := range data.Columns {
		c := &rel.columns[i]
		if keyOnly && !c.key {
			continue
		}
		switch v.DataType {
		case colNull:
			row[c.name] = nil
		case colToast:
			toast = append(toast, c.name)
		case colText:
			if err := d.setText(row, c, v.Data); err != nil {
				return nil, nil, err
			}
		default:
			return nil, nil, fmt.Errorf("column %s: value kind %q", c.name, v.DataType)
		}
	}
	d.endRow(row)
	return row, toast, nil
}

// BenchmarkParserPaired decodes each workload with both readers in turn,
// each iteration, and reports the median over iterations of ParseV2's
// time over the hand reader's (v2/hand): on a machine whose load changes,
// the two halves of a pair see the same load.
func BenchmarkParserPaired(b *testing.B) {
	for _, w := range parserWorkloads() {
		b.Run(w.name, func(b *testing.B) {
			hand, v2 := NewDecoder(), NewDecoder()
			for _, d := range []*Decoder{hand, v2} {
				if _, _, err := d.Decode(0x1000, benchRelation()); err != nil {
					b.Fatal(err)
				}
			}
			run := func(d *Decoder, decode func(*Decoder, pglogrepl.LSN, []byte) (Tx, bool, error)) time.Duration {
				start := time.Now()
				for _, m := range w.msgs {
					if _, _, err := decode(d, 0x2000, m); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(start)
			}
			var ratios []float64
			for b.Loop() {
				th := run(hand, (*Decoder).Decode)
				tv := run(v2, decodeV2)
				ratios = append(ratios, float64(tv)/float64(th))
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "v2/hand")
		})
	}
}
