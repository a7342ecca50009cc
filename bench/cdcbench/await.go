package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// deliveredMetric counts, per table and operation, the changes ficus cdc
// run delivered (docs/metrics.md).
const deliveredMetric = "ficus_cdc_events_total"

// sumMetric adds up every series of the metric name in a Prometheus text
// exposition. found is false when no series of it is there.
func sumMetric(r io.Reader, name string) (sum float64, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric, or one whose name only starts like it
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, false, fmt.Errorf("metric line %q: unterminated labels", line)
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false, fmt.Errorf("metric line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric line %q: value: %w", line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("read metrics: %w", err)
	}
	return sum, found, nil
}

func runAwait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("await", stderr)
	url := fs.String("metrics", "", "ficus cdc run's /metrics URL (required)")
	rows := fs.Float64("rows", 0, "wait until "+deliveredMetric+" adds up to this (required)")
	pid := fs.Int("pid", 0, "fail as soon as this process is gone")
	every := fs.Duration("every", 5*time.Millisecond, "how often to scrape")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *url == "" || *rows < 1 || *every <= 0 {
		return fmt.Errorf("%w: -metrics and -rows (at least 1) are required, -every must be positive", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	alive := func() bool { return *pid == 0 || syscall.Kill(*pid, 0) == nil }
	done, got, err := await(ctx, http.DefaultClient, *url, *rows, *every, alive)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("delivered=%.0f done_ns=%d", got, done.UnixNano())
	if *pid != 0 {
		// Read while the process still runs: its peak over the drain.
		if kb, err := peakRSS(*pid); err == nil {
			line += fmt.Sprintf(" peak_rss_kb=%d", kb)
		} else {
			fmt.Fprintf(stderr, "cdcbench await: %v\n", err)
		}
		// How many transactions the server streamed (ficus with a spool).
		if n, found, err := scrapeMetric(ctx, http.DefaultClient, *url, streamedMetric); err == nil && found {
			line += fmt.Sprintf(" streamed=%.0f", n)
		}
	}
	fmt.Fprintln(stdout, line)
	return nil
}

// await scrapes url until the delivered metric reaches want and returns
// when it saw that. It fails when alive reports the process gone, or when
// ctx ends. Scrapes fail while the process starts; they are retried.
//
// A scrape costs the process being measured CPU time (its whole metrics
// page is formatted), on the CPU it is pinned to: at one every 5 ms that
// was about a tenth of ficus's time in a profile. So scrapes are paced by
// nextScrape: every "every" near the end, seldom before.
func await(ctx context.Context, client *http.Client, url string, want float64, every time.Duration, alive func() bool) (time.Time, float64, error) {
	var (
		got     float64
		lastErr error
		pace    pacer
	)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		n, err := scrape(ctx, client, url)
		now := time.Now()
		if err == nil {
			got = n
			if got >= want {
				return now, got, nil
			}
		} else {
			lastErr = err
		}
		if !alive() {
			return time.Time{}, got, fmt.Errorf("the process exited after delivering %.0f of %.0f rows (last scrape error: %v)", got, want, lastErr)
		}
		t.Reset(pace.next(every, got, want, now))
		select {
		case <-ctx.Done():
			return time.Time{}, got, fmt.Errorf("%w: %.0f of %.0f rows delivered (last scrape error: %v)", errTimeout, got, want, lastErr)
		case <-t.C:
		}
	}
}

// mostBetweenScrapes is the longest wait between two scrapes: while nothing
// is delivered yet, and while the end is far.
const mostBetweenScrapes = 50 * time.Millisecond

// pacer spaces scrapes by what is left: half the time the rows still to
// deliver take at the rate seen so far, between every and
// mostBetweenScrapes. The end is then seen within every of when it came.
type pacer struct {
	firstGot float64
	firstAt  time.Time
}

func (p *pacer) next(every time.Duration, got, want float64, now time.Time) time.Duration {
	if got <= 0 {
		return max(every, mostBetweenScrapes)
	}
	if p.firstAt.IsZero() {
		p.firstGot, p.firstAt = got, now
		return every
	}
	elapsed := now.Sub(p.firstAt).Seconds()
	if got <= p.firstGot || elapsed <= 0 {
		return every
	}
	rate := (got - p.firstGot) / elapsed
	left := time.Duration((want - got) / rate / 2 * float64(time.Second))
	return min(max(left, every), max(every, mostBetweenScrapes))
}

// streamedMetric counts the transactions ficus cdc run received streamed.
const streamedMetric = "ficus_cdc_streamed_transactions_total"

func scrape(ctx context.Context, client *http.Client, url string) (float64, error) {
	n, _, err := scrapeMetric(ctx, client, url, deliveredMetric)
	return n, err
}

// scrapeMetric sums the series of metric name at url.
func scrapeMetric(ctx context.Context, client *http.Client, url, name string) (float64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return sumMetric(resp.Body, name)
}
