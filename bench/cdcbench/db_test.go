package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/pgtest"
)

// cdcbench runs a subcommand and returns its result line.
func cdcbench(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("cdcbench %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// value returns NAME's value in a key=value result line.
func value(t *testing.T, line, name string) string {
	t.Helper()
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s in %q", name, line)
	return ""
}

func TestEveryCopyOfTheTemplateSlotDrainsTheWholeWorkload(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	prep := cdcbench(t, ctx, "prepare", "-db", db.URL)
	if opts := value(t, prep, "plugin_options"); !strings.Contains(opts, "publication_names="+DefaultPublication) {
		t.Fatalf("plugin_options=%s does not name the publication", opts)
	}
	cdcbench(t, ctx, "slots", "-db", db.URL, "-create", "cdcbench_t1_tpl")
	small := cdcbench(t, ctx, "workload", "-db", db.URL, "-kind", "small", "-rows", "40")
	big := cdcbench(t, ctx, "workload", "-db", db.URL, "-kind", "big", "-rows", "25")
	end, err := pglogrepl.ParseLSN(value(t, big, "end_lsn"))
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := pglogrepl.ParseLSN(value(t, small, "end_lsn")); first >= end {
		t.Fatalf("the big workload ends at %s, not after the small one's %s", end, first)
	}
	cdcbench(t, ctx, "slots", "-db", db.URL, "-from", "cdcbench_t1_tpl", "-create", "cdcbench_t1_a,cdcbench_t1_b")
	for _, slot := range []string{"cdcbench_t1_a", "cdcbench_t1_b"} {
		got := cdcbench(t, ctx, "drain", "-db", db.URL, "-slot", slot, "-rows", "65", "-timeout", "1m")
		if rows := value(t, got, "rows"); rows != "65" {
			t.Errorf("%s: drained %s rows, want 65", slot, rows)
		}
		last, err := pglogrepl.ParseLSN(value(t, got, "last_end_lsn"))
		if err != nil || last == 0 || last > end {
			t.Errorf("%s: last commit ends at %s, want within the workload (up to %s)", slot, last, end)
		}
		// The bare loop confirmed its position: nothing is left to read.
		var confirmed string
		if err := db.Pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
			slot).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if c, _ := pglogrepl.ParseLSN(confirmed); c != last {
			t.Errorf("%s: confirmed %s, want the last commit's end %s", slot, confirmed, last)
		}
	}
	if got := cdcbench(t, ctx, "slots", "-db", db.URL, "-drop-prefix", "cdcbench_t1_"); value(t, got, "dropped") != "3" {
		t.Errorf("slots -drop-prefix: %s, want 3 dropped", got)
	}
}

// The timeout bounds the connection too: 3 s, since a loaded machine once
// spent all of 300 ms on the replication connection's authentication.
func TestDrainStopsAtItsTimeout(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	cdcbench(t, ctx, "prepare", "-db", db.URL)
	cdcbench(t, ctx, "slots", "-db", db.URL, "-create", "cdcbench_t2")
	cdcbench(t, ctx, "workload", "-db", db.URL, "-kind", "small", "-rows", "3")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"drain", "-db", db.URL, "-slot", "cdcbench_t2", "-rows", "4", "-timeout", "3s"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "3 of 4 rows") {
		t.Fatalf("drain of more rows than written = exit %d, %q; want 1 and a timeout after 3 of 4 rows", code, stderr.String())
	}
}

// The latency receiver, fed by the ficus cdc run pipeline through the
// webhook sink, sees every row committed at a constant rate.
func TestLatencyThroughTheWebhookSink(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cdcbench(t, ctx, "prepare", "-db", db.URL)
	cdcbench(t, ctx, "slots", "-db", db.URL, "-create", "cdcbench_t3")
	const rate, seconds = 200, 1
	pipelineDone := make(chan error, 1)
	res, err := measureLatency(ctx, latencyOptions{
		db: db.URL, listen: "127.0.0.1:0", rate: rate, duration: seconds * time.Second,
		warmup: 200 * time.Millisecond, connections: 2, grace: 30 * time.Second,
	}, func(addr string) {
		go func() {
			_, err := pipeline(ctx, db.URL, "cdcbench_t3", DefaultPublication, "http://"+addr+"/events", rate*seconds, cdc.DefaultPartSize)
			pipelineDone <- err
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-pipelineDone; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	line := res.line()
	if res.written != rate*seconds || res.received != res.written || res.missing != 0 {
		t.Fatalf("%s: want every one of %d rows received", line, rate*seconds)
	}
	if want := rate * seconds * 4 / 5; len(res.measured) != want {
		t.Fatalf("%s: %d measured, want %d after the warm-up", line, len(res.measured), want)
	}
	p99, err := strconv.ParseFloat(value(t, line, "p99_ms"), 64)
	if err != nil || p99 <= 0 {
		t.Fatalf("%s: p99 %v, %v; want a positive latency", line, p99, err)
	}
}
