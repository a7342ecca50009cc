package sink

import (
	"context"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"
)

// Discard is the sink of "null:": it acknowledges every event at once and
// keeps nothing, to measure what comes before the sink.
type Discard struct {
	m      *delivery.Metrics
	closed atomic.Bool
}

// NewDiscard returns a Discard sink counting its events on set, labelled
// sink="null"; nil set means a new one.
func NewDiscard(set *metrics.Set) *Discard {
	if set == nil {
		set = metrics.NewSet()
	}
	return &Discard{m: delivery.NewMetrics(set, "null")}
}

// Send counts batch as delivered.
func (d *Discard) Send(ctx context.Context, batch []cloudevent.Event) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.m.Delivered.Add(len(batch))
	return nil
}

// Close makes later Sends fail with ErrClosed.
func (d *Discard) Close(context.Context) error {
	d.closed.Store(true)
	return nil
}
